#!/usr/bin/env python3
"""Turn the JSON lines of one bench/run.sh invocation into Markdown tables.

Usage: summarize.py RESULTS_DIR > RESULTS_DIR/summary.md

Times are medians over the runs of a label, with the range in brackets.
"CPU" is user + system time of the process, which contention from other
processes on the machine changes less than the wall time.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

STAGES = ["read", "delta", "svd", "cost table", "allocate", "quantize", "measure", "write"]


def load(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, digits=1):
    """Format the median with the range, e.g. `12.3 (11.9–13.0)`."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    text = f"{statistics.median(values):.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}–{max(values):.{digits}f})"
    return text


def group(records):
    groups = defaultdict(list)
    for record in records:
        groups[record["label"]].append(record)
    return groups


def cli_tables(cli):
    lines = ["## Native CLI (`adamix compress --ratio 1/16`)", ""]
    lines.append("| label | runs | wall s | CPU s | max RSS MiB | rel. error | " + " | ".join(f"{s} s" for s in STAGES) + " | median load |")
    lines.append("|---|---|---|---|---|---|" + "---|" * len(STAGES) + "---|")
    for label, records in group(cli).items():
        ok = [r for r in records if "error" not in r]
        row = [
            label, f"{len(ok)}/{len(records)}",
            spread([r.get("wall_s") for r in ok]),
            spread([r.get("user_s", 0) + r.get("sys_s", 0) for r in ok]),
            spread([r.get("max_rss_kb", 0) / 1024 for r in ok], 0),
            f"{median([r.get('summary', {}).get('rel_error_total') for r in ok]):.5f}" if ok else "–",
        ]
        row += [spread([r["stages"].get(stage) for r in ok if stage in r["stages"]]) for stage in STAGES]
        row.append(f"{median([r['load_before'][0] for r in records]):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    failed = [r for r in cli if "error" in r]
    for record in failed:
        lines.append(f"\nFAILED {record['label']}: {record['error']}")
    return lines


def error_comparison(cli):
    lines = ["", "## Randomized (auto) versus full SVD: relative error of the compressed matrix", ""]
    lines.append("| pair | auto | --svd full | (auto − full) / full |")
    lines.append("|---|---|---|---|")
    groups = group(cli)
    for pair in ("attn", "mlp"):
        auto = median([r.get("summary", {}).get("rel_error_total") for r in groups.get(pair, [])])
        full = median([r.get("summary", {}).get("rel_error_total") for r in groups.get(f"{pair}-svd-full", [])])
        if auto is None or full is None:
            continue
        lines.append(f"| {pair} | {auto:.5f} | {full:.5f} | {100 * (auto - full) / full:+.2f}% |")
    return lines


def numpy_table(numpy_records, cli):
    lines = ["", "## numpy.linalg.svd anchor (same f32 delta)", ""]
    lines.append("| label | runs | wall s | CPU s | CLI pipeline wall / numpy SVD wall | CLI svd stage / numpy SVD |")
    lines.append("|---|---|---|---|---|---|")
    groups = group(cli)
    for label, records in group(numpy_records).items():
        pair = label.removeprefix("numpy-")
        numpy_wall = median([r["wall_s"] for r in records])
        cli_wall = median([r.get("wall_s") for r in groups.get(pair, [])])
        cli_svd = median([r["stages"].get("svd") for r in groups.get(pair, [])])
        ratio = f"{cli_wall / numpy_wall:.2f}" if cli_wall else "–"
        svd_ratio = f"{cli_svd / numpy_wall:.2f}" if cli_svd else "–"
        lines.append(f"| {label} {records[0]['shape']} | {len(records)} | {spread([r['wall_s'] for r in records])} | "
                     f"{spread([r['cpu_s'] for r in records])} | {ratio} | {svd_ratio} |")
    return lines


def llama_table(cli):
    lines = ["", "## Llama-2-7B-shaped pair: per-tensor seconds from the report (median over tensors of a shape)", ""]
    lines.append("| label | tensors | wall s | max RSS MiB | shape | count | median s | sum s |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for label, records in group(cli).items():
        if not label.startswith("llama"):
            continue
        for record in records:
            by_shape = defaultdict(list)
            for tensor in record.get("tensors", []):
                if tensor.get("kind") in ("adamix",):
                    by_shape[tuple(tensor["shape"])].append(tensor["seconds"])
            for shape, seconds in sorted(by_shape.items()):
                lines.append(f"| {label} | {len(record.get('tensors', []))} | {record.get('wall_s', 0):.0f} | "
                             f"{record.get('max_rss_kb', 0) / 1024:.0f} | {list(shape)} | {len(seconds)} | "
                             f"{statistics.median(seconds):.1f} | {sum(seconds):.0f} |")
    return lines


def browser_table(browser, cli):
    lines = ["", "## Page in headless Chromium (WebAssembly in a Web Worker)", ""]
    lines.append("| case | runs | wall s (click to done) | core s (report) | native 1-thread wall s | browser / native 1 thread | "
                 "renderer peak RSS MiB | worker linear memory MiB | rel. error |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    groups = group(cli)
    for label, records in group(browser).items():
        timed = [r for r in records if r.get("run") != "memory" and r.get("state") == "done"]
        memory = [r for r in records if r.get("run") == "memory" and r.get("state") == "done"]
        paired = [r for r in timed if r.get("native_1thread_wall_s")]
        if paired:
            # Each browser run has its own native run just before it, under the same load.
            native = median([r["native_1thread_wall_s"] for r in paired])
            ratios = [r["wall_s"] / r["native_1thread_wall_s"] for r in paired]
            ratio = f"{spread(ratios, 2)} paired"
        else:
            native = median([r.get("wall_s") for r in groups.get(f"{label}-1thread", [])])
            wall = median([r["wall_s"] for r in timed])
            ratio = f"{wall / native:.2f}" if wall and native else "–"
        peaks = [max(p["peak_rss_kb"] for p in r["renderers"]) / 1024 for r in records if r.get("renderers")]
        linear = [r["wasm_memory_max_bytes"] / 2**20 for r in memory if r.get("wasm_memory_max_bytes")]
        errors = [r.get("rel_error_total") for r in timed + memory]
        lines.append(f"| {label} | {len(timed)}/{len([r for r in records if r.get('run') != 'memory'])} | {spread([r['wall_s'] for r in timed])} | "
                     f"{spread([r.get('summary_seconds') for r in timed])} | {'–' if native is None else f'{native:.1f}'} | {ratio} | "
                     f"{spread(peaks, 0)} | {spread(linear, 0)} | {median(errors) if errors else '–'} |")
    for record in browser:
        if record.get("state") != "done":
            lines.append(f"\nFAILED browser {record.get('label')} run {record.get('run')}: {record.get('error')}")
        for sample in record.get("measure_memory_samples", []):
            types = sorted({t for entry in sample.get("breakdown", []) for t in entry["types"]} | {entry["scope"] for entry in sample.get("breakdown", []) if entry["scope"]})
            lines.append(f"\nmeasureUserAgentSpecificMemory ({record['label']}): asked at {sample['at_s']:.1f} s, "
                         f"answered after {sample.get('answered_after_s', 0):.1f} s, {sample.get('bytes', 0) / 2**20:.1f} MiB, kinds {types}{' error ' + sample['error'] if 'error' in sample else ''}")
    return lines


EXPLORER_FIELDS = [
    ("solve_ms", "solve ms (all workers, joined)"),
    ("round_trip_ms", "request to drawn ms"),
    ("draw_ms", "drawing ms"),
    ("painted_ms", "change to painted ms"),
    ("worker_cpu_ms", "worker CPU ms"),
    ("main_cpu_ms", "main thread CPU ms"),
]


def explorer_table(explorer):
    """Tabulate the budget explorer's times from a ratio change to the shown result, per target and overall."""
    lines = ["", "## Budget explorer: time from a ratio change to the shown result", ""]
    runs = [r for r in explorer if r.get("state") == "done"]
    workers = sorted({str(r.get("workers", "1")) for r in runs})
    lines.append(f"{len(runs)}/{len(explorer)} browser runs completed, the explorer on {'/'.join(workers) or '–'} workers. Opening it took "
                 f"{spread([r.get('open_s') for r in runs])} s (after a compression of {spread([r.get('compress_s') for r in runs])} s).")
    lines.append("")
    lines.append("| target | set through | changes | " + " | ".join(title for _, title in EXPLORER_FIELDS) + " | median load |")
    lines.append("|---|---|---|" + "---|" * len(EXPLORER_FIELDS) + "---|")
    changes = [c for r in explorer for c in r.get("changes", []) if c.get("state") == "solved"]
    targets = list(dict.fromkeys(c["target"] for c in changes))
    for target, selected in [(t, [c for c in changes if c["target"] == t]) for t in targets] + [("all", changes)]:
        via = selected[0]["via"] if target != "all" and selected else "both"
        row = [target, via, str(len(selected))]
        row += [spread([c.get(field) for c in selected], 0) for field, _ in EXPLORER_FIELDS]
        load_values = [c["load_before"][0] for c in selected if c.get("load_before")]
        row.append(f"{median(load_values):.1f}" if load_values else "–")
        lines.append("| " + " | ".join(row) + " |")
    checks = [check for r in explorer for check in r.get("equality", [])]
    if checks:
        lines += ["", "| target | explorer equals a full compression (sizes, widths, allocation) | file bytes | rel. error | full run's rel. error | max per-tensor rel. error difference |",
                  "|---|---|---|---|---|---|"]
        for check in checks:
            same = "yes" if check["identical_allocation"] else "NO: " + "; ".join(check["differences"])
            lines.append(f"| {check['target']} | {same} | {check['compressed_bytes']} | {check['rel_error_total']:.6f} | "
                         f"{check['full_rel_error_total']:.6f} | {check['max_tensor_rel_error_difference']:.1e} |")
    for record in explorer:
        if record.get("state") != "done":
            lines.append(f"\nFAILED explorer {record.get('label')} run {record.get('run')}: {record.get('error')}")
    return lines


EXPLORER_STAGES = ["read", "delta", "allocate", "quantize", "measure", "write"]


def explorer_stages_table(records):
    """Tabulate the stages of the explorer's solves, per target (milliseconds in the worker)."""
    lines = ["", "## Budget explorer: stages of a solve of every tensor in one worker (ms, from the core's progress events during Explorer.write_share)", ""]
    lines.append("| target | solves | Explorer.solve_share ms | Explorer.write_share ms | " + " | ".join(f"{stage} ms" for stage in EXPLORER_STAGES)
                 + " | slowest matrix (ms) | load |")
    lines.append("|---|---|---|---|" + "---|" * len(EXPLORER_STAGES) + "---|---|")
    solves = [(record, solve) for record in records if record.get("state") == "done" for solve in record.get("solves", [])]
    for target in dict.fromkeys(solve["target"] for _, solve in solves):
        selected = [(record, solve) for record, solve in solves if solve["target"] == target]
        row = [target, str(len(selected)),
               spread([solve["solve_ms"] for _, solve in selected], 0),
               spread([solve["write_ms"] for _, solve in selected], 0)]
        row += [spread([solve["stages_ms"].get(stage, 0) for _, solve in selected], 0) for stage in EXPLORER_STAGES]
        slowest = [solve["slowest_matrices"][0] for _, solve in selected if solve["slowest_matrices"]]
        if slowest and all(matrix["name"] == slowest[0]["name"] for matrix in slowest):
            first = slowest[0]
            row.append(f"{first['name']} {first['shape']} rank {first['kept_rank']}: {spread([matrix['ms'] for matrix in slowest], 0)}")
        else:
            row.append("differs between solves" if slowest else "–")
        row.append(f"{median([record['load_before'][0] for record, _ in selected]):.1f}")
        lines.append("| " + " | ".join(row) + " |")
    for record in records:
        if record.get("state") != "done":
            lines.append(f"\nFAILED explorer stages {record.get('label')} run {record.get('run')}: {record.get('error')}")
    return lines


def main(argv):
    results = Path(argv[1])
    cli = load(results / "cli.jsonl")
    browser = load(results / "browser.jsonl")
    explorer = load(results / "explorer.jsonl")
    lines = [f"# Benchmark results: {results.name}", "", "```", (results / "machine.txt").read_text().strip(), "```", ""]
    if cli:
        lines += cli_tables(cli)
        lines += error_comparison(cli)
        lines += numpy_table(load(results / "numpy.jsonl"), cli)
        lines += llama_table(cli)
    if browser:
        lines += browser_table(browser, cli)
    if explorer:
        lines += explorer_table(explorer)
    explorer_stages = load(results / "explorer-stages.jsonl")
    if explorer_stages:
        lines += explorer_stages_table(explorer_stages)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
