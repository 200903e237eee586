#!/usr/bin/env bash
# The container image, measured: its size, its cold start under podman (`podman run` → first
# 200 on /health) beside a trivial image's (busybox httpd, FROM scratch: podman's own cost), and
# ion-host's RSS inside the 512 MiB limit at rest, right after a 1000-request /chat burst and
# 10 s later. The containers run as tests/container/podman.rs runs them (read-only, uid 65532,
# 512 MiB, 1 CPU, PORT=9090, slirp4netns); /chat is answered by the Vertex AI emulator on loopback.
# Prints a markdown report, also written to target/bench-image/results.md.
#
#   scripts/bench-image.sh              # build the image and the tools, then measure (~2 min)
#   scripts/bench-image.sh --no-build   # measure localhost/ion-mentoring:latest as it is
#   scripts/bench-image.sh --runs N     # cold starts per image (default 21)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/containers.sh
. scripts/containers.sh

build=1
runs=21
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --runs) runs=${2:?--runs needs a value}; shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-image.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

image=localhost/ion-mentoring:latest
baseline=localhost/ion-bench-busybox-httpd:latest
target=${CARGO_TARGET_DIR:-$root/target}
out=$root/target/bench-image
bench=$target/release/ion-bench
emulator_bin=$target/release/vertex-emulator
log() { printf '%s\n' "$*" >&2; }

if [ "$build" = 1 ]; then
  ./scripts/build-image.sh
  cargo build --locked --release -p ion-bench -p vertex-emulator
fi
for f in "$bench" "$emulator_bin"; do
  [ -x "$f" ] || { log "error: $f is missing: run without --no-build"; exit 1; }
done
podman image exists "$image" ||
  { log "error: no image $image: run ./scripts/build-image.sh (or this script without --no-build)"; exit 1; }
rm -rf "$out" && mkdir -p "$out/busybox/www"

# The trivial image: busybox's static binary (Debian's busybox-static) serving one file.
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  log "installing busybox-static (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
cp /bin/busybox "$out/busybox/busybox"
echo ok >"$out/busybox/www/health"
cat >"$out/busybox/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY busybox /bin/busybox
COPY www /www
USER 65532:65532
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "9090", "-h", "/www"]
CONTAINERFILE
buildah bud --quiet --timestamp 0 --layers=false -t "$baseline" "$out/busybox" >/dev/null

# What both containers share: Cloud Run's shape.
run_flags=(--rm --read-only --user 65532:65532 --memory 512m --memory-swap 512m --cpus 1
  --network slirp4netns:allow_host_loopback=true --env PORT=9090)
# Static credentials: no metadata server to find here, and Cloud Run's answers at once.
ion_env=(--env SPIN_VARIABLE_ACCESS_TOKEN=bench-token --env SPIN_VARIABLE_PROJECT_ID=bench-project)

log "cold start: $runs runs per image, interleaved"
"$bench" cold-start --runs "$runs" --path /health --format json \
  --after-each "podman rm --force --time 0 ion-cold-{port}" \
  --label "ion-mentoring image" --label "busybox httpd image" \
  --json-out "$out/cold-ion.json" --json-out "$out/cold-busybox.json" -- \
  podman run --name 'ion-cold-{port}' "${run_flags[@]}" "${ion_env[@]}" \
  --publish '127.0.0.1:{port}:9090' "$image" :: \
  podman run --name 'ion-cold-{port}' "${run_flags[@]}" \
  --publish '127.0.0.1:{port}:9090' "$baseline" >/dev/null

log "memory: idle, after 1000 /chat from 100 connections, 10 s later"
"$emulator_bin" --listen 127.0.0.1:0 >"$out/emulator.log" 2>&1 &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true; podman rm --force --time 0 ion-bench-mem >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$out/emulator.log" && break; sleep 0.05; done
emulator_port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$out/emulator.log" | head -n 1)
[ -n "$emulator_port" ] || { log "error: the emulator did not start"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
podman run --detach --name ion-bench-mem "${run_flags[@]}" "${ion_env[@]}" \
  --env "SPIN_VARIABLE_VERTEX_ENDPOINT=http://10.0.2.2:$emulator_port" \
  --publish "127.0.0.1:$port:9090" "$image" >/dev/null
for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.05; done
pid=$(podman inspect --format '{{.State.Pid}}' ion-bench-mem)
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
sleep 2
idle=$(rss_mib)
"$bench" load --url "http://127.0.0.1:$port/chat" --method POST \
  -H 'content-type: application/json' --body '{"message": "How do I start learning Rust?"}' \
  -c 100 -n 1000 --warmup 0 --format json >"$out/burst.json"
after=$(rss_mib)
sleep 10
later=$(rss_mib)
oom=$(podman inspect --format '{{.State.OOMKilled}}' ion-bench-mem)
burst_errors=$("$bench" value "$out/burst.json" errors)

ion_size=$(podman image inspect --format '{{.Size}}' "$image")
busybox_size=$(podman image inspect --format '{{.Size}}' "$baseline")
# One decimal, in ms.
ms() { printf '%.1f' "$("$bench" value "$1" "$2")"; }
p50() { ms "$1" median_ms; }
ion_p50=$(p50 "$out/cold-ion.json")
busybox_p50=$(p50 "$out/cold-busybox.json")
added=$(python3 -c "print(f'{$ion_p50 - $busybox_p50:+.1f}')")
{
  echo "### The container image ($(date -u '+%Y-%m-%d %H:%M UTC'), podman $(podman --version | awk '{print $3}'), runc, slirp4netns)"
  echo
  echo "| | ion-mentoring | busybox httpd (FROM scratch) |"
  echo "|---|---|---|"
  echo "| image size | $(python3 -c "print(f'{$ion_size/1e6:.1f}')") MB | $(python3 -c "print(f'{$busybox_size/1e6:.1f}')") MB |"
  echo "| cold start median (podman run → first 200 on /health, $runs runs) | $ion_p50 ms | $busybox_p50 ms |"
  echo "| cold start min / p90 | $(ms "$out/cold-ion.json" min_ms) / $(ms "$out/cold-ion.json" p90_ms) ms | $(ms "$out/cold-busybox.json" min_ms) / $(ms "$out/cold-busybox.json" p90_ms) ms |"
  echo
  echo "The service adds $added ms (median) to podman's own start."
  echo "ion-host RSS in the container (limit 512 MiB): $idle MiB idle, $after MiB right after 1000 /chat from 100 connections ($burst_errors errors), $later MiB 10 s later; OOM-killed: $oom."
} | tee "$out/results.md"
