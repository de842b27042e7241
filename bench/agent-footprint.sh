#!/usr/bin/env bash
# Measures the agent's footprint while it streams at 1 s to a local
# coordinator: RSS (median of samples) and CPU % of one core over the run,
# both read from /proc. Usage: bench/agent-footprint.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
bin=target/release
[ -x $bin/rollguard-agent ] || cargo build --release -p rollguard-agent -p rollguard-coordinator
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
$bin/rollguard-coordinator --listen 127.0.0.1:0 --data-dir "$dir/data" 2>"$dir/coordinator.log" &
for _ in $(seq 100); do [ -s "$dir/data/coordinator.addr" ] && break; sleep 0.1; done
url="http://$(cat "$dir/data/coordinator.addr")"
$bin/rollguard-agent --coordinator "$url" --deployment bench --cohort beta --state-dir "$dir/agent" --interval 1s 2>"$dir/agent.log" &
pid=$!
sleep 3 # let it connect and settle before measuring
tck=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' /proc/$pid/stat); s0=$(date +%s.%N)
rss=()
for _ in $(seq "$secs"); do
  rss+=("$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)")
  sleep 1
done
t1=$(awk '{print $14+$15}' /proc/$pid/stat); s1=$(date +%s.%N)
median=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
cpu=$(echo "$t0 $t1 $s0 $s1 $tck" | awk '{printf "%.3f", ($2-$1)/$5/($4-$3)*100}')
echo "agent RSS median: ${median} KiB; CPU: ${cpu}% of one core over ${secs}s at 1s interval"
