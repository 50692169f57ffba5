#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a Debian machine with only the Rust toolchain.
#
# Provisions what the tests need when it is missing (a Python venv with the official
# `openai` SDK, grpcio, Playwright and pytest; Debian's redis-server and chromium; the
# Steady OpenAPI mock server from npm), then runs:
# format and lint checks, the Rust tests (unit tests, and integration tests over real
# sockets), and the end-to-end tests (official OpenAI Python SDK, a grpcio client
# generated from the proto, the gateway against a validating mock of OpenAI's spec, and
# the status page in Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# --- provisioning --------------------------------------------------------------------
venv="$root/.venv"
reqs="$root/tests/e2e/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "provisioning the Python venv (.venv)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
  echo "$want" > "$stamp"
fi

# Debian's redis-server: the tests of shared state each start one of their own.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  step "provisioning redis-server (Debian package)"
  as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq redis-server >/dev/null
fi

# Debian's chromium: the status page's browser test drives it through Playwright (whose
# own browser download is not used).
if [ ! -x /usr/bin/chromium ]; then
  step "provisioning chromium (Debian package)"
  as_root=""; [ "$(id -u)" = 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null
fi

tools="$root/.tools"
steady_version=$(cat "$root/tests/e2e/steady-version")
if [ ! -x "$tools/node_modules/.bin/steady" ] || \
   [ "$(cat "$tools/.steady-version" 2>/dev/null)" != "$steady_version" ]; then
  step "provisioning Steady $steady_version (.tools)"
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "@stdy/cli@$steady_version"
  echo "$steady_version" > "$tools/.steady-version"
fi

# --- deployment files ------------------------------------------------------------------
# Before the Rust build, so a bad Dockerfile or manifest fails in seconds. The image itself
# is not built here (no container engine); tests/e2e/test_deploy.py checks the rest.
step "hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile

step "kubernetes-validate deploy/kubernetes (Kubernetes 1.30.0 and 1.37.0, strict)"
for k8s in 1.30.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$k8s" deploy/kubernetes/*.yaml
done

# --- Rust ----------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "Rust tests (unit and integration)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-tests=fail
else
  cargo test --locked
fi

# --- end to end ----------------------------------------------------------------------
step "end-to-end tests (OpenAI Python SDK, grpcio, Steady, Chromium)"
# The integration tests made nextest build the binary; `cargo build` here would rebuild
# tokio and everything above it without the dev-dependency features.
if [ ! -x "$root/target/debug/switchyard" ]; then
  cargo build --locked --bin switchyard
fi
SWITCHYARD_BIN="$root/target/debug/switchyard" \
STEADY_BIN="$tools/node_modules/.bin/steady" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/e2e
