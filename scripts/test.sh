#!/usr/bin/env bash
# Install what the test suite needs and run it: the local stack (scripts/stack.sh), formatting,
# lints, unit, scenario, CLI and running-agent tests, the adapters' integration tests against the
# stack, the Rego policy tests, and every benchmark once in test mode. The stack is brought down
# at the end unless it was already running.
# The README's second command and .ci/run both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "missing: $1. $2" >&2; exit 1; }; }
need cargo "Install a Rust toolchain (rustup, stable >= 1.85) and run this script again."
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "local stack: Prometheus, Alertmanager, tansu, Kubernetes emulator (scripts/stack.sh up)"
if scripts/stack.sh status >/dev/null 2>&1; then
  echo "already running; left running afterwards"
else
  trap 'scripts/stack.sh down >/dev/null 2>&1 || true' EXIT
  scripts/stack.sh up
fi

step "stack smoke checks (tests/stack/smoke.py)"
.stack/venv/bin/python tests/stack/smoke.py | tail -1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (unit, scenarios, CLI, running agent, adapters on the stack, end to end; benches once each)"
cargo test --locked --all-targets

step "autopilot policy test policies"
cargo run --locked --quiet -- policy test policies

step "autopilot check-config on examples/*.yaml"
cargo run --locked --quiet -- check-config --config examples/autopilot.yaml > /dev/null
cargo run --locked --quiet -- check-config --config examples/autopilot-real.yaml > /dev/null

echo
echo "all checks passed in $((SECONDS - started))s"
