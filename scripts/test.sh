#!/usr/bin/env bash
# Runs every test of adamix, first the native unit and integration tests, then
# the browser tests in tests/browser/ (run.mjs, then inputs.mjs) against a
# fresh web build. On a machine without a GPU, the native GPU tests need Mesa's
# lavapipe Vulkan driver, which scripts/setup.sh installs. Installs what is
# missing and fetches the demo checkpoints first. Exits non-zero when any step
# fails and prints a summary of the steps at the end.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# Browser test files, run in this order, each as a step of its own.
BROWSER_TESTS=(tests/browser/run.mjs tests/browser/inputs.mjs)

summary=()
current_step=""
current_start=0

log() { printf 'test: %s\n' "$*"; }

print_summary() {
  local status=$?
  if [ -n "$current_step" ]; then
    summary+=("FAIL  $(( SECONDS - current_start ))s  $current_step (exit status $status)")
  fi
  printf '\n==== adamix test summary ====\n'
  local line
  for line in "${summary[@]}"; do
    printf '  %s\n' "$line"
  done
  if [ "$status" -eq 0 ]; then
    printf 'RESULT: all %d steps passed\n' "${#summary[@]}"
  else
    printf 'RESULT: FAILED (exit status %d)\n' "$status"
  fi
}
trap print_summary EXIT

# Run one step, recording its outcome and time for the summary. Under set -e a
# failing command ends the script, and print_summary reports current_step.
run_step() {
  current_step="$1"
  shift
  current_start=$SECONDS
  log "==> $current_step"
  "$@"
  summary+=("ok    $(( SECONDS - current_start ))s  $current_step")
  current_step=""
}

run_browser_test() {
  local file="$1"
  if [ ! -f "$file" ]; then
    printf 'test: error: %s is missing, so its browser tests cannot run\n' "$file" >&2
    return 1
  fi
  node "$file"
}

run_step "install missing tools (scripts/setup.sh)" scripts/setup.sh
run_step "fetch demo checkpoints (scripts/fetch-demo.sh)" scripts/fetch-demo.sh
# scripts/setup.sh installs Mesa's lavapipe driver, so the GPU kernel tests
# must find an adapter here: fail instead of skipping when they do not.
export ADAMIX_REQUIRE_GPU=1
run_step "native tests (cargo test --release)" cargo test --release
run_step "web build (scripts/build-web.sh)" scripts/build-web.sh
run_step "CLI build (cargo build --release)" cargo build --release
for browser_test in "${BROWSER_TESTS[@]}"; do
  run_step "browser tests (node $browser_test)" run_browser_test "$browser_test"
done
