#!/usr/bin/env python3
"""Run one `adamix compress` and append one JSON line of measurements to a file.

The command runs under `/usr/bin/time -v` (wall time, CPU time, maximum
resident set size) inside `script`, because the CLI prints its per-stage
progress lines only when standard error is a terminal. The progress lines
carry the elapsed time (0.1 s resolution) at which each tensor entered each
stage, so the time of a stage is the gap to the next line. The `--report` JSON
of the run adds the relative error and each tensor's `seconds`.

Usage: measure_cli.py --label L --jsonl FILE --report REPORT [--env K=V ...] -- adamix compress ... --report REPORT
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PROGRESS = re.compile(r"\[(\d+)/(\d+)\] (.+?): ([a-z ]+) \(([0-9.]+) s")
DONE = re.compile(r"done in ([0-9.]+) s")
TIME_FIELDS = {
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall_s",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
    "Maximum resident set size (kbytes)": "max_rss_kb",
    "Exit status": "exit_status",
}


def parse_clock(text):
    """Convert a `time -v` wall clock such as 1:02.5 or 1:02:03 to seconds."""
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_time_file(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in TIME_FIELDS:
            field = TIME_FIELDS[key]
            values[field] = parse_clock(value) if field == "wall_s" else float(value)
    return values


def descendant_rss_kb(root, name):
    """Return the VmRSS in KiB of the first process named `name` below process `root`, or None."""
    parents = {}
    names = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces, so the fields are read after its closing parenthesis.
        names[int(entry.name)] = stat[stat.index("(") + 1:stat.rindex(")")]
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    for pid, command_name in names.items():
        ancestor = parents.get(pid)
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor)
        if command_name == name[:15] and ancestor == root:
            try:
                status = (Path("/proc") / str(pid) / "status").read_text()
            except OSError:
                return None
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
            return int(match.group(1)) if match else None
    return None


def stage_seconds(log_text):
    """Sum the seconds of each stage over all tensors and per tensor, from the progress lines."""
    events = []
    for chunk in re.split(r"[\r\n]", log_text):
        match = PROGRESS.search(chunk)
        if match:
            events.append((match.group(3), match.group(4), float(match.group(5))))
            continue
        match = DONE.search(chunk)
        if match:
            events.append((None, "done", float(match.group(1))))
    by_stage = defaultdict(float)
    by_tensor = defaultdict(lambda: defaultdict(float))
    for (tensor, stage, at), (_, _, next_at) in zip(events, events[1:]):
        by_stage[stage] = round(by_stage[stage] + next_at - at, 2)
        by_tensor[tensor][stage] = round(by_tensor[tensor][stage] + next_at - at, 2)
    return dict(by_stage), {name: dict(stages) for name, stages in by_tensor.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of the measurement, written into the JSON line")
    parser.add_argument("--jsonl", required=True, help="file to append the JSON line to")
    parser.add_argument("--report", help="the --report file of the command, read after it ends")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE set for the command; repeatable")
    parser.add_argument("--rss-timeline", action="store_true", help="also record the command's resident set size in MiB once a second")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("missing the command after --")

    env = dict(os.environ)
    for assignment in args.env:
        key, _, value = assignment.partition("=")
        env[key] = value
    if args.report:
        Path(args.report).unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="adamix-bench-") as scratch:
        time_file = Path(scratch) / "time.txt"
        log_file = Path(scratch) / "terminal.log"
        inner = shlex.join(["/usr/bin/time", "-v", "-o", str(time_file), *command])
        load_before = os.getloadavg()
        started = time.time()
        process = subprocess.Popen(["script", "-q", "-e", "-c", inner, str(log_file)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        timeline = []
        while process.poll() is None:
            if args.rss_timeline:
                rss = descendant_rss_kb(process.pid, Path(command[0]).name)
                if rss is not None:
                    timeline.append([round(time.time() - started, 1), round(rss / 1024)])
            time.sleep(1.0)
        log_text = log_file.read_text(errors="replace")
        measured = parse_time_file(time_file) if time_file.exists() else {}

    record = {
        "label": args.label,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "env": dict(a.split("=", 1) for a in args.env),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        **measured,
    }
    record["stages"], record["tensor_stages"] = stage_seconds(log_text)
    if args.rss_timeline:
        record["rss_timeline_mib"] = timeline
    if measured.get("exit_status", 1) != 0:
        tail = [line for line in re.split(r"[\r\n]", log_text) if line.strip()][-5:]
        record["error"] = "\n".join(tail)
    if args.report and Path(args.report).exists():
        report = json.loads(Path(args.report).read_text())
        summary = report["summary"]
        record["summary"] = {key: summary.get(key) for key in ("rel_error_total", "seconds", "compressed_bytes", "ratio_achieved", "f16_delta_bytes")}
        record["tensors"] = [
            {key: row.get(key) for key in ("name", "shape", "kind", "seconds", "rel_error", "kept_rank")}
            for row in report["tensors"]
        ]
    with open(args.jsonl, "a") as file:
        file.write(json.dumps(record) + "\n")

    status = "ok" if "error" not in record else "FAILED"
    rss_mb = record.get("max_rss_kb", 0) / 1024
    error = record.get("summary", {}).get("rel_error_total")
    print(f"  {args.label}: {status}, wall {record.get('wall_s', float('nan')):.1f} s, CPU {record.get('user_s', 0) + record.get('sys_s', 0):.1f} s, "
          f"max RSS {rss_mb:.0f} MiB, rel. error {error}, load {record['load_before'][0]:.1f}", flush=True)
    return 0 if "error" not in record else 1


if __name__ == "__main__":
    sys.exit(main())
