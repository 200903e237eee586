#!/usr/bin/env bash
# Runs the service on http://127.0.0.1:${PORT:-8080} with no Google account: /chat is answered by
# the local Vertex AI emulator (tests/emulator), which speaks Vertex's REST protocol but returns
# canned, clearly labelled text instead of Gemini's answers.
#
#   ./scripts/run-local.sh           # under ion-host (the production host)
#   ./scripts/run-local.sh --spin    # under `spin up`
#   ./scripts/run-local.sh --traces  # under ion-host, printing each OpenTelemetry span it
#                                    # records as a log line (`"message":"span …"`)
#
# Ctrl-C stops the service and the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=ion-host
case "${1:-}" in
  --spin) runtime=spin ;;
  --traces)
    # The spans go to the log instead of an OTLP endpoint, sent every half second.
    export OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=none OTEL_BSP_SCHEDULE_DELAY=500
    ;;
  "") ;;
  *) echo "usage: $0 [--spin | --traces]" >&2; exit 2 ;;
esac
port="${PORT:-8080}"
target="${CARGO_TARGET_DIR:-target}"

rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
echo "building the component, ion-host and the emulator (the first build takes a few minutes)..." >&2
cargo build --release --target wasm32-wasip2 -p ion-mentoring
cargo build --release -p ion-host -p vertex-emulator

# The emulator picks a free port and reports it on its first line of output.
emulator_log="$(mktemp)"
"$target/release/vertex-emulator" --listen 127.0.0.1:0 >"$emulator_log" &
emulator_pid=$!
trap 'kill "$emulator_pid" 2>/dev/null || true; rm -f "$emulator_log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$emulator_log" && break
  sleep 0.1
done
emulator_url="$(sed -n 's/.*listening on //p' "$emulator_log" | head -n 1)"
[ -n "$emulator_url" ] || { echo "the emulator did not start" >&2; exit 1; }

export SPIN_VARIABLE_PROJECT_ID=local-emulator
export SPIN_VARIABLE_ACCESS_TOKEN=local-emulator-token
export SPIN_VARIABLE_VERTEX_ENDPOINT="$emulator_url"

cat >&2 <<BANNER

  Ion Mentoring API on http://127.0.0.1:$port  ($runtime)
  /chat is answered by the LOCAL VERTEX AI EMULATOR at $emulator_url,
  not by Gemini: replies start with "[Vertex AI emulator ...]".

  try:  curl -s http://127.0.0.1:$port/chat -H 'content-type: application/json' \\
          -d '{"message": "어떻게 해야 하나요?"}'
        curl -sN http://127.0.0.1:$port/chat -H 'content-type: application/json' \\
          -d '{"message": "How do I start? [[emulator:chunk-delay=300]]", "stream": true}'

BANNER

if [ "$runtime" = spin ]; then
  spin="${SPIN_BIN:-$(command -v spin || echo ../shared/bin/spin)}"
  manifest=spin.toml
  if [ "$target" != target ]; then
    # spin.toml names target/…; with another CARGO_TARGET_DIR, point a copy at the real file.
    manifest="$(mktemp -d)/spin.toml"
    wasm="$(cd "$target/wasm32-wasip2/release" && pwd)/ion_mentoring.wasm"
    sed "s|^source = .*|source = \"$wasm\"|" spin.toml >"$manifest"
  fi
  "$spin" up --listen "127.0.0.1:$port" --from "$manifest"
else
  "$target/release/ion-host" --listen "127.0.0.1:$port" \
    --component "$target/wasm32-wasip2/release/ion_mentoring.wasm"
fi
