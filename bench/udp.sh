#!/usr/bin/env bash
# UDP side by side: shardgate's `stream.udp` listener and nginx's stream UDP
# proxy (`listen ... udp`: one session per client address and port, as in
# shardgate), two UDP echo game servers behind round robin, and the echo
# server reached directly (the floor: what a proxy adds to the round trip
# is the difference). The proxy is pinned to core 0; the load generator and
# the echo servers share core 1. Only 127.0.0.1 is used, every load run is
# bounded in time, and only processes this script started are stopped (by
# their PID).
#
# Usage: bench/udp.sh [seconds-per-run]     (default 10)
#   LOADS="200x100 1000x20" (default): clients x datagrams per second per
#     client; every client is its own socket, so its own session. Keep the
#     total within what core 1 sustains (about 20,000/s on the reference
#     machine; check that `direct` loses nothing)
#   SIZE=64 (bytes per datagram)   ROUNDS=3 (interleaved; medians reported)
#   PROXIES="direct shardgate nginx" (default)
# Output: a Markdown table on stdout and in bench/out/udp-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
SIZE=${SIZE:-64}
LOADS=${LOADS:-200x100 1000x20}
PROXIES=${PROXIES:-direct shardgate nginx}
ROUNDS=${ROUNDS:-3}
OUT=bench/out/udp-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
PIDS=()
PROC_PIDS=()
cleanup() { for p in "${PROC_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
install_packages "${need[@]}"
prepare_run

BASE=$((20000 + RANDOM % 5000))
B1=$BASE; B2=$((BASE + 1)); PROXY=$((BASE + 2)); ADMIN=$((BASE + 3)); METRICS=$((BASE + 4))
KEY=bench-admin-key-0123456789

# --- UDP echo game servers on core 1 ------------------------------------------
taskset -c 1 "$LG" udp-echo --listen 127.0.0.1:$B1 & PIDS+=($!)
taskset -c 1 "$LG" udp-echo --listen 127.0.0.1:$B2 & PIDS+=($!)

# Starts proxy $1; sets PROC_PIDS (every process of it) and TARGET.
start_proxy() {
    TARGET=127.0.0.1:$PROXY
    case $1 in
    direct)
        TARGET=127.0.0.1:$B1
        PROC_PIDS=()
        ;;
    shardgate)
        rm -rf "$W/sg-data"
        cat > "$W/sg.yaml" <<YAML
stream:
  tcp: []
  udp: ["127.0.0.1:$PROXY"]
admin: {listen: "127.0.0.1:$ADMIN"}
metrics: {listen: "127.0.0.1:$METRICS"}
store: {data_dir: "$W/sg-data"}
log: {level: warn}
drain: {timeout: 1s}
YAML
        SHARDGATE_ADMIN_KEY=$KEY taskset -c 0 "$SG" run --config "$W/sg.yaml" 2> "$W/sg.log" & PROC_PIDS=($!)
        wait_port $ADMIN
        curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/stream_routes/udp" -H "X-API-KEY: $KEY" \
            -d "{\"server_port\": $PROXY, \"upstream\": {\"type\": \"roundrobin\", \"nodes\": {\"127.0.0.1:$B1\": 1, \"127.0.0.1:$B2\": 1}}}" > /dev/null
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$METRICS/metrics" | grep -q '^shardgate_config_resources{kind="stream_routes"} 1' && break
            sleep 0.05
        done
        ;;
    nginx)
        mkdir -p "$W/nginx"
        cat > "$W/nginx/nginx.conf" <<NGX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 20000; }
stream {
    upstream game { server 127.0.0.1:$B1; server 127.0.0.1:$B2; }
    server {
        listen 127.0.0.1:$PROXY udp;
        proxy_pass game;
        proxy_timeout 120s;
    }
}
NGX
        taskset -c 0 nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" & PROC_PIDS=($!)
        for _ in $(seq 1 100); do [ -n "$(pgrep -P "${PROC_PIDS[0]}")" ] && break; sleep 0.05; done
        PROC_PIDS+=($(pgrep -P "${PROC_PIDS[0]}"))
        ;;
    esac
}

stop_proxy() {
    for p in "${PROC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PROC_PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
    PROC_PIDS=()
}

declare -A CPU RELAYED P50 P99 LOST RATE
field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\1/"; }
for round in $(seq 1 "$ROUNDS"); do
for proxy in $PROXIES; do
    start_proxy "$proxy"
    for load in $LOADS; do
        clients=${load%x*}; rate=${load#*x}
        # A short warm-up creates the sessions; it is not measured.
        taskset -c 1 "$LG" udp --target "$TARGET" --clients "$clients" --rate 10 --seconds 1 --size "$SIZE" > /dev/null
        t0=$(cpu_ticks "${PROC_PIDS[@]}")
        res=$(taskset -c 1 "$LG" udp --target "$TARGET" --clients "$clients" --rate "$rate" --seconds "$SECS" --size "$SIZE")
        t1=$(cpu_ticks "${PROC_PIDS[@]}")
        got=$(field "$res" received)
        P50[$proxy,$load]+="$(field "$res" p50_us) "; P99[$proxy,$load]+="$(field "$res" p99_us) "
        LOST[$proxy,$load]+="$(field "$res" lost) "; RATE[$proxy,$load]+="$(printf '%.0f' "$(field "$res" rate)") "
        if [ "$proxy" != direct ]; then
            cpu_s=$(echo "scale=4; ($t1 - $t0) / $CLK" | bc)
            # A round trip is two datagrams relayed (to the server and back).
            CPU[$proxy,$load]+="$(echo "scale=2; $cpu_s * 1000000 / $got" | bc) "
            RELAYED[$proxy,$load]+="$(echo "scale=0; 2 * $got / $cpu_s" | bc) "
        else
            cpu_s=0
        fi
        echo "round $round udp $proxy $load: $res cpu_s=$cpu_s" | tee -a "$OUT/raw.txt" >&2
    done
    stop_proxy
done
done
median() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
{
    echo "Measured $(date -u +%F) on $(nproc) cores; proxy pinned to core 0, load and two UDP echo servers on core 1; $SIZE-byte datagrams; $ROUNDS interleaved rounds of ${SECS}s, medians (every round in raw.txt)."
    echo "Peer: $(nginx -v 2>&1 | sed 's/.*: //') (stream, \`listen udp\`, round robin)."
    echo
    echo "| load (clients × datagrams/s each) | proxy | CPU µs per round trip | datagrams relayed per CPU-second | vs nginx | p50 µs | p99 µs | added p99 µs | lost |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for load in $LOADS; do
        floor=$(median "${P99[direct,$load]:-}")
        ng=$(median "${RELAYED[nginx,$load]:-}")
        for proxy in $PROXIES; do
            p99=$(median "${P99[$proxy,$load]}")
            if [ "$proxy" = direct ]; then
                echo "| $load | direct (no proxy) | | | | $(median "${P50[$proxy,$load]}") | $p99 | | $(median "${LOST[$proxy,$load]}") |"
                continue
            fi
            rel=$(median "${RELAYED[$proxy,$load]}")
            vs=$([ -n "$ng" ] && echo "$(echo "scale=2; $rel / $ng" | bc)×" || echo "")
            added=$([ -n "$floor" ] && echo $((p99 - floor)) || echo "")
            echo "| $load | $proxy | $(median "${CPU[$proxy,$load]}") | $rel | $vs | $(median "${P50[$proxy,$load]}") | $p99 | $added | $(median "${LOST[$proxy,$load]}") |"
        done
    done
} | tee "$OUT/table.md"
