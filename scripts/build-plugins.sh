#!/usr/bin/env bash
# Builds otp-server's plugins and the host's test fixtures as WebAssembly components.
#
# The default plugins land in plugins/dist/, the plugins that need a manifest to work
# (webhook-sender, session-token-final, the provider senders twilio-sms, sendgrid-email,
# postmark-email and ses-email) in plugins/dist-extra/ — kept out of dist/ so the
# default folder never has two senders or two final actions — and the fixtures in
# plugins/dist-fixtures/, named after their crates (e.g. dev-sender.wasm, fixture-trap.wasm). Each file is copied next to
# its destination and renamed into place, so a server watching the folder never loads a
# half-written component.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$root/plugins"
target=wasm32-wasip2

default_plugins=(default-credential email-phone-credential dev-sender json-final)
extra_plugins=(webhook-sender webhook-events session-token-final twilio-sms sendgrid-email postmark-email ses-email)
fixtures=(
    fixture-trap
    fixture-loop
    fixture-alloc
    fixture-empty
    fixture-counter
    fixture-all
    fixture-validator-v2
    fixture-snoop
    v010-default-credential
    v010-dev-sender
    v010-json-final
    v020raw-json-final
    fixture-echo
)

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

# From inside plugins/ so that plugins/.cargo/config.toml (stack and memory sizes) applies.
(cd "$plugins" && cargo build --release --target "$target")

# Honour a CARGO_TARGET_DIR override the same way cargo just did.
out="${CARGO_TARGET_DIR:-$plugins/target}"
case "$out" in /*) ;; *) out="$plugins/$out" ;; esac
out="$out/$target/release"

install_component() {
    local crate="$1" dest_dir="$2"
    local src="$out/${crate//-/_}.wasm"
    local dest="$dest_dir/$crate.wasm"
    local tmp
    if [[ ! -f "$src" ]]; then
        echo "build-plugins: $src is missing after the build" >&2
        exit 1
    fi
    # The temporary file lives in the destination folder so that `mv` is a same-filesystem
    # rename; its leading dot and suffix keep a folder watcher from taking it for a plugin.
    tmp="$(mktemp "$dest_dir/.$crate.XXXXXX.tmp")"
    cp "$src" "$tmp"
    # mktemp creates the file 0600; a server running as another user must still read it.
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dest"
}

mkdir -p "$plugins/dist" "$plugins/dist-extra" "$plugins/dist-fixtures"
for crate in "${default_plugins[@]}"; do
    install_component "$crate" "$plugins/dist"
done
for crate in "${extra_plugins[@]}"; do
    install_component "$crate" "$plugins/dist-extra"
done
for crate in "${fixtures[@]}"; do
    install_component "$crate" "$plugins/dist-fixtures"
done
