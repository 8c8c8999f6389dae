#!/usr/bin/env bash
# Speed and memory benchmarks of adamix; BENCHMARKS.md records the results.
#
#   bench/run.sh [quick|memory|full|explorer]      (default: quick)
#
# quick (6 min on the quiet 2-core machine of BENCHMARKS.md, 16 min under load):
#   - native CLI, whole pipeline (read, delta, SVD, allocation, quantization,
#     packing, write) at ratio 1/16 on a pair holding one [4096, 4096] BF16
#     matrix and on one holding one [11008, 4096] matrix: RUNS runs each with
#     the default threads, RUNS runs of the [4096, 4096] pair with
#     RAYON_NUM_THREADS=1, and one --svd full run each to compare errors;
#   - numpy.linalg.svd of the same f32 [4096, 4096] delta, RUNS runs;
#   - the real MiniLM pair (www/demo/), RUNS runs with the default threads and
#     RUNS with RAYON_NUM_THREADS=1;
#   - the page in headless Chromium on the MiniLM pair and on the
#     [4096, 4096] pair, RUNS runs each, every one right after a native run
#     of the same pair with RAYON_NUM_THREADS=1 (so each ratio compares runs
#     under the same load), plus one instrumented run of each that reads the
#     worker's WebAssembly memory;
#   - the budget explorer on the MiniLM pair (see explorer below);
#   - peak resident set size and total time of the CLI on a synthetic
#     Llama-2-7B-shaped pair with 1 layer.
# memory (13 min there when quiet, 36 min under load, plus 13 min to
#   generate 13 GB of inputs once): peak resident set size and total time of the CLI
#   on the Llama-2-7B-shaped pair with 4 and with 16 layers. The pairs have
#   no embeddings, which would add 1.3 layers' worth of parameters.
# full: quick with the 4- and 16-layer pairs in place of the 1-layer pair,
#   plus RAYON_NUM_THREADS=1 runs and the numpy SVD of the [11008, 4096] pair.
# explorer: the page's budget explorer on the MiniLM pair only, in RUNS fresh
#   browsers. Each compresses at 1/16, opens the explorer, then times 3 rounds
#   (ADAMIX_BENCH_EXPLORER_ROUNDS) of the ratio changes 1/32, 1/24, 1/16,
#   1/12 and 1/8, from the change to the drawn result and inside the worker.
#   The first browser also compares the explorer at 1/32, 1/16 and 1/8 with
#   full compressions on the page. One more browser splits the solves at
#   the same ratios into stages. Builds the wasm module only.
#
# Environment: RUNS (default 3), PORT for the page server (default: a free port).
# Inputs and results go to bench/out/ (ignored by git); each invocation
# writes bench/out/results/<time>/ with the raw JSON lines and summary.md, and
# points bench/out/results/latest at it.
set -euo pipefail

MODE="${1:-quick}"
case "$MODE" in
  quick|memory|full|explorer) ;;
  *) echo "usage: bench/run.sh [quick|memory|full|explorer]" >&2; exit 2 ;;
esac
RUNS="${RUNS:-3}"
NUMPY_VERSION=2.4.6

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

OUT=bench/out
RESULTS="$OUT/results/$(date +%Y%m%d-%H%M%S)-$MODE"
BIN="$RESULTS/adamix"
VENV=bench/.venv
PY="$VENV/bin/python"
mkdir -p "$RESULTS"
ln -sfn "$(basename "$RESULTS")" "$OUT/results/latest"
CLI_JSONL="$RESULTS/cli.jsonl"
NUMPY_JSONL="$RESULTS/numpy.jsonl"
BROWSER_JSONL="$RESULTS/browser.jsonl"
EXPLORER_JSONL="$RESULTS/explorer.jsonl"
EXPLORER_STAGES_JSONL="$RESULTS/explorer-stages.jsonl"

log() { printf '[%s] bench: %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# ---- Machine and tools ----

record_machine() {
  {
    echo "mode: $MODE, runs: $RUNS, started: $(date -Iseconds)"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rustc: $(rustc --version)"
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
    echo "node: $(node --version)"
    echo "git HEAD: $(git rev-parse HEAD)"
    echo "files under src/ differing from HEAD: $(git status --porcelain -- src | wc -l)"
  } > "$RESULTS/machine.txt"
}

build_cli() {
  log "cargo build --release (log: $RESULTS/build.log)"
  cargo build --release > "$RESULTS/build.log" 2>&1 || fail "cargo build --release failed; see $RESULTS/build.log"
  # A copy, so that a rebuild by someone else during the run cannot change the binary under test.
  cp target/release/adamix "$BIN"
  echo "adamix binary sha256: $(sha256sum "$BIN" | cut -c1-16)" >> "$RESULTS/machine.txt"
}

build_web() {
  log "scripts/setup.sh and scripts/build-web.sh (log: $RESULTS/build-web.log)"
  { scripts/setup.sh && scripts/build-web.sh; } > "$RESULTS/build-web.log" 2>&1 \
    || fail "the web build failed; see $RESULTS/build-web.log"
  echo "wasm sha256: $(sha256sum www/pkg/adamix_bg.wasm | cut -c1-16), $(stat -c %s www/pkg/adamix_bg.wasm) bytes" >> "$RESULTS/machine.txt"
}

make_venv() {
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$PY" -c "import numpy" 2>/dev/null; then
    log "installing numpy==$NUMPY_VERSION into $VENV"
    "$VENV/bin/pip" install -q "numpy==$NUMPY_VERSION"
  fi
  echo "numpy: $("$PY" -c 'import numpy; print(numpy.__version__)')" >> "$RESULTS/machine.txt"
}

# ---- Measurements ----

# compress LABEL BASE FINETUNED [EXTRA_ARGS...]; set THREADS=1 to pin rayon to one thread.
compress() {
  local label="$1" base="$2" finetuned="$3"
  shift 3
  local env=()
  if [ -n "${THREADS:-}" ]; then
    env=(--env "RAYON_NUM_THREADS=$THREADS")
  fi
  local report="$RESULTS/$label.report.json"
  python3 bench/measure_cli.py --label "$label" --jsonl "$CLI_JSONL" --report "$report" "${env[@]}" -- \
    "$BIN" compress --base "$base" --finetuned "$finetuned" --ratio 1/16 \
    -o "$RESULTS/$label.safetensors" --report "$report" "$@" \
    || log "$label failed (recorded in $CLI_JSONL)"
}

repeat() {
  local count="$1"
  shift
  local run
  for run in $(seq "$count"); do
    "$@"
  done
}

per_matrix() {
  local attn="$OUT/single/attn-4096x4096" mlp="$OUT/single/mlp-11008x4096"
  log "per matrix: [4096, 4096]"
  repeat "$RUNS" compress attn "$attn/base.safetensors" "$attn/finetuned.safetensors"
  THREADS=1 repeat "$RUNS" compress attn-1thread "$attn/base.safetensors" "$attn/finetuned.safetensors"
  compress attn-svd-full "$attn/base.safetensors" "$attn/finetuned.safetensors" --svd full

  log "per matrix: [11008, 4096]"
  repeat "$RUNS" compress mlp "$mlp/base.safetensors" "$mlp/finetuned.safetensors"
  if [ "$MODE" = full ]; then
    THREADS=1 repeat "$RUNS" compress mlp-1thread "$mlp/base.safetensors" "$mlp/finetuned.safetensors"
  fi
  compress mlp-svd-full "$mlp/base.safetensors" "$mlp/finetuned.safetensors" --svd full
}

numpy_anchor() {
  local attn="$OUT/single/attn-4096x4096" mlp="$OUT/single/mlp-11008x4096"
  log "numpy.linalg.svd anchor: [4096, 4096]"
  "$PY" bench/numpy_svd.py --label numpy-attn --runs "$RUNS" \
    --base "$attn/base.safetensors" --finetuned "$attn/finetuned.safetensors" | tee -a "$NUMPY_JSONL"
  if [ "$MODE" = full ]; then
    log "numpy.linalg.svd anchor: [11008, 4096]"
    "$PY" bench/numpy_svd.py --label numpy-mlp --runs "$RUNS" \
      --base "$mlp/base.safetensors" --finetuned "$mlp/finetuned.safetensors" | tee -a "$NUMPY_JSONL"
  fi
}

minilm() {
  log "real MiniLM pair"
  repeat "$RUNS" compress minilm www/demo/base.safetensors www/demo/finetuned.safetensors
  THREADS=1 repeat "$RUNS" compress minilm-1thread www/demo/base.safetensors www/demo/finetuned.safetensors
}

llama() {
  local layers
  for layers in "$@"; do
    log "Llama-2-7B-shaped pair, $layers layers"
    compress "llama7b-${layers}layers" "$OUT/llama7b-$layers/base" "$OUT/llama7b-$layers/finetuned"
  done
}

# Starts scripts/serve.py on 127.0.0.1 and sets SERVER_URL to its address.
start_server() {
  python3 scripts/serve.py --port "${PORT:-0}" > "$RESULTS/serve.log" 2>&1 &
  SERVER_PID=$!
  SERVER_URL=""
  local attempt
  for attempt in $(seq 100); do
    SERVER_URL="$(grep -o 'http://127.0.0.1:[0-9]*/' "$RESULTS/serve.log" || true)"
    [ -n "$SERVER_URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "scripts/serve.py exited; see $RESULTS/serve.log"
    sleep 0.2
  done
  [ -n "$SERVER_URL" ] || fail "scripts/serve.py printed no address within 20 s; see $RESULTS/serve.log"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

browser() {
  log "page in headless Chromium"
  start_server
  local attn="$OUT/single/attn-4096x4096"
  ADAMIX_BENCH_MEASURE_MEMORY=1 ADAMIX_BENCH_NATIVE="$BIN" node bench/browser.mjs "$SERVER_URL" "$BROWSER_JSONL" \
    minilm www/demo/base.safetensors www/demo/finetuned.safetensors "$RUNS" \
    attn "$attn/base.safetensors" "$attn/finetuned.safetensors" "$RUNS" \
    || log "a browser run failed (recorded in $BROWSER_JSONL)"
  stop_server
}

explorer() {
  log "budget explorer in headless Chromium"
  start_server
  node bench/browser.mjs explorer "$SERVER_URL" "$EXPLORER_JSONL" \
    minilm www/demo/base.safetensors www/demo/finetuned.safetensors "$RUNS" \
    || log "an explorer run failed (recorded in $EXPLORER_JSONL)"
  node bench/browser.mjs explorer-stages "$SERVER_URL" "$EXPLORER_STAGES_JSONL" \
    minilm www/demo/base.safetensors www/demo/finetuned.safetensors 1 \
    || log "the explorer stage run failed (recorded in $EXPLORER_STAGES_JSONL)"
  stop_server
}

# ---- Main ----

fetch_demo() {
  scripts/fetch-demo.sh > "$RESULTS/fetch-demo.log" 2>&1 || fail "scripts/fetch-demo.sh failed; see $RESULTS/fetch-demo.log"
}

# Runs the native CLI, numpy and page benchmarks of quick, memory and full.
measure_all() {
  build_cli
  make_venv
  log "generating inputs under $OUT (kept between runs)"
  if [ "$MODE" != memory ]; then
    build_web
    fetch_demo
    "$PY" bench/make_pair.py single --out "$OUT/single"
  fi
  if [ "$MODE" = quick ]; then
    "$PY" bench/make_pair.py llama --layers 1 --out "$OUT/llama7b-1"
    LAYER_COUNTS=(1)
  else
    "$PY" bench/make_pair.py llama --layers 16 --out "$OUT/llama7b-16"
    "$PY" bench/make_pair.py llama --layers 4 --out "$OUT/llama7b-4" --reuse "$OUT/llama7b-16"
    LAYER_COUNTS=(4 16)
  fi

  if [ "$MODE" != memory ]; then
    per_matrix
    numpy_anchor
    minilm
    browser
    explorer
  fi
  llama "${LAYER_COUNTS[@]}"
}

started=$SECONDS
record_machine
if [ "$MODE" = explorer ]; then
  build_web
  fetch_demo
  explorer
else
  measure_all
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg), total $((SECONDS - started)) s" >> "$RESULTS/machine.txt"
python3 bench/summarize.py "$RESULTS" > "$RESULTS/summary.md"
log "done in $((SECONDS - started)) s: $RESULTS/summary.md"
cat "$RESULTS/summary.md"
