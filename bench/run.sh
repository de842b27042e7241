#!/usr/bin/env bash
# The benchmark of issue 5, side by side in one run on this machine:
#   1. agent footprint: rollguard-agent at 1 s with app scrape and probe on,
#      next to prometheus-node-exporter (scraped once a second by a curl
#      loop) and collectd (1 s; cpu, memory, disk, interface, load), all
#      running at once over the same window: RSS median and CPU % of one core
#      from /proc;
#   2. the coordinator at N simulated agents (rollguard-loadgen) at 1 s:
#      CPU, RSS, ingest lag p99, acked samples/s;
#   3. rollback fan-out to all N (every simulated agent is beta);
#   4. bytes on the wire per agent per second.
# Prints a Markdown results table and leaves it with every log and JSON file
# in the output directory.
#
# Usage: bench/run.sh                  # full: 60 s footprint, N = 1000 5000 10000, 30 s each
#        BENCH_QUICK=1 bench/run.sh    # smoke: 30 s footprint, N = 200 1000, 10 s each
#        BENCH_TLS=both BENCH_COORDINATOR_ONLY=1 BENCH_AGENTS=10000 bench/run.sh
#                                      # the coordinator at 10,000 agents with and without mutual TLS
# Knobs: BENCH_AGENTS="1000 5000", BENCH_WINDOW=30s, BENCH_FOOTPRINT_SECS=60,
#        BENCH_OUT=DIR (default: a new /tmp/rollguard-bench.* dir),
#        BENCH_NO_BUILD=1 (use the binaries already in target/release),
#        BENCH_BIN=DIR (take the binaries from DIR instead; implies no build),
#        BENCH_TLS=0|1|both (the coordinator runs without TLS, with mutual TLS
#          (every simulated agent presents its own certificate), or both, one
#          after the other for each N, compared in a table of their own),
#        BENCH_PKI=DIR (the TLS run's CA, coordinator and client certificates;
#          default: DIR/pki of the output; made when missing, reused when there,
#          so that a kept DIR saves making 10,000 agent certificates again),
#        BENCH_COORDINATOR_ONLY=1 (skip the agent footprint and the gzip wire run),
#        BENCH_SCALE=1 (add 50,000 and 100,000 agents at 10 s over shared
#          connections, BENCH_SCALE_PER_CONN=200 streams each; minutes;
#          BENCH_SCALE_AGENTS="50000 100000", BENCH_SCALE_WINDOW=30s).
# Issue 15's run, side by side: BENCH_COORDINATOR_ONLY=1 BENCH_AGENTS=10000 BENCH_TLS=both BENCH_SCALE=1 bench/run.sh
# Installs prometheus-node-exporter, collectd and jq with apt-get when missing
# (services are kept from starting; the script starts and stops its own).
# Run it on a quiet machine: the loadgen reports the CPU other processes used
# (other_cpu_percent) so a disturbed run shows.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${BENCH_BIN:-$root/target/release}

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  footprint_secs=${BENCH_FOOTPRINT_SECS:-30}
  agent_counts=${BENCH_AGENTS:-"200 1000"}
  window=${BENCH_WINDOW:-10s}
else
  footprint_secs=${BENCH_FOOTPRINT_SECS:-60}
  agent_counts=${BENCH_AGENTS:-"1000 5000 10000"}
  window=${BENCH_WINDOW:-30s}
fi
out=${BENCH_OUT:-$(mktemp -d /tmp/rollguard-bench.XXXXXX)}
mkdir -p "$out"
coordinator_only=${BENCH_COORDINATOR_ONLY:-0}
case "${BENCH_TLS:-0}" in
  0) tls_modes=(plain) ;;
  1) tls_modes=(tls) ;;
  both) tls_modes=(plain tls) ;;
  *) echo "bench: BENCH_TLS must be 0, 1 or both" >&2; exit 64 ;;
esac
pki=${BENCH_PKI:-$out/pki}
# The operator the loadgen's rollback presents (its default --tls-operator).
tls_operator=loadgen
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- processes we start, stopped on exit by pid ------------------------------
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
stop() { # stop PID: SIGTERM, then SIGKILL after 30 s
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
wait_file() { # wait_file FILE: until it holds a full line (30 s)
  local i
  for i in $(seq 300); do
    [ -s "$1" ] && [ "$(tail -c1 "$1" | od -An -c | tr -d ' ')" = '\n' ] && return 0
    sleep 0.1
  done
  echo "bench: timed out waiting for $1" >&2
  return 1
}
free_port() { # a TCP port on 127.0.0.1 that nothing answers on, below the ephemeral range (the loadgen's thousands of connections use that)
  local port
  for port in $(seq 19100 19400); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "bench: no free port" >&2
  return 1
}

# --- tools -------------------------------------------------------------------
need=()
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v collectd >/dev/null || [ -x /usr/sbin/collectd ] || need+=(collectd)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  # Keep the packages' services from starting: this script runs its own.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$out/apt.log"
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
collectd_bin=$(command -v collectd || echo /usr/sbin/collectd)

if [ "${BENCH_NO_BUILD:-0}" != 1 ] && [ -z "${BENCH_BIN:-}" ]; then
  log "building release binaries"
  cargo build --release --workspace
fi
needed_bins=(rollguard-coordinator rollguard-loadgen rollguardctl)
[ "$coordinator_only" = 1 ] || needed_bins+=(rollguard-agent rollguard-demo-app)
for b in "${needed_bins[@]}"; do
  [ -x "$bin/$b" ] || { echo "bench: $bin/$b is missing" >&2; exit 1; }
done

# Starts a coordinator on port 0 with a fresh data dir; sets coord_pid,
# coord_url. With a second argument `tls`: mutual TLS with the certificates
# of $pki, and the loadgen's operator bound to the role a rollback needs.
start_coordinator() {
  local dir=$1 mode=${2:-plain}
  rm -rf "$dir"; mkdir -p "$dir"
  local extra=()
  # The /metrics listener (when this build has one) also goes on port 0.
  if "$bin/rollguard-coordinator" --help 2>/dev/null | grep -q -- '--http-listen'; then
    extra=(--http-listen 127.0.0.1:0)
  fi
  local scheme=http
  if [ "$mode" = tls ]; then
    printf '[auth.roles]\n%s = "operator"\n' "$tls_operator" >"$dir.toml"
    extra+=(--config "$dir.toml" --tls-cert "$pki/coordinator.pem"
      --tls-key "$pki/coordinator-key.pem" --tls-client-ca "$pki/ca.pem")
    scheme=https
  fi
  "$bin/rollguard-coordinator" --listen 127.0.0.1:0 "${extra[@]}" --data-dir "$dir" \
    2>"$dir.log" &
  coord_pid=$!
  pids+=("$coord_pid")
  wait_file "$dir/coordinator.addr"
  # The coordinator's certificate is for 127.0.0.1, the host it is dialled by.
  coord_url="$scheme://$(cat "$dir/coordinator.addr")"
}

# The CA and the coordinator's certificate of the TLS runs, made with
# rollguardctl when missing (the loadgen makes the client certificates).
make_pki() {
  if [ ! -s "$pki/ca.pem" ]; then
    log "tls: making a CA in $pki"
    "$bin/rollguardctl" pki init --dir "$pki" >&2
  fi
  if [ ! -s "$pki/coordinator.pem" ]; then
    "$bin/rollguardctl" pki issue coordinator coordinator --dir "$pki" --san 127.0.0.1 >&2
  fi
}

ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
wchar() { awk '/^wchar/ { print $2 }' "/proc/$1/io"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : 0) }'; }

# === 1. agent footprint ========================================================
run_footprint() {
log "footprint: starting a coordinator, the demo app, the agent, node_exporter and collectd"
fp=$out/footprint
mkdir -p "$fp"
start_coordinator "$fp/coordinator"
echo "1.9.4" >"$fp/app-version"
"$bin/rollguard-demo-app" --listen 127.0.0.1:0 --addr-file "$fp/app.addr" \
  --version-file "$fp/app-version" --fail-after 1h 2>"$fp/app.log" &
pids+=($!)
wait_file "$fp/app.addr"
app_url="http://$(cat "$fp/app.addr")"
cat >"$fp/agent.toml" <<EOF
host_id = "bench-host"
deployment = "bench"
cohort = "beta"
interval = "1s"
state_dir = "$fp/agent-state"
version_file = "$fp/app-version"
[app]
scrape_url = "$app_url/metrics"
probe_url = "$app_url/healthz"
EOF
mkdir -p "$fp/agent-state"
"$bin/rollguard-agent" --config "$fp/agent.toml" --coordinator "$coord_url" 2>"$fp/agent.log" &
agent_pid=$!
pids+=("$agent_pid")

ne_port=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" 2>"$fp/node-exporter.log" &
ne_pid=$!
pids+=("$ne_pid")
# The scraper a Prometheus server would be: one GET a second.
(while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$ne_port/metrics" || true; done) &
pids+=($!)

mkdir -p "$fp/collectd"
cat >"$fp/collectd.conf" <<EOF
# A minimal collectd at a 1 s interval with the plugins an operator would
# compare with: cpu, memory, disk, interface, load; values go out over the
# network plugin (to a local port nothing listens on), as to a central server.
Hostname "bench-host"
FQDNLookup false
BaseDir "$fp/collectd"
PIDFile "$fp/collectd/collectd.pid"
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
"$collectd_bin" -f -C "$fp/collectd.conf" 2>"$fp/collectd.log" &
cd_pid=$!
pids+=("$cd_pid")

sleep 5 # let every one connect, scrape and settle before measuring
names=(rollguard-agent collectd prometheus-node-exporter)
procs=("$agent_pid" "$cd_pid" "$ne_pid")
for i in 0 1 2; do kill -0 "${procs[$i]}" 2>/dev/null || { echo "bench: ${names[$i]} is not running (see $fp)" >&2; exit 1; }; done
log "footprint: measuring for ${footprint_secs}s"
tck=$(getconf CLK_TCK)
declare -a t0 rss
for i in 0 1 2; do t0[$i]=$(ticks "${procs[$i]}"); : >"$fp/rss-$i"; done
w0=$(wchar "$agent_pid")
s0=$(date +%s.%N)
for _ in $(seq "$footprint_secs"); do
  for i in 0 1 2; do rss_kib "${procs[$i]}" >>"$fp/rss-$i"; done
  sleep 1
done
s1=$(date +%s.%N)
w1=$(wchar "$agent_pid")
for i in 0 1 2; do
  t1=$(ticks "${procs[$i]}")
  fp_rss[$i]=$(median <"$fp/rss-$i" | awk '{ printf "%.1f", $1 / 1024 }')
  fp_cpu[$i]=$(awk -v a="${t0[$i]}" -v b="$t1" -v s="$s0" -v e="$s1" -v t="$tck" \
    'BEGIN { printf "%.2f", (b - a) / t / (e - s) * 100 }')
done
agent_wire=$(awk -v a="$w0" -v b="$w1" -v s="$s0" -v e="$s1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
log "footprint: agent ${fp_rss[0]} MiB ${fp_cpu[0]}%, collectd ${fp_rss[1]} MiB ${fp_cpu[1]}%, node_exporter ${fp_rss[2]} MiB ${fp_cpu[2]}%"
# Stop everything of part 1 before loading the coordinator.
cleanup
pids=()
}
declare -a fp_rss fp_cpu
agent_wire=-
if [ "$coordinator_only" != 1 ]; then
  run_footprint
fi

# === 2-4. coordinator, fan-out, wire =============================================
declare -a coord_json
if [[ " ${tls_modes[*]} " == *" tls "* ]]; then
  make_pki
fi
for n in $agent_counts; do
  for mode in "${tls_modes[@]}"; do
    # A plain run keeps the names it always had; a TLS run's files end in -tls.
    tag=$n
    tls_flags=()
    if [ "$mode" = tls ]; then
      tag=$n-tls
      tls_flags=(--tls-dir "$pki")
      # Outside the measured step (the loadgen makes them before connecting),
      # but say so: the first run at a new N makes N certificates.
      log "tls: agent certificates for $n hosts in $pki/agents (made once, then reused)"
    fi
    log "coordinator ($mode): $n simulated agents at 1 s for $window, then a rollback to all of them"
    dir=$out/coordinator-$tag
    start_coordinator "$dir" "$mode"
    json=$out/loadgen-$tag.json
    if "$bin/rollguard-loadgen" --coordinator "$coord_url" --coordinator-pid "$coord_pid" \
      --agents "$n" --interval 1s --duration "$window" --rollback --beta-share 1 \
      --rollback-timeout 120s "${tls_flags[@]}" --json "$json" \
      >"$out/loadgen-$tag.txt" 2>"$out/loadgen-$tag.log"; then
      coord_json+=("$json")
      cat "$out/loadgen-$tag.txt" >&2
    else
      log "coordinator: the loadgen failed at N=$n ($mode; see $out/loadgen-$tag.log)"
    fi
    stop "$coord_pid"
    pids=()
  done
done

# === 5. scale: 50,000 and 100,000 agents at 10 s over shared connections ==========
# Behind BENCH_SCALE=1: it takes minutes. Each HTTP/2 connection carries
# BENCH_SCALE_PER_CONN streams (200: 250 connections for 50,000, 500 for
# 100,000), as agents behind a few relays or a load balancer would. No TLS: a
# TLS connection presents one agent's certificate, and the coordinator takes
# a Hello only from the host its certificate names.
declare -a scale_json
if [ "${BENCH_SCALE:-0}" = 1 ]; then
  per_conn=${BENCH_SCALE_PER_CONN:-200}
  for n in ${BENCH_SCALE_AGENTS:-50000 100000}; do
    conns=$(( (n + per_conn - 1) / per_conn ))
    log "scale: $n simulated agents at 10 s over $conns connections for ${BENCH_SCALE_WINDOW:-30s}, then a rollback to all of them"
    dir=$out/coordinator-scale-$n
    start_coordinator "$dir" plain
    json=$out/loadgen-scale-$n.json
    if "$bin/rollguard-loadgen" --coordinator "$coord_url" --coordinator-pid "$coord_pid" \
      --agents "$n" --interval 10s --connections "$conns" --duration "${BENCH_SCALE_WINDOW:-30s}" \
      --rollback --beta-share 1 --rollback-timeout 120s --json "$json" \
      >"$out/loadgen-scale-$n.txt" 2>"$out/loadgen-scale-$n.log"; then
      scale_json+=("$json")
      cat "$out/loadgen-scale-$n.txt" >&2
    else
      log "scale: the loadgen failed at N=$n (see $out/loadgen-scale-$n.log)"
    fi
    stop "$coord_pid"
    pids=()
  done
fi

# The wire figure with gzip as the real agent sends (the runs above leave the
# loadgen's compression off so that its CPU does not crowd the coordinator).
gzip_json=$out/loadgen-gzip.json
if [ "$coordinator_only" != 1 ]; then
  log "wire: 1000 simulated agents with gzip-compressed samples"
  start_coordinator "$out/coordinator-gzip"
  "$bin/rollguard-loadgen" --coordinator "$coord_url" --coordinator-pid "$coord_pid" \
    --agents 1000 --interval 1s --duration "$window" --gzip --json "$gzip_json" \
    >"$out/loadgen-gzip.txt" 2>"$out/loadgen-gzip.log" || log "wire: the gzip run failed"
  stop "$coord_pid"
  pids=()
fi

# === results =====================================================================
num() { jq -r --arg k "$2" '.[$k] | if . == null then "-" elif type == "number" then (. * 10 | round / 10) else . end' "$1"; }
# The knobs this run was started with, for the reproduce line.
reproduce() {
  local v
  for v in BENCH_QUICK BENCH_AGENTS BENCH_WINDOW BENCH_TLS BENCH_COORDINATOR_ONLY BENCH_FOOTPRINT_SECS BENCH_SCALE BENCH_SCALE_AGENTS BENCH_SCALE_PER_CONN BENCH_SCALE_WINDOW; do
    [ -n "${!v:-}" ] && printf '%s=%q ' "$v" "${!v}"
  done
  printf 'bench/run.sh'
}
# The JSON of one run, or nothing when it failed.
run_json() { local j=$out/loadgen-$1.json; [ -f "$j" ] && echo "$j"; }
{
  echo "## rollguard benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)."
  echo "Reproduce: \`$(reproduce)\`"
  echo
  if [ "$coordinator_only" != 1 ]; then
    echo "### Agent footprint (1 s interval, ${footprint_secs} s, all three running at once)"
    echo
    echo "| process | RSS median MiB | CPU % of one core |"
    echo "|---|---:|---:|"
    echo "| rollguard-agent (host collectors + app scrape and probe, streaming) | ${fp_rss[0]} | ${fp_cpu[0]} |"
    echo "| collectd (cpu, memory, disk, interface, load; network out) | ${fp_rss[1]} | ${fp_cpu[1]} |"
    echo "| prometheus-node-exporter (default collectors, scraped 1/s) | ${fp_rss[2]} | ${fp_cpu[2]} |"
    echo
    awk -v a="${fp_rss[0]}" -v c="${fp_rss[1]}" -v n="${fp_rss[2]}" -v ac="${fp_cpu[0]}" -v cc="${fp_cpu[1]}" 'BEGIN {
      printf "Agent RSS = %.2f x collectd, %.2f x node_exporter; agent CPU = %.2f x collectd.\n", a / c, a / n, (cc > 0 ? ac / cc : 0) }'
    echo
  fi
  echo "### Coordinator (simulated agents at 1 s, rollback to all of them)"
  echo
  echo "| agents | TLS | connected | connect s | acked samples/s | ingest lag p99 ms | coordinator CPU % | RSS MiB median (max) | RSS KiB per agent | wire B/agent/s | fan-out p50 / p99 / max ms | all acked ms | acked_all | loadgen / other CPU % |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
  for j in "${coord_json[@]}"; do
    per_agent=$(awk -v r="$(num "$j" coordinator_rss_mib)" -v n="$(num "$j" connected)" 'BEGIN { if (n > 0 && r != "-") printf "%.1f", r * 1024 / n; else print "-" }')
    tls=$( [ "$(jq -r '.tls // false' "$j")" = true ] && echo yes || echo no )
    echo "| $(num "$j" agents) | $tls | $(num "$j" connected) | $(num "$j" connect_secs) | $(num "$j" samples_per_sec) | $(num "$j" ingest_lag_p99_ms) | $(num "$j" coordinator_cpu_percent) | $(num "$j" coordinator_rss_mib) ($(num "$j" coordinator_rss_max_mib)) | $per_agent | $(num "$j" wire_bytes_per_agent_per_sec) | $(num "$j" fanout_p50_ms) / $(num "$j" fanout_p99_ms) / $(num "$j" fanout_max_ms) | $(num "$j" all_acked_ms) | $(num "$j" acked_all) | $(num "$j" loadgen_cpu_percent) / $(num "$j" other_cpu_percent) |"
  done
  echo
  if [ ${#scale_json[@]} -gt 0 ]; then
    echo "### Scale (simulated agents at 10 s, ${BENCH_SCALE_PER_CONN:-200} streams per HTTP/2 connection, rollback to all of them)"
    echo
    echo "| agents | connections | connected | ingest lag p99 ms | coordinator CPU % | RSS MiB median (max) | RSS KiB per agent | fan-out p50 / p99 / max ms | all acked ms | loadgen / other CPU % | fan-out CPU ms, coordinator / loadgen |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for j in "${scale_json[@]}"; do
      n=$(num "$j" agents)
      per_agent=$(awk -v r="$(num "$j" coordinator_rss_mib)" -v n="$(num "$j" connected)" 'BEGIN { if (n > 0 && r != "-") printf "%.1f", r * 1024 / n; else print "-" }')
      echo "| $n | $(( (n + ${BENCH_SCALE_PER_CONN:-200} - 1) / ${BENCH_SCALE_PER_CONN:-200} )) | $(num "$j" connected) | $(num "$j" ingest_lag_p99_ms) | $(num "$j" coordinator_cpu_percent) | $(num "$j" coordinator_rss_mib) ($(num "$j" coordinator_rss_max_mib)) | $per_agent | $(num "$j" fanout_p50_ms) / $(num "$j" fanout_p99_ms) / $(num "$j" fanout_max_ms) | $(num "$j" all_acked_ms) | $(num "$j" loadgen_cpu_percent) / $(num "$j" other_cpu_percent) | $(num "$j" fanout_coordinator_cpu_ms) / $(num "$j" fanout_loadgen_cpu_ms) |"
    done
    echo
    echo "fan-out CPU: CPU time of each process from the Rollback call until every result was in (steadier than the latency from run to run)."
    echo
  fi
  if [ ${#tls_modes[@]} -eq 2 ]; then
    echo "### Mutual TLS vs none (same N, one after the other; each agent its own connection and certificate)"
    echo
    echo "Connect time: from the first connection attempt until every agent has its Welcome, 256 connecting at a time (the loadgen's default --connect-concurrency); the agents' certificates are made before, outside it."
    echo
    echo "| agents | connected (none / TLS) | connect s (none / TLS) | coordinator CPU % (none / TLS) | RSS MiB median (none / TLS) | RSS MiB max (none / TLS) | ingest lag p99 ms (none / TLS) | fan-out p99 ms (none / TLS) |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $agent_counts; do
      p=$(run_json "$n") || p=
      t=$(run_json "$n-tls") || t=
      pair() { echo "$( [ -n "$p" ] && num "$p" "$1" || echo -) / $( [ -n "$t" ] && num "$t" "$1" || echo -)"; }
      echo "| $n | $(pair connected) | $(pair connect_secs) | $(pair coordinator_cpu_percent) | $(pair coordinator_rss_mib) | $(pair coordinator_rss_max_mib) | $(pair ingest_lag_p99_ms) | $(pair fanout_p99_ms) |"
    done
    echo
  fi
  if [ "$coordinator_only" != 1 ]; then
    echo "### Wire, per agent per second (steady state, one sample per second)"
    echo
    echo "| what | bytes |"
    echo "|---|---:|"
    if [ ${#coord_json[@]} -gt 0 ]; then
      j=${coord_json[0]}
      echo "| simulated agent upstream: protobuf \`encoded_len\` + 5 B gRPC framing per message | $(num "$j" payload_bytes_per_agent_per_sec) |"
      echo "| simulated agent upstream: bytes written to its socket (HTTP/2 frames included) | $(num "$j" socket_bytes_up_per_agent_per_sec) |"
      echo "| simulated agent downstream (acks): protobuf + framing | $(num "$j" payload_bytes_down_per_agent_per_sec) |"
    fi
    if [ -f "$gzip_json" ]; then
      echo "| simulated agent upstream with gzip (as the agent sends): bytes written to its socket | $(num "$gzip_json" socket_bytes_up_per_agent_per_sec) |"
    fi
    echo "| real rollguard-agent (gzip): every byte it wrote (gRPC and its app scrape/probe requests) | $agent_wire |"
    echo
    echo "Samples are compact (a host's layout once per stream) and gzip-compressed per message."
  fi
  echo "Output: $out"
} | tee "$out/results.md"
