#!/usr/bin/env bash
# Side-by-side benchmark: shardgate, nginx (stream, per-SNI certificate),
# HAProxy (crt-list + use_backend by SNI), the floor (a minimal
# TLS-terminating proxy: tokio + rustls + a plain bidirectional copy, one
# upstream, no routing) and a bare rustls echo server, on one scenario: two
# game servers behind one TLS port, SNI picks the certificate and the
# server. The proxy runs pinned to core 0; the load generator and the echo
# game servers share core 1. Everything talks only to 127.0.0.1, every load
# run is bounded in time, and only processes this script started are
# stopped (by their PID).
#
# ROUNDS rounds, interleaved (for each round: the machine-speed probe on
# core 0, then for each certificate type, for each proxy: start it, run the
# tests, stop it); every round's figures go to raw.txt, the table shows the
# medians.
#
# Tests, per proxy (TESTS picks a subset, default "handshakes rtt bulk idle"):
#   handshakes  full handshakes (resumption off) + one 64 B echo each, 32 at
#               once, for each certificate type in ALGS; CPU µs per handshake
#   rtt         (ECDSA) fixed rate: RTT_CONNS long-lived connections (default
#               1000) × RTT_RATE 64 B round trips/s each (default 20), for
#               2 × the run's seconds; CPU µs per round trip next to latency
#               p50 / p99 / p99.9
#   idle        (ECDSA) memory per idle TLS connection: RSS delta with
#               IDLE_CONNS (default 8000) connections open
#   bulk        (ECDSA) BULK_CONNS connections (default 32), each writing
#               BULK_CHUNK-byte chunks (default 16384) back to back and
#               reading the echo back; CPU µs per MiB moved, counting both
#               directions (each echoed MiB crossed the proxy twice)
# The floor copies through one buffer per direction: FLOOR_COPY_BUFFER bytes
# (default 8192, tokio's copy_bidirectional default) for the handshake,
# round-trip and idle tests; for bulk it is restarted with
# FLOOR_BULK_COPY_BUFFER (default 65536), its cheapest size there. Each
# test gets the floor's best showing: the small buffer is cheaper per
# connection (memory, allocation), the large one per byte.
#
# Usage: bench/run.sh [seconds-per-run]     (default 10)
# Environment:
#   PROXIES (default "shardgate haproxy nginx rustls floor"; also
#     shardgate-base: the binary named by SG_BASE, e.g. a release build of
#     an earlier commit, for a before/after comparison in one interleaved run)
#   ALGS (default "ecdsa rsa")   ROUNDS (default 3)   TESTS (see above)
#   HANDSHAKES_ONLY=1: TESTS=handshakes
#   PP=1: shardgate's listener requires a PROXY protocol header and the load
#     generator sends a v2 header before each ClientHello, in the same
#     segment, as a load balancer in front would; the other proxies are run
#     as without it. Only the handshake load sends the header, so PP=1
#     implies TESTS=handshakes.
#   PERF=1: also record a CPU profile (perf record -g) of the proxy during
#     each measured run, into perf-<proxy>-<test>-<round>.data in the output
#     folder (handshake profiles are named handshakes-ecdsa, handshakes-rsa)
# Output: a Markdown table on stdout and in bench/out/<timestamp>/, with
# every round in raw.txt there.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
RTT_SECS=$((SECS * 2))
ROUNDS=${ROUNDS:-3}
IDLE_CONNS=${IDLE_CONNS:-8000}
RTT_CONNS=${RTT_CONNS:-1000}
RTT_RATE=${RTT_RATE:-20}
BULK_CONNS=${BULK_CONNS:-32}
BULK_CHUNK=${BULK_CHUNK:-16384}
FLOOR_COPY_BUFFER=${FLOOR_COPY_BUFFER:-8192}
FLOOR_BULK_COPY_BUFFER=${FLOOR_BULK_COPY_BUFFER:-65536}
floor_buffer=$FLOOR_COPY_BUFFER
PROXIES=${PROXIES:-shardgate haproxy nginx rustls floor}
ALGS=${ALGS:-ecdsa rsa}
TESTS=${TESTS:-handshakes rtt bulk idle}
[ "${HANDSHAKES_ONLY:-0}" = 1 ] && TESTS=handshakes
PP=${PP:-0}
[ "$PP" = 1 ] && TESTS=handshakes
OUT=bench/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
PIDS=()
PROC_PIDS=()
PERF_PID=""
cleanup() { for p in ${PERF_PID:-} "${PROC_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

for t in $TESTS; do case $t in handshakes|rtt|bulk|idle) ;; *) echo "TESTS: unknown test $t (handshakes rtt bulk idle)" >&2; exit 2 ;; esac; done
for p in $PROXIES; do case $p in shardgate|shardgate-base|haproxy|nginx|rustls|floor) ;; *) echo "PROXIES: unknown proxy $p" >&2; exit 2 ;; esac; done
has() { [[ " $1 " == *" $2 "* ]]; }
has "$PROXIES" shardgate-base && : "${SG_BASE:?shardgate-base needs SG_BASE=<path to a shardgate binary>}"

# --- peers, from Debian; keep their packages from starting services ----------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v haproxy >/dev/null || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v bc >/dev/null || need+=(bc)
if [ -n "${PERF:-}" ] && [ "$PERF" != 0 ]; then command -v perf >/dev/null || need+=(linux-perf); fi
install_packages "${need[@]}"
prepare_run

# --- ports (fixed offsets from a random base, all on 127.0.0.1) --------------
BASE=$((20000 + RANDOM % 5000))
B1=$((BASE)); B2=$((BASE + 1)); PROXY=$((BASE + 2)); ADMIN=$((BASE + 3)); METRICS=$((BASE + 4))

# --- certificates -----------------------------------------------------------
mkdir -p "$W/ecdsa" "$W/rsa"
for sni in gs-1.com gs-2.com; do
    openssl req -x509 -nodes -days 30 -subj "/CN=$sni" -addext "subjectAltName=DNS:$sni" \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$W/ecdsa/$sni.key" -out "$W/ecdsa/$sni.crt" 2>/dev/null
    openssl req -x509 -nodes -days 30 -subj "/CN=$sni" -addext "subjectAltName=DNS:$sni" \
        -newkey rsa:2048 -keyout "$W/rsa/$sni.key" -out "$W/rsa/$sni.crt" 2>/dev/null
    for a in ecdsa rsa; do cat "$W/$a/$sni.crt" "$W/$a/$sni.key" > "$W/$a/$sni.pem"; done
done
# nginx's worker runs as www-data and must read the (throwaway) keys.
chmod 755 "$W" "$W/ecdsa" "$W/rsa"; chmod 644 "$W"/ecdsa/* "$W"/rsa/*

# --- game servers on core 1 --------------------------------------------------
taskset -c 1 "$LG" echo --listen 127.0.0.1:$B1 & PIDS+=($!)
taskset -c 1 "$LG" echo --listen 127.0.0.1:$B2 & PIDS+=($!)
wait_port $B1; wait_port $B2


# The load generator's flag for proxy $1: a v2 header first when PP=1 (shardgate only).
pp_flag() { [ "$PP" = 1 ] && [[ "$1" == shardgate* ]] && echo --proxy-v2; return 0; }

# Starts proxy $1 with certificate type $2; sets PROC_PIDS (every process of it).
# The bare rustls echo server and the floor have one certificate, gs-1.com's:
# the load generator accepts any certificate, so both SNIs still work there
# (and the floor sends every connection to game server 1).
start_proxy() {
    local name=$1 alg=$2
    case $name in
    shardgate|shardgate-base)
        local bin=$SG
        [ "$name" = shardgate-base ] && bin=$SG_BASE
        pp_line=""; [ "$PP" = 1 ] && pp_line="      proxy_protocol: true"
        cat > "$W/sg.yaml" <<YAML
stream:
  tcp:
    - addr: "127.0.0.1:$PROXY"
      tls: true
$pp_line
admin: {listen: "127.0.0.1:$ADMIN"}
metrics: {listen: "127.0.0.1:$METRICS"}
store: {data_dir: "$W/sg-data-$alg"}
log: {level: warn}
drain: {timeout: 1s}
YAML
        rm -rf "$W/sg-data-$alg"
        SHARDGATE_ADMIN_KEY=bench-admin-key-0123456789 taskset -c 0 "$bin" run --config "$W/sg.yaml" 2> "$W/sg.log" & PROC_PIDS=($!)
        wait_port $ADMIN
        for sni in gs-1.com gs-2.com; do
            port=$B1; [ $sni = gs-2.com ] && port=$B2
            curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/ssls/$sni" -H 'X-API-KEY: bench-admin-key-0123456789' \
                -d "{\"cert\": $(jq -Rs . < "$W/$alg/$sni.crt"), \"key\": $(jq -Rs . < "$W/$alg/$sni.key"), \"snis\": [\"$sni\"]}" > /dev/null
            curl -sf -X PUT "http://127.0.0.1:$ADMIN/apisix/admin/stream_routes/$sni" -H 'X-API-KEY: bench-admin-key-0123456789' \
                -d "{\"sni\": \"$sni\", \"upstream\": {\"nodes\": {\"127.0.0.1:$port\": 1}}}" > /dev/null
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
    map \$ssl_server_name \$game_server { gs-1.com 127.0.0.1:$B1; gs-2.com 127.0.0.1:$B2; }
    server {
        listen 127.0.0.1:$PROXY ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $W/$alg/\$ssl_server_name.crt;
        ssl_certificate_key $W/$alg/\$ssl_server_name.key;
        proxy_pass \$game_server;
    }
}
NGX
        taskset -c 0 nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" & PROC_PIDS=($!)
        wait_port $PROXY
        PROC_PIDS+=($(pgrep -P "${PROC_PIDS[0]}"))
        ;;
    haproxy)
        printf '%s gs-1.com\n%s gs-2.com\n' "$W/$alg/gs-1.com.pem" "$W/$alg/gs-2.com.pem" > "$W/crt-list.txt"
        cat > "$W/haproxy.cfg" <<HAP
global
    nbthread 1
    maxconn 9500
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend players
    bind 127.0.0.1:$PROXY ssl crt-list $W/crt-list.txt
    use_backend gs1 if { ssl_fc_sni gs-1.com }
    use_backend gs2 if { ssl_fc_sni gs-2.com }
backend gs1
    server s1 127.0.0.1:$B1
backend gs2
    server s2 127.0.0.1:$B2
HAP
        taskset -c 0 haproxy -db -f "$W/haproxy.cfg" 2> "$W/haproxy.log" & PROC_PIDS=($!)
        wait_port $PROXY
        ;;
    rustls)
        taskset -c 0 "$LG" tls-echo --listen 127.0.0.1:$PROXY --cert "$W/$alg/gs-1.com.crt" --key "$W/$alg/gs-1.com.key" & PROC_PIDS=($!)
        wait_port $PROXY
        ;;
    floor)
        taskset -c 0 "$LG" tls-proxy --listen 127.0.0.1:$PROXY --cert "$W/$alg/gs-1.com.crt" --key "$W/$alg/gs-1.com.key" \
            --upstream 127.0.0.1:$B1 --copy-buffer "$floor_buffer" & PROC_PIDS=($!)
        wait_port $PROXY
        ;;
    esac
    # Correctness first: both SNIs answer through the proxy, then no errors for a second.
    for _ in $(seq 1 100); do
        "$LG" handshakes --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --concurrency 1 --seconds 0 $(pp_flag $name) > "$W/check.json" 2>/dev/null || true
        "$LG" handshakes --target 127.0.0.1:$PROXY --sni gs-2.com --concurrency 1 --seconds 0 $(pp_flag $name) >> "$W/check.json" 2>/dev/null || true
        [ "$(jq -s 'map(.errors) | add' "$W/check.json" 2>/dev/null)" = 0 ] && break
        sleep 0.1
    done
    "$LG" handshakes --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --concurrency 1 --seconds 1 $(pp_flag $name) > "$W/check.json"
    if ! jq -e '.ops > 0 and .errors == 0' "$W/check.json" > /dev/null; then echo "$name ($alg) does not proxy: $(cat "$W/check.json")" >&2; exit 1; fi
}

# Stops the proxy: its first process (nginx's master stops its worker), then
# waits (10 s at most) until every process of it is gone.
stop_proxy() {
    local p
    kill "${PROC_PIDS[0]}" 2>/dev/null || true
    for p in "${PROC_PIDS[@]}"; do
        for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
    wait "${PROC_PIDS[0]}" 2>/dev/null || true
    PROC_PIDS=()
    sleep 0.3
}

# measured <perf-name> <loadgen args...>: runs the load generator on core 1
# while measuring the proxy's CPU (and profiling it with PERF=1); sets JSON
# (its output) and CPU (the proxy's CPU seconds over the run).
measured() {
    local name=$1 before after p
    shift
    perf_start "$OUT/perf-$name.data" "${PROC_PIDS[@]}"
    before=$(cpu_ticks "${PROC_PIDS[@]}")
    if ! JSON=$(taskset -c 1 "$LG" "$@"); then echo "loadgen $1 against $name failed" >&2; exit 1; fi
    for p in "${PROC_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "$name: the proxy (PID $p) died during the run" >&2; exit 1; }; done
    after=$(cpu_ticks "${PROC_PIDS[@]}")
    perf_stop
    CPU=$(echo "scale=4; ($after - $before) / $CLK" | bc)
}

# Every round's figure, per "metric|proxy", space-separated.
declare -A V
add() { V[$1|$2]+="$3 "; }
SNIS=gs-1.com,gs-2.com
for round in $(seq 1 "$ROUNDS"); do
    speed=$(speed_probe)
    add speed round "$(jq '.ns_per_iter * 1000 | round / 1000' <<<"$speed")"
    add speed_wall round "$(jq '.wall_ms | round' <<<"$speed")"
    echo "round $round speed probe (core 0): $speed" | tee -a "$OUT/raw.txt" >&2
    for alg in $ALGS; do
        tests=""
        for t in $TESTS; do { [ $t = handshakes ] || [ $alg = ecdsa ]; } && tests+="$t "; done
        [ -n "$tests" ] || continue
        for p in $PROXIES; do
            start_proxy $p $alg
            if has "$tests" handshakes; then
                measured "$p-handshakes-$alg-$round" handshakes --target 127.0.0.1:$PROXY --sni $SNIS --concurrency 32 --seconds "$SECS" $(pp_flag $p)
                ops=$(jq .ops <<<"$JSON")
                us=$(echo "scale=1; $CPU * 1000000 / $ops" | bc)
                add hs_$alg $p "$us"; add hs_rate_$alg $p "$(jq '.rate|floor' <<<"$JSON")"; add errors $p "$(jq .errors <<<"$JSON")"
                echo "round $round handshakes $alg $p (PP=$PP): $JSON cpu_s=$CPU -> $us us/op" | tee -a "$OUT/raw.txt" >&2
            fi
            if has "$tests" rtt; then
                measured "$p-rtt-$round" rtt --target 127.0.0.1:$PROXY --sni $SNIS --conns "$RTT_CONNS" --rate "$RTT_RATE" --seconds "$RTT_SECS" --size 64
                count=$(jq .count <<<"$JSON")
                us=$(echo "scale=2; $CPU * 1000000 / $count" | bc)
                add rtt $p "$us"; add errors $p "$(jq .errors <<<"$JSON")"
                for q in p50 p99 p999; do add rtt_$q $p "$(jq .${q}_us <<<"$JSON")"; done
                echo "round $round rtt $p: $JSON cpu_s=$CPU -> $us us/rtt" | tee -a "$OUT/raw.txt" >&2
            fi
            if has "$tests" idle; then
                before=$(rss_kb "${PROC_PIDS[@]}")
                taskset -c 1 "$LG" idle --target 127.0.0.1:$PROXY --sni $SNIS --conns "$IDLE_CONNS" --hold-seconds 600 > "$W/idle.out" & idle_pid=$!
                for _ in $(seq 1 600); do
                    grep -q ready "$W/idle.out" 2>/dev/null && break
                    kill -0 $idle_pid 2>/dev/null || break
                    sleep 0.2
                done
                grep -q ready "$W/idle.out" || { echo "idle $p: the connections did not all open" >&2; exit 1; }
                sleep 2
                after=$(rss_kb "${PROC_PIDS[@]}")
                kill $idle_pid 2>/dev/null || true; wait $idle_pid 2>/dev/null || true
                kib=$(echo "scale=1; ($after - $before) / $IDLE_CONNS" | bc)
                add idle $p "$kib"
                echo "round $round idle $p: $(cat "$W/idle.out") rss_kb $before -> $after -> $kib KiB/conn" | tee -a "$OUT/raw.txt" >&2
            fi
            if has "$tests" bulk; then
                if [ $p = floor ] && [ "$FLOOR_BULK_COPY_BUFFER" != "$FLOOR_COPY_BUFFER" ]; then
                    stop_proxy; floor_buffer=$FLOOR_BULK_COPY_BUFFER; start_proxy $p $alg; floor_buffer=$FLOOR_COPY_BUFFER
                fi
                measured "$p-bulk-$round" bulk --target 127.0.0.1:$PROXY --sni $SNIS --conns "$BULK_CONNS" --seconds "$SECS" --chunk "$BULK_CHUNK"
                # Each echoed byte crossed the proxy twice: in (decrypted) and back out (encrypted).
                mib=$(jq '.bytes * 2 / 1048576' <<<"$JSON")
                us=$(echo "scale=1; $CPU * 1000000 / $mib" | bc)
                add bulk $p "$us"; add bulk_rate $p "$(jq '.mib_per_s|floor' <<<"$JSON")"; add errors $p "$(jq .errors <<<"$JSON")"
                echo "round $round bulk $p: $JSON cpu_s=$CPU -> $us us/MiB moved (both directions)" | tee -a "$OUT/raw.txt" >&2
            fi
            stop_proxy
        done
    done
done

# --- the table ------------------------------------------------------------------
title() {
    case $1 in
    shardgate) echo shardgate ;; shardgate-base) echo "shardgate-base (SG_BASE)" ;; haproxy) echo HAProxy ;;
    nginx) echo nginx ;; rustls) echo "bare rustls echo" ;; floor) echo "floor (tokio + rustls + copy)" ;;
    esac
}
m() { median "${V[$1|$2]:-}"; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && [ "$2" != 0 ] && echo "$(echo "scale=2; $1 / $2" | bc | sed 's/^\./0./')×" || true; }
# The lower of the nginx and HAProxy medians of metric $1.
best_peer() { least "$(m "$1" nginx) $(m "$1" haproxy)"; }
# ratio columns: shardgate vs best of nginx/HAProxy, vs floor, vs bare rustls, vs shardgate-base.
RATIOS=()
if has "$PROXIES" shardgate; then
    { has "$PROXIES" nginx || has "$PROXIES" haproxy; } && RATIOS+=(peer)
    has "$PROXIES" floor && RATIOS+=(floor)
    has "$PROXIES" rustls && RATIOS+=(rustls)
    has "$PROXIES" shardgate-base && RATIOS+=(shardgate-base)
fi
# row <label> <metric>: medians per proxy, then shardgate's ratios (for a CPU or memory metric).
row() {
    local line="| $1 |" p r s
    for p in $PROXIES; do line+=" $(m "$2" $p) |"; done
    s=$(m "$2" shardgate)
    for r in "${RATIOS[@]}"; do
        case $r in peer) line+=" $(ratio "$s" "$(best_peer "$2")") |" ;; *) line+=" $(ratio "$s" "$(m "$2" $r)") |" ;; esac
    done
    echo "$line"
}
# context_row <label> <metric>...: medians per proxy joined by " / ", no ratios.
context_row() {
    local line="| $1 |" p mt v
    shift
    for p in $PROXIES; do
        v=""
        for mt in "$@"; do v+="${v:+ / }$(m "$mt" $p)"; done
        line+=" $v |"
    done
    for _ in "${RATIOS[@]}"; do line+=" |"; done
    echo "$line"
}
{
[ "$PP" = 1 ] && echo "PP=1: shardgate's listener requires a PROXY protocol header; every shardgate handshake starts with a v2 header in the ClientHello's segment."
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); proxy pinned to core 0, load and game servers on core 1; $ROUNDS interleaved rounds, ${SECS}s per run (round trips $((RTT_SECS))s), medians (every round in raw.txt)."
echo "Peers: $(nginx -v 2>&1 | cut -d' ' -f3) (stream, per-SNI certificate via \$ssl_server_name), $(haproxy -v | head -1 | cut -d' ' -f1-3) ($(haproxy -vv | grep -m1 'Built with OpenSSL version' | cut -d' ' -f6-7)), rustls $(grep -A1 '^name = "rustls"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p') bare echo and floor (loadgen tls-proxy: one certificate, one upstream, copy_bidirectional with $FLOOR_COPY_BUFFER B buffers, $FLOOR_BULK_COPY_BUFFER B for bulk)."
echo "Machine-speed probe on core 0 (loadgen speed), CPU ns per iteration, each round: $(tr -s ' ' <<<"${V[speed|round]}" | sed 's/ $//; s/ / \/ /g') (wall ms: $(tr -s ' ' <<<"${V[speed_wall|round]}" | sed 's/ $//; s/ / \/ /g'))."
echo
hdr="| median of $ROUNDS |"; sep="|---|"
for p in $PROXIES; do hdr+=" $(title $p) |"; sep+="---|"; done
for r in "${RATIOS[@]}"; do
    case $r in peer) hdr+=" shardgate ÷ best of nginx, HAProxy |" ;; floor) hdr+=" shardgate ÷ floor |" ;;
    rustls) hdr+=" shardgate ÷ bare rustls |" ;; shardgate-base) hdr+=" shardgate ÷ shardgate-base |" ;; esac
    sep+="---|"
done
echo "$hdr"; echo "$sep"
if has "$TESTS" handshakes; then
    for alg in $ALGS; do
        label=$([ $alg = ecdsa ] && echo "ECDSA P-256" || echo "RSA-2048")
        row "$label full handshake + 64 B echo, CPU µs/op" hs_$alg
        context_row "... handshakes/s (core 1 drives the load)" hs_rate_$alg
    done
fi
if has "$ALGS" ecdsa; then
    has "$TESTS" rtt && row "64 B round trip, fixed rate $RTT_CONNS conns × $RTT_RATE/s, CPU µs/rtt" rtt
    has "$TESTS" rtt && context_row "... latency p50 / p99 / p99.9 µs" rtt_p50 rtt_p99 rtt_p999
    has "$TESTS" bulk && row "bulk echo, $BULK_CONNS conns × $BULK_CHUNK B writes, CPU µs per MiB moved (both directions: each echoed MiB counts twice)" bulk
    has "$TESTS" bulk && context_row "... MiB/s echoed back" bulk_rate
    has "$TESTS" idle && row "memory per idle TLS connection, KiB ($IDLE_CONNS conns, RSS delta)" idle
fi
errs=""
for p in $PROXIES; do
    e=$(tr ' ' '\n' <<<"${V[errors|$p]:-}" | awk '{s += $1} END {print s + 0}')
    [ "$e" = 0 ] || errs+=" $p: $e;"
done
echo
if [ -z "$errs" ]; then echo "Errors: none in any run."; else echo "Errors (load generator, all runs):$errs see raw.txt."; fi
} | tee "$OUT/table.md"
