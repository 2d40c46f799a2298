# Helpers shared by the benchmark scripts (sourced, not run). prepare_run
# sets LG, which speed_probe needs.

# Installs the Debian packages named, if any, without letting their
# maintainer scripts start services (a policy-rc.d that refuses, removed after).
install_packages() {
    [ $# -gt 0 ] || return 0
    local added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added_policy=1; fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

# CPU ticks (user + system) of the given processes so far.
cpu_ticks() { local t=0 f; for p in "$@"; do read -r -a f < "/proc/$p/stat"; t=$((t + f[13] + f[14])); done; echo "$t"; }
# Resident memory of the given processes, KiB.
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
# Waits (10 s at most) until 127.0.0.1:$1 accepts connections.
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# Raises the open-file limit, builds the gateway and the load generator and
# sets SG, LG (their paths) and CLK (clock ticks per second).
prepare_run() {
    ulimit -n 20000 2>/dev/null || true
    cargo build --release -q -p shardgate -p shardgate-loadgen
    SG=target/release/shardgate
    LG=target/release/shardgate-loadgen
    CLK=$(getconf CLK_TCK)
}

# The median (the lower middle one for an even count) and the least of
# space-separated numbers; nothing for none.
median() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
least() { tr ' ' '\n' <<< "$1" | awk 'NF' | sort -g | head -1; }

# The machine-speed probe (`loadgen speed`) pinned to core 0, the proxy's
# core, at the start of a round: prints its JSON line.
speed_probe() { taskset -c 0 "$LG" speed; }

# With PERF=1, records a CPU profile (perf record -g) of the given PIDs into
# file $1 until perf_stop; without it, does nothing.
perf_start() {
    PERF_PID=""
    [ -n "${PERF:-}" ] && [ "$PERF" != 0 ] || return 0
    local out=$1; shift
    perf record -q -g -o "$out" -p "$(IFS=,; echo "$*")" 2>/dev/null & PERF_PID=$!
    sleep 0.2  # attached before the load starts
}
perf_stop() {
    [ -n "${PERF_PID:-}" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
}
