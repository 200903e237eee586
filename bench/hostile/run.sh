#!/usr/bin/env bash
# Attacks from hostile clients against ion-host or `spin up`, on 127.0.0.1 only, each bounded in
# time: the figures behind docs/architecture.md's notes on hostile clients, and the attacks
# tests/hostile.rs makes.
#
#   bench/hostile/run.sh SERVER PORT ATTACK [N] [-- ion-host flags...]
#
# SERVER: a path to an ion-host binary (e.g. target/x86_64-unknown-linux-musl/dist/ion-host), or
#         `spin` for `spin up` ($SPIN_BIN, PATH or ../shared/bin/spin).
# ATTACK: streams | idle-uploads | non-readers (the server gets 256 file descriptors) | pause
# PORT and PORT+1 (the Vertex AI emulator) must be free. Build first: ./scripts/test.sh, or the
# component (wasm32-wasip2, release) and `cargo build --release -p vertex-emulator`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
server=${1:?usage: bench/hostile/run.sh SERVER PORT ATTACK [N] [-- ion-host flags]}
port=${2:?port}
attack=${3:?attack}
n=${4:-0}
shift $(($# < 4 ? $# : 4))
[ "${1:-}" = -- ] && shift
target=${CARGO_TARGET_DIR:-$root/target}
emulator_port=$((port + 1))
work=$(mktemp -d)
trap 'kill -- -"${server_pid:-0}" 2>/dev/null || true; kill "${emulator_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

sed "s|^source = .*|source = \"$target/wasm32-wasip2/release/ion_mentoring.wasm\"|" spin.toml >"$work/spin.toml"
"$target/release/vertex-emulator" --listen "127.0.0.1:$emulator_port" >"$work/emulator.log" 2>&1 &
emulator_pid=$!
export SPIN_VARIABLE_PROJECT_ID=p SPIN_VARIABLE_ACCESS_TOKEN=t SPIN_VARIABLE_REQUEST_TIMEOUT_MS=20000
export SPIN_VARIABLE_VERTEX_ENDPOINT="http://127.0.0.1:$emulator_port"
if [ "$server" = spin ]; then
  spin=${SPIN_BIN:-$(command -v spin || echo "$root/../shared/bin/spin")}
  setsid "$spin" up --from "$work/spin.toml" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
else
  setsid "$server" --manifest "$work/spin.toml" --listen "127.0.0.1:$port" "$@" >"$work/server.log" 2>&1 &
fi
server_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.2; done
# The process that listens (spin up serves from a child).
listener=$(ss -ltnpH "sport = :$port" | grep -o "pid=[0-9]*" | head -n 1 | cut -d= -f2)
rss() { ps -o rss= -p "$listener" | tr -d ' '; }
rss_before=$(rss)
case "$attack" in
  pause) timeout 60 python3 bench/hostile/pause.py "$port" "$emulator_port" ;;
  non-readers)
    prlimit --pid "$listener" --nofile=256:256
    SRV_PID=$listener timeout 120 python3 bench/hostile/attacks.py "http://127.0.0.1:$port" "$attack" "$n" ${ATTACK_HOLD:+"$ATTACK_HOLD"}
    ;;
  *) timeout 120 python3 bench/hostile/attacks.py "http://127.0.0.1:$port" "$attack" "$n" ;;
esac
echo "rss_kib before=$rss_before after=$(rss)"
