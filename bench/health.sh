#!/usr/bin/env bash
# Health-check benchmark (issue 11): the gateway's CPU while it probes
# UPSTREAMS upstreams × NODES nodes every INTERVAL seconds.
#
# One gateway on core 0 (`taskset -c 0`), its nodes served by
# `shardgate-loadgen nodes` on core 1 (UPSTREAMS × NODES ports on 127.0.0.1
# that the kernel picks: every connection accepted, an HTTP request
# answered 200).
# For each probe type in TYPES, a fresh gateway gets the upstreams through
# the Admin API (no routes: checkers start when the configuration loads),
# every node must be seen healthy, then the gateway's CPU time (user and
# system, /proc/<pid>/stat) and its probe count (`/metrics`) are read
# before and after a fixed window. `none` is the same upstreams without
# `checks`: the idle gateway, for reference. `floor` is no gateway at all:
# `shardgate-loadgen probe-floor` on core 0 connects to every node at the
# same interval and resets, as a TCP probe does (a bare tokio loop): what
# the probes' TCP handshakes cost at the least. On loopback the kernel runs
# both ends of every handshake (the node's side too) in the prober's
# system time; on a network the node's half is the node's host's.
#
# Everything talks to 127.0.0.1, every wait is bounded, and only processes
# this script started are stopped (by their PID).
#
# Usage: bench/health.sh [seconds]   (default 30)
#        UPSTREAMS=1000 NODES=3 INTERVAL=2 TYPES="none floor tcp http" bench/health.sh
# Output: a Markdown table on stdout and in bench/out/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-30}
UPSTREAMS=${UPSTREAMS:-1000}
NODES=${NODES:-3}
INTERVAL=${INTERVAL:-2}
TYPES=${TYPES:-none floor tcp http}
OUT=bench/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
PIDS=()
# Stops what this script started and still runs: a PID whose parent is no
# longer this shell was reaped and may belong to someone else now.
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        if [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ]; then kill "$p" 2>/dev/null || true; fi
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
log() { echo "$*" | tee -a "$OUT/raw.txt" >&2; }

need=()
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
install_packages "${need[@]}"
prepare_run
export SHARDGATE_ADMIN_KEY=bench-admin-key-0123456789
K="X-API-KEY: $SHARDGATE_ADMIN_KEY"
TOTAL=$((UPSTREAMS * NODES))
log "load before start: $(cut -d' ' -f1-3 /proc/loadavg)"

# Admin and metrics ports below the ephemeral range; the nodes' ports are
# the kernel's choice (written to a file once all listen).
BASE=$((20000 + RANDOM % 9000))
ADMIN=$BASE; METRICS=$((BASE + 1))

taskset -c 1 "$LG" nodes --ip 127.0.0.1 --count "$TOTAL" --ports-file "$W/ports" > "$OUT/nodes.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 300); do [ -s "$W/ports" ] && break; sleep 0.1; done
[ -s "$W/ports" ] || { echo "the nodes never listened: $(cat "$OUT/nodes.log")" >&2; exit 1; }
mapfile -t PORTS < "$W/ports"

cat > "$W/sg.yaml" <<YAML
stream:
  tcp: []
admin: {listen: "127.0.0.1:$ADMIN"}
metrics: {listen: "127.0.0.1:$METRICS"}
store: {data_dir: $W/data}
log: {level: warn}
drain: {timeout: 1s}
YAML

# Sum of the series of metric $1 on /metrics (0 when absent).
metric_sum() { curl -s "http://127.0.0.1:$METRICS/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d\n", s}'; }
# Upstream i's JSON body with checks of type $2 ("none": without checks).
upstream_body() {
    local i=$1 type=$2 p nodes="" checks=""
    for n in $(seq 0 $((NODES - 1))); do
        p=${PORTS[$((i * NODES + n))]}; nodes="$nodes\"127.0.0.1:$p\": 1,"
    done
    [ "$type" = none ] || checks=", \"checks\": {\"active\": {\"type\": \"$type\", \"healthy\": {\"interval\": $INTERVAL}, \"unhealthy\": {\"interval\": $INTERVAL}}}"
    printf '{"nodes": {%s}%s}' "${nodes%,}" "$checks"
}

# User and system CPU ticks of process $1, as "user sys".
ticks() { local f; read -r -a f < "/proc/$1/stat"; echo "${f[13]} ${f[14]}"; }
# Percent of one core that $1 ticks are over the window.
pct() { printf '%.2f' "$(echo "scale=4; 100 * $1 / $CLK / $SECS" | bc)"; }

ROWS=()
for TYPE in $TYPES; do
    if [ "$TYPE" = floor ]; then
        taskset -c 0 "$LG" probe-floor --ports-file "$W/ports" --interval-seconds "$INTERVAL" \
            --seconds $((SECS + 2 * INTERVAL + 2)) > "$OUT/floor.log" 2>&1 & FP=$!; PIDS+=($FP)
        sleep $((2 * INTERVAL))
        read -r u0 s0 <<< "$(ticks "$FP")"
        sleep "$SECS"
        read -r u1 s1 <<< "$(ticks "$FP")"
        wait "$FP"
        rate=$(echo "scale=1; $TOTAL / $INTERVAL" | bc)
        per=$(echo "scale=1; 1000000 * ($u1 - $u0 + $s1 - $s0) / $CLK / ($SECS * $rate)" | bc)
        log "floor: user $((u1 - u0)) sys $((s1 - s0)) ticks over ${SECS}s; $(cat "$OUT/floor.log")"
        ROWS+=("| floor (bare TCP connects, no gateway) | $UPSTREAMS × $NODES every ${INTERVAL} s | $(pct $((u1 - u0 + s1 - s0))) % | $(pct $((u1 - u0))) % | $(pct $((s1 - s0))) % | $rate | $per | |")
        continue
    fi
    rm -rf "$W/data"
    taskset -c 0 "$SG" run --config "$W/sg.yaml" 2> "$OUT/gateway-$TYPE.log" & SG_PID=$!; PIDS+=($SG_PID)
    for _ in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS/readyz")" = 200 ] && break
        sleep 0.05
    done
    start=$(date +%s.%N)
    for i in $(seq 0 $((UPSTREAMS - 1))); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/upstreams/u$i" -H "$K" -d "$(upstream_body "$i" "$TYPE")")
        case $code in 200|201) ;; *) echo "PUT upstreams/u$i answered $code" >&2; exit 1 ;; esac
    done
    log "$TYPE: $UPSTREAMS upstreams created in $(echo "$(date +%s.%N) - $start" | bc | cut -c1-5) s"
    if [ "$TYPE" != none ]; then
        # Every node probed and healthy (at most 60 s).
        for _ in $(seq 1 600); do
            healthy=$(curl -s "http://127.0.0.1:$METRICS/metrics" | awk '$1 ~ /^shardgate_upstream_node_healthy[{]/ && $2 == 1 {n++} END {print n + 0}')
            [ "$healthy" -eq "$TOTAL" ] && [ "$(metric_sum shardgate_upstream_health_probes_total)" -ge "$TOTAL" ] && break
            sleep 0.1
        done
        log "$TYPE: $healthy of $TOTAL nodes healthy before the window"
    fi
    sleep $((2 * INTERVAL))
    p0=$(metric_sum shardgate_upstream_health_probes_total)
    read -r u0 s0 <<< "$(ticks "$SG_PID")"
    sleep "$SECS"
    read -r u1 s1 <<< "$(ticks "$SG_PID")"
    p1=$(metric_sum shardgate_upstream_health_probes_total)
    failed=$(curl -s "http://127.0.0.1:$METRICS/metrics" | awk '$1 ~ /^shardgate_upstream_health_probes_total[{]/ && $1 !~ /result="success"/ {s += $2} END {print s + 0}')
    rss=$(rss_kb "$SG_PID")
    kill "$SG_PID"; wait "$SG_PID" 2>/dev/null || true
    cpu_s=$(echo "scale=4; ($u1 - $u0 + $s1 - $s0) / $CLK" | bc)
    probes=$((p1 - p0))
    rate=$(echo "scale=1; $probes / $SECS" | bc)
    per=$([ "$probes" -gt 0 ] && echo "scale=1; 1000000 * $cpu_s / $probes" | bc || echo "–")
    log "$TYPE: user $((u1 - u0)) sys $((s1 - s0)) ticks over ${SECS}s; probes $probes ($rate/s, not successful since start: $failed); ${per} µs/probe; RSS ${rss} KiB"
    ROWS+=("| $TYPE | $UPSTREAMS × $NODES every ${INTERVAL} s | $(pct $((u1 - u0 + s1 - s0))) % | $(pct $((u1 - u0))) % | $(pct $((s1 - s0))) % | $rate | $per | $((rss / 1024)) MiB |")
done

{
    echo "| checks | upstreams × nodes | CPU, % of one core | user | system | probes/s | CPU µs per probe | RSS |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/table.md"
