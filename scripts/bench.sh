#!/usr/bin/env bash
# Benchmarks behind the README's numbers (DESIGN.md "Targets"): /chat host overhead, /health
# throughput against `wasmtime serve`, cold start and RSS. Builds what it needs, starts and stops
# every server itself (loopback only, every run bounded in time), and prints a markdown report,
# also written to target/bench/results.md (raw JSON and server logs in target/bench/run/).
#
#   scripts/bench.sh            # full run: about 5 minutes once built
#   scripts/bench.sh --quick    # smoke run: about 1 minute
#
# Options:
#   --quick           short runs, fewer rounds
#   --latency-ms N    the emulator's fixed latency for the /chat runs (default 50)
#   --slow-ms N       the latency of the extra 1000-connection /chat run (default 1000; 0: skip)
#   --no-pin          do not pin the /health servers to CPU 1 and the load generator to CPU 0
#   --no-build        use what target/ already holds
#   --quiet-wait S    wait up to S s for the 1-minute load average to fall below 1 (default 60)
#
# Wasmtime CLI 48.0.8 is found via $WASMTIME_BIN, then PATH, then ../shared/bin/wasmtime.
# `wac` (component composition) is installed into target/bench-tools when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
LATENCY_MS=50
SLOW_MS=1000
PIN=1
BUILD=1
QUIET_WAIT=60
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --latency-ms) LATENCY_MS=${2:?--latency-ms needs a value}; shift ;;
    --slow-ms) SLOW_MS=${2:?--slow-ms needs a value}; shift ;;
    --no-pin) PIN=0 ;;
    --no-build) BUILD=0 ;;
    --quiet-wait) QUIET_WAIT=${2:?--quiet-wait needs a value}; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  WARMUP=1 RAMP=0.5 CHAT_SECS=3 CHAT_C1_SECS=3 SLOW_SECS=4
  HEALTH_SECS=3 HEALTH_ROUNDS=1 COLD_RUNS=5 COLD_WASM_RUNS=2
else
  WARMUP=2 RAMP=1 CHAT_SECS=10 CHAT_C1_SECS=15 SLOW_SECS=12
  HEALTH_SECS=8 HEALTH_ROUNDS=3 COLD_RUNS=21 COLD_WASM_RUNS=5
fi
HEALTH_CONCURRENCY=50
CHAT_CONCURRENCY=(1 100 1000)
SLOW_CONCURRENCY=1000
MAX_CONCURRENT=2000
WASMTIME_VERSION=48.0.8

OUT=$ROOT/target/bench
RUN=$OUT/run
REPORT=$OUT/results.md

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if [ "$PIN" = 1 ] && { [ "$(nproc)" -lt 2 ] || ! command -v taskset >/dev/null; }; then
  log "no second CPU or no taskset: /health runs unpinned"
  PIN=0
fi
SERVER_CPU=()
CLIENT_CPU=()
if [ "$PIN" = 1 ]; then
  SERVER_CPU=(taskset -c 1)
  CLIENT_CPU=(taskset -c 0)
fi

# ---------------------------------------------------------------------------------------------
# Processes: each server runs in its own session (setsid keeps the PID), so that stopping it
# stops anything it started; whatever is still running when the script exits is stopped too.
PIDS=()
start() { # start NAME CMD... ; sets PID
  local name=$1
  shift
  setsid "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" </dev/null &
  PID=$!
  PIDS+=("$PID")
}
stop() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    [ "$i" = 100 ] && kill -KILL -- "-$pid" 2>/dev/null
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
  local left=()
  for i in "${PIDS[@]}"; do [ "$i" = "$pid" ] || left+=("$i"); done
  PIDS=("${left[@]}")
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_url NAME PID: the http://ADDR the server announced ("... listening on http://ADDR" or
# "Serving HTTP on http://ADDR/") on its stdout or stderr.
wait_url() {
  local name=$1 pid=$2 url i
  for i in $(seq 600); do
    url=$(grep -h -o -m1 -E '(listening on|Serving HTTP on) http://[0-9.:]*[0-9]' \
      "$RUN/$name.out" "$RUN/$name.err" 2>/dev/null | head -1 | grep -o 'http://.*' || true)
    if [ -n "$url" ]; then
      echo "$url"
      return
    fi
    kill -0 "$pid" 2>/dev/null || die "$name exited before listening: $(tail -5 "$RUN/$name.err")"
    [ "$i" = 600 ] && die "$name did not announce its address within 60 s"
    sleep 0.1
  done
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------
log "tools and builds"
WASMTIME=${WASMTIME_BIN:-}
[ -n "$WASMTIME" ] || WASMTIME=$(command -v wasmtime || true)
[ -n "$WASMTIME" ] || WASMTIME=$ROOT/../shared/bin/wasmtime
[ -x "$WASMTIME" ] ||
  die "no wasmtime CLI: set WASMTIME_BIN, put wasmtime $WASMTIME_VERSION on PATH, or provide ../shared/bin/wasmtime"
wasmtime_version=$("$WASMTIME" --version | awk '{ print $2 }')
[ "$wasmtime_version" = "$WASMTIME_VERSION" ] ||
  log "warning: $WASMTIME is wasmtime $wasmtime_version, not $WASMTIME_VERSION"

WAC=$ROOT/target/bench-tools/bin/wac
if [ "$BUILD" = 1 ]; then
  cargo build --release -p ion-host -p vertex-emulator -p ion-bench
  cargo build --release --target wasm32-wasip2 -p ion-mentoring
  cargo build --release --target wasm32-wasip2 \
    --manifest-path bench/stub-variables/Cargo.toml --target-dir target/bench-stub
  if [ ! -x "$WAC" ]; then
    log "installing wac-cli 0.12.0 into target/bench-tools (once, a few minutes)"
    cargo install wac-cli --version 0.12.0 --locked --no-default-features --root target/bench-tools
  fi
fi
ION_HOST=$ROOT/target/release/ion-host
EMULATOR=$ROOT/target/release/vertex-emulator
BENCH=$ROOT/target/release/ion-bench
COMPONENT=$ROOT/target/wasm32-wasip2/release/ion_mentoring.wasm
STUB=$ROOT/target/bench-stub/wasm32-wasip2/release/spin_variables_stub.wasm
for f in "$ION_HOST" "$EMULATOR" "$BENCH" "$COMPONENT" "$STUB" "$WAC"; do
  [ -e "$f" ] || die "$f is missing (run without --no-build)"
done
value() { "$BENCH" value "$@"; }

rm -rf "$RUN"
mkdir -p "$RUN"

# The service component imports fermyon:spin/variables, which `wasmtime serve` lacks: plug in
# a stub that defines no variable, so that the composed component imports wasi:* only. /health
# reads no variable, so both hosts run exactly the same code for it.
COMPOSED=$OUT/composed.wasm
"$WAC" plug "$COMPONENT" --plug "$STUB" -o "$COMPOSED"
"$ION_HOST" compile "$COMPONENT" -o "$OUT/ion_mentoring.cwasm"
"$ION_HOST" compile "$COMPOSED" -o "$OUT/composed.ion-host.cwasm"
"$WASMTIME" compile "$COMPOSED" -o "$OUT/composed.wasmtime.cwasm"

# 1000 client connections, as many accepted and as many to the emulator.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 8192 ]; then
  ulimit -n 8192
else
  ulimit -n "$hard"
  log "warning: open files limited to $hard; 1000 connections may fail"
fi

# ---------------------------------------------------------------------------------------------
load_start=$(loadavg)
if [ "$QUIET_WAIT" -gt 0 ]; then
  for i in $(seq "$QUIET_WAIT"); do
    awk '{ exit !($1 < 1.0) }' /proc/loadavg && break
    [ "$i" = 1 ] && log "load average $(loadavg): waiting up to ${QUIET_WAIT} s for a quieter machine"
    sleep 1
  done
fi
load_before=$(loadavg)
log "measuring (load average $load_before)"

export SPIN_VARIABLE_PROJECT_ID=bench SPIN_VARIABLE_ACCESS_TOKEN=bench
MESSAGE='{"message": "어떻게 해야 하나요?"}'
VERTEX_PATH=/v1/projects/bench/locations/global/publishers/google/models/gemini-2.5-flash:generateContent

# /chat: the emulator answers after a fixed delay. The same load goes once straight to the
# emulator (the baseline: client, loopback and emulator costs) and once through ion-host.
# chat_phase TAG LATENCY_MS WARMUP SECONDS CONCURRENCY...; sets PHASE_FILES (JSON results).
chat_phase() {
  local tag=$1 latency=$2 warmup=$3 secs=$4 c emulator_pid emulator_url host_pid host_url
  shift 4
  PHASE_FILES=()
  start "emulator-$tag" "$EMULATOR" --listen 127.0.0.1:0 --latency-ms "$latency"
  emulator_pid=$PID
  emulator_url=$(wait_url "emulator-$tag" "$emulator_pid")
  start "ion-host-$tag" env SPIN_VARIABLE_VERTEX_ENDPOINT="$emulator_url" \
    "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$OUT/ion_mentoring.cwasm" \
    --listen 127.0.0.1:0 --max-concurrent-requests "$MAX_CONCURRENT"
  host_pid=$PID
  host_url=$(wait_url "ion-host-$tag" "$host_pid")
  sleep 1
  [ "$tag" = chat ] && RSS_START=$(rss_mib "$host_pid")
  for c in "$@"; do
    local s=$secs
    [ "$c" = 1 ] && s=$CHAT_C1_SECS
    "$BENCH" load --url "$emulator_url$VERTEX_PATH" --method POST \
      -H 'content-type: application/json' -H 'authorization: Bearer bench' \
      --body-file bench/gemini-request.json -c "$c" -d "$s" --warmup "$warmup" \
      --ramp-up "$RAMP" --upstream-ms "$latency" --server-pid "$emulator_pid" \
      --label "emulator alone" --format json --json-out "$RUN/$tag-direct-c$c.json" >/dev/null
    "$BENCH" load --url "$host_url/chat" --method POST -H 'content-type: application/json' \
      --body "$MESSAGE" -c "$c" -d "$s" --warmup "$warmup" --ramp-up "$RAMP" \
      --upstream-ms "$latency" --baseline "$RUN/$tag-direct-c$c.json" --server-pid "$host_pid" \
      --label "ion-host /chat" --format json --json-out "$RUN/$tag-c$c.json" >/dev/null
    PHASE_FILES+=("$RUN/$tag-direct-c$c.json" "$RUN/$tag-c$c.json")
  done
  if [ "$tag" = chat ]; then
    sleep 2
    RSS_AFTER_CHAT=$(rss_mib "$host_pid")
    FDS_AFTER_CHAT=$(find "/proc/$host_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  fi
  stop "$host_pid"
  stop "$emulator_pid"
}

log "1/4 /chat host overhead (emulator latency ${LATENCY_MS} ms; concurrency ${CHAT_CONCURRENCY[*]})"
chat_phase chat "$LATENCY_MS" "$WARMUP" "$CHAT_SECS" "${CHAT_CONCURRENCY[@]}"
chat_files=("${PHASE_FILES[@]}")
slow_files=()
if [ "$SLOW_MS" -gt 0 ]; then
  log "1/4 /chat at ${SLOW_CONCURRENCY} connections with ${SLOW_MS} ms upstream latency"
  chat_phase slow "$SLOW_MS" $((2 * SLOW_MS / 1000 + 2)) "$SLOW_SECS" "$SLOW_CONCURRENCY"
  slow_files=("${PHASE_FILES[@]}")
fi
load_after_chat=$(loadavg)

# /health through the same composed component on each host, one host at a time, alternating.
log "2/4 /health: ion-host vs wasmtime serve (composed component, ${HEALTH_CONCURRENCY} connections, ${HEALTH_ROUNDS} rounds)"
health_files=()
health_run() { # health_run NAME LABEL CMD...
  local name=$1 label=$2 pid url
  shift 2
  start "$name" ${SERVER_CPU[@]+"${SERVER_CPU[@]}"} "$@"
  pid=$PID
  url=$(wait_url "$name" "$pid")
  sleep 0.5
  ${CLIENT_CPU[@]+"${CLIENT_CPU[@]}"} "$BENCH" load --url "$url/health" \
    -c "$HEALTH_CONCURRENCY" -d "$HEALTH_SECS" --warmup "$WARMUP" --server-pid "$pid" \
    --label "$label" --format json --json-out "$RUN/$name.json" >/dev/null
  health_files+=("$RUN/$name.json")
  LAST_RSS=$(rss_mib "$pid")
  stop "$pid"
}
ion_rps=()
wasmtime_rps=()
ion_cpu=()
wasmtime_cpu=()
for round in $(seq "$HEALTH_ROUNDS"); do
  health_run "health-ion-host-$round" "ion-host (round $round)" \
    "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$COMPOSED" --listen 127.0.0.1:0
  ION_HEALTH_RSS=$LAST_RSS
  health_run "health-wasmtime-$round" "wasmtime serve (round $round)" \
    "$WASMTIME" serve -S cli --addr 127.0.0.1:0 "$COMPOSED"
  WASMTIME_HEALTH_RSS=$LAST_RSS
  ion_rps+=("$(value "$RUN/health-ion-host-$round.json" throughput_rps)")
  wasmtime_rps+=("$(value "$RUN/health-wasmtime-$round.json" throughput_rps)")
  ion_cpu+=("$(value "$RUN/health-ion-host-$round.json" server_cpu.us_per_response)")
  wasmtime_cpu+=("$(value "$RUN/health-wasmtime-$round.json" server_cpu.us_per_response)")
done
# For reference only: the same host without its per-request access-log line.
health_run health-ion-host-nolog "ion-host, RUST_LOG=warn (no access log; reference)" \
  env RUST_LOG=warn "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$COMPOSED" \
  --listen 127.0.0.1:0
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ION_RPS=$(median "${ion_rps[@]}")
WASMTIME_RPS=$(median "${wasmtime_rps[@]}")
ION_CPU=$(median "${ion_cpu[@]}")
WASMTIME_CPU=$(median "${wasmtime_cpu[@]}")
HEALTH_RATIO=$(awk -v a="$ION_RPS" -v b="$WASMTIME_RPS" 'BEGIN { printf "%.2f", a / b }')
CPU_RATIO=$(awk -v a="$ION_CPU" -v b="$WASMTIME_CPU" 'BEGIN { printf "%.2f", b / a }')
load_after_health=$(loadavg)

# Cold start: process start → first 200 on /health.
log "3/4 cold start (${COLD_RUNS} runs each)"
# The precompiled cases are interleaved run by run, so that they meet the same conditions.
"$BENCH" cold-start --runs "$COLD_RUNS" --format json \
  --label "ion-host, ion_mentoring.cwasm (as shipped)" --json-out "$RUN/cold-ion-host-cwasm.json" \
  --label "wasmtime serve --allow-precompiled, composed .cwasm" --json-out "$RUN/cold-wasmtime.json" \
  --label "ion-host, composed .cwasm" --json-out "$RUN/cold-ion-host-composed.json" \
  --label "ion-host, ion_mentoring.cwasm, --max-concurrent-requests 80 (reference)" \
  --json-out "$RUN/cold-ion-host-80.json" \
  -- "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$OUT/ion_mentoring.cwasm" \
  --listen '127.0.0.1:{port}' \
  :: "$WASMTIME" serve --allow-precompiled -S cli --addr '127.0.0.1:{port}' \
  "$OUT/composed.wasmtime.cwasm" \
  :: "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$OUT/composed.ion-host.cwasm" \
  --listen '127.0.0.1:{port}' \
  :: "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$OUT/ion_mentoring.cwasm" \
  --max-concurrent-requests 80 --listen '127.0.0.1:{port}' >/dev/null
"$BENCH" cold-start --runs "$COLD_WASM_RUNS" --format json \
  --label "ion-host, ion_mentoring.wasm (compiled at startup)" \
  --json-out "$RUN/cold-ion-host-wasm.json" \
  -- "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$COMPONENT" \
  --listen '127.0.0.1:{port}' >/dev/null
cold_files=("$RUN"/cold-ion-host-cwasm.json "$RUN"/cold-wasmtime.json
  "$RUN"/cold-ion-host-composed.json "$RUN"/cold-ion-host-80.json "$RUN"/cold-ion-host-wasm.json)
COLD_ION=$(value "$RUN/cold-ion-host-cwasm.json" median_ms)
COLD_WASMTIME=$(value "$RUN/cold-wasmtime.json" median_ms)
COLD_RATIO=$(awk -v a="$COLD_ION" -v b="$COLD_WASMTIME" 'BEGIN { printf "%.2f", a / b }')
load_end=$(loadavg)

# ---------------------------------------------------------------------------------------------
log "4/4 report"
P99_FIXED=$(value "$RUN/chat-c1000.json" overhead_vs_fixed_ms.p99)
P99_DIRECT=$(value "$RUN/chat-c1000.json" overhead_vs_baseline_ms.p99)
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
  ok = (op == "le") ? (v <= t) : (v >= t); print ok ? "met" : "**missed**" }'; }
fmt() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
failed_runs=""
for f in "${chat_files[@]}" ${slow_files[@]+"${slow_files[@]}"} "${health_files[@]}"; do
  [ "$(value "$f" errors)" = 0 ] || failed_runs="$failed_runs ${f##*/}"
done
[ -z "$failed_runs" ] || log "warning: runs with errors (non-200 or failed requests):$failed_runs"
pinning="unpinned"
[ "$PIN" = 1 ] && pinning="server pinned to CPU 1 (\`taskset -c 1\`, so each host runs one worker thread), load generator to CPU 0"

{
  echo "## Benchmark results"
  echo
  echo "\`scripts/bench.sh$([ "$QUICK" = 1 ] && echo ' --quick')\`, $(date -u '+%Y-%m-%d %H:%M UTC'):" \
    "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)," \
    "wasmtime CLI $wasmtime_version; ion-host and the emulator are release builds (glibc)." \
    "Load average (1/5/15 min): $load_start at the start, $load_before when measuring began," \
    "$load_after_chat after /chat, $load_after_health after /health, $load_end at the end." \
    "Client, servers and emulator share the machine (and so does anything else running on it)." \
    "$([ -z "$failed_runs" ] && echo "Every request of every load run got a 200." ||
      echo "**Runs with errors:$failed_runs.**")"
  echo
  echo "| target | goal | measured | |"
  echo "|---|---|---|---|"
  echo "| /chat host overhead, p99 at 1000 concurrent (upstream ${LATENCY_MS} ms) | ≤ 1 ms | $(fmt "$P99_FIXED") ms (latency − ${LATENCY_MS} ms); $(fmt "$P99_DIRECT") ms (− emulator alone) | $(verdict "$P99_FIXED" 1 le) |"
  if [ "$SLOW_MS" -gt 0 ]; then
    echo "| the same with ${SLOW_MS} ms upstream latency (below capacity) | ≤ 1 ms | $(fmt "$(value "$RUN/slow-c$SLOW_CONCURRENCY.json" overhead_vs_fixed_ms.p99)") ms (− ${SLOW_MS} ms); $(fmt "$(value "$RUN/slow-c$SLOW_CONCURRENCY.json" overhead_vs_baseline_ms.p99)") ms (− emulator alone) | $(verdict "$(value "$RUN/slow-c$SLOW_CONCURRENCY.json" overhead_vs_fixed_ms.p99)" 1 le) |"
  fi
  echo "| /health throughput vs wasmtime serve | ≥ 1.5× | ${HEALTH_RATIO}× (median of ${HEALTH_ROUNDS}: $ION_RPS vs $WASMTIME_RPS req/s); CPU per request ${CPU_RATIO}× less ($ION_CPU vs $WASMTIME_CPU µs) | $(verdict "$HEALTH_RATIO" 1.5 ge) |"
  echo "| cold start vs wasmtime serve (precompiled) | ≤ 0.8× | ${COLD_RATIO}× ($(fmt "$COLD_ION") vs $(fmt "$COLD_WASMTIME") ms, medians of $COLD_RUNS) | $(verdict "$COLD_RATIO" 0.8 le) |"
  echo "| ion-host idle RSS, after startup | ≤ 30 MB | $RSS_START MiB | $(verdict "$RSS_START" 30 le) |"
  echo "| ion-host idle RSS, after the /chat runs | ≤ 30 MB | $RSS_AFTER_CHAT MiB | $(verdict "$RSS_AFTER_CHAT" 30 le) |"
  echo
  echo "### /chat through ion-host, emulator latency fixed at ${LATENCY_MS} ms"
  echo
  echo "Closed loop: each connection sends its next request as soon as the previous answer is in;" \
    "connections start spread over ${RAMP} s, ${WARMUP} s of warm-up are not recorded, then" \
    "${CHAT_SECS} s are measured (${CHAT_C1_SECS} s at concurrency 1). \"− fixed\": latency −" \
    "${LATENCY_MS} ms. \"− direct\": the same percentile minus that of the same load sent" \
    "straight to the emulator (a Gemini request like the component's), which takes out the" \
    "load generator's, the loopback's and the emulator's own time. \"server CPU\": CPU time" \
    "(user + system, all threads) of the server under load per response."
  echo
  "$BENCH" table "${chat_files[@]}"
  if [ "$SLOW_MS" -gt 0 ]; then
    echo
    echo "### /chat at ${SLOW_CONCURRENCY} connections, emulator latency ${SLOW_MS} ms"
    echo
    echo "The same measurement with a Gemini-like upstream latency, so that ${SLOW_CONCURRENCY}" \
      "requests in flight stay below the machine's capacity."
    echo
    "$BENCH" table "${slow_files[@]}"
  fi
  echo
  echo "### /health, a fresh instance per request, ${HEALTH_CONCURRENCY} connections, ${HEALTH_SECS} s per run"
  echo
  echo "Both hosts serve the same file: the component with a variables stub plugged in" \
    "(\`wac plug\`) so that it imports wasi:* only. \`wasmtime serve -S cli\` with its defaults" \
    "for WASIp2 (pooling allocator, one instance per request); ion-host with its defaults (one" \
    "JSON access-log line per request on stdout, here to a file). One host at a time," \
    "alternating; $pinning."
  echo
  "$BENCH" table "${health_files[@]}"
  echo
  echo "### Cold start: process start → first 200 from /health"
  echo
  echo "A free port per run; /health probed every 0.5 ms from spawn on; no CPU pinning. The" \
    "precompiled cases run interleaved (one start of each in turn, rotating the order)." \
    "ion-host runs with its defaults, as the image does: an instance pool for 1000 concurrent" \
    "requests (the reference row sizes it for Cloud Run's --concurrency 80)."
  echo
  "$BENCH" table "${cold_files[@]}"
  echo
  echo "### Memory (VmRSS)"
  echo
  echo "| process | MiB |"
  echo "|---|---:|"
  echo "| ion-host serving ion_mentoring.cwasm, 1 s after startup | $RSS_START |"
  echo "| the same, idle 2 s after the /chat runs ($FDS_AFTER_CHAT open file descriptors) | $RSS_AFTER_CHAT |"
  echo "| ion-host serving the composed component, at the end of a /health run | $ION_HEALTH_RSS |"
  echo "| wasmtime serve, the same, for reference | $WASMTIME_HEALTH_RSS |"
} >"$REPORT"
cat "$REPORT"
log "report written to ${REPORT#"$ROOT"/}; raw results and logs in ${RUN#"$ROOT"/}/"
