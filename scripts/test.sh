#!/usr/bin/env bash
# The whole test suite: formatting, lints, the component and host builds, unit tests, and the
# end-to-end tests that run the component under ion-host and under `spin up` (Spin is found via
# $SPIN_BIN, then PATH, then ../shared/bin/spin; in CI it is required).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain (rust-toolchain.toml: stable + wasm32-wasip2)"
rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

step "format"
cargo fmt --all -- --check

step "build: component (wasm32-wasip2) and ion-host"
cargo build --release --locked --target wasm32-wasip2 -p ion-mentoring
cargo build --release --locked -p ion-host -p vertex-emulator

step "lint"
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo clippy --release --locked --target wasm32-wasip2 -p ion-mentoring -- -D warnings

step "tests: unit and end-to-end"
cargo test --release --locked --workspace
