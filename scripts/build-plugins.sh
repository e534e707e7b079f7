#!/usr/bin/env bash
# Builds otp-server's plugins and the host's test fixtures as WebAssembly components.
#
# The default plugins land in plugins/dist/, the plugins that need a manifest to work
# (webhook-sender, session-token-final, the provider senders twilio-sms, sendgrid-email,
# postmark-email and ses-email) in plugins/dist-extra/ — kept out of dist/ so the
# default folder never has two senders or two final actions — and the fixtures in
# plugins/dist-fixtures/, named after their crates (e.g. dev-sender.wasm, fixture-trap.wasm;
# the wasip2-NAME.wasm builds below excepted). Each file is copied next to
# its destination and renamed into place, so a server watching the folder never loads a
# half-written component.
#
# The default plugins need nothing of WASI, so they are built for wasm32-unknown-unknown:
# their components import no WASI and a call instantiates faster (plugins/.cargo/config.toml).
# Everything else is built for wasm32-wasip2. The wasip2 builds of three default plugins
# also go to dist-fixtures as wasip2-NAME.wasm, for the `hooks` benchmark to compare.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$root/plugins"
target=wasm32-wasip2
lean_target=wasm32-unknown-unknown

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

for t in "$target" "$lean_target"; do
    if ! rustup target list --installed | grep -qx "$t"; then
        rustup target add "$t"
    fi
done

# From inside plugins/ so that plugins/.cargo/config.toml (linker, stack and memory sizes)
# applies. The wasip2 build is of the whole workspace, the default plugins included.
lean_packages=()
for crate in "${default_plugins[@]}"; do
    lean_packages+=(-p "$crate")
done
(cd "$plugins" && cargo build --release --target "$lean_target" "${lean_packages[@]}")
(cd "$plugins" && cargo build --release --target "$target")

# Honour a CARGO_TARGET_DIR override the same way cargo just did.
out="${CARGO_TARGET_DIR:-$plugins/target}"
case "$out" in /*) ;; *) out="$plugins/$out" ;; esac

# install_component CRATE DEST_DIR [TARGET [NAME]]: TARGET's build of CRATE as NAME.wasm.
install_component() {
    local crate="$1" dest_dir="$2" from="${3:-$target}" name="${4:-$1}"
    local src="$out/$from/release/${crate//-/_}.wasm"
    local dest="$dest_dir/$name.wasm"
    local tmp
    if [[ ! -f "$src" ]]; then
        echo "build-plugins: $src is missing after the build" >&2
        exit 1
    fi
    # The temporary file lives in the destination folder so that `mv` is a same-filesystem
    # rename; its leading dot and suffix keep a folder watcher from taking it for a plugin.
    tmp="$(mktemp "$dest_dir/.$name.XXXXXX.tmp")"
    cp "$src" "$tmp"
    # mktemp creates the file 0600; a server running as another user must still read it.
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dest"
}

mkdir -p "$plugins/dist" "$plugins/dist-extra" "$plugins/dist-fixtures"
for crate in "${default_plugins[@]}"; do
    install_component "$crate" "$plugins/dist" "$lean_target"
done
for crate in default-credential dev-sender json-final; do
    install_component "$crate" "$plugins/dist-fixtures" "$target" "wasip2-$crate"
done
for crate in "${extra_plugins[@]}"; do
    install_component "$crate" "$plugins/dist-extra"
done
for crate in "${fixtures[@]}"; do
    install_component "$crate" "$plugins/dist-fixtures"
done
