#!/usr/bin/env bash
# Installs what is missing, fetches the demo checkpoints, builds the web module
# and the native CLI (target/release/adamix), then serves the repository root
# on http://127.0.0.1:$PORT/ (PORT defaults to 8000). Ctrl-C stops the server.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
PORT="${PORT:-8000}"

log() { printf 'serve: %s\n' "$*"; }

log "step 1/5: scripts/setup.sh"
scripts/setup.sh

log "step 2/5: scripts/fetch-demo.sh"
scripts/fetch-demo.sh

log "step 3/5: scripts/build-web.sh"
scripts/build-web.sh

log "step 4/5: cargo build --release (CLI at target/release/adamix)"
cargo build --release

log "step 5/5: HTTP server on 127.0.0.1:$PORT"
exec python3 scripts/serve.py --port "$PORT" --directory "$repo_root"
