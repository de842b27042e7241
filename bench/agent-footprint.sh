#!/usr/bin/env bash
# Measures the agent's footprint while it streams at 1 s to a local
# coordinator, side by side in one run: the agent on each collector backend
# (`[collect] backend`: procfs, sysinfo) and collectd (cpu, memory, disk,
# interface, load; when installed). RSS is the median of one sample a
# second, CPU the % of one core over the run, both read from /proc. Also
# prints the agent binary's size.
# Usage: bench/agent-footprint.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release
[ -x $bin/rollguard-agent ] && [ -x $bin/rollguard-coordinator ] ||
  cargo build --release -p rollguard-agent -p rollguard-coordinator
collectd_bin=$(command -v collectd || echo /usr/sbin/collectd)
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
$bin/rollguard-coordinator --listen 127.0.0.1:0 --data-dir "$dir/data" 2>"$dir/coordinator.log" &
for _ in $(seq 100); do [ -s "$dir/data/coordinator.addr" ] && break; sleep 0.1; done
url="http://$(cat "$dir/data/coordinator.addr")"

names=() pids=()
# start NAME BINARY BACKEND: one agent, its own host id and state dir, and
# its own copy of the binary: agents sharing one file would share its page
# cache, and the kernel's fault-around would map into one agent the code
# another one ran (sysinfo's into the procfs agent).
start() {
  cp "$2" "$dir/rollguard-agent-$1"
  ROLLGUARD_AGENT__COLLECT__BACKEND=$3 "$dir/rollguard-agent-$1" --coordinator "$url" --host-id "bench-$1" \
    --deployment bench --cohort beta --state-dir "$dir/$1" --interval 1s 2>"$dir/$1.log" &
  names+=("rollguard-agent ($1)") pids+=($!)
}
start procfs $bin/rollguard-agent procfs
start sysinfo $bin/rollguard-agent sysinfo
if [ -x "$collectd_bin" ]; then
  mkdir -p "$dir/collectd"
  # The same collectd as bench/run.sh: 1 s, the plugins an operator would
  # compare with, values sent over the network plugin as to a central server.
  cat >"$dir/collectd.conf" <<EOF
Hostname "bench-host"
FQDNLookup false
BaseDir "$dir/collectd"
PIDFile "$dir/collectd/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin logfile
<Plugin logfile>
  LogLevel warning
  File STDERR
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin disk
LoadPlugin interface
LoadPlugin load
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "25826"
</Plugin>
EOF
  "$collectd_bin" -f -C "$dir/collectd.conf" 2>"$dir/collectd.log" &
  names+=("collectd") pids+=($!)
else
  echo "collectd not installed (apt-get install -y collectd): measuring the agents only" >&2
fi

sleep 3 # let them connect and settle before measuring
for i in "${!pids[@]}"; do
  kill -0 "${pids[$i]}" 2>/dev/null || { echo "${names[$i]} is not running:" >&2; cat "$dir"/*.log >&2; exit 1; }
done
ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
declare -a t0
for i in "${!pids[@]}"; do t0[$i]=$(ticks "${pids[$i]}"); : >"$dir/rss-$i"; : >"$dir/anon-$i"; done
s0=$(date +%s.%N)
for _ in $(seq "$secs"); do
  for i in "${!pids[@]}"; do
    awk '/^VmRSS/ { print $2 >>"'"$dir/rss-$i"'" } /^RssAnon/ { print $2 >>"'"$dir/anon-$i"'" }' "/proc/${pids[$i]}/status"
  done
  sleep 1
done
s1=$(date +%s.%N)
median_kib() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "| process | RSS median | of which anonymous (heap, stacks) | CPU % of one core |"
echo "|---|---:|---:|---:|"
for i in "${!pids[@]}"; do
  t1=$(ticks "${pids[$i]}")
  rss=$(median_kib "$dir/rss-$i")
  anon=$(median_kib "$dir/anon-$i")
  cpu=$(awk -v a="${t0[$i]}" -v b="$t1" -v s="$s0" -v e="$s1" -v t="$tck" \
    'BEGIN { printf "%.3f", (b - a) / t / (e - s) * 100 }')
  printf "| %s | %.2f MiB (%d KiB) | %d KiB | %s |\n" "${names[$i]}" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$rss" "$anon" "$cpu"
done
echo "over ${secs}s at a 1 s interval"
echo "rollguard-agent binary: $(stat -c %s $bin/rollguard-agent) bytes"
