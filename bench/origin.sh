#!/usr/bin/env bash
# The edge's miss path: every viewer request goes to the origin, over
# kept-alive (pooled) origin connections or over a new connection per
# request. shardgate with its default pooling and with the origin's
# `max_idle_connections: 0`, against nginx as a non-caching reverse proxy
# with an upstream `keepalive 32` pool and without one (a connection per
# request, nginx's default). The origin is nginx serving static files with
# HTTP/1.1 keep-alive and `Cache-Control: no-store`; the edge's cache
# policy has every TTL at 0. The proxy is pinned to core 0; the origin and
# the load generator share core 1. Only 127.0.0.1 is used, every load run
# is bounded in time, and only processes this script started are stopped
# (by their PID).
#
# Usage: bench/origin.sh [seconds-per-run]     (default 10)
#   PROXIES="shardgate-pool shardgate-nopool nginx-pool nginx-nopool" (default)
#   FILES="1k 64k" (default)   ROUNDS=3 (default)   CONNS=32 (default)
#   RATE=N: N requests/s in total instead of as many as the proxy answers
#   PATHS=N: N objects instead of one, each fetched by CONNS/N connections
#     of its own load generator (1, the default: every connection asks for
#     the same object, so shardgate's collapsed forwarding is on the path)
#   PERF=1: also record a CPU profile of the proxy per run (perf-*.data)
# Output: a Markdown table on stdout and in bench/out/origin-*/ (raw.txt
# has every round: the load generator's JSON, the proxy's and the origin's
# CPU, the origin's connection and request counts, the load average).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
PROXY_LIST=${PROXIES:-shardgate-pool shardgate-nopool nginx-pool nginx-nopool}
FILE_LIST=${FILES:-1k 64k}
OUT=bench/out/origin-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
ORIGIN_PIDS=()
PROC_PIDS=()
cleanup() { for p in "${PROC_PIDS[@]}" "${ORIGIN_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
command -v python3 >/dev/null || need+=(python3)
install_packages "${need[@]}"
# The build shares the machine with other engineers' builds.
export CARGO_INCREMENTAL=0
nice -n 10 cargo build --release -q -j 2 -p shardgate -p shardgate-loadgen
prepare_run
BASE=$((20000 + RANDOM % 5000))
ORIGIN=$BASE; PROXY=$((BASE + 1)); ADMIN=$((BASE + 2)); METRICS=$((BASE + 3)); STATUS=$((BASE + 4))
HOST=assets.example.com
KEY=bench-admin-key-0123456789

# --- origin on core 1: nginx, HTTP/1.1 keep-alive, static files, no-store ----
# `keepalive_requests` is raised from its default of 1,000 so that the
# origin never closes a kept-alive connection during a run: the
# connections counted are the proxy's doing. stub_status (on its own port)
# counts the connections the origin accepted and the requests it answered.
mkdir -p "$W/www" "$W/origin"
head -c 1024 /dev/urandom > "$W/www/1k.bin"
head -c $((64 * 1024)) /dev/urandom > "$W/www/64k.bin"
PATHS=${PATHS:-1}
for f in 1k 64k; do for i in $(seq 1 "$PATHS"); do cp "$W/www/$f.bin" "$W/www/$f-$i.bin"; done; done
chmod -R a+rX "$W"
cat > "$W/origin/nginx.conf" <<NGX
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $W/origin/nginx.pid;
error_log $W/origin/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$ORIGIN;
        root $W/www;
        location / { add_header Cache-Control no-store; }
    }
    server {
        listen 127.0.0.1:$STATUS;
        location / { stub_status; }
    }
}
NGX
taskset -c 1 nginx -c "$W/origin/nginx.conf" -e "$W/origin/error.log" & ORIGIN_PIDS=($!)
wait_port $ORIGIN
wait_port $STATUS
ORIGIN_PIDS+=($(pgrep -P "${ORIGIN_PIDS[0]}"))

# "accepts requests" of the origin so far (this status request included).
origin_counts() { curl -sf "http://127.0.0.1:$STATUS/" | awk 'NR == 3 {print $1, $3}'; }
# Origin connections fetches used, by shardgate's own count: "opened reused".
sg_connections() {
    curl -sf "http://127.0.0.1:$METRICS/metrics" | awk '
        /^shardgate_edge_origin_connections_total\{/ { if ($0 ~ /reused="true"/) r += $NF; else o += $NF }
        END { printf "%d %d\n", o, r }'
}

start_proxy() {
    case $1 in
    shardgate-pool|shardgate-nopool)
        cat > "$W/sg.yaml" <<YAML
stream: {tcp: []}
edge:
  http:
    - addr: "127.0.0.1:$PROXY"
admin: {listen: "127.0.0.1:$ADMIN"}
metrics: {listen: "127.0.0.1:$METRICS"}
store: {data_dir: "$W/sg-data"}
log: {level: warn}
drain: {timeout: 1s}
YAML
        rm -rf "$W/sg-data"
        SHARDGATE_ADMIN_KEY=$KEY taskset -c 0 "$SG" run --config "$W/sg.yaml" 2> "$W/sg.log" & PROC_PIDS=($!)
        wait_port $ADMIN
        # CloudFront's CachingDisabled: every TTL 0. With the origin's
        # no-store nothing is stored (without it nginx's ETag would make
        # every request a revalidation, answered 304).
        curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/cache_policies/nocache" -H "X-API-KEY: $KEY" \
            -d '{"min_ttl": 0, "default_ttl": 0, "max_ttl": 0}' > /dev/null
        pool=""
        [ "$1" = shardgate-nopool ] && pool=', "max_idle_connections": 0'
        curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/distributions/assets" -H "X-API-KEY: $KEY" \
            -d "{\"hosts\": [\"$HOST\"], \"origins\": {\"o\": {\"upstream\": {\"nodes\": {\"127.0.0.1:$ORIGIN\": 1}}$pool}},
                 \"default_behavior\": {\"cache_policy_id\": \"nocache\"}}" > /dev/null
        wait_port $PROXY
        ;;
    nginx-pool|nginx-nopool)
        mkdir -p "$W/nginx"
        # Buffers large enough for a 64 KiB response, and no temporary
        # files: nginx must not write bodies to disk on this path.
        keepalive=""
        [ "$1" = nginx-pool ] && keepalive="keepalive 32;"
        cat > "$W/nginx/nginx.conf" <<NGX
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_requests 10000000;
    upstream origin { server 127.0.0.1:$ORIGIN; $keepalive }
    server {
        listen 127.0.0.1:$PROXY;
        server_name $HOST;
        location / {
            proxy_pass http://origin;
            proxy_buffers 32 8k;
            proxy_max_temp_file_size 0;
            $([ "$1" = nginx-pool ] && echo 'proxy_http_version 1.1; proxy_set_header Connection "";')
        }
    }
}
NGX
        taskset -c 0 nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" & PROC_PIDS=($!)
        wait_port $PROXY
        PROC_PIDS+=($(pgrep -P "${PROC_PIDS[0]}"))
        ;;
    *) echo "unknown proxy $1" >&2; exit 2 ;;
    esac
}

stop_proxy() {
    for p in "${PROC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PROC_PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
    PROC_PIDS=()
}

echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (+ uncommitted changes under crates/)'), $(nginx -v 2>&1 | sed 's/.*: //'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/raw.txt" >&2

declare -A RATES CPUS OCPUS OPENED PERREQ ERRS
LOADS=""
for round in $(seq 1 "$ROUNDS"); do
for proxy in $PROXY_LIST; do
    start_proxy "$proxy"
    for f in $FILE_LIST; do
        # Every request must reach the origin and come back whole.
        hdr=$(curl -sf -D - -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$PROXY/$f.bin")
        grep -qi '^content-length' <<< "$hdr" || { echo "$proxy $f: no Content-Length: $hdr" >&2; exit 1; }
        read -r a0 r0 <<< "$(origin_counts)"
        sg0="0 0"; [[ $proxy == shardgate* ]] && sg0=$(sg_connections)
        load=$(cut -d' ' -f1 /proc/loadavg)
        t0=$(cpu_ticks "${PROC_PIDS[@]}"); o0=$(cpu_ticks "${ORIGIN_PIDS[@]}")
        if [ -n "${PERF:-}" ]; then
            pids=$(IFS=,; echo "${PROC_PIDS[*]}")
            perf record -q -g -o "$OUT/perf-$proxy-$f-$round.data" -p "$pids" -- sleep "$SECS" 2>/dev/null &
            perf_pid=$!
        fi
        if [ "$PATHS" = 1 ]; then
            res=$(taskset -c 1 "$LG" http --target 127.0.0.1:$PROXY --host $HOST --path /$f.bin --conns "$CONNS" --seconds "$SECS" --rate "${RATE:-0}")
        else
            lg_pids=()
            for i in $(seq 1 "$PATHS"); do
                taskset -c 1 "$LG" http --target 127.0.0.1:$PROXY --host $HOST --path "/$f-$i.bin" --conns $((CONNS / PATHS)) \
                    --seconds "$SECS" --rate $((${RATE:-0} / PATHS)) > "$W/lg-$i.json" & lg_pids+=($!)
            done
            for p in "${lg_pids[@]}"; do wait "$p"; done
            res=$(cat "$W"/lg-*.json | python3 -c 'import json, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps({k: sum(r[k] for r in rs) for k in ("ops", "rate", "bytes", "errors")} | {"seconds": max(r["seconds"] for r in rs), "paths": len(rs)}, separators=(",", ":")))')
            rm -f "$W"/lg-*.json
        fi
        t1=$(cpu_ticks "${PROC_PIDS[@]}"); o1=$(cpu_ticks "${ORIGIN_PIDS[@]}")
        [ -z "${PERF:-}" ] || wait "$perf_pid" || true
        read -r a1 r1 <<< "$(origin_counts)"
        sg1="0 0"; [[ $proxy == shardgate* ]] && sg1=$(sg_connections)
        ops=$(sed -E 's/.*"ops":([0-9]+).*/\1/' <<< "$res")
        rate=$(sed -E 's/.*"rate":([0-9.]+).*/\1/' <<< "$res")
        errors=$(sed -E 's/.*"errors":([0-9]+).*/\1/' <<< "$res")
        # The second status request is counted in the second reading.
        accepted=$((a1 - a0 - 1)); origin_reqs=$((r1 - r0 - 1))
        read -r so0 sr0 <<< "$sg0"; read -r so1 sr1 <<< "$sg1"
        cpu_s=$(echo "scale=4; ($t1 - $t0) / $CLK" | bc)
        us=$(echo "scale=2; $cpu_s * 1000000 / $ops" | bc)
        ous=$(echo "scale=2; ($o1 - $o0) * 1000000 / $CLK / $ops" | bc)
        per=$(awk -v a="$accepted" -v o="$ops" 'BEGIN {printf "%.4f", a / o}')
        RATES[$proxy,$f]+="$(printf '%.0f' "$rate") "; CPUS[$proxy,$f]+="$us "; OCPUS[$proxy,$f]+="$ous "
        OPENED[$proxy,$f]+="$accepted "; PERREQ[$proxy,$f]+="$per "; ERRS[$proxy,$f]+="$errors "
        LOADS+="$load "
        sg=""
        [[ $proxy == shardgate* ]] && sg=" shardgate_connections(opened=$((so1 - so0)) reused=$((sr1 - sr0)))"
        echo "round $round $proxy $f: $res proxy_cpu_s=$cpu_s -> $us us/req; origin $ous us/req, accepted=$accepted requests=$origin_reqs$sg load1=$load" | tee -a "$OUT/raw.txt" >&2
        if [ "$origin_reqs" -lt "$ops" ]; then
            echo "warning: $proxy $f: the origin answered $origin_reqs requests for $ops viewer requests (some were not misses)" | tee -a "$OUT/raw.txt" >&2
        fi
    done
    [[ $proxy == shardgate* ]] && grep -v '^$' "$W/sg.log" | tail -5 | sed "s/^/$proxy log: /" >> "$OUT/raw.txt"
    stop_proxy
done
done
median() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
least() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | head -1; }
sum() { tr ' ' '\n' <<< "$1" | awk 'NF {s += $1} END {print s + 0}'; }
{
    echo "Measured $(date -u +%F) on $(nproc) cores: proxy pinned to core 0; origin (nginx, static files, \`Cache-Control: no-store\`) and load ($CONNS keep-alive connections$([ -n "${RATE:-}" ] && echo ", $RATE requests/s in total")$([ "$PATHS" != 1 ] && echo ", spread over $PATHS objects")) on core 1; $ROUNDS interleaved rounds of ${SECS}s, medians (every round in raw.txt)."
    echo "Load average (1 min) at the start of each run: $(least "$LOADS")–$(tr ' ' '\n' <<< "$LOADS" | awk 'NF' | sort -g | tail -1) (2 cores, shared with other engineers' builds)."
    echo
    echo "| miss | proxy | CPU µs/request (proxy), median | least | requests/s, median | origin connections opened per request, median | origin CPU µs/request, median | errors (all rounds) |"
    echo "|---|---|---|---|---|---|---|---|"
    for f in $FILE_LIST; do
        label=$([ "$f" = 1k ] && echo "1 KiB" || echo "${f%k} KiB")
        for proxy in $PROXY_LIST; do
            echo "| $label | $proxy | $(median "${CPUS[$proxy,$f]}") | $(least "${CPUS[$proxy,$f]}") | $(median "${RATES[$proxy,$f]}") | $(median "${PERREQ[$proxy,$f]}") | $(median "${OCPUS[$proxy,$f]}") | $(sum "${ERRS[$proxy,$f]}") |"
        done
    done
} | tee "$OUT/table.md"
