#!/usr/bin/env python3
"""Time numpy.linalg.svd on the f32 delta of a single-tensor safetensors pair.

The delta is computed as the CLI computes it: both sides decoded to f32,
then fine-tune minus base. Prints one JSON object per run on standard
output, for bench/run.sh to collect.
"""

import argparse
import json
import sys
import time

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_single_tensor(path):
    """Read the name and f32 values of the only tensor of a safetensors file."""
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(length))
        header.pop("__metadata__", None)
        if len(header) != 1:
            raise SystemExit(f"numpy_svd: {path} contains {len(header)} tensors; expected one")
        (name, entry), = header.items()
        start, end = entry["data_offsets"]
        file.seek(8 + length + start)
        raw = np.frombuffer(file.read(end - start), dtype=DTYPES[entry["dtype"]])
    if entry["dtype"] == "BF16":
        values = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        values = raw.astype(np.float32)
    return name, values.reshape(entry["shape"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="base .safetensors with one tensor")
    parser.add_argument("--finetuned", required=True, help="fine-tuned .safetensors with the same tensor")
    parser.add_argument("--runs", type=int, default=3, help="number of timed SVDs (default 3)")
    parser.add_argument("--label", default="numpy-svd", help="label written into each JSON line")
    args = parser.parse_args(argv)

    name, base = read_single_tensor(args.base)
    finetuned_name, finetuned = read_single_tensor(args.finetuned)
    if name != finetuned_name or base.shape != finetuned.shape:
        raise SystemExit(f"numpy_svd: the base contains {name} {base.shape} but the fine-tune contains {finetuned_name} {finetuned.shape}; expected the same tensor")
    delta = finetuned - base
    del base, finetuned

    for run in range(args.runs):
        started = time.perf_counter()
        cpu_started = time.process_time()
        _, sigma, _ = np.linalg.svd(delta, full_matrices=False)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        print(json.dumps({
            "label": args.label, "tensor": name, "shape": list(delta.shape), "dtype": str(delta.dtype),
            "run": run + 1, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "sigma_0": float(sigma[0]),
            "numpy": np.__version__,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
