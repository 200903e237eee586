#!/usr/bin/env bash
# Checks a container image: its size (under IMAGE_BUDGET_BYTES, default 30 MB) and user
# (65532:65532), then runs it the way Cloud Run runs it, against the Vertex AI emulator: /health,
# /chat, and a clean exit (code 0) on SIGTERM. CI runs it on the image it builds; the deploy
# workflow runs it on the image it pushed, by digest, before deploying that digest.
#
#   cargo build --release --locked -p vertex-emulator
#   scripts/smoke-image.sh IMAGE
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:?usage: scripts/smoke-image.sh IMAGE}
budget=${IMAGE_BUDGET_BYTES:-30000000}

docker history "$image"
size=$(docker image inspect --format '{{.Size}}' "$image")
user=$(docker image inspect --format '{{.Config.User}}' "$image")
echo "image: $size bytes (budget $budget), user $user"
if [ "$size" -gt "$budget" ]; then
  echo "::error::the image is $size bytes, over the $budget-byte budget"
  exit 1
fi
if [ "$user" != "65532:65532" ]; then
  echo "::error::the image runs as '$user', expected 65532:65532"
  exit 1
fi

./target/release/vertex-emulator --listen 127.0.0.1:9000 &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true; docker rm -f ion >/dev/null 2>&1 || true' EXIT

# The image's own environment (SPIN_VARIABLE_CREDENTIALS=runtime) with a static token, so that
# no Google credentials are needed.
docker run -d --name ion --network host \
  -e PORT=8080 \
  -e SPIN_VARIABLE_PROJECT_ID=ci-project \
  -e SPIN_VARIABLE_VERTEX_ENDPOINT=http://127.0.0.1:9000 \
  -e SPIN_VARIABLE_ACCESS_TOKEN=ci-token \
  "$image"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/health && break
  sleep 0.1
done
curl -fsS http://127.0.0.1:8080/health
echo
reply=$(curl -fsS http://127.0.0.1:8080/chat \
  -H 'content-type: application/json' -d '{"message": "How do I start learning Rust?"}')
echo "$reply"
jq -e '.persona_used | type == "string" and length > 0' <<<"$reply"
docker stop --time 10 ion
code=$(docker inspect --format '{{.State.ExitCode}}' ion)
docker logs ion
if [ "$code" != 0 ]; then
  echo "::error::the container exited $code after SIGTERM, expected 0"
  exit 1
fi
