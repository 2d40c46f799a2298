#!/usr/bin/env bash
# Edge cache hits side by side: shardgate, nginx (proxy_cache) and Varnish,
# each caching a 1 KiB and a 1 MiB object from the same origin, over plain
# HTTP/1.1 (h1: `loadgen http`, CONNS keep-alive connections, default 32) and
# over HTTPS + HTTP/2 (h2: h2load from Debian's nghttp2-client, CONNS
# connections x H2_STREAMS concurrent streams, default 10; the same ECDSA
# P-256 certificate for the asset host in shardgate (an `ssls` object) and
# nginx (`listen ... ssl http2`); Varnish has no TLS and is not run over h2).
# The proxy is pinned to core 0; the origin and the load generator share
# core 1. Only 127.0.0.1 is used, every load run is bounded in time, and only
# processes this script started are stopped (by their PID).
#
# ROUNDS rounds, interleaved (each round: the machine-speed probe on core 0,
# then each proxy in turn, every file and protocol on it); the table shows
# the medians, raw.txt every round.
#
# Usage: bench/edge.sh [seconds-per-run]     (default 10)
#   PROXIES="shardgate nginx varnish" (default; also shardgate-acl,
#     shardgate-fn: seed 003's CloudFront Function on the viewer-request
#     event of the benchmarked behavior (the load sends no x-vendor-type,
#     so it runs and returns the request unchanged),
#     shardgate-log: the edge access log on, one line per request to a file,
#     against nginx-log: nginx's access_log to a file; shardgate-nolog:
#     edge.access_log.enabled: false; and
#     shardgate-base: the binary named by SG_BASE, e.g. a release build of an
#     earlier commit, for a before/after comparison in one interleaved run)
#   FILES="1k 1m" (default)   ROUNDS=3 (default)   PROTOS="h1 h2" (default)
#   CONNS=32 (default)   H2_STREAMS=10 (default)
#   RATE=N: N requests/s in total instead of as many as the proxy answers
#     (h2: h2load --rps, RATE / CONNS per connection)
#   PERF=1: also record a CPU profile of the proxy per run
#     (perf-<proxy>-<file>-<proto>-<round>.data in the output folder)
# Output: a Markdown table on stdout and in bench/out/edge-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
CONNS=${CONNS:-32}
H2_STREAMS=${H2_STREAMS:-10}
ROUNDS=${ROUNDS:-3}
PROXIES=${PROXIES:-shardgate nginx varnish}
FILES=${FILES:-1k 1m}
PROTOS=${PROTOS:-h1 h2}
for proto in $PROTOS; do case $proto in h1|h2) ;; *) echo "PROTOS: unknown protocol $proto (h1 h2)" >&2; exit 2 ;; esac; done
OUT=bench/out/edge-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
PIDS=()
PROC_PIDS=()
PERF_PID=""
cleanup() { for p in ${PERF_PID:-} "${PROC_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v varnishd >/dev/null || need+=(varnish)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v jq >/dev/null || need+=(jq)
[[ " $PROTOS " == *" h2 "* ]] && { command -v h2load >/dev/null || need+=(nghttp2-client); }
if [ -n "${PERF:-}" ] && [ "$PERF" != 0 ]; then command -v perf >/dev/null || need+=(linux-perf); fi
install_packages "${need[@]}"
prepare_run
BASE=$((20000 + RANDOM % 5000))
ORIGIN=$BASE; PROXY=$((BASE + 1)); ADMIN=$((BASE + 2)); METRICS=$((BASE + 3)); PROXY_TLS=$((BASE + 4))
HOST=assets.example.com

# --- the asset host's certificate (h2): ECDSA P-256, for every proxy ------------
mkdir -p "$W/tls"
openssl req -x509 -nodes -days 30 -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$W/tls/$HOST.key" -out "$W/tls/$HOST.crt" 2>/dev/null

# --- origin on core 1: two static files ---------------------------------------
mkdir -p "$W/www"
head -c 1024 /dev/urandom > "$W/www/1k.bin"
head -c $((1024 * 1024)) /dev/urandom > "$W/www/1m.bin"
chmod -R a+rX "$W"
(cd "$W/www" && exec taskset -c 1 python3 -m http.server "$ORIGIN" --bind 127.0.0.1 >/dev/null 2>&1) & PIDS+=($!)

wait_port $ORIGIN

# A 100-rule web ACL of mixed statements that the benchmark request passes
# (every rule runs), like crates/waf/benches/evaluate.rs.
make_acl() {
    python3 - <<'PY'
import json
NONE=[{"Type":"NONE","Priority":0}]
DEC=[{"Type":"URL_DECODE","Priority":0},{"Type":"LOWERCASE","Priority":1}]
def st(i):
    k=i%10
    hdrs={"Headers":{"MatchPattern":{"All":{}},"MatchScope":"ALL","OversizeHandling":"CONTINUE"}}
    return [
      {"ByteMatchStatement":{"FieldToMatch":{"SingleHeader":{"Name":"user-agent"}},"PositionalConstraint":"STARTS_WITH","SearchString":f"BadBot{i}","TextTransformations":NONE}},
      {"ByteMatchStatement":{"FieldToMatch":{"UriPath":{}},"PositionalConstraint":"CONTAINS","SearchString":f"/blocked{i}/","TextTransformations":DEC}},
      {"RegexMatchStatement":{"FieldToMatch":{"QueryString":{}},"RegexString":"(?i)token=[a-f0-9]{%d}$"%(40+i),"TextTransformations":NONE}},
      {"SizeConstraintStatement":{"FieldToMatch":{"QueryString":{}},"ComparisonOperator":"GT","Size":4096+i,"TextTransformations":NONE}},
      {"SqliMatchStatement":{"FieldToMatch":{"AllQueryArguments":{}},"TextTransformations":DEC}},
      {"XssMatchStatement":{"FieldToMatch":{"QueryString":{}},"TextTransformations":DEC}},
      {"ByteMatchStatement":{"FieldToMatch":hdrs,"PositionalConstraint":"STARTS_WITH","SearchString":f"PostmanRuntime{i}","TextTransformations":NONE}},
      {"ByteMatchStatement":{"FieldToMatch":{"Method":{}},"PositionalConstraint":"EXACTLY","SearchString":"DELETE","TextTransformations":NONE}},
      {"LabelMatchStatement":{"Scope":"LABEL","Key":f"bots:bad{i}"}},
      {"AndStatement":{"Statements":[{"ByteMatchStatement":{"FieldToMatch":{"Method":{}},"PositionalConstraint":"EXACTLY","SearchString":"POST","TextTransformations":NONE}},{"ByteMatchStatement":{"FieldToMatch":{"Cookies":{"MatchPattern":{"All":{}},"MatchScope":"VALUE","OversizeHandling":"CONTINUE"}},"PositionalConstraint":"CONTAINS","SearchString":f"x{i}","TextTransformations":NONE}}]}},
    ][k]
vis=lambda n:{"SampledRequestsEnabled":False,"CloudWatchMetricsEnabled":True,"MetricName":n}
acl={"Name":"bench","DefaultAction":{"Allow":{}},"VisibilityConfig":vis("bench"),
     "Rules":[{"Name":f"r{i}","Priority":i,"Action":{"Block":{}},"Statement":st(i),"VisibilityConfig":vis(f"r{i}")} for i in range(100)]}
print(json.dumps(acl))
PY
}

# Seed 003's viewer-request function (its line breaks restored after each
# `//` comment), as a `functions` resource body; the same text as the tests'.
seed_function() {
    python3 - <<'PY'
import json
SEED = "function handler(event) {\n// 获取请求头\nvar request = event.request;var headers = event.request.headers;var originUrl = event.request.uri;\n// 检查 x-vendor-type 请求头是否存在\nif (headers['x-vendor-type']) {var targetObject = headers['x-vendor-type'].value\n//修改回源 URL Path\n event.request.uri = '/' + targetObject + originUrl;}return request;\n}\n"
print(json.dumps({"runtime": "cloudfront-js-1.0", "code": SEED}))
PY
}

start_proxy() {
    case $1 in
    shardgate|shardgate-acl|shardgate-fn|shardgate-log|shardgate-nolog|shardgate-base)
        bin=$SG
        if [ "$1" = shardgate-base ]; then
            bin=${SG_BASE:?shardgate-base needs SG_BASE=<path to a shardgate binary>}
        fi
        cat > "$W/sg.yaml" <<YAML
stream: {tcp: []}
edge:
  http:
    - addr: "127.0.0.1:$PROXY"
    - addr: "127.0.0.1:$PROXY_TLS"
      tls: true
$([ "$1" = shardgate-nolog ] && echo "  access_log: {enabled: false}")
admin: {listen: "127.0.0.1:$ADMIN"}
metrics: {listen: "127.0.0.1:$METRICS"}
store: {data_dir: "$W/sg-data"}
log: {level: $([ "$1" = shardgate-log ] && echo info || echo warn)}
drain: {timeout: 1s}
YAML
        SHARDGATE_ADMIN_KEY=bench-admin-key-0123456789 taskset -c 0 "$bin" run --config "$W/sg.yaml" 2> "$W/sg.log" & PROC_PIDS=($!)
        wait_port $ADMIN
        acl_field=""
        if [ "$1" = shardgate-acl ]; then
            make_acl | curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/web_acls/bench" -H 'X-API-KEY: bench-admin-key-0123456789' -d @- > /dev/null
            acl_field=", \"web_acl_id\": \"bench\""
        fi
        if [ "$1" = shardgate-fn ]; then
            seed_function | curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/functions/vendor" -H 'X-API-KEY: bench-admin-key-0123456789' -d @- > /dev/null
            curl -sf -X POST "http://127.0.0.1:$ADMIN/apisix/admin/functions/vendor/publish" -H 'X-API-KEY: bench-admin-key-0123456789' -d '{}' > /dev/null
            acl_field=", \"default_behavior\": {\"function_associations\": [{\"event_type\": \"viewer-request\", \"function\": \"vendor\"}]}"
        fi
        curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/distributions/assets" -H 'X-API-KEY: bench-admin-key-0123456789' \
            -d "{\"hosts\": [\"$HOST\"], \"origins\": {\"o\": {\"upstream\": {\"nodes\": {\"127.0.0.1:$ORIGIN\": 1}}}}$acl_field}" > /dev/null
        # The HTTPS listener's certificate, by SNI (APISIX's ssls object).
        curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/ssls/assets" -H 'X-API-KEY: bench-admin-key-0123456789' \
            -d "{\"cert\": $(jq -Rs . < "$W/tls/$HOST.crt"), \"key\": $(jq -Rs . < "$W/tls/$HOST.key"), \"snis\": [\"$HOST\"]}" > /dev/null
        wait_port $PROXY_TLS
        ;;
    nginx|nginx-log)
        mkdir -p "$W/nginx/cache"
        cat > "$W/nginx/nginx.conf" <<NGX
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 10000; }
http {
    access_log $([ "$1" = nginx-log ] && echo "$W/nginx/access.log" || echo off);
    keepalive_requests 10000000;
    proxy_cache_path $W/nginx/cache levels=1:2 keys_zone=assets:10m max_size=1g inactive=1h use_temp_path=off;
    upstream origin { server 127.0.0.1:$ORIGIN; }
    server {
        listen 127.0.0.1:$PROXY;
        listen 127.0.0.1:$PROXY_TLS ssl http2;
        ssl_certificate $W/tls/$HOST.crt;
        ssl_certificate_key $W/tls/$HOST.key;
        # nginx 1.22's default leaves TLS 1.3 out, and OpenSSL would follow
        # h2load's preference (AES-256-GCM): the same version and suite as
        # shardgate (TLS 1.3, AES-128-GCM), so the cipher is not the difference.
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        server_name $HOST;
        location / {
            proxy_pass http://origin;
            proxy_cache assets;
            proxy_cache_valid 200 1d;
            proxy_cache_lock on;
            add_header X-Cache \$upstream_cache_status;
        }
    }
}
NGX
        taskset -c 0 nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" & PROC_PIDS=($!)
        wait_port $PROXY
        PROC_PIDS+=($(pgrep -P "${PROC_PIDS[0]}"))
        ;;
    varnish)
        cat > "$W/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN"; }
sub vcl_backend_response { set beresp.ttl = 1d; }
VCL
        taskset -c 0 varnishd -F -j none -n "$W/varnish" -a "127.0.0.1:$PROXY" -f "$W/default.vcl" \
            -s malloc,256m -p thread_pools=1 > "$W/varnish.log" 2>&1 & PROC_PIDS=($!)
        wait_port $PROXY
        sleep 0.5
        PROC_PIDS+=($(pgrep -P "${PROC_PIDS[0]}"))
        ;;
    esac
}

stop_proxy() {
    local p
    for p in "${PROC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PROC_PIDS[@]}"; do
        for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
    PROC_PIDS=()
}

# Fills the cache with file $1 over protocol $2 (three requests) and checks
# the last: status 200 and, where the proxy says (X-Cache; Varnish does not),
# a hit.
warm() {
    local f=$1 proto=$2 head
    if [ "$proto" = h1 ]; then
        for _ in 1 2; do curl -sf -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$PROXY/$f.bin"; done
        head=$(curl -sf -o /dev/null -D - -H "Host: $HOST" "http://127.0.0.1:$PROXY/$f.bin")
    else
        local url="https://$HOST:$PROXY_TLS/$f.bin" res="$HOST:$PROXY_TLS:127.0.0.1"
        for _ in 1 2; do curl -sfk --http2 --resolve "$res" -o /dev/null "$url"; done
        head=$(curl -sfk --http2 --resolve "$res" -o /dev/null -D - "$url")
        grep -q '^HTTP/2 200' <<<"$head" || { echo "$proxy: a warm $f.bin over h2 did not answer HTTP/2 200: $(head -1 <<<"$head")" >&2; exit 1; }
    fi
    grep -q '^HTTP/[0-9.]* 200' <<<"$head" || { echo "$proxy: a warm $f.bin over $proto did not answer 200" >&2; exit 1; }
    if grep -qi '^x-cache:' <<<"$head" && ! grep -qi '^x-cache:.*hit' <<<"$head"; then
        echo "$proxy: a warm $f.bin over $proto was not a cache hit: $(grep -i '^x-cache:' <<<"$head")" >&2; exit 1
    fi
    echo "round $round warm $proxy $f $proto: $(head -1 <<<"$head" | tr -d '\r' | sed 's/ *$//')$(grep -i '^x-cache:' <<<"$head" | tr -d '\r' | sed 's/^/, /')" >> "$OUT/raw.txt"
}

# Runs the load for file $1 over protocol $2 on core 1; sets OPS, RATE_OUT,
# ERRORS and the raw line RES.
load() {
    local f=$1 proto=$2 out
    if [ "$proto" = h1 ]; then
        RES=$(taskset -c 1 "$LG" http --target 127.0.0.1:$PROXY --host $HOST --path /$f.bin --conns "$CONNS" --seconds "$SECS" --rate "${RATE:-0}")
        OPS=$(jq .ops <<<"$RES"); RATE_OUT=$(jq .rate <<<"$RES"); ERRORS=$(jq .errors <<<"$RES")
    else
        local rps=()
        [ "${RATE:-0}" -gt 0 ] && rps=(--rps=$(( RATE / CONNS > 0 ? RATE / CONNS : 1 )))
        out=$(taskset -c 1 h2load -c "$CONNS" -m "$H2_STREAMS" -D "$SECS" "${rps[@]}" \
            --connect-to=127.0.0.1:$PROXY_TLS "https://$HOST:$PROXY_TLS/$f.bin" 2>&1) || true
        grep -q '^Application protocol: h2' <<<"$out" || { echo "$proxy: h2load did not speak h2: $out" >&2; exit 1; }
        # "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
        local req codes secs
        req=$(grep '^requests:' <<<"$out"); codes=$(grep '^status codes:' <<<"$out")
        secs=$(sed -nE 's/^finished in ([0-9.]+)s.*/\1/p' <<<"$out")
        # Completed 2xx requests (status codes also counts the streams still
        # open at the end, whose heads had arrived); errors: failed, errored,
        # timed out, and any status but 2xx.
        OPS=$(awk '{print $8}' <<<"$req")
        ERRORS=$(awk '{print $10 + $12 + $14}' <<<"$req")
        ERRORS=$((ERRORS + $(awk '{print $5 + $7 + $9}' <<<"$codes")))
        RATE_OUT=$(echo "scale=1; $OPS / $secs" | bc)
        RES="$(tr -d '\n' <<<"$(grep -E '^(TLS Protocol|Cipher|Server Temp Key|Application protocol|traffic):' <<<"$out" | sed 's/$/; /')")$req; $codes; finished in ${secs}s"
    fi
}

# ROUNDS rounds, proxies interleaved, the median reported: this machine is
# shared, and a single run can be off by a third.
declare -A RATES CPUS ERRS NOTES
SPEEDS=""; SPEED_WALLS=""
for round in $(seq 1 "$ROUNDS"); do
speed=$(speed_probe)
SPEEDS+="$(jq '.ns_per_iter * 1000 | round / 1000' <<<"$speed") "; SPEED_WALLS+="$(jq '.wall_ms | round' <<<"$speed") "
echo "round $round speed probe (core 0): $speed" | tee -a "$OUT/raw.txt" >&2
for proxy in $PROXIES; do
    start_proxy $proxy
    for f in $FILES; do
    for proto in $PROTOS; do
        if [ "$proto" = h2 ] && [ "$proxy" = varnish ]; then continue; fi
        warm "$f" "$proto"
        perf_start "$OUT/perf-$proxy-$f-$proto-$round.data" "${PROC_PIDS[@]}"
        t0=$(cpu_ticks "${PROC_PIDS[@]}")
        load "$f" "$proto"
        t1=$(cpu_ticks "${PROC_PIDS[@]}")
        perf_stop
        cpu_s=$(echo "scale=4; ($t1 - $t0) / $CLK" | bc)
        us=$(echo "scale=2; $cpu_s * 1000000 / $OPS" | bc)
        RATES[$proxy,$f,$proto]+="$(printf '%.0f' "$RATE_OUT") "; CPUS[$proxy,$f,$proto]+="$us "
        ERRS[$proxy,$f,$proto]=$(( ${ERRS[$proxy,$f,$proto]:-0} + ERRORS ))
        echo "round $round $proto $proxy $f: $RES cpu_s=$cpu_s -> $us us/req" | tee -a "$OUT/raw.txt" >&2
        if [ "$proto" = h2 ]; then NOTES[$proxy]=$(grep -oE 'Cipher: [^;]*' <<<"$RES" | sed 's/Cipher: //'); fi
        if [ "$proxy" = shardgate-fn ]; then
            # The function really ran on every request.
            curl -sf "http://127.0.0.1:$METRICS/metrics" | grep '^shardgate_edge_function_invocations_total' | tee -a "$OUT/raw.txt" >&2
        fi
    done
    done
    stop_proxy
done
done
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
{
    echo "Measured $(date -u +%F) on $(nproc) cores; proxy pinned to core 0, origin and load on core 1; $ROUNDS interleaved rounds of ${SECS}s (every round in raw.txt)."
    echo "Load: h1 = loadgen http, $CONNS keep-alive HTTP/1.1 connections$([ -n "${RATE:-}" ] && echo ", $RATE requests/s in total"); h2 = $(h2load --version 2>/dev/null | head -1 | sed 's/.*nghttp2\//h2load /' || echo h2load) over TLS (ECDSA P-256), -c $CONNS -m $H2_STREAMS (connections × concurrent streams)."
    echo "Peers: $(nginx -v 2>&1 | sed 's/.*: //') (proxy_cache; h2: listen ssl http2), $(varnishd -V 2>&1 | head -1 | sed -E 's/varnishd \(([^ ]+).*/\1/') (malloc storage; no TLS, so no h2 rows)."
    ciphers=""; for proxy in $PROXIES; do [ -n "${NOTES[$proxy]:-}" ] && ciphers+="${ciphers:+, }$proxy ${NOTES[$proxy]}"; done
    [ -z "$ciphers" ] || echo "TLS cipher each proxy chose for h2load: $ciphers."
    echo "Machine-speed probe on core 0 (loadgen speed), CPU ns per iteration, each round: $(tr -s ' ' <<<"$SPEEDS" | sed 's/ $//; s/ / \/ /g') (wall ms: $(tr -s ' ' <<<"$SPEED_WALLS" | sed 's/ $//; s/ / \/ /g'))."
    echo
    echo "| cache hit | protocol | proxy | CPU µs/request, median | least | requests/s, median | errors | shardgate's requests per CPU-second vs this proxy (median CPU ÷ shardgate's) |"
    echo "|---|---|---|---|---|---|---|---|"
    for f in $FILES; do
        label=$([ $f = 1k ] && echo "1 KiB" || echo "1 MiB")
        for proto in $PROTOS; do
            plabel=$([ $proto = h1 ] && echo "HTTP/1.1" || echo "HTTPS + HTTP/2")
            base=$(median "${CPUS[shardgate,$f,$proto]:-}")
            for proxy in $PROXIES; do
                if [ "$proto" = h2 ] && [ "$proxy" = varnish ]; then
                    echo "| $label | $plabel | $proxy | — | | | | not run: Varnish has no TLS |"
                    continue
                fi
                m=$(median "${CPUS[$proxy,$f,$proto]}")
                vs=$([ -n "$base" ] && echo "$(ratio "$m" "$base")×" || echo "")
                echo "| $label | $plabel | $proxy | $m | $(least "${CPUS[$proxy,$f,$proto]}") | $(median "${RATES[$proxy,$f,$proto]}") | ${ERRS[$proxy,$f,$proto]} | $vs |"
            done
        done
    done
} | tee "$OUT/table.md"
