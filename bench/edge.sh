#!/usr/bin/env bash
# Edge cache hits side by side: shardgate, nginx (proxy_cache) and Varnish,
# each caching a 1 KiB and a 1 MiB object from the same origin. The proxy is
# pinned to core 0; the origin and the load generator share core 1. Only
# 127.0.0.1 is used, every load run is bounded in time, and only processes
# this script started are stopped (by their PID).
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
#   FILES="1k 1m" (default)   ROUNDS=3 (default)
#   RATE=N: N requests/s in total instead of as many as the proxy answers
#   PERF=1: also record a CPU profile of the proxy per run (perf-*.data in the output folder)
# Output: a Markdown table on stdout and in bench/out/edge-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
CONNS=${CONNS:-32}
OUT=bench/out/edge-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
PIDS=()
PROC_PIDS=()
cleanup() { for p in "${PROC_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v varnishd >/dev/null || need+=(varnish)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
command -v python3 >/dev/null || need+=(python3)
install_packages "${need[@]}"
prepare_run
BASE=$((20000 + RANDOM % 5000))
ORIGIN=$BASE; PROXY=$((BASE + 1)); ADMIN=$((BASE + 2)); METRICS=$((BASE + 3))
HOST=assets.example.com

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
    for p in "${PROC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PROC_PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
    PROC_PIDS=()
}

# ROUNDS rounds, proxies interleaved, the median reported: this machine is
# shared, and a single run can be off by a third.
ROUNDS=${ROUNDS:-3}
declare -A RATES CPUS
for round in $(seq 1 "$ROUNDS"); do
for proxy in ${PROXIES:-shardgate nginx varnish}; do
    start_proxy $proxy
    for f in ${FILES:-1k 1m}; do
        # Warm: the first request fills the cache, the second must hit.
        for _ in 1 2 3; do curl -sf -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$PROXY/$f.bin"; done
        t0=$(cpu_ticks "${PROC_PIDS[@]}")
        if [ -n "${PERF:-}" ]; then
            pids=$(IFS=,; echo "${PROC_PIDS[*]}")
            perf record -q -g -o "$OUT/perf-$proxy-$f-$round.data" -p "$pids" -- sleep "$SECS" 2>/dev/null &
            perf_pid=$!
        fi
        res=$(taskset -c 1 "$LG" http --target 127.0.0.1:$PROXY --host $HOST --path /$f.bin --conns "$CONNS" --seconds "$SECS" --rate "${RATE:-0}")
        t1=$(cpu_ticks "${PROC_PIDS[@]}")
        [ -z "${PERF:-}" ] || wait "$perf_pid" || true
        ops=$(echo "$res" | sed -E 's/.*"ops":([0-9]+).*/\1/')
        rate=$(echo "$res" | sed -E 's/.*"rate":([0-9.]+).*/\1/')
        cpu_s=$(echo "scale=4; ($t1 - $t0) / $CLK" | bc)
        us=$(echo "scale=2; $cpu_s * 1000000 / $ops" | bc)
        RATES[$proxy,$f]+="$(printf '%.0f' "$rate") "; CPUS[$proxy,$f]+="$us "
        echo "round $round http $proxy $f: $res cpu_s=$cpu_s -> $us us/req" | tee -a "$OUT/raw.txt" >&2
        if [ "$proxy" = shardgate-fn ]; then
            # The function really ran on every request.
            curl -sf "http://127.0.0.1:$METRICS/metrics" | grep '^shardgate_edge_function_invocations_total' | tee -a "$OUT/raw.txt" >&2
        fi
    done
    stop_proxy
done
done
median() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
least() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | head -1; }
ratio() { echo "scale=2; $1 / $2" | bc; }
{
    echo "Measured $(date -u +%F) on $(nproc) cores; proxy pinned to core 0, origin and load ($CONNS keep-alive connections$([ -n "${RATE:-}" ] && echo ", $RATE requests/s in total")) on core 1; $ROUNDS interleaved rounds of ${SECS}s (every round in raw.txt)."
    echo "Peers: $(nginx -v 2>&1 | sed 's/.*: //') (proxy_cache), $(varnishd -V 2>&1 | head -1 | sed -E 's/varnishd \(([^ ]+).*/\1/') (malloc storage)."
    echo
    echo "| cache hit | proxy | CPU µs/request, median | least | requests/s, median | median CPU vs shardgate |"
    echo "|---|---|---|---|---|---|"
    for f in ${FILES:-1k 1m}; do
        label=$([ $f = 1k ] && echo "1 KiB" || echo "1 MiB")
        base=$(median "${CPUS[shardgate,$f]:-}")
        for proxy in ${PROXIES:-shardgate nginx varnish}; do
            m=$(median "${CPUS[$proxy,$f]}")
            vs=$([ -n "$base" ] && ratio "$m" "$base" || echo "")
            echo "| $label | $proxy | $m | $(least "${CPUS[$proxy,$f]}") | $(median "${RATES[$proxy,$f]}") | ${vs}× |"
        done
    done
} | tee "$OUT/table.md"
