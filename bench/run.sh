#!/usr/bin/env bash
# Side-by-side benchmark: shardgate, nginx (stream, per-SNI certificate),
# HAProxy (crt-list + use_backend by SNI) and a bare rustls echo server, on
# one scenario: two game servers behind one TLS port, SNI picks the
# certificate and the server. The proxy runs pinned to core 0; the load
# generator and the echo game servers share core 1. Everything talks only to
# 127.0.0.1, every load run is bounded in time, and only processes this
# script started are stopped (by their PID).
#
# Usage: bench/run.sh [seconds-per-run]     (default 10)
# Environment: PROXIES (default "shardgate haproxy nginx rustls"), ALGS
# (default "ecdsa rsa"), HANDSHAKES_ONLY=1 (skip the round-trip and idle
# runs), PP=1 (shardgate's listener requires a PROXY protocol header and the
# load generator sends a v2 header before each ClientHello, in the same
# segment, as a load balancer in front would; the other proxies are run as
# without it).
# Output: a Markdown table on stdout and in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECS=${1:-10}
RTT_SECS=$((SECS * 2))
IDLE_CONNS=${IDLE_CONNS:-8000}
PROXIES=${PROXIES:-shardgate haproxy nginx rustls}
ALGS=${ALGS:-ecdsa rsa}
HANDSHAKES_ONLY=${HANDSHAKES_ONLY:-0}
PP=${PP:-0}
OUT=bench/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
W=$(mktemp -d)
PIDS=()
PROC_PIDS=()
cleanup() { for p in "${PROC_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

# --- peers, from Debian; keep their packages from starting services ----------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v haproxy >/dev/null || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v bc >/dev/null || need+=(bc)
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


# The load generator's flag for proxy $1: a v2 header first when PP=1 (shardgate only).
pp_flag() { [ "$PP" = 1 ] && [ "$1" = shardgate ] && echo --proxy-v2; return 0; }

# Starts proxy $1 with certificate type $2; sets PROC_PIDS (every process of it).
start_proxy() {
    local name=$1 alg=$2
    case $name in
    shardgate)
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
        SHARDGATE_ADMIN_KEY=bench-admin-key-0123456789 taskset -c 0 "$SG" run --config "$W/sg.yaml" 2> "$W/sg.log" & PROC_PIDS=($!)
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

stop_proxy() { kill "${PROC_PIDS[0]}" 2>/dev/null || true; wait "${PROC_PIDS[0]}" 2>/dev/null || true; sleep 0.3; }

# Runs loadgen "$@" on core 1 while measuring the proxy's CPU; prints "<json> <cpu_seconds>".
measured() {
    local before after
    before=$(cpu_ticks "${PROC_PIDS[@]}")
    local json; json=$(taskset -c 1 "$LG" "$@")
    after=$(cpu_ticks "${PROC_PIDS[@]}")
    echo "$json $(echo "scale=4; ($after - $before) / $CLK" | bc)"
}

declare -A HS RATE RTT_CPU P50 P99 P999 MEM
for alg in $ALGS; do
    for p in $PROXIES; do
        start_proxy $p $alg
        read -r json cpu < <(measured handshakes --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --concurrency 32 --seconds "$SECS" $(pp_flag $p))
        ops=$(jq .ops <<<"$json")
        HS[$p,$alg]=$(echo "scale=1; $cpu * 1000000 / $ops" | bc)
        RATE[$p,$alg]=$(jq '.rate|floor' <<<"$json")
        echo "handshakes $alg $p (PP=$PP): $json cpu_s=$cpu -> ${HS[$p,$alg]} us/op" | tee -a "$OUT/raw.txt" >&2
        if [ $alg = ecdsa ] && [ "$HANDSHAKES_ONLY" != 1 ]; then
            read -r json cpu < <(measured rtt --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --conns 1000 --rate 20 --seconds "$RTT_SECS" --size 64)
            count=$(jq .count <<<"$json")
            RTT_CPU[$p]=$(echo "scale=2; $cpu * 1000000 / $count" | bc)
            P50[$p]=$(jq .p50_us <<<"$json"); P99[$p]=$(jq .p99_us <<<"$json"); P999[$p]=$(jq .p999_us <<<"$json")
            echo "rtt $p: $json cpu_s=$cpu -> ${RTT_CPU[$p]} us/rtt" | tee -a "$OUT/raw.txt" >&2

            before=$(rss_kb "${PROC_PIDS[@]}")
            taskset -c 1 "$LG" idle --target 127.0.0.1:$PROXY --sni gs-1.com,gs-2.com --conns "$IDLE_CONNS" --hold-seconds 600 > "$W/idle.out" & idle_pid=$!
            for _ in $(seq 1 600); do grep -q ready "$W/idle.out" 2>/dev/null && break; sleep 0.2; done
            sleep 2
            after=$(rss_kb "${PROC_PIDS[@]}")
            kill $idle_pid 2>/dev/null || true; wait $idle_pid 2>/dev/null || true
            MEM[$p]=$(echo "scale=1; ($after - $before) / $IDLE_CONNS" | bc)
            echo "idle $p: $(cat "$W/idle.out") rss_kb $before -> $after -> ${MEM[$p]} KiB/conn" | tee -a "$OUT/raw.txt" >&2
        fi
        stop_proxy
    done
done

{
[ "$PP" = 1 ] && echo "PP=1: shardgate's listener requires a PROXY protocol header; every shardgate connection starts with a v2 header in the ClientHello's segment."
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); proxy pinned to core 0, load and game servers on core 1."
echo "Peers: $(nginx -v 2>&1 | cut -d' ' -f3) (stream, per-SNI certificate via \$ssl_server_name), $(haproxy -v | head -1 | cut -d' ' -f1-3) ($(haproxy -vv | grep -m1 'Built with OpenSSL version' | cut -d' ' -f6-7)), rustls $(grep -A1 '^name = "rustls"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p') bare echo."
echo
echo "| | shardgate | HAProxy | nginx | bare rustls |"
echo "|---|---|---|---|---|"
echo "| ECDSA P-256 full handshake + 64 B echo, CPU µs/op | ${HS[shardgate,ecdsa]:-} | ${HS[haproxy,ecdsa]:-} | ${HS[nginx,ecdsa]:-} | ${HS[rustls,ecdsa]:-} |"
echo "| ... handshakes/s (core 1 drives the load) | ${RATE[shardgate,ecdsa]:-} | ${RATE[haproxy,ecdsa]:-} | ${RATE[nginx,ecdsa]:-} | ${RATE[rustls,ecdsa]:-} |"
echo "| RSA-2048 full handshake + 64 B echo, CPU µs/op | ${HS[shardgate,rsa]:-} | ${HS[haproxy,rsa]:-} | ${HS[nginx,rsa]:-} | ${HS[rustls,rsa]:-} |"
echo "| ... handshakes/s | ${RATE[shardgate,rsa]:-} | ${RATE[haproxy,rsa]:-} | ${RATE[nginx,rsa]:-} | ${RATE[rustls,rsa]:-} |"
echo "| 64 B round trip, 1,000 conns × 20/s, CPU µs/rtt | ${RTT_CPU[shardgate]:-} | ${RTT_CPU[haproxy]:-} | ${RTT_CPU[nginx]:-} | ${RTT_CPU[rustls]:-} |"
echo "| ... latency p50 / p99 / p99.9 µs | ${P50[shardgate]:-} / ${P99[shardgate]:-} / ${P999[shardgate]:-} | ${P50[haproxy]:-} / ${P99[haproxy]:-} / ${P999[haproxy]:-} | ${P50[nginx]:-} / ${P99[nginx]:-} / ${P999[nginx]:-} | ${P50[rustls]:-} / ${P99[rustls]:-} / ${P999[rustls]:-} |"
echo "| memory per idle TLS connection, KiB ($IDLE_CONNS conns, RSS delta) | ${MEM[shardgate]:-} | ${MEM[haproxy]:-} | ${MEM[nginx]:-} | ${MEM[rustls]:-} |"
} | tee "$OUT/table.md"
