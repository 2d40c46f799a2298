#!/usr/bin/env bash
# Cluster benchmark: shardgate instances sharing one etcd (issue 10).
#  1. propagation: three instances, 100 changes/s through their Admin APIs
#     in turn; time from each write's acknowledgement until every instance
#     serves it (by the instances' own "configuration published" log lines,
#     and by polling shardgate_config_generation every 1 ms), then a sample
#     of the new SNIs checked over TLS on every instance;
#  2. cold start: COUNT stream routes and COUNT SSL objects (own ECDSA
#     certificate each, keys encrypted under a keyring) written straight
#     into etcd; a new instance's time from process start to /readyz 200,
#     its RSS and its full-load time, three runs; then propagation again
#     with three instances on that configuration;
#  3. handshakes: one instance pinned to core 0, ECDSA full handshakes +
#     64 B echo from core 1, with and without 100 changes/s arriving (the
#     writer and etcd on core 1 too), three interleaved rounds;
#  4. round trips: one instance on core 0 serving the COUNT-route
#     configuration, 1,000 TLS connections × 20 messages/s of 64 B, with
#     no changes and with STALL_RATE (1) change/s.
# One etcd member on loopback, started here; everything talks to
# 127.0.0.1, every loop is bounded, and only processes this script started
# are stopped (by their PID).
#
# Usage: bench/cluster.sh [seconds-per-run]   (default 10)
#        COUNT=10000 RATE=100 ROUNDS=3 STALL_RATE=1 bench/cluster.sh
# Output: a Markdown table on stdout and in bench/out/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
COUNT=${COUNT:-10000}
RATE=${RATE:-100}
ROUNDS=${ROUNDS:-3}
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

[ -x /usr/bin/etcd ] || { echo "bench/cluster.sh needs /usr/bin/etcd (Debian etcd-server)" >&2; exit 1; }
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v bc >/dev/null || need+=(bc)
install_packages "${need[@]}"
prepare_run
export SHARDGATE_ADMIN_KEY=bench-admin-key-0123456789
KEYRING=bench-keyring-16
log "load before start: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- ports (fixed offsets from a random base, all on 127.0.0.1) --------------
BASE=$((20000 + RANDOM % 5000))
EC=$BASE; EP=$((BASE + 1)); B1=$((BASE + 2)); B2=$((BASE + 3))
# Instance i: admin BASE+10+4i, metrics +1, stream +2.
admin_port() { echo $((BASE + 10 + 4 * $1)); }
metrics_port() { echo $((BASE + 11 + 4 * $1)); }
stream_port() { echo $((BASE + 12 + 4 * $1)); }

# --- etcd: one member, default flags but for loopback URLs ------------------
/usr/bin/etcd --name bench --data-dir "$W/etcd" \
    --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
    --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
    --initial-cluster "bench=http://127.0.0.1:$EP" --initial-cluster-state new \
    --logger zap --log-outputs stderr 2> "$W/etcd.log" & ETCD_PID=$!; PIDS+=($ETCD_PID)
for _ in $(seq 1 200); do
    ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$EC" --dial-timeout=1s endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$EC" endpoint health >/dev/null
ETCD="http://127.0.0.1:$EC"
log "etcd $(/usr/bin/etcd --version | head -1 | cut -d' ' -f3) on $ETCD, data in $W/etcd ($(df --output=source "$W" | tail -1))"

# Game servers (for the routes of the cold-start data and the handshakes).
taskset -c 1 "$LG" echo --listen 127.0.0.1:$B1 & PIDS+=($!)
taskset -c 1 "$LG" echo --listen 127.0.0.1:$B2 & PIDS+=($!)

# Writes the bootstrap file of instance $1 on store prefix $2, log level $3.
sg_config() {
    cat > "$W/sg-$1.yaml" <<YAML
stream:
  tcp:
    - addr: "127.0.0.1:$(stream_port "$1")"
      tls: true
admin: {listen: "127.0.0.1:$(admin_port "$1")"}
metrics: {listen: "127.0.0.1:$(metrics_port "$1")"}
store:
  backend: etcd
  prefix: $2
  data_dir: $W/sg-data-$1
  etcd: {host: ["$ETCD"]}
data_encryption: {keyring: ["$KEYRING"]}
log: {level: $3, format: json}
drain: {timeout: 1s}
YAML
}
INST_PIDS=()
# Starts instances 0..$1-1 on prefix $2 (logs to $OUT/$3-<i>.log), waits until ready.
start_instances() {
    INST_PIDS=()
    for i in $(seq 0 $(($1 - 1))); do
        sg_config "$i" "$2" info
        "$SG" run --config "$W/sg-$i.yaml" 2> "$OUT/$3-$i.log" & INST_PIDS+=($!); PIDS+=($!)
    done
    for i in $(seq 0 $(($1 - 1))); do
        for _ in $(seq 1 600); do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(metrics_port "$i")/readyz")" = 200 ] && break
            sleep 0.05
        done
    done
}
stop_instances() {
    for p in "${INST_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${INST_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    INST_PIDS=()
}
# Comma-separated 127.0.0.1:<port> of instances 0..$1-1 for port function $2.
addrs() { local out=(); for i in $(seq 0 $(($1 - 1))); do out+=("127.0.0.1:$($2 "$i")"); done; (IFS=,; echo "${out[*]}"); }
logs() { local out=(); for i in $(seq 0 $(($1 - 1))); do out+=("$OUT/$2-$i.log"); done; (IFS=,; echo "${out[*]}"); }
propagate() { # tag prefix-logs poll_us
    "$LG" propagate --admin "$(addrs 3 admin_port)" --metrics "$(addrs 3 metrics_port)" \
        --stream "$(addrs 3 stream_port)" --log "$(logs 3 "$2")" --etcd "$ETCD" --prefix "$PREFIX" \
        --rate "$RATE" --seconds "$SECS" --poll-us "$3" --verify 30 --tag "$1" 2>> "$OUT/raw.txt"
}

# --- 1. propagation, three instances ------------------------------------------
PREFIX=/bench-prop
start_instances 3 $PREFIX prop
log "load before propagation: $(cut -d' ' -f1-3 /proc/loadavg)"
PROP_POLL=$(propagate p1 prop 1000); log "propagate (log + 1 ms poll): $PROP_POLL"
PROP_LOG=$(propagate p2 prop 0); log "propagate (log only): $PROP_LOG"
stop_instances

# --- 2. cold start on COUNT routes + COUNT certificates -----------------------
PREFIX=/bench-cold
SEED=$("$LG" seed-etcd --etcd "$ETCD" --prefix $PREFIX --count "$COUNT" --keyring "$KEYRING" --upstream 127.0.0.1:$B1)
log "seed-etcd: $SEED"
sg_config 0 $PREFIX info
COLD=()
for r in 1 2 3; do
    log "load before cold start $r: $(cut -d' ' -f1-3 /proc/loadavg)"
    c=$("$LG" cold-start --shardgate "$SG" --config "$W/sg-0.yaml" --metrics "127.0.0.1:$(metrics_port 0)" --log "$OUT/cold-$r.log")
    log "cold start $r: $c"
    COLD+=("$c")
done
cold_median() { printf '%s\n' "${COLD[@]}" | jq -s "map($1) | sort | .[1]"; }
COLD_OK=$(printf '%s\n' "${COLD[@]}" | jq -s "map(.stream_routes == $COUNT and .ssls == $COUNT and .problems == 0) | all")
start_instances 3 $PREFIX big
log "load before propagation on $COUNT routes: $(cut -d' ' -f1-3 /proc/loadavg)"
PROP_BIG=$(propagate b1 big 0); log "propagate on $COUNT routes + $COUNT certificates (log only): $PROP_BIG"
stop_instances

# --- 3. handshakes with and without changes ------------------------------------
# etcd joins the load generator, the game servers and the writer on core 1.
taskset -apc 1 $ETCD_PID > /dev/null
for sni in gs-1.com gs-2.com; do
    openssl req -x509 -nodes -days 30 -subj "/CN=$sni" -addext "subjectAltName=DNS:$sni" \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$W/$sni.key" -out "$W/$sni.crt" 2>/dev/null
done
sg_config 0 /bench-hs warn
taskset -c 0 "$SG" run --config "$W/sg-0.yaml" 2> "$OUT/hs.log" & GW=$!; PIDS+=($GW)
ADMIN=$(admin_port 0); PROXY=$(stream_port 0)
wait_port "$ADMIN"
for sni in gs-1.com gs-2.com; do
    port=$B1; [ $sni = gs-2.com ] && port=$B2
    curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/ssls/$sni" -H "X-API-KEY: $SHARDGATE_ADMIN_KEY" \
        -d "{\"cert\": $(jq -Rs . < "$W/$sni.crt"), \"key\": $(jq -Rs . < "$W/$sni.key"), \"snis\": [\"$sni\"]}" > /dev/null
    curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/stream_routes/$sni" -H "X-API-KEY: $SHARDGATE_ADMIN_KEY" \
        -d "{\"sni\": \"$sni\", \"upstream\": {\"nodes\": {\"127.0.0.1:$port\": 1}}}" > /dev/null
done
for _ in $(seq 1 100); do
    "$LG" handshakes --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --concurrency 1 --seconds 0 > "$W/check.json" 2>/dev/null || true
    [ "$(jq .errors "$W/check.json" 2>/dev/null)" = 0 ] && break
    sleep 0.1
done
jq -e '.ops > 0 and .errors == 0' "$W/check.json" > /dev/null || { echo "the gateway does not proxy: $(cat "$W/check.json")" >&2; exit 1; }

# Starts the writer (core 1) and waits until its timed writes begin. Every
# run uses the same ids, so it replaces the previous run's routes and SSL
# objects with new SNIs and certificates: the configuration stays the same
# size (one run's worth) from round to round.
start_writer() { # tag seconds
    : > "$W/writer.err"
    taskset -c 1 "$LG" propagate --admin 127.0.0.1:$ADMIN --rate "$RATE" --seconds "$2" --poll-us 0 --verify 0 \
        --tag "$1" --ids hs > "$W/writer.json" 2> "$W/writer.err" & WRITER=$!; PIDS+=($WRITER)
    for _ in $(seq 1 400); do grep -q "propagate: writing" "$W/writer.err" && return 0; sleep 0.05; done
    echo "the writer never started: $(cat "$W/writer.err")" >&2; exit 1
}
finish_writer() { wait "$WRITER"; log "writer: $(cat "$W/writer.json")"; grep -v "propagate: writing" "$W/writer.err" >> "$OUT/raw.txt" || true; }

# etcd's revision: every Admin API write is one transaction, so the
# changes made in a window are the difference of two readings.
revision() { ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint status -w json | jq '.[0].Status.header.revision'; }

# The gateway's CPU for the changes alone (no handshakes); this first run
# also brings the configuration to its steady size.
start_writer hs0 $((SECS + 3))
sleep 1; r0=$(revision); before=$(cpu_ticks $GW); sleep "$SECS"; after=$(cpu_ticks $GW); r1=$(revision)
finish_writer
ALONE_US=$(echo "scale=1; ($after - $before) * 1000000 / $CLK / ($r1 - $r0)" | bc)
log "changes alone: $((r1 - r0)) changes, cpu_ticks=$((after - before)) over ${SECS} s -> $ALONE_US us CPU per change"

declare -A HS HR NET CH WL
for r in $(seq 1 "$ROUNDS"); do
    order="none with"; [ $((r % 2)) = 0 ] && order="with none"
    for mode in $order; do
        [ $mode = with ] && start_writer "hs$r" $((SECS + 3))
        r0=$(revision); before=$(cpu_ticks $GW)
        json=$(taskset -c 1 "$LG" handshakes --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --concurrency 32 --seconds "$SECS")
        after=$(cpu_ticks $GW); r1=$(revision)
        WL[$mode,$r]="-"
        if [ $mode = with ]; then finish_writer; WL[$mode,$r]=$(jq -r '.write_latency | "\(.p50_ms)/\(.p99_ms)"' "$W/writer.json"); fi
        ops=$(jq .ops <<<"$json")
        CH[$mode,$r]=$(echo "scale=1; ($r1 - $r0) / $SECS" | bc)
        HS[$mode,$r]=$(echo "scale=1; ($after - $before) * 1000000 / $CLK / $ops" | bc)
        HR[$mode,$r]=$(jq '.rate|floor' <<<"$json")
        # Less the changes' own CPU, as measured alone.
        NET[$mode,$r]=$(echo "scale=1; (($after - $before) * 1000000 / $CLK - ($r1 - $r0) * $ALONE_US) / $ops" | bc)
        log "round $r $mode: $json cpu_ticks=$((after - before)) changes=$((r1 - r0)) -> ${HS[$mode,$r]} us/handshake, ${NET[$mode,$r]} without the changes' own CPU (load $(cut -d' ' -f1-3 /proc/loadavg))"
    done
done
hs_median() { local v=(); for r in $(seq 1 "$ROUNDS"); do v+=("$(eval echo "\${$1[$2,$r]}")"); done; printf '%s\n' "${v[@]}" | sort -g | sed -n "$(((ROUNDS + 1) / 2))p"; }
hs_all() { local v=(); for r in $(seq 1 "$ROUNDS"); do v+=("$(eval echo "\${$1[$2,$r]}")"); done; echo "${v[*]}" | sed 's/ / \/ /g'; }

# --- 4. proxied round trips while changes arrive, on the large configuration ---
# One instance on core 0 serving the COUNT-route configuration, 1,000 TLS
# connections sending 64 B at 20/s each through two of its routes (as
# bench/run.sh), with no changes and with STALL_RATE changes/s.
STALL_RATE=${STALL_RATE:-1}
stop_gateway() { kill "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true; }
stop_gateway
sg_config 0 /bench-cold info
taskset -c 0 "$SG" run --config "$W/sg-0.yaml" 2> "$OUT/stall.log" & GW=$!; PIDS+=($GW)
for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(metrics_port 0)/readyz")" = 200 ] && break
    sleep 0.05
done
declare -A RP50 RP99 RMAX
for r in $(seq 1 "$ROUNDS"); do
    order="none with"; [ $((r % 2)) = 0 ] && order="with none"
    for mode in $order; do
        if [ $mode = with ]; then
            : > "$W/writer.err"
            taskset -c 1 "$LG" propagate --admin 127.0.0.1:$ADMIN --rate "$STALL_RATE" --seconds $((SECS * 2 + 5)) \
                --poll-us 0 --verify 0 --tag "st$r" --ids st > "$W/writer.json" 2> "$W/writer.err" & WRITER=$!; PIDS+=($WRITER)
            for _ in $(seq 1 400); do grep -q "propagate: writing" "$W/writer.err" && break; sleep 0.05; done
        fi
        json=$(taskset -c 1 "$LG" rtt --target 127.0.0.1:$PROXY --sni "s1.cold.bench.test,s2.cold.bench.test" \
            --conns 1000 --rate 20 --seconds "$SECS" --size 64 2>/dev/null)
        [ $mode = with ] && finish_writer
        RP50[$mode,$r]=$(jq .p50_us <<<"$json"); RP99[$mode,$r]=$(jq .p99_us <<<"$json"); RMAX[$mode,$r]=$(jq .max_us <<<"$json")
        log "stall round $r $mode: $json (load $(cut -d' ' -f1-3 /proc/loadavg))"
    done
done
STALL_COMPILE=$(grep '"configuration published"' "$OUT/stall.log" | tail -n +2 | jq -s 'map(.compile_us) | sort | if length > 0 then "\(.[length / 2 | floor] / 1000) ms (\(length) publishes)" else "none" end' -r)
stop_gateway

# --- table ----------------------------------------------------------------------
p() { jq -r "$2" <<<"$1"; }
{
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), etcd $(/usr/bin/etcd --version | head -1 | cut -d' ' -f3) (one member, data on $(df --output=source "$W" | tail -1)); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| propagation, $RATE changes/s over 3 instances, ${SECS} s | p50 | p90 | p99 | max | writes (statuses) | TLS check |"
echo "|---|---|---|---|---|---|---|"
echo "| ack → all 3 serve, by their log (log-only run) | $(p "$PROP_LOG" '.propagation_log | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') | $(p "$PROP_LOG" '"\(.writes) (\(.statuses|tostring))"') | $(p "$PROP_LOG" '.verified | "\(.connections_ok)/\(.connections_ok + .connections_failed)"') |"
echo "| same, while polling /metrics every 1 ms | $(p "$PROP_POLL" '.propagation_log | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') | $(p "$PROP_POLL" '"\(.writes) (\(.statuses|tostring))"') | $(p "$PROP_POLL" '.verified | "\(.connections_ok)/\(.connections_ok + .connections_failed)"') |"
echo "| ack → all 3 serve, by the 1 ms /metrics poll (same run) | $(p "$PROP_POLL" '.propagation_poll | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') | | |"
echo "| ack → all 3 serve, by their log, on $COUNT routes + $COUNT certificates | $(p "$PROP_BIG" '.propagation_log | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') | $(p "$PROP_BIG" '"\(.writes) (\(.statuses|tostring))"') | $(p "$PROP_BIG" '.verified | "\(.connections_ok)/\(.connections_ok + .connections_failed)"') |"
echo "| write (request → answer), log-only run | $(p "$PROP_LOG" '.write_latency | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') | | |"
echo "| write (request → answer), on $COUNT routes | $(p "$PROP_BIG" '.write_latency | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') | | |"
echo "| compile per publish (compile_us), log-only run / on $COUNT routes | $(p "$PROP_LOG" '.compile | "\(.p50_ms) ms | \(.p90_ms) ms | \(.p99_ms) ms | \(.max_ms) ms"') / $(p "$PROP_BIG" '.compile | "\(.p50_ms) / \(.p90_ms) / \(.p99_ms) / \(.max_ms) ms"') | publishes per instance $(p "$PROP_LOG" '.publishes_per_instance|tostring') / $(p "$PROP_BIG" '.publishes_per_instance|tostring') | |"
echo
echo "| cold start, $COUNT stream routes + $COUNT SSL objects (own ECDSA cert, keys encrypted) | median of 3 | runs |"
echo "|---|---|---|"
echo "| loading etcd (seed-etcd: $(p "$SEED" '.keys') keys, $(p "$SEED" '(.bytes/1048576*10|floor)/10') MiB; certificates made beforehand in $(p "$SEED" '.generate_seconds*10|floor/10') s) | $(p "$SEED" '.load_seconds*100|floor/100') s | |"
echo "| process start → /readyz 200 | $(cold_median .ready_ms) ms | $(printf '%s\n' "${COLD[@]}" | jq -rs 'map(.ready_ms)|join(" / ")') |"
echo "| full load (connected to etcd → published) | $(cold_median .resync_ms) ms | $(printf '%s\n' "${COLD[@]}" | jq -rs 'map(.resync_ms)|join(" / ")') |"
echo "| ... list, decrypt, decode, validate | $(cold_median .list_and_decode_ms) ms | $(printf '%s\n' "${COLD[@]}" | jq -rs 'map(.list_and_decode_ms)|join(" / ")') |"
echo "| ... compile (compile_us) | $(cold_median .compile_ms) ms | $(printf '%s\n' "${COLD[@]}" | jq -rs 'map(.compile_ms)|join(" / ")') |"
echo "| RSS at ready / 2 s later | $(cold_median .rss_ready_kb | awk '{printf "%.0f", $1/1024}') MiB / $(cold_median .rss_2s_kb | awk '{printf "%.0f", $1/1024}') MiB | all resources loaded, no problems: $COLD_OK |"
echo
echo "| ECDSA handshakes, gateway on core 0 ($ROUNDS interleaved rounds of ${SECS} s) | no changes | $RATE changes/s |"
echo "|---|---|---|"
echo "| CPU µs per handshake + 64 B echo, median | $(hs_median HS none) | $(hs_median HS with) |"
echo "| ... each round | $(hs_all HS none) | $(hs_all HS with) |"
echo "| ... less the changes' own CPU (measured alone), median | $(hs_median NET none) | $(hs_median NET with) |"
echo "| handshakes/s (core 1 drives them, and runs etcd and the writer), median | $(hs_median HR none) | $(hs_median HR with) |"
echo "| changes/s actually made during the handshakes (etcd revisions), each round | $(hs_all CH none) | $(hs_all CH with) |"
echo "| Admin API write latency p50/p99 ms (the writer's), each round | | $(hs_all WL with) |"
echo "| gateway CPU per change (Admin API write + watch + compile), no handshakes | | $ALONE_US µs |"
echo
echo "| 64 B round trip, 1,000 TLS conns × 20/s, gateway on core 0, $COUNT routes + $COUNT certificates ($ROUNDS rounds of ${SECS} s, medians) | no changes | $STALL_RATE change/s |"
echo "|---|---|---|"
echo "| p50 µs | $(hs_median RP50 none) | $(hs_median RP50 with) |"
echo "| p99 µs | $(hs_median RP99 none) | $(hs_median RP99 with) |"
echo "| ... each round | $(hs_all RP99 none) | $(hs_all RP99 with) |"
echo "| max µs | $(hs_median RMAX none) | $(hs_median RMAX with) |"
echo "| compile per publish (median, compile_us) | | $STALL_COMPILE |"
} | tee "$OUT/table.md"
