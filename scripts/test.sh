#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need
# (the wasm32-wasip2 and wasm32-unknown-unknown targets, redis-server, promtool,
# schemathesis, chromium and chromium-driver, nodejs, the JavaScript/Python/C plugin
# toolchains),
# builds the plugins and the server binary
# that the black-box tests start, then runs the host, SDK, plugin and black-box tests —
# the black-box protocol suite three times: on the in-memory store, on Redis and on a
# Redis Cluster (tests/tests/redis_cluster.rs and keys.rs add failover and key-store tests);
# the limits suite on memory, on Redis and on the Cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

# The previous run's black-box scratch folders (each test server's plugins and log).
rm -rf target/blackbox

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

if ! command -v promtool >/dev/null 2>&1; then
    # deploy/'s alert rules are checked with `promtool check rules` (tests/tests/operations.rs).
    echo "test.sh: installing promtool (Debian package prometheus)" >&2
    sudo_if_needed=()
    [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
    "${sudo_if_needed[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# schemathesis (tests/tests/schemathesis.rs) in a venv kept across clones, recreated when
# its pinned requirements change.
schemathesis_venv="${XDG_CACHE_HOME:-$HOME/.cache}/otp-server-schemathesis/venv"
schemathesis_want="$(sha256sum tests/schemathesis/requirements.txt | cut -c1-64)"
if [[ ! -x "$schemathesis_venv/bin/schemathesis" ||
    "$(cat "$schemathesis_venv/.requirements" 2>/dev/null)" != "$schemathesis_want" ]]; then
    echo "test.sh: installing schemathesis into $schemathesis_venv" >&2
    rm -rf "$schemathesis_venv"
    python3 -m venv "$schemathesis_venv"
    "$schemathesis_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r tests/schemathesis/requirements.txt
    echo "$schemathesis_want" >"$schemathesis_venv/.requirements"
fi
export OTP_SCHEMATHESIS="$schemathesis_venv/bin/schemathesis"

scripts/build-plugins.sh
scripts/build-polyglot-plugins.sh
cargo build -p otp-server --bins

if cargo nextest --version >/dev/null 2>&1; then
    run_tests() { cargo nextest run --no-fail-fast "$@"; }
else
    run_tests() { cargo test --no-fail-fast "$@"; }
fi
# The client script (client/otp-client.js) under Node's test runner, against a live server.
node --test client/test/otp-client.test.mjs
run_tests --workspace
OTP_BLACKBOX_STORE=redis run_tests -p otp-server-blackbox \
    --test protocol --test concurrency --test cookie_tampering --test openapi --test limits
# Plugins built for contract 0.1.0 (frozen wit/v0.1.0) must keep passing the protocol suite.
OTP_BLACKBOX_CONTRACT=0.1.0 run_tests -p otp-server-blackbox --test protocol --test concurrency
# The protocol and concurrency suites once more on one 3-master + 3-replica Redis Cluster
# (each test server under a key prefix of its own); it stops when its stdin closes.
cargo build -q -p otp-server-blackbox --bin redis-cluster
coproc CLUSTER { "${CARGO_TARGET_DIR:-target}/debug/redis-cluster"; }
read -r cluster_url <&"${CLUSTER[0]}"
OTP_BLACKBOX_STORE=cluster OTP_BLACKBOX_CLUSTER_URL="$cluster_url" run_tests -p otp-server-blackbox \
    --test protocol --test concurrency --test limits
exec {CLUSTER[1]}>&-
wait "$CLUSTER_PID" || true
cargo test --workspace --doc
(cd plugins && cargo test --quiet)
