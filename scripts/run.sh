#!/usr/bin/env bash
# Builds the default plugins and starts the server with them on the in-memory store
# (http://127.0.0.1:8080 unless OTP_LISTEN says otherwise). Extra arguments go to
# otp-server, e.g. `scripts/run.sh --config otp.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-plugins.sh
export OTP_PLUGINS_DIR="${OTP_PLUGINS_DIR:-plugins/dist}"
# plugins/dist holds two validators; serve the reference behaviour unless told otherwise.
export OTP_HOOK_CREDENTIAL_VALIDATION="${OTP_HOOK_CREDENTIAL_VALIDATION:-default-credential}"
exec cargo run --release -p otp-server -- "$@"
