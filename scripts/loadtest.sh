#!/usr/bin/env bash
# The original service's load-test scenarios (Locust, ported to goose: bench/loadtest), run
# locally against ion-host and the Vertex AI emulator on 127.0.0.1, bounded in time.
#
#   ./scripts/loadtest.sh light      # 10 users, spawn 1/s, 2 min
#   ./scripts/loadtest.sh medium     # 30 users, 2/s, 5 min
#   ./scripts/loadtest.sh heavy      # 50 users, 5/s, 10 min
#   ./scripts/loadtest.sh stress     # 100 users, 10/s, 10 min
#   ./scripts/loadtest.sh smoke      # 5 users, 5 s, no think time (the test suite runs this)
#   ./scripts/loadtest.sh light --run-time 30s    # any further option goes to goose
#
# Traffic: /chat 5, /health 1, /docs 2 with 1–3 s think time, plus an edge-case user whose bad
# bodies must get a 4xx. Fails on any 5xx, on an edge case not answered with a 4xx, and on the
# latency budgets (p95 ≤ LOADTEST_P95, default 1s, and p99 ≤ LOADTEST_P99, default 2s, over all
# requests; not for smoke). The emulator answers after LOADTEST_LATENCY_MS (default 150 ms). Reports (HTML, JSON, CSV request
# log) go to target/loadtest-reports/<scenario>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scenario=${1:-}
case "$scenario" in
  light | medium | heavy | stress | smoke) shift ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
latency_ms=${LOADTEST_LATENCY_MS:-150}
p95_budget=${LOADTEST_P95:-1s}
p99_budget=${LOADTEST_P99:-2s}

log() { printf '==> %s\n' "$*" >&2; }
# Where cargo builds (as scripts/test.sh and the tests read it).
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target=$ROOT/$target ;; esac

log "building the component, ion-host, the emulator and ion-loadtest"
cargo build --release --locked --target wasm32-wasip2 -p ion-mentoring
cargo build --release --locked -p ion-host -p vertex-emulator
# Its own workspace and target dir: goose is built only where the scenarios run.
cargo build --release --locked --manifest-path bench/loadtest/Cargo.toml \
  --target-dir "$target/loadtest"
LOADTEST=$target/loadtest/release/ion-loadtest

reports=$ROOT/target/loadtest-reports/$scenario
rm -rf "$reports"
mkdir -p "$reports"

# Each server runs in its own session, so stopping it stops all it started.
pids=()
# shellcheck disable=SC2329 # called by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# start NAME CMD...: runs CMD, waits for "listening on http://ADDR", sets URL.
start() {
  local name=$1 _
  shift
  setsid "$@" >"$reports/$name.log" 2>&1 </dev/null &
  pids+=("$!")
  for _ in $(seq 600); do
    URL=$(grep -o -m1 'listening on http://[0-9.:]*[0-9]' "$reports/$name.log" | grep -o 'http://.*' || true)
    [ -n "$URL" ] && return
    kill -0 "${pids[-1]}" 2>/dev/null || { tail -5 "$reports/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "loadtest.sh: $name did not start within 60 s" >&2
  exit 1
}

start emulator "$target/release/vertex-emulator" --listen 127.0.0.1:0 --latency-ms "$latency_ms"
export SPIN_VARIABLE_PROJECT_ID=loadtest SPIN_VARIABLE_ACCESS_TOKEN=loadtest
export SPIN_VARIABLE_VERTEX_ENDPOINT=$URL
start ion-host "$target/release/ion-host" --listen 127.0.0.1:0 \
  --component "$target/wasm32-wasip2/release/ion_mentoring.wasm"
# The smoke run checks behaviour only (no 5xx, edge cases get a 4xx): no timing budget on a
# machine that may be busy.
budgets=(--threshold "p95<$p95_budget" --threshold "p99<$p99_budget")
limits="p95 ≤ $p95_budget, p99 ≤ $p99_budget"
if [ "$scenario" = smoke ]; then
  budgets=()
  limits="no latency budget"
fi
log "$scenario against $URL (emulator latency ${latency_ms} ms; $limits)"
status=0
"$LOADTEST" "$scenario" --host "$URL" --quiet --no-telnet \
  --report-file "$reports/report.html" --report-file "$reports/report.json" \
  --request-log "$reports/requests.csv" --request-format csv \
  ${budgets[@]+"${budgets[@]}"} "$@" || status=$?
log "reports in ${reports#"$ROOT"/}/ (report.html, report.json, requests.csv)"
exit "$status"
