#!/usr/bin/env bash
# Builds the WebAssembly module and its JavaScript bindings for the web page:
# www/pkg/adamix.js and www/pkg/adamix_bg.wasm. Also copies the page's
# plotting library, Plotly.js (npm package plotly.js-dist-min), from
# node_modules into www/vendor/, so that the page loads nothing from another
# host.
#
# Steps: cargo build for wasm32-unknown-unknown with SIMD128, wasm-bindgen
# --target web, then wasm-opt -Oz from the binaryen npm package. A failing
# step fails the build and leaves www/pkg as it was. Set ADAMIX_SKIP_WASM_OPT=1
# to ship the module unoptimised on purpose (for example to debug a wasm-opt
# problem).
#
# Needs scripts/setup.sh to have run (Rust target, wasm-bindgen-cli, npm packages).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

WASM_BINDGEN_VERSION=0.2.130
WASM_TARGET=wasm32-unknown-unknown
# A target directory of its own, so that the wasm RUSTFLAGS below never
# invalidate the native build in target/release.
WASM_TARGET_DIR=target/wasm
OUT_DIR=www/pkg
WASM_OPT="$repo_root/node_modules/.bin/wasm-opt"
PLOTLY_PACKAGE="$repo_root/node_modules/plotly.js-dist-min"
VENDOR_DIR=www/vendor

# WebAssembly features that the module may use, passed to wasm-opt. rustc
# 1.95 enables bulk-memory, multivalue, mutable-globals, nontrapping-fptoint,
# reference-types and sign-ext for wasm32-unknown-unknown by default, and
# RUSTFLAGS below adds simd128. wasm-bindgen uses reference-types for its
# externref table. wasm-opt 132 also reads these from the module's
# target_features section; listing them keeps the build working without it.
# All of them are part of WebAssembly 2.0, except call-indirect-overlong, which
# only permits a longer encoding of call_indirect.
WASM_OPT_FEATURES=(
  --enable-call-indirect-overlong
  --enable-simd
  --enable-bulk-memory
  --enable-bulk-memory-opt
  --enable-multivalue
  --enable-mutable-globals
  --enable-nontrapping-float-to-int
  --enable-reference-types
  --enable-sign-ext
)

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf 'build-web: %s\n' "$*"; }
fail() { printf 'build-web: error: %s\n' "$*" >&2; exit 1; }

command -v wasm-bindgen >/dev/null 2>&1 \
  || fail "wasm-bindgen not found; run scripts/setup.sh"
installed="$(wasm-bindgen --version | awk '{print $2}')"
[ "$installed" = "$WASM_BINDGEN_VERSION" ] \
  || fail "wasm-bindgen is $installed, expected $WASM_BINDGEN_VERSION; run scripts/setup.sh"

log "cargo build --release --lib --target $WASM_TARGET (target dir $WASM_TARGET_DIR)"
RUSTFLAGS="-C target-feature=+simd128" \
  cargo build --release --lib --target "$WASM_TARGET" --target-dir "$WASM_TARGET_DIR"
module="$WASM_TARGET_DIR/$WASM_TARGET/release/adamix.wasm"
[ -f "$module" ] || fail "cargo build did not produce $module"

# Generate and optimise in a staging folder, and replace www/pkg only when
# every step succeeded, so a failed build never leaves a half-built page.
staging="$WASM_TARGET_DIR/pkg-staging"
rm -rf "$staging"

log "wasm-bindgen --target web --out-dir $staging"
wasm-bindgen --target web --out-dir "$staging" "$module"
bindgen_size="$(stat -c %s "$staging/adamix_bg.wasm")"

if [ "${ADAMIX_SKIP_WASM_OPT:-0}" = "1" ]; then
  log "NOTICE: ADAMIX_SKIP_WASM_OPT=1, shipping adamix_bg.wasm without wasm-opt ($bindgen_size bytes)"
else
  [ -x "$WASM_OPT" ] || fail "$WASM_OPT not found; run scripts/setup.sh (npm package binaryen)"
  log "wasm-opt -Oz ($("$WASM_OPT" --version))"
  "$WASM_OPT" -Oz "${WASM_OPT_FEATURES[@]}" \
      -o "$staging/adamix_bg.opt.wasm" "$staging/adamix_bg.wasm" \
    || fail "wasm-opt failed (output above), $OUT_DIR left unchanged; ADAMIX_SKIP_WASM_OPT=1 builds without it"
  mv "$staging/adamix_bg.opt.wasm" "$staging/adamix_bg.wasm"
  log "wasm-opt: $bindgen_size -> $(stat -c %s "$staging/adamix_bg.wasm") bytes"
fi

# Compile the module in Node.js (V8, the engine in Chromium), so that a module
# the browser would reject fails here rather than on the page.
node -e '
  const bytes = require("fs").readFileSync(process.argv[1]);
  WebAssembly.compile(bytes).catch((error) => {
    console.error(`build-web: error: ${process.argv[1]} does not compile: ${error.message}`);
    process.exit(1);
  });
' "$staging/adamix_bg.wasm"

rm -rf "$OUT_DIR"
mv "$staging" "$OUT_DIR"
log "done: $OUT_DIR/adamix.js, $OUT_DIR/adamix_bg.wasm ($(stat -c %s "$OUT_DIR/adamix_bg.wasm") bytes)"

[ -f "$PLOTLY_PACKAGE/plotly.min.js" ] \
  || fail "$PLOTLY_PACKAGE/plotly.min.js not found; run scripts/setup.sh (npm package plotly.js-dist-min)"
mkdir -p "$VENDOR_DIR"
cp "$PLOTLY_PACKAGE/plotly.min.js" "$VENDOR_DIR/plotly.min.js"
cp "$PLOTLY_PACKAGE/LICENSE" "$VENDOR_DIR/plotly.LICENSE"
log "copied plotly.js-dist-min $(node -p "require('$PLOTLY_PACKAGE/package.json').version") to $VENDOR_DIR/plotly.min.js"
