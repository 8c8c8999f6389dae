#!/usr/bin/env bash
# Installs what building and testing adamix needs, skipping each tool that is
# already present. The Debian packages are Chromium and its driver for the
# browser tests, Mesa's lavapipe Vulkan driver for the native GPU tests, and
# unzip for scripts/fetch-demo.sh (plus Node.js when `node` is missing). Then
# come the wasm32-unknown-unknown Rust target, wasm-bindgen-cli and the npm
# packages in package.json.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Must equal the `wasm-bindgen = "=..."` pin in Cargo.toml, because the CLI
# rejects modules built by another version of the crate.
WASM_BINDGEN_VERSION=0.2.130
WASM_TARGET=wasm32-unknown-unknown
APT_PACKAGES=(chromium chromium-driver mesa-vulkan-drivers libvulkan1 unzip)

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

is_installed_deb() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

install_apt_packages() {
  local missing=() package
  command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
  for package in "${APT_PACKAGES[@]}"; do
    is_installed_deb "$package" || missing+=("$package")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages: already installed (${APT_PACKAGES[*]})"
    return
  fi

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 \
      || fail "apt packages missing (${missing[*]}) and not running as root without sudo; install them, then rerun"
    sudo=(sudo)
  fi
  log "apt packages: installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

add_rust_target() {
  command -v rustup >/dev/null 2>&1 \
    || fail "rustup not found; install Rust with rustup (https://rustup.rs), then rerun"
  if rustup target list --installed | grep -qx "$WASM_TARGET"; then
    log "rust target $WASM_TARGET: already installed"
    return
  fi
  log "rust target $WASM_TARGET: installing"
  rustup target add "$WASM_TARGET"
}

install_wasm_bindgen() {
  local installed=""
  if command -v wasm-bindgen >/dev/null 2>&1; then
    installed="$(wasm-bindgen --version | awk '{print $2}')"
  fi
  if [ "$installed" = "$WASM_BINDGEN_VERSION" ]; then
    log "wasm-bindgen-cli $WASM_BINDGEN_VERSION: already installed"
    return
  fi
  log "wasm-bindgen-cli $WASM_BINDGEN_VERSION: installing with cargo (found: ${installed:-none}; takes a few minutes)"
  # No --locked: the lockfile published with 0.2.130 pins webpki-roots 1.0.11,
  # so a locked install fails on a registry that lacks that version.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  [ "$(wasm-bindgen --version | awk '{print $2}')" = "$WASM_BINDGEN_VERSION" ] \
    || fail "wasm-bindgen on PATH is not $WASM_BINDGEN_VERSION after install: $(command -v wasm-bindgen)"
}

install_npm_packages() {
  command -v npm >/dev/null 2>&1 || fail "npm not found; install Node.js 18 or newer, then rerun"
  if [ ! -f package-lock.json ]; then
    log "npm packages: no package-lock.json, running npm install to create it"
    npm install --no-audit --no-fund
    return
  fi
  # `npm ls` exits non-zero when a dependency is missing or does not match
  # package.json, which pins exact versions.
  if [ -d node_modules ] && npm ls --depth=0 >/dev/null 2>&1; then
    log "npm packages: already installed"
    return
  fi
  log "npm packages: installing from package-lock.json with npm ci"
  npm ci --no-audit --no-fund
}

install_apt_packages
add_rust_target
install_wasm_bindgen
install_npm_packages
log "done"
