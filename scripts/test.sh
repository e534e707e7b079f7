#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need
# (the wasm32-wasip2 target, redis-server, the JavaScript/Python/C plugin toolchains),
# builds the plugins and the server binary
# that the black-box tests start, then runs the host, SDK, plugin and black-box tests —
# the black-box protocol and limits suites twice: on the in-memory store and on Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "test.sh: installing redis-server (Debian package)" >&2
    sudo_if_needed=()
    [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
    "${sudo_if_needed[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq redis-server >/dev/null
    # The package starts a system-wide instance on port 6379; the tests start their own.
fi

scripts/build-plugins.sh
scripts/build-polyglot-plugins.sh
cargo build -p otp-server --bins

if cargo nextest --version >/dev/null 2>&1; then
    run_tests() { cargo nextest run --no-fail-fast "$@"; }
else
    run_tests() { cargo test --no-fail-fast "$@"; }
fi
run_tests --workspace
OTP_BLACKBOX_STORE=redis run_tests -p otp-server-blackbox \
    --test protocol --test concurrency --test cookie_tampering --test openapi --test limits
cargo test --workspace --doc
(cd plugins && cargo test --quiet)
