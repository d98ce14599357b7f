#!/usr/bin/env bash
# Measures what the plugin's BPF programs add to each read(2)/write(2) on the
# machine: `dd` copies /dev/zero to /dev/null one small block at a time (one read
# and one write per block) with and without the plugin running, alternating, and
# the medians are compared.
#
#   sudo plugins/http-statistics/bench/overhead.sh [PLUGIN_BINARY] [ROUNDS] [COUNT]
#
# Defaults: target/release/rescope-http-statistics, 7 rounds, 2,000,000 blocks.
set -euo pipefail
bin=${1:-target/release/rescope-http-statistics}
rounds=${2:-7}
count=${3:-2000000}
[[ -x $bin ]] || { echo "overhead.sh: build it first: cargo build --release -p rescope-http-statistics" >&2; exit 1; }
work=$(mktemp -d)
plugin_pid=
cleanup() {
    [[ -n $plugin_pid ]] && kill "$plugin_pid" 2>/dev/null && wait "$plugin_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Seconds taken by one dd run (dd's own figure).
run_dd() {
    dd if=/dev/zero of=/dev/null bs="$1" count="$count" 2>&1 | sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p'
}

start_plugin() {
    "$bin" --plugins-root "$work/plugins" --hostname overhead >"$work/plugin.log" 2>&1 &
    plugin_pid=$!
    for _ in $(seq 1 100); do
        [[ -S $work/plugins/http-statistics/http-statistics.sock ]] && break
        sleep 0.1
    done
    grep -q '"BPF program attached"\|BPF program attached' "$work/plugin.log" || {
        echo "overhead.sh: the plugin did not attach its BPF program:" >&2
        cat "$work/plugin.log" >&2
        exit 1
    }
}

stop_plugin() {
    kill "$plugin_pid"
    wait "$plugin_pid" 2>/dev/null || true
    plugin_pid=
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for bs in 1 64; do
    : >"$work/off"
    : >"$work/on"
    for _ in $(seq 1 "$rounds"); do
        run_dd "$bs" >>"$work/off"
        start_plugin
        run_dd "$bs" >>"$work/on"
        stop_plugin
    done
    off=$(median <"$work/off")
    on=$(median <"$work/on")
    # Two syscalls (a read and a write) per block.
    awk -v bs="$bs" -v off="$off" -v on="$on" -v n="$count" -v r="$rounds" 'BEGIN {
        printf "bs=%-3s  without: %.3f s (%.0f ns/syscall)  with: %.3f s (%.0f ns/syscall)  added: %.0f ns/syscall  (median of %d)\n",
            bs, off, off * 1e9 / (2 * n), on, on * 1e9 / (2 * n), (on - off) * 1e9 / (2 * n), r
    }'
    echo "  runs without: $(tr '\n' ' ' <"$work/off")"
    echo "  runs with:    $(tr '\n' ' ' <"$work/on")"
done
