#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need
# (the wasm32-wasip2 target), builds the plugins and the server binary that the
# black-box tests start, then runs the host, SDK, plugin and black-box tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-plugins.sh
cargo build -p otp-server --bins

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
cargo test --workspace --doc
(cd plugins && cargo test --quiet)
