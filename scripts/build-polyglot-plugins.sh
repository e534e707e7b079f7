#!/usr/bin/env bash
# Builds the plugins written in JavaScript, Python and C (plugins/polyglot/) into
# WebAssembly components in plugins/dist-polyglot/, named after their folders:
#
#   js-username-validator.wasm   credential validation, JavaScript (QuickJS via componentize-qjs)
#   py-log-sender.wasm           sending, Python (componentize-py)
#   c-json-final.wasm            final action, C (wit-bindgen c + zig cc + wasm-tools)
#
# It installs what it needs when it is missing, at pinned versions, and nothing system-wide
# but two cargo tools:
#   - npm packages (package-lock.json) into plugins/polyglot/js-*/node_modules, by `npm ci`;
#   - componentize-py and ziglang (plugins/polyglot/requirements.txt) into a venv under
#     $OTP_POLYGLOT_CACHE (default ~/.cache/otp-server-polyglot), kept across clones so that
#     zig's own cache of the wasi-libc it compiles on first use stays valid;
#   - wit-bindgen-cli and wasm-tools by `cargo install --locked` into ~/.cargo/bin, unless
#     the pinned versions are already on the PATH.
# Needs: Rust (cargo), Python 3.11+ with venv and pip, Node 20+ with npm.
#
# A plugin is rebuilt only when its inputs (sources, WIT, lock files, tool versions) change.
# Each component is copied next to its destination and renamed into place, so a server
# watching the folder never loads a half-written file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
poly="$root/plugins/polyglot"
dist="$root/plugins/dist-polyglot"
# The polyglot examples target the current contract, 0.2.0, like every shipped plugin
# (0.1.0 keeps its own Rust fixtures in plugins/fixtures/v010-*).
wit="$root/wit/v0.2.0"
build="$poly/target"
cache="${OTP_POLYGLOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/otp-server-polyglot}"

WASM_TOOLS_VERSION=1.263.0
WIT_BINDGEN_VERSION=0.63.0

say() { echo "build-polyglot: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in cargo python3 node npm sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
mkdir -p "$build" "$dist" "$cache"

# --- tools ------------------------------------------------------------------------------

# Installs a cargo binary at a pinned version unless that version is already on the PATH
# and can run the subcommands used here (`$probe`). `cargo install` only builds the features
# used here, which keeps the cold build short.
cargo_tool() {
    local bin="$1" crate="$2" version="$3" features="$4" probe="$5"
    if command -v "$bin" >/dev/null && "$bin" --version 2>/dev/null | grep -qw "$version" &&
        (eval "$probe") >/dev/null 2>&1; then
        return
    fi
    say "installing $crate $version with features $features (cargo install)"
    local started=$SECONDS
    cargo install --locked --quiet --force "$crate" --version "=$version" \
        --no-default-features --features "$features"
    command -v "$bin" >/dev/null || die "$bin is not on the PATH after cargo install"
    say "installed $crate in $((SECONDS - started)) s"
}
# Where `cargo install` puts binaries (CARGO_INSTALL_ROOT, else CARGO_HOME, else ~/.cargo).
export PATH="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin:$PATH"
cargo_tool wasm-tools wasm-tools "$WASM_TOOLS_VERSION" component,validate,print \
    'wasm-tools component new --help && wasm-tools validate --help && wasm-tools print --help'
cargo_tool wit-bindgen wit-bindgen-cli "$WIT_BINDGEN_VERSION" c 'wit-bindgen c --help'

# The venv is recreated when requirements.txt changes.
venv="$cache/venv"
requirements="$poly/requirements.txt"
want="$(sha256sum "$requirements" | cut -c1-64)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]]; then
    say "installing $(grep -v '^#' "$requirements" | xargs) into $venv"
    venv_started=$SECONDS
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$venv/.requirements"
    say "installed the venv in $((SECONDS - venv_started)) s"
fi
componentize_py="$venv/bin/componentize-py"
zig=("$venv/bin/python" -m ziglang)

# `npm ci` only when package-lock.json differs from what node_modules was installed from.
npm_ci() {
    local dir="$1" want
    want="$(sha256sum "$dir/package-lock.json" | cut -c1-64)"
    if [[ "$(cat "$dir/node_modules/.otp-lock" 2>/dev/null)" != "$want" ]]; then
        say "npm ci in ${dir#"$root"/}"
        (cd "$dir" && npm ci --no-audit --no-fund --no-update-notifier --prefer-offline \
            --loglevel=error)
        echo "$want" >"$dir/node_modules/.otp-lock"
    fi
}

# --- building ---------------------------------------------------------------------------

# A digest of a plugin's inputs: its files, the WIT and the tools' versions.
inputs_digest() {
    local dir="$1"
    shift
    {
        find "$dir" "$wit" -type f \
            -not -path '*/node_modules/*' -not -path '*/__pycache__/*' -print0 |
            sort -z | xargs -0 sha256sum
        printf '%s\n' "$@"
    } | sha256sum | cut -c1-64
}

# Moves a built component into dist/ atomically.
install_component() {
    local src="$1" name="$2" tmp
    wasm-tools validate --features all "$src" || die "$name: the component does not validate"
    tmp="$(mktemp "$dist/.$name.XXXXXX.tmp")"
    cp "$src" "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dist/$name.wasm"
    say "$name.wasm: $(stat -c %s "$dist/$name.wasm") bytes"
}

# Runs `build_<lang>` for a plugin unless its inputs are unchanged since the last build.
build_plugin() {
    local name="$1" builder="$2" digest
    shift 2
    digest="$(inputs_digest "$poly/$name" "$@")"
    if [[ -f "$dist/$name.wasm" && "$(cat "$build/$name.inputs" 2>/dev/null)" == "$digest" ]]; then
        say "$name.wasm is up to date"
        return
    fi
    local started=$SECONDS out="$build/$name"
    rm -rf "$out"
    mkdir -p "$out"
    "$builder" "$poly/$name" "$out"
    install_component "$out/$name.wasm" "$name"
    echo "$digest" >"$build/$name.inputs"
    say "built $name in $((SECONDS - started)) s"
}

build_js() {
    local src="$1" out="$2"
    npm_ci "$src"
    # --sync: the host does not enable the component-model async ABI.
    "$src/node_modules/.bin/componentize-qjs" --sync \
        --wit "$wit" --world credential-validator \
        --js "$src/validator.js" --module-root "$src" \
        -o "$out/$(basename "$src").wasm" >"$out/build.log" 2>&1 ||
        { cat "$out/build.log" >&2; die "componentize-qjs failed"; }
}

build_py() {
    local src="$1" out="$2"
    # Bytecode caches next to the sources would only clutter the tree.
    PYTHONDONTWRITEBYTECODE=1 "$componentize_py" -d "$wit" -w sender \
        componentize -p "$src" app -o "$out/$(basename "$src").wasm" >"$out/build.log" 2>&1 ||
        { cat "$out/build.log" >&2; die "componentize-py failed"; }
}

build_c() {
    local src="$1" out="$2" name
    name="$(basename "$src")"
    # Bindings: finalizer.{c,h}, and finalizer_component_type.o, whose custom section
    # carries the world's type into the core module for `wasm-tools component new`.
    wit-bindgen c "$wit" --world finalizer --out-dir "$out/bindings" >"$out/bindgen.log" 2>&1 ||
        { cat "$out/bindgen.log" >&2; die "wit-bindgen failed"; }
    # A reactor: no main, exports only. -s drops debug info (the component shrinks 40x);
    # a 64 KiB stack instead of zig's 16 MiB keeps the initial memory at 2 pages.
    "${zig[@]}" cc -target wasm32-wasi -mexec-model=reactor -Os -s \
        -Wall -Werror -Wno-unused-parameter -Wl,-z,stack-size=65536 -I "$out/bindings" \
        "$src/json_final.c" "$out/bindings/finalizer.c" "$out/bindings/finalizer_component_type.o" \
        -o "$out/core.wasm"
    # Plain C with no I/O imports nothing from WASI, so no preview1 adapter is needed.
    if wasm-tools print "$out/core.wasm" | grep -q 'import "wasi_snapshot_preview1"'; then
        die "$name: the core module imports WASI preview1; it would need an adapter"
    fi
    wasm-tools component new "$out/core.wasm" -o "$out/$name.wasm"
}

tools="wasm-tools=$WASM_TOOLS_VERSION wit-bindgen=$WIT_BINDGEN_VERSION node=$(node --version)"
build_plugin js-username-validator build_js "$tools"
build_plugin py-log-sender build_py "$tools" "$(cat "$requirements")"
build_plugin c-json-final build_c "$tools" "$(cat "$requirements")"
