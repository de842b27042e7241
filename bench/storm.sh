#!/usr/bin/env bash
# The reconnect storm of issue 11: N simulated agents (rollguard-loadgen
# --hold, each on its own connection, reconnecting on the real agent's
# schedule: 200 ms doubling to 30 s plus up to 50 % jitter) stand connected to
# a release coordinator. A rollback is committed while the agents cannot read
# (the loadgen is SIGSTOPped), the coordinator is SIGKILLed and started again
# at once on the same address and store, and the loadgen resumes. Measured:
#   - time until every agent is connected again (the loadgen's outage, and
#     from the restart), and the failed connect attempts on the way;
#   - the coordinator's RSS and open files, steady before and at their peak
#     during the storm (/proc, every 100 ms);
#   - that every beta agent ran the rollback exactly once.
# Prints a Markdown table and leaves every log and JSON in the output dir.
#
# Usage: bench/storm.sh                      # 10,000 agents
# Knobs: STORM_AGENTS=10000, STORM_INTERVAL=1s, BENCH_OUT=DIR,
#        BENCH_BIN=DIR (release binaries; default target/release, built unless
#        BENCH_NO_BUILD=1 or BENCH_BIN is set).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${BENCH_BIN:-$root/target/release}
agents=${STORM_AGENTS:-10000}
interval=${STORM_INTERVAL:-1s}
out=${BENCH_OUT:-$(mktemp -d /tmp/rollguard-storm.XXXXXX)}
mkdir -p "$out"
log() { printf '[storm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_file() { # wait_file FILE: until it holds a full line (30 s)
  local i
  for i in $(seq 300); do
    [ -s "$1" ] && [ "$(tail -c1 "$1" | od -An -c | tr -d ' ')" = '\n' ] && return 0
    sleep 0.1
  done
  echo "storm: timed out waiting for $1" >&2
  return 1
}
free_port() { # below the ephemeral range, which the loadgen's connections use
  local port
  for port in $(seq 19100 19400); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "storm: no free port" >&2
  return 1
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
connected() { # connected agents, from the coordinator's /metrics
  curl -s --max-time 2 "$http/metrics" 2>/dev/null |
    awk '/^rollguard_agents_connected\{/ { s += $2 } END { print s + 0 }'
}
now_ms() { date +%s%3N; }

command -v curl >/dev/null && command -v jq >/dev/null || {
  log "installing curl and jq"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl jq >/dev/null
}
if [ "${BENCH_NO_BUILD:-0}" != 1 ] && [ -z "${BENCH_BIN:-}" ]; then
  log "building release binaries"
  cargo build --release -p rollguard-coordinator -p rollguard-loadgen
fi
for b in rollguard-coordinator rollguard-loadgen rollguardctl; do
  [ -x "$bin/$b" ] || { echo "storm: $bin/$b is missing" >&2; exit 1; }
done

port=$(free_port)
data=$out/data
mkdir -p "$data"
start_coordinator() { # sets coord_pid and http
  rm -f "$data/coordinator.addr" "$data/http.addr"
  "$bin/rollguard-coordinator" --listen "127.0.0.1:$port" --http-listen 127.0.0.1:0 \
    --data-dir "$data" 2>>"$out/coordinator.log" &
  coord_pid=$!
  pids+=("$coord_pid")
  wait_file "$data/http.addr"
  http="http://$(cat "$data/http.addr")"
}

log "coordinator on 127.0.0.1:$port; $agents agents at $interval"
start_coordinator
"$bin/rollguard-loadgen" --hold --coordinator "http://127.0.0.1:$port" --agents "$agents" \
  --interval "$interval" --beta-share 0.5 --deployment storm --json "$out/hold.json" \
  >"$out/loadgen.out" 2>"$out/loadgen.log" &
loadgen_pid=$!
pids+=("$loadgen_pid")
for _ in $(seq 1200); do
  [ "$(connected)" -ge "$agents" ] && break
  sleep 0.1
done
[ "$(connected)" -ge "$agents" ] || { log "not every agent connected"; exit 1; }
log "all $agents connected; settling for 10 s"
sleep 10
steady_rss=$(rss_kib "$coord_pid")
steady_fds=$(fds "$coord_pid")

log "rollback while the agents cannot read, then SIGKILL and restart"
kill -STOP "$loadgen_pid"
command_id=$("$bin/rollguardctl" --coordinator "http://127.0.0.1:$port" rollback storm \
  --reason "reconnect storm drill" -o json | jq -r .command_id)
kill -KILL "$coord_pid"
wait "$coord_pid" 2>/dev/null || true
restart_ms=$(now_ms)
start_coordinator
kill -CONT "$loadgen_pid"

peak_rss=0 peak_fds=0 back_ms=""
for _ in $(seq 1200); do # up to 2 minutes
  r=$(rss_kib "$coord_pid") f=$(fds "$coord_pid")
  [ "$r" -gt "$peak_rss" ] && peak_rss=$r
  [ "$f" -gt "$peak_fds" ] && peak_fds=$f
  if [ -z "$back_ms" ] && [ "$(connected)" -ge "$agents" ]; then
    back_ms=$(( $(now_ms) - restart_ms ))
    log "all back ${back_ms} ms after the restart began"
  fi
  if [ -n "$back_ms" ]; then
    done_n=$({ "$bin/rollguardctl" --coordinator "http://127.0.0.1:$port" results "$command_id" -o json 2>/dev/null || true; } |
      jq '[.results[] | select(.status == "succeeded")] | length' 2>/dev/null || true)
    [ "${done_n:-0}" -ge $((agents / 2)) ] 2>/dev/null && break
  fi
  sleep 0.1
done
after_rss=$(rss_kib "$coord_pid")
after_fds=$(fds "$coord_pid")
kill -TERM "$loadgen_pid"
wait "$loadgen_pid" 2>/dev/null || true

jq . "$out/hold.json" >"$out/hold.pretty.json"
outage=$(jq -r '[.outages[] | .all_back_after_secs // "never"] | map(tostring) | join(", ")' "$out/hold.json")
runs=$(jq -c .agents_by_runs "$out/hold.json")
repeats=$(jq -r .repeats_answered "$out/hold.json")
failed=$(jq -r .failed_connects "$out/hold.json")
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
cat <<EOF

| agents | all back after restart | loadgen outage s | failed connects | coordinator RSS MiB steady / peak / after | open files steady / peak / after | agents by rollbacks run [0, 1, ...] | had it before the kill |
|---:|---:|---:|---:|---:|---:|---|---:|
| $agents | ${back_ms:-never} ms | $outage | $failed | $(mib "$steady_rss") / $(mib "$peak_rss") / $(mib "$after_rss") | $steady_fds / $peak_fds / $after_fds | $runs | $repeats |

output: $out
EOF
