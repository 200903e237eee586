#!/usr/bin/env bash
# Builds the container image, the one way it is built: by the test suite, CI and the deploy
# workflow alike.
#
#   ./scripts/build-image.sh              # build what the image holds, then the image
#   ./scripts/build-image.sh --prebuilt   # the image from artifacts already built (no cargo)
#
# 1. The component (wasm32-wasip2) and ion-host (static x86_64-unknown-linux-musl), both with
#    the `dist` profile; the component is precompiled by that ion-host into a .cwasm.
# 2. The build context target/image/context: exactly the three files the image holds.
# 3. `buildah bud` on Containerfile (FROM scratch), with every timestamp set to 0, so the same
#    inputs give the same layer bytes. Tagged localhost/ion-mentoring:latest (IMAGE to change).
# 4. target/image/ion-mentoring.oci.tar (the image as an OCI archive), target/image/image-id,
#    and target/image/size (bytes, uncompressed, as `podman images` counts them).
#
# What it needs and installs when missing (as root, with apt-get): buildah, podman, runc and
# slirp4netns (the tests run the image with podman), and musl-tools (ring compiles C for musl).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/containers.sh
. scripts/containers.sh

build=1
case "${1:-}" in
  --prebuilt) build=0 ;;
  "") ;;
  *) echo "usage: $0 [--prebuilt]" >&2; exit 2 ;;
esac

image=${IMAGE:-localhost/ion-mentoring:latest}
target=${CARGO_TARGET_DIR:-$root/target}
musl=x86_64-unknown-linux-musl
host_bin=$target/$musl/dist/ion-host
component=$target/wasm32-wasip2/dist/ion_mentoring.wasm
out=$root/target/image
context=$out/context

step() { printf '\n==> %s\n' "$*"; }

install_container_tools
if [ "$build" = 1 ]; then
  step "build: the component and ion-host, dist profile"
  rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
  rustup target list --installed | grep -qx "$musl" || rustup target add "$musl"
  cargo build --locked --profile dist --target wasm32-wasip2 -p ion-mentoring
  CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --locked --profile dist --target "$musl" -p ion-host
fi

for artifact in "$host_bin" "$component"; do
  if [ ! -f "$artifact" ]; then
    echo "error: ${artifact#"$root"/} is missing: the image holds it." >&2
    echo "Build it and the image with ./scripts/build-image.sh (without --prebuilt)." >&2
    exit 1
  fi
done

step "context: ion-host, the precompiled component, spin.toml (${context#"$root"/})"
rm -rf "$context"
mkdir -p "$context"
cp "$host_bin" "$context/ion-host"
"$context/ion-host" compile "$component" -o "$context/ion_mentoring.cwasm"
cp spin.toml "$context/spin.toml"

step "image: buildah bud -f Containerfile → $image"
# --timestamp 0: file and image dates are the epoch, so a rebuild of the same inputs has the
# same digest. --layers=false: scratch plus one COPY, nothing to cache.
buildah bud --quiet --timestamp 0 --layers=false -f Containerfile -t "$image" "$context" >/dev/null
image_id=$(buildah images --no-trunc --format '{{.ID}}' "$image" | head -n 1)
size=$(podman image inspect --format '{{.Size}}' "$image")
rm -f "$out/ion-mentoring.oci.tar"
buildah push --quiet "$image" "oci-archive:$out/ion-mentoring.oci.tar:${image#localhost/}" >/dev/null
printf '%s\n' "$image_id" >"$out/image-id"
printf '%s\n' "$size" >"$out/size"
echo "$image: id $image_id, $size bytes; OCI archive: target/image/ion-mentoring.oci.tar"
