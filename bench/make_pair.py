#!/usr/bin/env python3
"""Write synthetic base/fine-tune checkpoint pairs in BF16 safetensors for the benchmarks.

Two modes:

  single --out DIR
      DIR/attn-4096x4096/{base,finetuned}.safetensors, holding one
      [4096, 4096] matrix, and DIR/mlp-11008x4096/..., holding one
      [11008, 4096] matrix.

  llama --layers N --out DIR [--embeddings]
      DIR/base/ and DIR/finetuned/: a Llama-2-7B-shaped checkpoint with N
      decoder layers (the real model has 32), sharded with
      model.safetensors.index.json, `--layers-per-shard` layers per shard.
      The embeddings (embed_tokens and lm_head, [32000, 4096], together 1.3
      layers' worth of parameters) are written only with --embeddings.

Every value comes from a seed derived from --seed and the tensor name, so a
tensor is the same whatever the layer count. Base weights are N(0, 0.02)
(norm weights 1 + N(0, 0.02)). The delta of each matrix is U diag(σ) Vᵀ with
σ_i ∝ (i + 1)^-0.7 for i < rank, scaled so that ‖ΔW‖_F / ‖W‖_F is drawn
uniformly from [0.01, 0.05]. U and V are orthonormal columns, taken from one orthonormalized
Gaussian matrix per side length with the rows permuted and sign-flipped per
tensor, which keeps them orthonormal and costs no new factorization. The
fine-tune is base + delta rounded to BF16 (ties to even), so it also carries
the rounding noise that a real BF16 fine-tune has.

A shard file that already exists with the same generator settings in its
metadata is kept. With `--reuse DIR`, a matching shard of another pair is
linked instead of written again, so the 4-layer pair shares the 16-layer
pair's first shards.
"""

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

HIDDEN = 4096
INTERMEDIATE = 11008
VOCAB = 32000
BASE_STD = 0.02
SPECTRUM_EXPONENT = 0.7
DELTA_RATIO_RANGE = (0.01, 0.05)
NORM_DELTA_STD = 1e-3
# Bumped whenever the generated values change, so that stale shards are rewritten.
GENERATOR_VERSION = "1"


def layer_tensors(layer):
    """Return the names and shapes of one Llama-2-7B decoder layer, in the order of the original checkpoint."""
    prefix = f"model.layers.{layer}"
    return [
        (f"{prefix}.self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
        (f"{prefix}.self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
        (f"{prefix}.self_attn.v_proj.weight", (HIDDEN, HIDDEN)),
        (f"{prefix}.self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
        (f"{prefix}.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
        (f"{prefix}.mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
        (f"{prefix}.mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
        (f"{prefix}.input_layernorm.weight", (HIDDEN,)),
        (f"{prefix}.post_attention_layernorm.weight", (HIDDEN,)),
    ]


def to_bf16_bits(values):
    """Round float32 values to BF16 (ties to even) and return the bits as uint16.

    The input must be finite; it is overwritten.
    """
    bits = values.view(np.uint32)
    rounding = (bits >> 16) & 1
    rounding += 0x7FFF
    bits += rounding
    bits >>= 16
    return bits.astype(np.uint16)


def from_bf16_bits(bits):
    """Return the float32 values of BF16 bits (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def tensor_rng(seed, name, purpose):
    """Return a random generator for one tensor and purpose, independent of the order of generation."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(purpose.encode())])


def orthonormalize(matrix):
    """Orthonormalize the columns of a tall float32 matrix by Cholesky QR (the factorization in float64).

    numpy's Householder QR took 68 s on a [11008, 2048] float32 matrix on the
    loaded 2-core benchmark machine, against about 3 s for this. The Gram matrix of
    a Gaussian [m, r] matrix with r <= m / 2 has a condition number of about
    35, so one pass loses nothing that matters here.
    """
    gram = (matrix.T @ matrix).astype(np.float64)
    lower = np.linalg.cholesky(gram)
    inverse_upper = np.linalg.inv(lower).T.astype(np.float32)
    return np.ascontiguousarray(matrix @ inverse_upper)


class FactorPool:
    """One orthonormal [length, rank] factor per side length, computed on first use."""

    def __init__(self, seed, rank):
        self.seed = seed
        self.rank = rank
        self.factors = {}

    def orthonormal(self, length, rank, rng):
        """Return a [length, rank] matrix with orthonormal columns: the pool's factor with its rows permuted and sign-flipped."""
        if length not in self.factors:
            pool_rank = min(self.rank, length)
            gaussian = np.random.default_rng([self.seed, length]).standard_normal((length, pool_rank), dtype=np.float32)
            self.factors[length] = orthonormalize(gaussian)
        factor = self.factors[length][:, :rank]
        permutation = rng.permutation(length)
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=length)
        return factor[permutation] * signs[:, None]


def make_tensor(name, shape, seed, pool):
    """Generate the BF16 bits of the base and of the fine-tune for one tensor."""
    rng = tensor_rng(seed, name, "base")
    if len(shape) == 1:
        base = 1.0 + rng.standard_normal(shape, dtype=np.float32) * np.float32(BASE_STD)
        base_bits = to_bf16_bits(base)
        base = from_bf16_bits(base_bits)
        delta = tensor_rng(seed, name, "delta").standard_normal(shape, dtype=np.float32) * np.float32(NORM_DELTA_STD)
        return base_bits, to_bf16_bits(base + delta)

    base = rng.standard_normal(shape, dtype=np.float32)
    base *= np.float32(BASE_STD)
    base_bits = to_bf16_bits(base)
    base = from_bf16_bits(base_bits)
    base_norm = float(np.linalg.norm(base))

    m, n = shape
    rng = tensor_rng(seed, name, "delta")
    rank = min(pool.rank, m, n)
    target_ratio = rng.uniform(*DELTA_RATIO_RANGE)
    sigma = (np.arange(1, rank + 1, dtype=np.float64) ** -SPECTRUM_EXPONENT)
    sigma *= target_ratio * base_norm / np.sqrt(np.sum(sigma ** 2))
    u = pool.orthonormal(m, rank, rng)
    v = pool.orthonormal(n, rank, rng)
    u *= sigma.astype(np.float32)[None, :]
    finetuned = u @ v.T
    del u, v
    finetuned += base
    del base
    return base_bits, to_bf16_bits(finetuned)


def safetensors_header(entries, metadata):
    """Build the header bytes (8-byte little-endian length, JSON padded to 8 bytes) for (name, shape) entries in BF16."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, shape in entries:
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, offset


def read_metadata(path):
    """Return the __metadata__ of a safetensors file, or None when it is missing or unreadable."""
    try:
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            if length > 100_000_000:
                return None
            return json.loads(file.read(length)).get("__metadata__")
    except (OSError, ValueError):
        return None


def write_shard_pair(directories, file_name, entries, settings, pool, reuse):
    """Write one shard of the base and of the fine-tune, or keep or link a matching existing one."""
    metadata = {"format": "pt", "adamix_bench_generator": json.dumps(settings, sort_keys=True)}
    targets = [directory / file_name for directory in directories]
    if all(read_metadata(t) == metadata for t in targets):
        print(f"make_pair: {file_name}: up to date", flush=True)
        return
    if reuse is not None:
        sources = [reuse / directory.name / file_name for directory in directories]
        if all(read_metadata(s) == metadata for s in sources):
            for source, target in zip(sources, targets):
                target.unlink(missing_ok=True)
                target.symlink_to(source.resolve())
            print(f"make_pair: {file_name}: linked from {reuse}", flush=True)
            return

    started = time.perf_counter()
    header, _ = safetensors_header(entries, metadata)
    partial = [t.with_name(t.name + ".partial") for t in targets]
    files = [open(p, "wb") for p in partial]
    try:
        for file in files:
            file.write(header)
        for name, shape in entries:
            for file, bits in zip(files, make_tensor(name, shape, settings["seed"], pool)):
                file.write(bits.tobytes())
    finally:
        for file in files:
            file.close()
    for source, target in zip(partial, targets):
        target.unlink(missing_ok=True)
        os.replace(source, target)
    print(f"make_pair: {file_name}: wrote {len(entries)} tensors in {time.perf_counter() - started:.1f} s", flush=True)


def make_llama(args):
    out = Path(args.out)
    directories = [out / "base", out / "finetuned"]
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    settings = {"version": GENERATOR_VERSION, "seed": args.seed, "rank": args.rank}
    pool = FactorPool(args.seed, args.rank)
    reuse = Path(args.reuse) if args.reuse else None

    shards = []
    for first in range(0, args.layers, args.layers_per_shard):
        last = min(first + args.layers_per_shard, args.layers) - 1
        entries = [entry for layer in range(first, last + 1) for entry in layer_tensors(layer)]
        shards.append((f"model-layers-{first:03d}-{last:03d}.safetensors", entries))
    extra = [("model.norm.weight", (HIDDEN,))]
    if args.embeddings:
        extra = [("model.embed_tokens.weight", (VOCAB, HIDDEN))] + extra + [("lm_head.weight", (VOCAB, HIDDEN))]
    shards.append(("model-embeddings.safetensors" if args.embeddings else "model-norm.safetensors", extra))

    for file_name, entries in shards:
        write_shard_pair(directories, file_name, entries, settings, pool, reuse)

    weight_map = {name: file_name for file_name, entries in shards for name, _ in entries}
    total_size = sum(2 * int(np.prod(shape)) for _, entries in shards for _, shape in entries)
    index = json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2)
    expected_names = {file_name for file_name, _ in shards} | {"model.safetensors.index.json"}
    for directory in directories:
        (directory / "model.safetensors.index.json").write_text(index + "\n")
        # Shards of an earlier run with another layer count would be read as part of the folder.
        for stale in directory.iterdir():
            if stale.name not in expected_names:
                stale.unlink()
    print(f"make_pair: {out}: {args.layers} layers, {len(shards)} shards, {total_size / 1e9:.2f} GB per side", flush=True)


def make_single(args):
    out = Path(args.out)
    settings = {"version": GENERATOR_VERSION, "seed": args.seed, "rank": args.rank}
    pool = FactorPool(args.seed, args.rank)
    pairs = [
        ("attn-4096x4096", "model.layers.0.self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
        ("mlp-11008x4096", "model.layers.0.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
    ]
    for folder, name, shape in pairs:
        directory = out / folder
        directory.mkdir(parents=True, exist_ok=True)
        # The pair is two plain files, base.safetensors and finetuned.safetensors.
        sides = [directory / "base", directory / "finetuned"]
        write_single(sides, name, shape, settings, pool)


def write_single(sides, name, shape, settings, pool):
    """Write <dir>/base.safetensors and <dir>/finetuned.safetensors holding one tensor."""
    metadata = {"format": "pt", "adamix_bench_generator": json.dumps(settings, sort_keys=True)}
    targets = [side.with_suffix(".safetensors") for side in sides]
    if all(read_metadata(t) == metadata for t in targets):
        print(f"make_pair: {targets[0].parent}: up to date", flush=True)
        return
    started = time.perf_counter()
    header, _ = safetensors_header([(name, shape)], metadata)
    for target, bits in zip(targets, make_tensor(name, shape, settings["seed"], pool)):
        partial = target.with_name(target.name + ".partial")
        with open(partial, "wb") as file:
            file.write(header)
            file.write(bits.tobytes())
        os.replace(partial, target)
    print(f"make_pair: {targets[0].parent}: wrote {name} {list(shape)} in {time.perf_counter() - started:.1f} s", flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["single", "llama"], help="single: one [4096,4096] and one [11008,4096] pair; llama: a sharded Llama-2-7B-shaped pair")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the llama pair (default 4)")
    parser.add_argument("--layers-per-shard", type=int, default=2, help="decoder layers per shard file (default 2)")
    parser.add_argument("--embeddings", action="store_true", help="also write embed_tokens and lm_head, [32000, 4096] each")
    parser.add_argument("--rank", type=int, default=2048, help="rank of each matrix delta, at most min(m, n) (default 2048)")
    parser.add_argument("--seed", type=int, default=20260101, help="random seed (default 20260101)")
    parser.add_argument("--reuse", help="folder of another llama pair whose matching shards are linked instead of written")
    args = parser.parse_args(argv)
    if args.layers < 1 or args.layers_per_shard < 1 or args.rank < 1:
        parser.error("--layers, --layers-per-shard and --rank must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "llama":
        make_llama(args)
    else:
        make_single(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
