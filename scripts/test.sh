#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need
# (the wasm32-wasip2 target, redis-server, chromium and chromium-driver, nodejs, the
# JavaScript/Python/C plugin toolchains),
# builds the plugins and the server binary
# that the black-box tests start, then runs the host, SDK, plugin and black-box tests —
# the black-box protocol suite twice: on the in-memory store and on Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start: redis-server (the Redis tests), chromium and
# chromium-driver (the browser tests), nodejs (the client script's tests).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]} (Debian packages)" >&2
    sudo_if_needed=()
    [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
    "${sudo_if_needed[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    # redis-server starts a system-wide instance on port 6379; the tests start their own.
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
# The client script (client/otp-client.js) under Node's test runner, against a live server.
node --test client/test/otp-client.test.mjs
OTP_BLACKBOX_STORE=redis run_tests -p otp-server-blackbox \
    --test protocol --test concurrency --test cookie_tampering --test openapi
cargo test --workspace --doc
(cd plugins && cargo test --quiet)
