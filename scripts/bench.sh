#!/usr/bin/env bash
# Benchmarks behind docs/performance.md (and the README's summary of it), every figure a ratio
# to a peer measured in the same run: ion-host as the image ships it (x86_64-unknown-linux-musl,
# `dist` profile, precompiled component), `spin up`, `wasmtime serve` (same component, variables
# stubbed) and the FastAPI + uvicorn reference of the original service (bench/fastapi-reference),
# all calling the same Vertex AI emulator. Builds what it needs, starts and stops every server
# itself (loopback only, every run bounded in time), and prints a markdown report, also written
# to target/bench/results.md (raw JSON, RSS samples and server logs in target/bench/run/).
#
#   scripts/bench.sh                # full run: about 9 minutes once built
#   scripts/bench.sh --quick        # smoke run: about 2 minutes
#   scripts/bench.sh --state-only   # only the state section (conversations and the cache)
#   scripts/bench.sh --access-only  # only the access section (key and shared-limit checks)
#   scripts/bench.sh --telemetry-only  # only the telemetry section (OpenTelemetry's CPU cost)
#   scripts/bench.sh --rate-only    # only the fixed-rate section (open loop, oha)
#
# Options:
#   --quick           short runs, one round
#   --latency-ms N    the emulator's fixed latency for the /chat runs (default 150)
#   --no-pin          do not pin the /health servers to CPU 1 and the load generator to CPU 0
#   --no-build        use what target/ already holds
#   --quiet-wait S    wait up to S s for the 1-minute load average to fall below 1 (default 60)
#   --state-only      only section 4: a conversation turn with Redis on loopback and with the
#                     embedded store, against the same chat with the history sent along; a cache
#                     hit against a miss (needs redis-server)
#   --access-only     only section 5: what a key check and a shared-limit check add to /chat,
#                     with Redis on loopback (needs redis-server)
#   --telemetry-only  only section 6: the host CPU OpenTelemetry export adds to /chat, at 100%
#                     sampling and with sampling off, to a real OTLP receiver on loopback
#                     (tests/python/otlp_receiver.py, in the test suite's Python environment)
#   --rate-only       only section 7: /chat and /health at fixed arrival rates (500, 1000, 2000
#                     and 4000 requests/s), open loop with oha's latency correction, every peer
#                     in the same run; overhead is a peer's latency minus the upstream's alone
#   --state-on-disk   keep the servers' state (the embedded store, spin's key-value database) on
#                     this machine's disk, under target/bench/run, instead of a tmpfs
#
# State: servers keep theirs on a tmpfs (/dev/shm) by default, as on Cloud Run, whose file
# system is in memory; the fixed-rate section also runs ion-host with its state on the disk,
# where every answer's append to the store's log waits for an fdatasync.
#
# Peers: Wasmtime CLI 48.0.8 via $WASMTIME_BIN, PATH or ../shared/bin/wasmtime; Spin via
# $SPIN_BIN, PATH or ../shared/bin/spin; Python 3 with venv for the FastAPI reference (pinned
# wheels from PyPI, installed into target/bench-tools/fastapi). `wac` (component composition) is
# installed into target/bench-tools when missing, and so is `oha` (the fixed-rate load generator). The musl build needs musl-gcc (musl-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
LATENCY_MS=150
PIN=1
BUILD=1
QUIET_WAIT=60
STATE_ON_DISK=0
ONLY="" # empty: every section; `state` or `access`: that section alone
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --latency-ms) LATENCY_MS=${2:?--latency-ms needs a value}; shift ;;
    --no-pin) PIN=0 ;;
    --no-build) BUILD=0 ;;
    --quiet-wait) QUIET_WAIT=${2:?--quiet-wait needs a value}; shift ;;
    --state-only) ONLY=state ;;
    --access-only) ONLY=access ;;
    --telemetry-only) ONLY=telemetry ;;
    --rate-only) ONLY=rate ;;
    --state-on-disk) STATE_ON_DISK=1 ;;
    -h | --help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  WARMUP=1 CHAT_SECS=4 HEALTH_SECS=3 HEALTH_ROUNDS=1 COLD_RUNS=5 IDLE_SECS=10 RATE_SECS=3
else
  WARMUP=2 CHAT_SECS=10 HEALTH_SECS=6 HEALTH_ROUNDS=3 COLD_RUNS=21 IDLE_SECS=10 RATE_SECS=10
fi
RAMP=1
HEALTH_CONCURRENCY=50
CHAT_CONCURRENCY=1000
MAX_CONCURRENT=2000
WASMTIME_VERSION=48.0.8
MUSL=x86_64-unknown-linux-musl

OUT=$ROOT/target/bench
RUN=$OUT/run
REPORT=$OUT/results.md

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

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
  PIDS=(${left[@]+"${left[@]}"})
}
cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do stop "$pid"; done
  if [ -n "${TMPFS_STATE:-}" ]; then rm -rf "$TMPFS_STATE"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_url NAME PID: the http://ADDR the server announced ("listening on http://ADDR",
# "Serving HTTP on http://ADDR/", "Serving http://ADDR", "running on http://ADDR").
wait_url() {
  local name=$1 pid=$2 url i
  for i in $(seq 600); do
    url=$(grep -h -o -m1 -E '(listening on|Serving HTTP on|Serving|running on) http://[0-9.:]*[0-9]' \
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
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The RSS of a server: its whole process group (setsid made it the leader), in MiB.
rss_mib() {
  local pids
  pids=$(pgrep -g "$1" 2>/dev/null || echo "$1")
  # shellcheck disable=SC2046,SC2086 # one path per PID
  awk '/^VmRSS:/ { kb += $2 } END { printf "%.1f", kb / 1024 }' \
    $(printf '/proc/%s/status ' $pids) 2>/dev/null
}
# sample_rss PID FILE: "seconds MiB" every 0.25 s into FILE until stopped (kill).
sample_rss() {
  local pid=$1 file=$2 t0
  t0=$(date +%s.%N)
  while kill -0 "$pid" 2>/dev/null; do
    echo "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }') $(rss_mib "$pid")" >>"$file"
    sleep 0.25
  done
}
peak_of() { awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.1f", m }' "$1"; }

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
SPIN=${SPIN_BIN:-}
[ -n "$SPIN" ] || SPIN=$(command -v spin || true)
[ -n "$SPIN" ] || SPIN=$ROOT/../shared/bin/spin
[ -x "$SPIN" ] || die "no Spin CLI: set SPIN_BIN, put spin on PATH, or provide ../shared/bin/spin"
spin_version=$("$SPIN" --version | awk '{ print $2 }')

WAC=$ROOT/target/bench-tools/bin/wac
OHA=$ROOT/target/bench-tools/bin/oha
VENV=$ROOT/target/bench-tools/fastapi
REQUIREMENTS=$ROOT/bench/fastapi-reference/requirements.txt
if [ "$BUILD" = 1 ]; then
  rustup target list --installed | grep -qx "$MUSL" || rustup target add "$MUSL"
  command -v musl-gcc >/dev/null ||
    die "musl-gcc is missing (Debian/Ubuntu: apt-get install musl-tools); ring needs it for the musl build"
  # What the image ships (scripts/build-image.sh): the component and ion-host, dist profile.
  cargo build --locked --profile dist --target wasm32-wasip2 -p ion-mentoring
  CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --locked --profile dist --target "$MUSL" -p ion-host
  cargo build --locked --release -p vertex-emulator -p ion-bench
fi
if [ "$BUILD" = 1 ] && { [ -z "$ONLY" ] || [ "$ONLY" = rate ]; }; then
  if [ ! -x "$OHA" ]; then
    log "installing oha 1.16.0 into target/bench-tools (once, a few minutes)"
    cargo install oha --version 1.16.0 --locked --root target/bench-tools
  fi
  cargo build --locked --release --target wasm32-wasip2 \
    --manifest-path bench/stub-variables/Cargo.toml --target-dir target/bench-stub
  if [ ! -x "$WAC" ]; then
    log "installing wac-cli 0.12.0 into target/bench-tools (once, a few minutes)"
    cargo install wac-cli --version 0.12.0 --locked --no-default-features --root target/bench-tools
  fi
  if ! cmp -s "$REQUIREMENTS" "$VENV/requirements.txt" 2>/dev/null; then
    log "installing the FastAPI reference's pinned wheels into ${VENV#"$ROOT"/}"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
      -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/requirements.txt"
  fi
fi
PY=$VENV/bin/python
[ -x "$PY" ] || [ -z "$ONLY" ] || [ "$ONLY" = rate ] || PY=python3
ION_HOST=$ROOT/target/$MUSL/dist/ion-host
EMULATOR=$ROOT/target/release/vertex-emulator
BENCH=$ROOT/target/release/ion-bench
COMPONENT=$ROOT/target/wasm32-wasip2/dist/ion_mentoring.wasm
STUB=$ROOT/target/bench-stub/wasm32-wasip2/release/spin_variables_stub.wasm
needed=("$ION_HOST" "$EMULATOR" "$BENCH" "$COMPONENT")
{ [ -n "$ONLY" ] && [ "$ONLY" != rate ]; } || needed+=("$STUB" "$WAC" "$PY")
[ -n "$ONLY" ] && [ "$ONLY" != rate ] || needed+=("$OHA")
for f in "${needed[@]}"; do
  [ -e "$f" ] || die "$f is missing (run without --no-build)"
done
value() { "$BENCH" value "$@"; }
fmt() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }

rm -rf "$RUN"
mkdir -p "$RUN"
# Where servers keep their state (see the top of this file): STATE, and DISK_STATE for the
# fixed-rate run of ion-host on the disk.
DISK_STATE=$RUN/state
STATE=$DISK_STATE
STATE_MEDIUM="this machine's disk ($(df --output=fstype "$RUN" | tail -1))"
if [ "$STATE_ON_DISK" = 0 ]; then
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    TMPFS_STATE=$(mktemp -d /dev/shm/ion-bench.XXXXXX)
    STATE=$TMPFS_STATE
    STATE_MEDIUM="a tmpfs, as Cloud Run's in-memory file system"
  else
    log "warning: no writable tmpfs at /dev/shm: servers keep their state on the disk"
  fi
fi

# The service component imports fermyon:spin/variables, which `wasmtime serve` lacks: plug in
# a stub that defines no variable, so that the composed component imports wasi:* only. /health
# reads no variable, so every host runs the same code for it.
COMPOSED=$OUT/composed.wasm
CWASM=$OUT/ion_mentoring.cwasm
"$ION_HOST" compile "$COMPONENT" -o "$CWASM"
if [ -z "$ONLY" ] || [ "$ONLY" = rate ]; then
  "$WAC" plug "$COMPONENT" --plug "$STUB" -o "$COMPOSED"
  "$ION_HOST" compile "$COMPOSED" -o "$OUT/composed.ion-host.cwasm"
  "$WASMTIME" compile "$COMPOSED" -o "$OUT/composed.wasmtime.cwasm"
fi
# spin up reads the same manifest, pointed at the same (dist) component.
MANIFEST=$RUN/spin.toml
sed "s|^source = .*|source = \"$COMPONENT\"|" spin.toml >"$MANIFEST"
MODEL=$(sed -n 's/^model = { default = "\([^"]*\)".*/\1/p' spin.toml)

# 1000 client connections, as many accepted and as many to the emulator.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 16384 ]; then
  ulimit -n 16384
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
# Every /chat below sends the same first question: with the response cache on, all but the
# first would be cache hits. Sections 1-3 measure the call through to Vertex AI (each answer
# still starts a conversation in the server's store); section 4 measures the cache itself.
export SPIN_VARIABLE_CACHE_TTL_SECONDS=0
MESSAGE='{"message": "어떻게 해야 하나요?"}'
VERTEX_PATH=/v1/projects/bench/locations/global/publishers/google/models/$MODEL:generateContent

# Server commands by peer name; {port} is replaced by a free port, $2 is the vertex endpoint.
server_cmd() { # server_cmd PEER PORT ENDPOINT COMPONENT_KIND ; sets CMD
  local peer=$1 port=$2 endpoint=$3 kind=${4:-shipped}
  case "$peer" in
    ion-host|ion-host-fresh|ion-host-disk)
      local component=$CWASM state=$STATE
      [ "$kind" = composed ] && component=$OUT/composed.ion-host.cwasm
      # ion-host-disk: the state on this machine's disk whatever STATE is.
      [ "$peer" = ion-host-disk ] && state=$DISK_STATE
      CMD=(env SPIN_VARIABLE_VERTEX_ENDPOINT="$endpoint" "$ION_HOST" --manifest "$ROOT/spin.toml"
        --component "$component" --listen "127.0.0.1:$port" --state-dir "$state/ion-host-$port"
        --max-concurrent-requests "$MAX_CONCURRENT" ${ION_HOST_ARGS[@]+"${ION_HOST_ARGS[@]}"})
      # ion-host-fresh: a fresh instance for every request (instance reuse off), to weigh reuse.
      if [ "$peer" = ion-host-fresh ]; then CMD+=(--max-instance-reuse-count 1); fi ;;
    spin)
      CMD=(env SPIN_VARIABLE_VERTEX_ENDPOINT="$endpoint" "$SPIN" up --from "$MANIFEST"
        --listen "127.0.0.1:$port" --state-dir "$STATE/spin-$port") ;;
    wasmtime)
      CMD=("$WASMTIME" serve -S cli --addr "127.0.0.1:$port" "$COMPOSED") ;;
    fastapi)
      CMD=(env VERTEX_ENDPOINT="$endpoint" PROJECT_ID=bench ACCESS_TOKEN=bench MODEL="$MODEL"
        "$VENV/bin/uvicorn" app:app --app-dir "$ROOT/bench/fastapi-reference"
        --host 127.0.0.1 --port "$port" --loop uvloop --http httptools
        --no-access-log --log-level warning --backlog 4096) ;;
  esac
}
# The PID of the process listening on PORT: the one whose CPU time counts (`spin up` serves
# from a child process).
listener_pid() {
  ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
# launch NAME PEER ENDPOINT [KIND] [PREFIX...]: starts a peer, sets PID (its process group, to
# stop it and sum its RSS), SERVING_PID (the listener, for CPU time) and URL.
launch() {
  local name=$1 peer=$2 endpoint=$3 kind=$4 port
  shift 4
  port=$(free_port)
  server_cmd "$peer" "$port" "$endpoint" "$kind"
  start "$name" "$@" "${CMD[@]}"
  # uvicorn logs nothing at warning level: probe instead of waiting for its banner.
  local i
  for i in $(seq 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
    kill -0 "$PID" 2>/dev/null || die "$name exited before listening: $(tail -5 "$RUN/$name.err")"
    [ "$i" = 600 ] && die "$name did not answer /health within 60 s"
    sleep 0.1
  done
  URL=http://127.0.0.1:$port
  SERVING_PID=$(listener_pid "$port")
  [ -n "$SERVING_PID" ] || SERVING_PID=$PID
}

# ---------------------------------------------------------------------------------------------
# /chat at 1000 concurrent requests, the emulator answering after a fixed delay: once straight
# to the emulator (the upstream alone: client, loopback and emulator costs), then through each
# peer that can serve /chat (wasmtime serve cannot: it has no variables). RSS sampled throughout.
ION_HOST_ARGS=()
if [ -z "$ONLY" ]; then
log "1/7 /chat: ${CHAT_CONCURRENCY} connections, emulator latency ${LATENCY_MS} ms"
start emulator "$EMULATOR" --listen 127.0.0.1:0 --latency-ms "$LATENCY_MS"
EMULATOR_PID=$PID
EMULATOR_URL=$(wait_url emulator "$EMULATOR_PID")
"$BENCH" load --url "$EMULATOR_URL$VERTEX_PATH" --method POST \
  -H 'content-type: application/json' -H 'authorization: Bearer bench' \
  --body-file bench/gemini-request.json -c "$CHAT_CONCURRENCY" -d "$CHAT_SECS" \
  --warmup "$WARMUP" --ramp-up "$RAMP" --upstream-ms "$LATENCY_MS" --server-pid "$EMULATOR_PID" \
  --label "emulator alone (upstream baseline)" --format json \
  --json-out "$RUN/chat-upstream.json" >/dev/null
chat_files=("$RUN/chat-upstream.json")
declare -A RSS_IDLE RSS_PEAK RSS_AFTER RSS_LATER
for peer in ion-host spin fastapi; do
  launch "chat-$peer" "$peer" "$EMULATOR_URL" shipped
  pid=$PID
  serving=$SERVING_PID
  sleep 1
  RSS_IDLE[$peer]=$(rss_mib "$pid")
  sample_rss "$pid" "$RUN/rss-$peer.txt" &
  sampler=$!
  "$BENCH" load --url "$URL/chat" --method POST -H 'content-type: application/json' \
    --body "$MESSAGE" -c "$CHAT_CONCURRENCY" -d "$CHAT_SECS" --warmup "$WARMUP" \
    --ramp-up "$RAMP" --upstream-ms "$LATENCY_MS" --baseline "$RUN/chat-upstream.json" \
    --server-pid "$serving" --label "$peer" --format json --json-out "$RUN/chat-$peer.json" >/dev/null ||
    log "warning: /chat through $peer: no request succeeded"
  RSS_AFTER[$peer]=$(rss_mib "$pid")
  sleep "$IDLE_SECS"
  RSS_LATER[$peer]=$(rss_mib "$pid")
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  RSS_PEAK[$peer]=$(peak_of "$RUN/rss-$peer.txt")
  [ "$peer" = ion-host ] && FDS_AFTER_CHAT=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  stop "$pid"
  [ -f "$RUN/chat-$peer.json" ] && chat_files+=("$RUN/chat-$peer.json")
done
stop "$EMULATOR_PID"
load_after_chat=$(loadavg)

# /health: each server pinned to one CPU, the load generator on the other, one at a time,
# alternating, ${HEALTH_ROUNDS} rounds; the median round counts.
log "2/7 /health: ${HEALTH_CONCURRENCY} connections, ${HEALTH_ROUNDS} round(s)"
health_files=()
health_run() { # health_run NAME LABEL PEER KIND [ENV...]
  local name=$1 label=$2 peer=$3 kind=$4 pid
  shift 4
  launch "$name" "$peer" http://127.0.0.1:9 "$kind" ${SERVER_CPU[@]+"${SERVER_CPU[@]}"} "$@"
  pid=$PID
  sleep 0.5
  ${CLIENT_CPU[@]+"${CLIENT_CPU[@]}"} "$BENCH" load --url "$URL/health" \
    -c "$HEALTH_CONCURRENCY" -d "$HEALTH_SECS" --warmup "$WARMUP" --server-pid "$SERVING_PID" \
    --label "$label" --format json --json-out "$RUN/$name.json" >/dev/null
  health_files+=("$RUN/$name.json")
  stop "$pid"
}
declare -A HEALTH_RPS HEALTH_CPU
HEALTH_PEERS=(ion-host ion-host-composed spin wasmtime fastapi)
for round in $(seq "$HEALTH_ROUNDS"); do
  health_run "health-ion-host-$round" "ion-host, shipped component (round $round)" ion-host shipped
  health_run "health-spin-$round" "spin up, same component (round $round)" spin shipped
  health_run "health-ion-host-composed-$round" "ion-host, composed component (round $round)" ion-host composed
  health_run "health-wasmtime-$round" "wasmtime serve, composed component (round $round)" wasmtime composed
  health_run "health-fastapi-$round" "FastAPI + uvicorn, one worker (round $round)" fastapi shipped
done
for peer in "${HEALTH_PEERS[@]}"; do
  rps=() cpu=()
  for round in $(seq "$HEALTH_ROUNDS"); do
    rps+=("$(value "$RUN/health-$peer-$round.json" throughput_rps)")
    cpu+=("$(value "$RUN/health-$peer-$round.json" server_cpu.us_per_response)")
  done
  HEALTH_RPS[$peer]=$(median "${rps[@]}")
  HEALTH_CPU[$peer]=$(median "${cpu[@]}")
done
load_after_health=$(loadavg)

# Cold start: process start → first 200 on /health, interleaved run by run. The state
# directories are fresh and where the other sections keep theirs (not the checkout's .spin,
# whose store grows with every local run and is opened, and checked after a kill, at start).
log "3/7 cold start (${COLD_RUNS} runs each)"
"$BENCH" cold-start --runs "$COLD_RUNS" --format json \
  --label "ion-host, ion_mentoring.cwasm (as shipped)" --json-out "$RUN/cold-ion-host.json" \
  --label "wasmtime serve --allow-precompiled, composed .cwasm" --json-out "$RUN/cold-wasmtime.json" \
  --label "spin up, same component" --json-out "$RUN/cold-spin.json" \
  -- "$ION_HOST" --manifest "$ROOT/spin.toml" --component "$CWASM" --listen '127.0.0.1:{port}' \
  --state-dir "$STATE/cold-ion-host" \
  :: "$WASMTIME" serve --allow-precompiled -S cli --addr '127.0.0.1:{port}' \
  "$OUT/composed.wasmtime.cwasm" \
  :: "$SPIN" up --from "$MANIFEST" --listen '127.0.0.1:{port}' --state-dir "$STATE/cold-spin" \
  >/dev/null
cold_files=("$RUN/cold-ion-host.json" "$RUN/cold-wasmtime.json" "$RUN/cold-spin.json")
load_end=$(loadavg)

# ---------------------------------------------------------------------------------------------
log "report"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
  ok = (op == "le") ? (v <= t) : (v >= t); print ok ? "met" : "**missed**" }'; }
chat() { value "$RUN/chat-$1.json" "$2" 2>/dev/null || echo 0; }
failed_runs=""
for f in "${chat_files[@]}" "${health_files[@]}"; do
  [ "$(value "$f" errors)" = 0 ] || failed_runs="$failed_runs ${f##*/}"
done
[ -z "$failed_runs" ] || log "warning: runs with errors (non-200 or failed requests):$failed_runs"

ION_CHAT_RPS=$(chat ion-host throughput_rps)
ION_CHAT_P99=$(chat ion-host latency_ms.p99)
UP_P99=$(value "$RUN/chat-upstream.json" latency_ms.p99)
P99_OVER=$(awk -v a="$ION_CHAT_P99" -v b="$UP_P99" 'BEGIN { printf "%.1f", a - b }')
ION_CHAT_CPU=$(chat ion-host server_cpu.us_per_response)
FASTAPI_RATIO=$(ratio "$ION_CHAT_RPS" "$(chat fastapi throughput_rps)")
SPIN_HEALTH_RATIO=$(ratio "${HEALTH_RPS[ion-host]}" "${HEALTH_RPS[spin]}")
WASMTIME_HEALTH_RATIO=$(ratio "${HEALTH_RPS[ion-host-composed]}" "${HEALTH_RPS[wasmtime]}")
COLD_ION=$(value "$RUN/cold-ion-host.json" median_ms)
COLD_WASMTIME=$(value "$RUN/cold-wasmtime.json" median_ms)
COLD_RATIO=$(ratio "$COLD_ION" "$COLD_WASMTIME")
pinning="unpinned"
[ "$PIN" = 1 ] && pinning="each server pinned to CPU 1 (\`taskset -c 1\`), the load generator to CPU 0"

{
  echo "## Benchmark results"
  echo
  echo "\`scripts/bench.sh$([ "$QUICK" = 1 ] && echo ' --quick')\`, $(date -u '+%Y-%m-%d %H:%M UTC'):" \
    "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r);" \
    "ion-host as the image ships it ($MUSL, \`dist\` profile, precompiled component)," \
    "spin $spin_version, wasmtime CLI $wasmtime_version, FastAPI reference" \
    "($(grep -E '^(fastapi|uvicorn)==' "$REQUIREMENTS" | tr '\n' ' ' | sed 's/ $//'), one worker, uvloop, httptools)." \
    "Servers keep their state on $STATE_MEDIUM." \
    "Load average (1/5/15 min): $load_start at the start, $load_before when measuring began," \
    "$load_after_chat after /chat, $load_after_health after /health, $load_end at the end." \
    "Client, servers and emulator share the machine (and so does anything else running on it)." \
    "$([ -z "$failed_runs" ] && echo "Every request of every load run got a 200." ||
      echo "**Runs with errors:$failed_runs.**")"
  echo
  echo "| target | goal | measured | |"
  echo "|---|---|---|---|"
  echo "| \`/chat\` p99 at ${CHAT_CONCURRENCY} concurrent, upstream ${LATENCY_MS} ms, vs the upstream alone | ≤ +25 ms, no errors | +${P99_OVER} ms ($(fmt "$ION_CHAT_P99") vs $(fmt "$UP_P99") ms), $(chat ion-host errors) errors | $(verdict "$P99_OVER" 25 le) |"
  echo "| \`/chat\` throughput vs FastAPI + uvicorn, same load | ≥ 4× | ${FASTAPI_RATIO}× ($(fmt "$ION_CHAT_RPS") vs $(fmt "$(chat fastapi throughput_rps)") req/s) | $(verdict "$FASTAPI_RATIO" 4 ge) |"
  echo "| host CPU per \`/chat\` (at ${CHAT_CONCURRENCY} concurrent) | ≤ 150 µs | $(fmt "$ION_CHAT_CPU") µs | $(verdict "$ION_CHAT_CPU" 150 le) |"
  echo "| host CPU per \`/health\` | ≤ 40 µs | $(fmt "${HEALTH_CPU[ion-host]}") µs | $(verdict "${HEALTH_CPU[ion-host]}" 40 le) |"
  echo "| \`/health\` throughput vs \`spin up\` | ≥ 1.5× | ${SPIN_HEALTH_RATIO}× (${HEALTH_RPS[ion-host]} vs ${HEALTH_RPS[spin]} req/s) | $(verdict "$SPIN_HEALTH_RATIO" 1.5 ge) |"
  echo "| \`/health\` throughput vs \`wasmtime serve\` (composed component on both) | ≥ 1.5× | ${WASMTIME_HEALTH_RATIO}× (${HEALTH_RPS[ion-host-composed]} vs ${HEALTH_RPS[wasmtime]} req/s) | $(verdict "$WASMTIME_HEALTH_RATIO" 1.5 ge) |"
  echo "| cold start vs \`wasmtime serve --allow-precompiled\` | ≤ 0.8× | ${COLD_RATIO}× ($(fmt "$COLD_ION") vs $(fmt "$COLD_WASMTIME") ms, medians of $COLD_RUNS) | $(verdict "$COLD_RATIO" 0.8 le) |"
  echo "| idle RSS after startup | ≤ 30 MiB | ${RSS_IDLE[ion-host]} MiB | $(verdict "${RSS_IDLE[ion-host]}" 30 le) |"
  echo "| RSS right after the ${CHAT_CONCURRENCY}-concurrent \`/chat\` burst | ≤ 64 MiB | ${RSS_AFTER[ion-host]} MiB (peak ${RSS_PEAK[ion-host]}) | $(verdict "${RSS_AFTER[ion-host]}" 64 le) |"
  echo "| RSS ${IDLE_SECS} s after the burst | ≤ 30 MiB | ${RSS_LATER[ion-host]} MiB | $(verdict "${RSS_LATER[ion-host]}" 30 le) |"
  echo
  echo "### \`/chat\`, ${CHAT_CONCURRENCY} connections, emulator latency ${LATENCY_MS} ms"
  echo
  echo "Closed loop: each connection sends its next request as soon as the previous answer is in;" \
    "connections start spread over ${RAMP} s, ${WARMUP} s of warm-up are not recorded, then" \
    "${CHAT_SECS} s are measured. The first row sends the component's Gemini request straight to" \
    "the emulator (the upstream alone); \"− direct\" is a peer's percentile minus that row's." \
    "\"server CPU\": CPU time (user + system, all threads) of the server per response." \
    "\`wasmtime serve\` has no Spin variables, so it cannot call the upstream."
  echo
  "$BENCH" table "${chat_files[@]}"
  echo
  echo "### Memory (VmRSS, MiB) around the \`/chat\` run"
  echo
  echo "Sampled every 0.25 s (the server and its child processes): idle 1 s after startup, the" \
    "peak during the run, right after it, and after ${IDLE_SECS} s of idle."
  echo
  echo "| server | idle | peak | right after | +${IDLE_SECS} s |"
  echo "|---|---:|---:|---:|---:|"
  for peer in ion-host spin fastapi; do
    echo "| $peer | ${RSS_IDLE[$peer]} | ${RSS_PEAK[$peer]} | ${RSS_AFTER[$peer]} | ${RSS_LATER[$peer]} |"
  done
  echo
  echo "ion-host held ${FDS_AFTER_CHAT} file descriptors after the run."
  echo
  echo "### \`/health\`, ${HEALTH_CONCURRENCY} connections, ${HEALTH_SECS} s per run"
  echo
  echo "A fresh instance per request on every Wasm host; ion-host logs as shipped (\`RUST_LOG\`" \
    "unset). \`wasmtime serve -S cli\` with its defaults serves the component with a variables" \
    "stub plugged in (\`wac plug\`, bench/stub-variables); ion-host serves that same file too for" \
    "the ratio to it. One server at a time, alternating; $pinning."
  echo
  echo "| server | req/s (median) | server CPU µs/req (median) | ion-host (shipped) is |"
  echo "|---|---:|---:|---:|"
  for peer in "${HEALTH_PEERS[@]}"; do
    echo "| $peer | ${HEALTH_RPS[$peer]} | ${HEALTH_CPU[$peer]} | $(ratio "${HEALTH_RPS[ion-host]}" "${HEALTH_RPS[$peer]}")× |"
  done
  echo
  "$BENCH" table "${health_files[@]}"
  echo
  echo "### Cold start: process start → first 200 from \`/health\`"
  echo
  echo "A free port per run; /health probed every 0.5 ms from spawn on; no CPU pinning; the" \
    "servers' runs interleaved. ion-host with its defaults, as the image runs it."
  echo
  "$BENCH" table "${cold_files[@]}"
} >"$REPORT"
fi # sections 1-3

# A redis-server on a free loopback port, no persistence; sets REDIS_PID and writes
# $RUN/redis-runtime-config.toml, the runtime config that points ion-host at it.
start_redis() {
  command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
  local port
  port=$(free_port)
  start redis redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN"
  REDIS_PID=$PID
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$port" \
    >"$RUN/redis-runtime-config.toml"
}
[ -z "$ONLY" ] || : >"$REPORT"

if [ -z "$ONLY" ] || [ "$ONLY" = state ]; then
# ---------------------------------------------------------------------------------------------
# 4/7 State: what a conversation turn adds, and what a cache hit costs. ion-host as shipped,
# STATE_CONCURRENCY connections, the emulator answering after LATENCY_MS. The baseline is the
# same chat with a ${STATE_TURNS}-turn history sent along (no store involved); in the
# conversation runs each connection continues a conversation of its own, made beforehand with
# ${STATE_TURNS} turns, with a window of ${STATE_TURNS} turns, so both send Gemini the same amount
# of context. Each turn then reads the conversation's record and counter and writes the turn,
# the record and the counter. The cache runs send one first
# question: `Cache-Control: no-cache` (every request goes to the emulator and refreshes the
# entry) against plain requests, all hits.
log "4/7 state: conversation turns (Redis on loopback, embedded store) and cache hits"
STATE_CONCURRENCY=64
STATE_TURNS=8
start emulator-state "$EMULATOR" --listen 127.0.0.1:0 --latency-ms "$LATENCY_MS"
STATE_EMULATOR_PID=$PID
STATE_EMULATOR_URL=$(wait_url emulator-state "$STATE_EMULATOR_PID")
start_redis
# Conversations here take many turns, and send Gemini STATE_TURNS of them.
export SPIN_VARIABLE_CONVERSATION_TURN_LIMIT=10000
export SPIN_VARIABLE_CONVERSATION_WINDOW_TURNS=$STATE_TURNS
HISTORY=$("$PY" -c 'import json, sys
turns = []
for i in range(int(sys.argv[1])):
    turns.append({"role": "user", "content": "Question %d about learning Rust, in a few words?" % i})
    turns.append({"role": "assistant", "content": "An answer of a typical length. " * 8})
print(json.dumps(turns))' "$STATE_TURNS")
state_load() { # state_load NAME LABEL BODY [ARGS...]
  local name=$1 label=$2 body=$3
  shift 3
  "$BENCH" load --url "$URL/chat" --method POST -H 'content-type: application/json' \
    --body "$body" -c "$STATE_CONCURRENCY" -d "$CHAT_SECS" --warmup "$WARMUP" --ramp-up "$RAMP" \
    --upstream-ms "$LATENCY_MS" --server-pid "$SERVING_PID" --label "$label" --format json \
    --json-out "$RUN/$name.json" "$@" >/dev/null
}
# A conversation of STATE_TURNS turns, made through the API; prints its id.
seed_conversation() { # seed_conversation TOPIC
  local id="" i reply
  for i in $(seq "$STATE_TURNS"); do
    if [ -z "$id" ]; then
      reply=$(curl -sf "$URL/chat" -H 'content-type: application/json' \
        -d "{\"message\": \"Seed question $i about topic $1\"}")
      id=$("$PY" -c 'import json, sys; print(json.load(sys.stdin)["conversation_id"])' <<<"$reply")
    else
      curl -sf -o /dev/null "$URL/chat" -H 'content-type: application/json' \
        -d "{\"message\": \"Seed question $i about topic $1\", \"conversation_id\": \"$id\"}"
    fi
  done
  echo "$id"
}
state_files=()
for store in redis embedded; do
  ION_HOST_ARGS=()
  [ "$store" = redis ] && ION_HOST_ARGS=(--runtime-config-file "$RUN/redis-runtime-config.toml")
  launch "state-$store" ion-host "$STATE_EMULATOR_URL" shipped
  pid=$PID
  state_load "state-history-$store" "ion-host ($store store), ${STATE_TURNS}-turn history sent along" \
    "{\"message\": \"What next?\", \"history\": $HISTORY}"
  # A conversation per connection, seeded in parallel.
  seeds=()
  for c in $(seq "$STATE_CONCURRENCY"); do
    seed_conversation "$c" >"$RUN/conversation-$store-$c.id" &
    seeds+=($!)
  done
  wait "${seeds[@]}" # (not a bare `wait`: the servers are this shell's jobs too)
  for c in $(seq "$STATE_CONCURRENCY"); do
    echo "{\"message\": \"What next?\", \"conversation_id\": \"$(cat "$RUN/conversation-$store-$c.id")\"}"
  done >"$RUN/conversations-$store.jsonl"
  "$BENCH" load --url "$URL/chat" --method POST -H 'content-type: application/json' \
    --bodies-file "$RUN/conversations-$store.jsonl" -c "$STATE_CONCURRENCY" -d "$CHAT_SECS" \
    --warmup "$WARMUP" --ramp-up "$RAMP" --upstream-ms "$LATENCY_MS" --server-pid "$SERVING_PID" \
    --label "ion-host ($store store), a conversation per connection, ${STATE_TURNS}-turn window" \
    --baseline "$RUN/state-history-$store.json" --format json \
    --json-out "$RUN/state-conversation-$store.json" >/dev/null
  state_files+=("$RUN/state-history-$store.json" "$RUN/state-conversation-$store.json")
  stop "$pid"
done
ION_HOST_ARGS=(--runtime-config-file "$RUN/redis-runtime-config.toml")
SPIN_VARIABLE_CACHE_TTL_SECONDS=3600 launch state-cache ion-host "$STATE_EMULATOR_URL" shipped
pid=$PID
FIRST='{"message": "How do I start learning Rust?"}'
state_load state-cache-refresh "ion-host (Redis), cache bypassed (Cache-Control: no-cache)" \
  "$FIRST" -H 'cache-control: no-cache'
state_load state-cache-hit "ion-host (Redis), cache hits" "$FIRST"
state_files+=("$RUN/state-cache-refresh.json" "$RUN/state-cache-hit.json")
stop "$pid"
stop "$REDIS_PID"
stop "$STATE_EMULATOR_PID"
ION_HOST_ARGS=()

state() { value "$RUN/state-$1.json" "$2"; }
STATE_REPORT=$OUT/state.md
{
  echo "### State: conversation turns and cache hits"
  echo
  echo "\`scripts/bench.sh$([ -n "$ONLY" ] && echo " --$ONLY-only")$([ "$QUICK" = 1 ] && echo ' --quick')\`," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores: ion-host as shipped, ${STATE_CONCURRENCY}" \
    "connections, emulator latency ${LATENCY_MS} ms, redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)" \
    "on loopback. \"adds\" is the conversation run's percentile minus the same chat with its" \
    "history sent along, on the same ion-host."
  echo
  echo "| measure | goal | Redis on loopback | embedded store |"
  echo "|---|---|---|---|"
  echo "| p50 a conversation turn adds | | $(fmt "$(state conversation-redis overhead_vs_baseline_ms.p50)") ms | $(fmt "$(state conversation-embedded overhead_vs_baseline_ms.p50)") ms |"
  echo "| p99 a conversation turn adds | ≤ 1 ms (Redis) | $(fmt "$(state conversation-redis overhead_vs_baseline_ms.p99)") ms | $(fmt "$(state conversation-embedded overhead_vs_baseline_ms.p99)") ms |"
  echo "| host CPU per turn, conversation vs history | | $(fmt "$(state conversation-redis server_cpu.us_per_response)") vs $(fmt "$(state history-redis server_cpu.us_per_response)") µs | $(fmt "$(state conversation-embedded server_cpu.us_per_response)") vs $(fmt "$(state history-embedded server_cpu.us_per_response)") µs |"
  echo
  echo "| cache | p50 | p99 | host CPU per request | req/s |"
  echo "|---|---:|---:|---:|---:|"
  for run in cache-hit cache-refresh; do
    echo "| $([ "$run" = cache-hit ] && echo "hit" || echo "bypassed (to Vertex AI, entry refreshed)") | $(fmt "$(state "$run" latency_ms.p50)") ms | $(fmt "$(state "$run" latency_ms.p99)") ms | $(fmt "$(state "$run" server_cpu.us_per_response)") µs | $(fmt "$(state "$run" throughput_rps)") |"
  done
  echo
  "$BENCH" table "${state_files[@]}"
} >"$STATE_REPORT"
{ echo; cat "$STATE_REPORT"; } >>"$REPORT"
fi # section 4

if [ -z "$ONLY" ] || [ "$ONLY" = access ]; then
# ---------------------------------------------------------------------------------------------
# 5/7 Access: the host CPU and latency that a key check and a shared-limit check add to /chat.
# ion-host as shipped on Redis (loopback), ACCESS_CONCURRENCY connections, the emulator answering
# after LATENCY_MS, the cache off (every chat reaches the emulator and is charged its tokens).
# Three servers, one run each: no limits (auth_mode none: the access layer reads nothing), a
# shared limit per address (a read of the last minute's counter and an increment of this
# minute's before the chat, an increment of the day's tokens after it), and a key (its record
# read first, then the same). The limits are set too high to refuse anything; every request is
# one caller (one address, one key): increments never contend, so the one busy caller is not a
# worse case than many.
log "5/7 access: a key check and a shared-limit check (Redis on loopback)"
ACCESS_CONCURRENCY=64
ACCESS_ADMIN_TOKEN=bench-admin-token-0123456789abcdef0123456789
start emulator-access "$EMULATOR" --listen 127.0.0.1:0 --latency-ms "$LATENCY_MS"
ACCESS_EMULATOR_PID=$PID
ACCESS_EMULATOR_URL=$(wait_url emulator-access "$ACCESS_EMULATOR_PID")
start_redis
ION_HOST_ARGS=(--runtime-config-file "$RUN/redis-runtime-config.toml")
export SPIN_VARIABLE_CACHE_TTL_SECONDS=0
access_load() { # access_load NAME LABEL [ARGS...]
  local name=$1 label=$2
  shift 2
  "$BENCH" load --url "$URL/chat" --method POST -H 'content-type: application/json' \
    --body '{"message": "How do I start learning Rust?"}' -c "$ACCESS_CONCURRENCY" \
    -d "$CHAT_SECS" --warmup "$WARMUP" --ramp-up "$RAMP" --upstream-ms "$LATENCY_MS" \
    --server-pid "$SERVING_PID" --label "$label" --format json --json-out "$RUN/$name.json" \
    "$@" >/dev/null
}
launch access-open ion-host "$ACCESS_EMULATOR_URL" shipped
access_load access-open "ion-host (Redis), no limits"
stop "$PID"
SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE=1000000 \
  launch access-shared ion-host "$ACCESS_EMULATOR_URL" shipped
access_load access-shared "ion-host (Redis), a shared limit per address" \
  --baseline "$RUN/access-open.json"
stop "$PID"
SPIN_VARIABLE_AUTH_MODE=keys SPIN_VARIABLE_ADMIN_TOKEN=$ACCESS_ADMIN_TOKEN \
  launch access-key ion-host "$ACCESS_EMULATOR_URL" shipped
ACCESS_KEY=$(curl -sf "$URL/admin/keys" -H 'content-type: application/json' \
  -H @<(printf 'authorization: Bearer %s\n' "$ACCESS_ADMIN_TOKEN") \
  -d '{"name": "bench", "requests_per_minute": 1000000, "daily_token_budget": 1000000000000}' |
  "$PY" -c 'import json, sys; print(json.load(sys.stdin)["key"])')
access_load access-key "ion-host (Redis), an API key with its limit and budget" \
  --baseline "$RUN/access-open.json" -H "authorization: Bearer $ACCESS_KEY"
stop "$PID"
unset SPIN_VARIABLE_CACHE_TTL_SECONDS
stop "$REDIS_PID"
stop "$ACCESS_EMULATOR_PID"
ION_HOST_ARGS=()

access() { value "$RUN/access-$1.json" "$2"; }
# Chats whose limits fell back to per instance (a store call failed): their log lines say
# "limits":"instance".
fallbacks() { grep -c '"limits":"instance"' "$RUN/access-$1.out" || true; }
ACCESS_REPORT=$OUT/access.md
{
  echo "### Access: key and shared-limit checks"
  echo
  echo "\`scripts/bench.sh$([ -n "$ONLY" ] && echo " --$ONLY-only")$([ "$QUICK" = 1 ] && echo ' --quick')\`," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores: ion-host as shipped on redis-server" \
    "$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) (loopback), ${ACCESS_CONCURRENCY}" \
    "connections as one caller, emulator latency ${LATENCY_MS} ms, cache off. \"adds\" is against" \
    "the same chats with no limits."
  echo
  echo "| run | host CPU per chat | CPU added | p50 adds | p99 adds | req/s | fell back to per instance |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  open_cpu=$(access open server_cpu.us_per_response)
  echo "| no limits | $(fmt "$open_cpu") µs | | | | $(fmt "$(access open throughput_rps)") | |"
  for run in shared key; do
    run_cpu=$(access "$run" server_cpu.us_per_response)
    echo "| $([ "$run" = shared ] && echo "shared limit per address" || echo "API key + its limit and budget") | $(fmt "$run_cpu") µs | $(fmt "$(awk -v a="$run_cpu" -v b="$open_cpu" 'BEGIN { print a - b }')") µs | $(fmt "$(access "$run" overhead_vs_baseline_ms.p50)") ms | $(fmt "$(access "$run" overhead_vs_baseline_ms.p99)") ms | $(fmt "$(access "$run" throughput_rps)") | $(fallbacks "$run") |"
  done
  echo
  "$BENCH" table "$RUN/access-open.json" "$RUN/access-shared.json" "$RUN/access-key.json"
} >"$ACCESS_REPORT"
{ echo; cat "$ACCESS_REPORT"; } >>"$REPORT"
fi # section 5

if [ -z "$ONLY" ] || [ "$ONLY" = telemetry ]; then
# ---------------------------------------------------------------------------------------------
# 6/7 Telemetry: the host CPU that OpenTelemetry export adds to /chat. ion-host as shipped,
# TELEMETRY_CONCURRENCY connections, the emulator answering after LATENCY_MS, the cache off.
# Three servers, one run each: telemetry off; traces (every request sampled: a server span and a
# client span per attempt) and metrics exported to a real OTLP receiver on loopback; sampling off
# (metrics only, every request still measured). The receiver decodes every export with the
# official protobuf definitions; its CPU is its own, not the server's.
log "6/7 telemetry: OpenTelemetry export's cost per /chat"
TELEMETRY_CONCURRENCY=64
TEST_VENV=${ION_TEST_PYTHON_VENV:-$ROOT/target/python-tests}
if [ "$(cat "$TEST_VENV/pins" 2>/dev/null)" != "$(cat tests/python/requirements.txt)" ]; then
  rm -rf "$TEST_VENV" && python3 -m venv "$TEST_VENV"
  "$TEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    -r tests/python/requirements.txt
  cat tests/python/requirements.txt >"$TEST_VENV/pins"
fi
start emulator-telemetry "$EMULATOR" --listen 127.0.0.1:0 --latency-ms "$LATENCY_MS"
TELEMETRY_EMULATOR_PID=$PID
TELEMETRY_EMULATOR_URL=$(wait_url emulator-telemetry "$TELEMETRY_EMULATOR_PID")
start otlp-receiver "$TEST_VENV/bin/python" tests/python/otlp_receiver.py --port 0
RECEIVER_PID=$PID
for _ in $(seq 100); do
  grep -q "listening on" "$RUN/otlp-receiver.out" 2>/dev/null && break
  sleep 0.1
done
RECEIVER_URL="http://127.0.0.1:$(sed -n 's/^listening on //p' "$RUN/otlp-receiver.out" | head -1)"
[ "$RECEIVER_URL" != "http://127.0.0.1:" ] || die "the OTLP receiver did not start"
export SPIN_VARIABLE_CACHE_TTL_SECONDS=0
telemetry_load() { # telemetry_load NAME LABEL [ARGS...]
  local name=$1 label=$2
  shift 2
  "$BENCH" load --url "$URL/chat" --method POST -H 'content-type: application/json' \
    --body '{"message": "How do I start learning Rust?"}' -c "$TELEMETRY_CONCURRENCY" \
    -d "$CHAT_SECS" --warmup "$WARMUP" --ramp-up "$RAMP" --upstream-ms "$LATENCY_MS" \
    --server-pid "$SERVING_PID" --label "$label" --format json --json-out "$RUN/$name.json" \
    "$@" >/dev/null
}
# Interleaved rounds; each figure is the median of its rounds.
for round in $(seq "$HEALTH_ROUNDS"); do
  launch "telemetry-off-$round" ion-host "$TELEMETRY_EMULATOR_URL" shipped
  telemetry_load "telemetry-off-$round" "ion-host, telemetry off (round $round)"
  stop "$PID"
  OTEL_EXPORTER_OTLP_ENDPOINT=$RECEIVER_URL OTEL_TRACES_SAMPLER=always_on OTEL_METRIC_EXPORT_INTERVAL=5000 \
    launch "telemetry-sampled-$round" ion-host "$TELEMETRY_EMULATOR_URL" shipped
  telemetry_load "telemetry-sampled-$round" "ion-host, traces (100% sampled) and metrics (round $round)" \
    --baseline "$RUN/telemetry-off-$round.json"
  stop "$PID"
  OTEL_EXPORTER_OTLP_ENDPOINT=$RECEIVER_URL OTEL_TRACES_SAMPLER=always_off OTEL_METRIC_EXPORT_INTERVAL=5000 \
    launch "telemetry-unsampled-$round" ion-host "$TELEMETRY_EMULATOR_URL" shipped
  telemetry_load "telemetry-unsampled-$round" "ion-host, sampling off: metrics only (round $round)" \
    --baseline "$RUN/telemetry-off-$round.json"
  stop "$PID"
done
SPANS_RECEIVED=$(curl -sf "$RECEIVER_URL/control/stats" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["trace_requests"])')
unset SPIN_VARIABLE_CACHE_TTL_SECONDS
stop "$RECEIVER_PID"
stop "$TELEMETRY_EMULATOR_PID"

# telemetry RUN FIELD: the median over the rounds.
telemetry() {
  local values=() round
  for round in $(seq "$HEALTH_ROUNDS"); do
    values+=("$(value "$RUN/telemetry-$1-$round.json" "$2")")
  done
  median "${values[@]}"
}
TELEMETRY_REPORT=$OUT/telemetry.md
{
  echo "### Telemetry: OpenTelemetry export's cost"
  echo
  echo "\`scripts/bench.sh$([ -n "$ONLY" ] && echo " --$ONLY-only")$([ "$QUICK" = 1 ] && echo ' --quick')\`," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores: ion-host as shipped, ${TELEMETRY_CONCURRENCY}" \
    "connections, emulator latency ${LATENCY_MS} ms, cache off; OTLP http/protobuf to a receiver on" \
    "loopback (${SPANS_RECEIVED} trace exports received). \"adds\" is against telemetry off; the goal" \
    "is at most 10% more host CPU per chat at 100% sampling. Medians of ${HEALTH_ROUNDS} interleaved round(s)."
  echo
  echo "| run | host CPU per chat | CPU added | p50 adds | p99 adds | req/s |"
  echo "|---|---:|---:|---:|---:|---:|"
  off_cpu=$(telemetry off server_cpu.us_per_response)
  echo "| telemetry off | $(fmt "$off_cpu") µs | | | | $(fmt "$(telemetry off throughput_rps)") |"
  for run in sampled unsampled; do
    run_cpu=$(telemetry "$run" server_cpu.us_per_response)
    added=$(awk -v a="$run_cpu" -v b="$off_cpu" 'BEGIN { printf "%.2f µs (%.1f%%)", a - b, (b > 0) ? 100 * (a - b) / b : 0 }')
    echo "| $([ "$run" = sampled ] && echo "traces at 100% sampling + metrics" || echo "sampling off (metrics only)") | $(fmt "$run_cpu") µs | $added | $(fmt "$(telemetry "$run" overhead_vs_baseline_ms.p50)") ms | $(fmt "$(telemetry "$run" overhead_vs_baseline_ms.p99)") ms | $(fmt "$(telemetry "$run" throughput_rps)") |"
  done
  echo
  telemetry_files=()
  for round in $(seq "$HEALTH_ROUNDS"); do
    telemetry_files+=("$RUN/telemetry-off-$round.json" "$RUN/telemetry-sampled-$round.json" "$RUN/telemetry-unsampled-$round.json")
  done
  "$BENCH" table "${telemetry_files[@]}"
} >"$TELEMETRY_REPORT"
{ echo; cat "$TELEMETRY_REPORT"; } >>"$REPORT"
fi # section 6

if [ -z "$ONLY" ] || [ "$ONLY" = rate ]; then
# ---------------------------------------------------------------------------------------------
# 7/7 Fixed arrival rate: open loop, as LLM gateways publish their overhead. oha sends RATE
# requests per second whatever the server does (-q), and with --latency-correction counts a
# request from when it was due, not from when a busy connection got to send it (no coordinated
# omission). /chat: the emulator alone (the upstream), then ion-host (reusing instances, its
# default, and with a fresh instance per request), `spin up` and the FastAPI reference in front
# of it; overhead = the peer's percentile minus the upstream's at the same
# rate. /health: ion-host, `wasmtime serve` (one instance per request, its WASIp2 default, and
# reusing an instance for up to 128 requests) and `spin up`. Server CPU per request from
# /proc/PID/stat (user + system) around each run.
RATES=(500 1000 2000 4000)
# Every /chat sends the same question: all through to the upstream, none from the cache (the
# sections before may have turned it back on).
export SPIN_VARIABLE_CACHE_TTL_SECONDS=0
log "7/7 fixed rate: ${RATES[*]} requests/s, ${RATE_SECS} s each, oha --latency-correction"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# rate_run NAME RATE URL [OHA ARGS...]: writes $RUN/NAME.json (oha's) and NAME.cpu (µs/request,
# of SERVING_PID when set).
rate_run() {
  local name=$1 rate=$2 url=$3 before after conns
  shift 3
  # Enough connections for the rate at the upstream's latency, twice over, as open loop needs.
  conns=$(awk -v r="$rate" -v l="$LATENCY_MS" 'BEGIN { c = int(r * (l + 50) / 1000 * 2); print (c < 64) ? 64 : c }')
  # A warm-up at the same rate (connections opened, instances and pools warm), not measured.
  "$OHA" -z "${WARMUP}s" -q "$rate" -c "$conns" --no-tui --output-format quiet -w "$@" "$url" \
    >/dev/null 2>&1 || true
  before=$([ -n "${SERVING_PID:-}" ] && cpu_ticks "$SERVING_PID" || echo 0)
  # -w: requests still in flight at the end are waited for, not counted as failures.
  "$OHA" -z "${RATE_SECS}s" -q "$rate" --latency-correction -c "$conns" --no-tui -w \
    --output-format json -o "$RUN/$name.json" "$@" "$url" >/dev/null 2>"$RUN/$name.oha.err" ||
    log "warning: oha failed for $name: $(tail -1 "$RUN/$name.oha.err")"
  after=$([ -n "${SERVING_PID:-}" ] && cpu_ticks "$SERVING_PID" || echo 0)
  "$PY" - "$RUN/$name.json" "$before" "$after" "$(getconf CLK_TCK)" >"$RUN/$name.cpu" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
count = sum(report["statusCodeDistribution"].values()) + sum(report["errorDistribution"].values())
ticks = float(sys.argv[3]) - float(sys.argv[2])
print(f"{ticks / float(sys.argv[4]) * 1e6 / count:.1f}" if count and ticks > 0 else "")
PYEOF
}
# rate_value FILE FIELD: p50, p99 (ms), rps, errors (non-200 responses and failed requests).
rate_value() {
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
field = sys.argv[2]
if field in ("p50", "p99"):
    print(f'{report["metrics"]["latency_ms"][field]:.2f}')
elif field == "rps":
    print(f'{report["metrics"]["requests_per_sec"]:.0f}')
else:
    codes = report["statusCodeDistribution"]
    print(sum(v for k, v in codes.items() if k != "200") + sum(report["errorDistribution"].values()))
PYEOF
}
start emulator-rate "$EMULATOR" --listen 127.0.0.1:0 --latency-ms "$LATENCY_MS"
RATE_EMULATOR_PID=$PID
RATE_EMULATOR_URL=$(wait_url emulator-rate "$RATE_EMULATOR_PID")
CHAT_PEERS=(ion-host ion-host-disk ion-host-fresh spin fastapi)
for rate in "${RATES[@]}"; do
  SERVING_PID=$RATE_EMULATOR_PID
  rate_run "rate-chat-upstream-$rate" "$rate" "$RATE_EMULATOR_URL$VERTEX_PATH" -m POST \
    -H 'content-type: application/json' -H 'authorization: Bearer bench' \
    -D bench/gemini-request.json
  for peer in "${CHAT_PEERS[@]}"; do
    launch "rate-chat-$peer-$rate" "$peer" "$RATE_EMULATOR_URL" shipped
    rate_run "rate-chat-$peer-$rate" "$rate" "$URL/chat" -m POST \
      -H 'content-type: application/json' -d "$MESSAGE"
    stop "$PID"
  done
done
stop "$RATE_EMULATOR_PID"
HEALTH_RATE_PEERS=(ion-host wasmtime wasmtime-reuse spin)
for rate in "${RATES[@]}"; do
  for peer in "${HEALTH_RATE_PEERS[@]}"; do
    case "$peer" in
      wasmtime-reuse)
        start "rate-health-$peer-$rate" "$WASMTIME" serve -S cli --max-instance-reuse-count 128 \
          --addr "127.0.0.1:$(free_port)" "$COMPOSED"
        URL=$(wait_url "rate-health-$peer-$rate" "$PID")
        SERVING_PID=$PID ;;
      wasmtime) launch "rate-health-$peer-$rate" wasmtime http://127.0.0.1:9 composed ;;
      *) launch "rate-health-$peer-$rate" "$peer" http://127.0.0.1:9 shipped ;;
    esac
    rate_run "rate-health-$peer-$rate" "$rate" "$URL/health"
    stop "$PID"
  done
done
SERVING_PID=

RATE_REPORT=$OUT/rate.md
over() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", a - b }'; }
rate_cell() { # rate_cell KIND PEER RATE [UPSTREAM]: "p50 / p99 ms" (overhead when UPSTREAM), errors, CPU
  local f="$RUN/rate-$1-$2-$3.json" up=${4:-}
  [ -f "$f" ] || { echo "– | – | –"; return; }
  local p50 p99 errors cpu
  p50=$(rate_value "$f" p50) p99=$(rate_value "$f" p99) errors=$(rate_value "$f" errors)
  cpu=$(cat "$RUN/rate-$1-$2-$3.cpu")
  if [ -n "$up" ]; then
    echo "$(over "$p50" "$(rate_value "$up" p50)") / $(over "$p99" "$(rate_value "$up" p99)") ms | $errors | ${cpu:-–} µs"
  else
    echo "$p50 / $p99 ms | $errors | ${cpu:-–} µs"
  fi
}
{
  echo "### Fixed arrival rate (open loop)"
  echo
  echo "\`scripts/bench.sh$([ -n "$ONLY" ] && echo " --$ONLY-only")$([ "$QUICK" = 1 ] && echo ' --quick')\`," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by oha, the servers and the emulator:" \
    "oha $("$OHA" --version | awk '{ print $2 }') at a fixed rate with --latency-correction," \
    "${RATE_SECS} s per run, the emulator answering /chat in ${LATENCY_MS} ms. /chat cells are" \
    "overhead over the upstream alone at the same rate (p50 / p99), errors, and server CPU per" \
    "request. Servers keep their state on $STATE_MEDIUM; \"state on disk\" is ion-host with its" \
    "store on this machine's disk ($(df --output=fstype "$RUN" | tail -1)), where the append to the store's log each answer waits for ends in an fdatasync." \
    "TensorZero publishes a p99 overhead of 0.94 ms at 10,000 requests/s on 4 vCPUs (mock" \
    "provider)."
  echo
  echo "| /chat rate | upstream alone p50 / p99 | ion-host overhead | errors | CPU | ion-host, state on disk | errors | CPU | ion-host, no instance reuse | errors | CPU | spin up overhead | errors | CPU | FastAPI overhead | errors | CPU |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for rate in "${RATES[@]}"; do
    up="$RUN/rate-chat-upstream-$rate.json"
    echo "| $rate/s | $(rate_value "$up" p50) / $(rate_value "$up" p99) ms | $(rate_cell chat ion-host "$rate" "$up") | $(rate_cell chat ion-host-disk "$rate" "$up") | $(rate_cell chat ion-host-fresh "$rate" "$up") | $(rate_cell chat spin "$rate" "$up") | $(rate_cell chat fastapi "$rate" "$up") |"
  done
  echo
  echo "| /health rate | ion-host p50 / p99 | errors | CPU | wasmtime serve | errors | CPU | wasmtime serve, reuse 128 | errors | CPU | spin up | errors | CPU |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for rate in "${RATES[@]}"; do
    echo "| $rate/s | $(rate_cell health ion-host "$rate") | $(rate_cell health wasmtime "$rate") | $(rate_cell health wasmtime-reuse "$rate") | $(rate_cell health spin "$rate") |"
  done
} >"$RATE_REPORT"
{ echo; cat "$RATE_REPORT"; } >>"$REPORT"
fi # section 7
cat "$REPORT"
log "report written to ${REPORT#"$ROOT"/}; raw results, RSS samples and logs in ${RUN#"$ROOT"/}/"
