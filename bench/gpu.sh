#!/usr/bin/env bash
# GPU benchmark of adamix: every kernel against its CPU reference, and the
# whole pipeline with and without the GPU, natively (Mesa's lavapipe unless a
# real GPU is present) and in headless Chromium (WebGPU on SwiftShader).
# BENCHMARKS.md records the results.
#
#   bench/gpu.sh [all|native|browser]      (default: all)
#
# For the [4096, 4096] and the [11008, 4096] pairs of bench/make_pair.py:
#   - examples/kernel_profile.rs: each kernel (cost table, quantize,
#     dequantize, reconstruct) on the factors of a synthetic delta with 1024
#     candidate triplets, median of 3, with bytes moved and operations beside
#     their floor (src/gpu/profile.rs);
#   - the CLI at ratio 1/16 with --device gpu and --device cpu, RUNS runs
#     each, alternating, and a byte comparison of the two files;
#   - bench/gpu_browser.mjs: the same kernel profile in the page's worker and
#     the page's whole compression with Device GPU and Device CPU.
#
# Environment: RUNS (default 3). Results go to
# bench/out/results/<time>-gpu/ (summary.md and the raw JSON lines), or to
# RESULTS_DIR when set, which adds to an earlier run's files (for example
# the browser part after a native one).
set -euo pipefail

PART="${1:-all}"
case "$PART" in
  all|native|browser) ;;
  *) echo "usage: bench/gpu.sh [all|native|browser]" >&2; exit 2 ;;
esac
RUNS="${RUNS:-3}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

OUT=bench/out
RESULTS="${RESULTS_DIR:-$OUT/results/$(date +%Y%m%d-%H%M%S)-gpu}"
mkdir -p "$RESULTS"
KERNELS_JSONL="$RESULTS/kernels.jsonl"
CLI_JSONL="$RESULTS/cli.jsonl"
BROWSER_JSONL="$RESULTS/browser.jsonl"
SHAPES=("attn 4096 4096 $OUT/single/attn-4096x4096" "mlp 11008 4096 $OUT/single/mlp-11008x4096")

log() { printf '[%s] bench: %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT

record_machine() {
  {
    echo "mode: gpu, runs: $RUNS, started: $(date -Iseconds)"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
    echo "git HEAD: $(git rev-parse HEAD)"
  } > "$RESULTS/machine.txt"
}

build() {
  log "building the CLI, the kernel profiler and the page (log: $RESULTS/build.log)"
  { scripts/setup.sh && cargo build --release --bin adamix --example kernel_profile && scripts/build-web.sh; } \
    > "$RESULTS/build.log" 2>&1 || fail "the build failed; see $RESULTS/build.log"
  cp target/release/adamix target/release/examples/kernel_profile "$RESULTS/"
  python3 -m venv bench/.venv 2>/dev/null || true
  bench/.venv/bin/python -c "import numpy" 2>/dev/null || bench/.venv/bin/pip install -q numpy==2.4.6
  bench/.venv/bin/python bench/make_pair.py single --out "$OUT/single" >> "$RESULTS/build.log" 2>&1
}

native() {
  local label m n dir run device
  for shape in "${SHAPES[@]}"; do
    read -r label m n dir <<< "$shape"
    log "native kernels: [$m, $n]"
    "$RESULTS/kernel_profile" "$m" "$n" 1024 3 2>> "$RESULTS/kernels.log" \
      | sed "s/^{/{\"where\":\"native\",\"label\":\"$label\",/" | tee -a "$KERNELS_JSONL"
    for run in $(seq "$RUNS"); do
      for device in gpu cpu; do
        log "native CLI: [$m, $n] --device $device (run $run)"
        python3 bench/measure_cli.py --label "$label-$device" --jsonl "$CLI_JSONL" -- \
          "$RESULTS/adamix" compress --base "$dir/base.safetensors" --finetuned "$dir/finetuned.safetensors" \
          --ratio 1/16 --device "$device" -o "$RESULTS/$label-$device.safetensors" \
          || log "$label-$device failed (recorded in $CLI_JSONL)"
      done
    done
    if cmp -s "$RESULTS/$label-gpu.safetensors" "$RESULTS/$label-cpu.safetensors"; then
      echo "{\"kind\":\"identical\",\"where\":\"native\",\"label\":\"$label\",\"identical\":true}" >> "$CLI_JSONL"
    else
      echo "{\"kind\":\"identical\",\"where\":\"native\",\"label\":\"$label\",\"identical\":false}" >> "$CLI_JSONL"
    fi
  done
}

browser() {
  python3 scripts/serve.py --port 0 > "$RESULTS/serve.log" 2>&1 &
  SERVER_PID=$!
  local url="" attempt
  for attempt in $(seq 100); do
    url="$(grep -o 'http://127.0.0.1:[0-9]*/' "$RESULTS/serve.log" || true)"
    [ -n "$url" ] && break
    sleep 0.2
  done
  [ -n "$url" ] || fail "scripts/serve.py printed no address; see $RESULTS/serve.log"
  local args=() label m n dir
  for shape in "${SHAPES[@]}"; do
    read -r label m n dir <<< "$shape"
    args+=("$label" "$m" "$n" "$dir/base.safetensors" "$dir/finetuned.safetensors")
  done
  log "Chromium: kernels and the page on WebGPU and on the CPU"
  node bench/gpu_browser.mjs "$url" "$BROWSER_JSONL" "$RUNS" "${args[@]}" || log "a browser run failed"
  kill "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

started=$SECONDS
[ -f "$RESULTS/machine.txt" ] || record_machine
build
[ "$PART" = browser ] || native
[ "$PART" = native ] || browser
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg), total $((SECONDS - started)) s" >> "$RESULTS/machine.txt"
python3 bench/summarize_gpu.py "$RESULTS" > "$RESULTS/summary.md"
log "done in $((SECONDS - started)) s: $RESULTS/summary.md"
cat "$RESULTS/summary.md"
