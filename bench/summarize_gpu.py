#!/usr/bin/env python3
"""Summarize a bench/gpu.sh results folder as Markdown tables.

  python3 bench/summarize_gpu.py RESULTS_DIR

Reads kernels.jsonl (native kernel profiles), cli.jsonl (native CLI runs and
file comparisons) and browser.jsonl (Chromium kernel profiles, page runs and
file comparisons). Times are medians.
"""

import json
import statistics
import sys
from pathlib import Path


def read_jsonl(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def seconds(value):
    return "—" if value is None else f"{value:.3f}"


def kernel_rows(where, label, profile):
    gpu = profile.get("gpu_seconds")
    cpu = profile["cpu_seconds"]
    ratio = "—" if gpu is None else f"{gpu / cpu:.1f}×"
    rate = "—" if not gpu else f"{profile['bytes_moved'] / gpu / 1e9:.2f}"
    agrees = {True: "yes", False: "NO", None: "—"}[profile.get("agrees")]
    return (f"| {label} | {where} | {profile['kernel']} | {profile['work']} | {seconds(cpu)} | {seconds(gpu)} | {ratio} "
            f"| {profile['bytes_moved'] / profile['bytes_floor']:.1f}× | {profile['operations'] / profile['operations_floor']:.1f}× "
            f"| {rate} | {agrees} |")


def kernels_table(native, browser):
    lines = [
        "| pair | where | kernel | work | CPU s | GPU s | GPU / CPU | bytes moved / floor | operations / floor | GPU GB/s moved | GPU = CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for profile in native:
        lines.append(kernel_rows("native", profile["label"], profile))
    for entry in browser:
        if entry.get("kind") == "kernels":
            for profile in entry["kernels"]:
                lines.append(kernel_rows(f"Chromium ({entry['device']})", entry["label"], profile))
    return "\n".join(lines)


def end_to_end_table(cli, browser):
    groups = {}
    for record in cli:
        if "wall_s" in record:
            label, device = record["label"].rsplit("-", 1)
            groups.setdefault((label, "native CLI", device), []).append(record["wall_s"])
    for record in browser:
        if record.get("kind") == "page":
            groups.setdefault((record["label"], "Chromium page", record["device"]), []).append(record["seconds"])
    identical = {(r["label"], "native CLI" if r.get("where") == "native" else "Chromium page"): r["identical"]
                 for r in cli + browser if r.get("kind") == "identical"}
    lines = ["| pair | where | GPU median s | CPU median s | GPU / CPU | runs | files identical |", "|---|---|---|---|---|---|---|"]
    for (label, where) in sorted({(k[0], k[1]) for k in groups}):
        gpu, cpu = groups.get((label, where, "gpu"), []), groups.get((label, where, "cpu"), [])
        gpu_median = statistics.median(gpu) if gpu else None
        cpu_median = statistics.median(cpu) if cpu else None
        ratio = f"{gpu_median / cpu_median:.2f}×" if gpu_median and cpu_median else "—"
        same = {True: "yes", False: "NO", None: "—"}[identical.get((label, where))]
        lines.append(f"| {label} | {where} | {seconds(gpu_median)} | {seconds(cpu_median)} | {ratio} | {len(gpu)} + {len(cpu)} | {same} |")
    return "\n".join(lines)


def main():
    results = Path(sys.argv[1])
    native = read_jsonl(results / "kernels.jsonl")
    cli = read_jsonl(results / "cli.jsonl")
    browser = read_jsonl(results / "browser.jsonl")
    machine = (results / "machine.txt").read_text() if (results / "machine.txt").exists() else ""
    print(f"# GPU benchmark: {results.name}\n\n```\n{machine.strip()}\n```\n")
    print("## Kernels\n")
    print(kernels_table(native, browser))
    print("\n## Whole pipeline at 1/16\n")
    print(end_to_end_table(cli, browser))


if __name__ == "__main__":
    main()
