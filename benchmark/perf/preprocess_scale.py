"""Wall time and peak memory of the RSC15 preprocessing at full scale.

Usage::

    python -m benchmark.perf.preprocess_scale [--clicks FILE] [--work-dir DIR]
        [--fraction F] [--seed N] [--json OUT]

Without ``--clicks`` it first writes a simulated raw file of RSC15's shape
(``python -m datasets.generate_rsc15``, default fraction 1.0: ~33M clicks, ~1.5 GB) into
``--work-dir`` (default: a temporary folder, deleted afterwards). Each stage runs in its own
subprocess, measured with ``os.wait4`` (wall clock and that process's peak RSS):

1. generation (unless ``--clicks``);
2. ``load_rsc15`` with an empty cache: hash, read, preprocess, write the cache (a cold run);
3. ``load_rsc15`` again: the cached splits (what every later benchmark run pays).

"process" figures cover the whole subprocess (interpreter start, imports, and for the loads also
the split statistics printed for the report); the ``load_rsc15`` columns time that call alone.
The report compares the prepared split counts with those of the real RSC15 (docs/PROTOCOL.md).
A freshly generated file is in the page cache, so disk read time is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.cli_options import add_data_options

REAL_RSC15 = {
    "train": {"events": 31_637_239, "sessions": 7_966_257, "items": 37_483},
    "test": {"events": 71_222, "sessions": 15_324, "items": 6_751},
    "train_tr": {"events": 31_579_006, "sessions": 7_953_885},
    "valid": {"events": 58_233, "sessions": 12_372},
}
"""Split counts of the real yoochoose-clicks.dat after the GRU4Rec preprocessing (docs/PROTOCOL.md)."""


def run_measured(args: list[str]) -> tuple[float, float, float, str]:
    """Run ``args``; return (wall s, CPU s, peak RSS in GiB, stdout). Raises on failure."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 2**20, out  # ru_maxrss is in KiB on Linux


def load_child(clicks: Path, cache_dir: Path) -> None:
    """In the subprocess: load the dataset, then print timings and split counts as JSON.

    ``load_seconds`` / ``load_peak_rss_gib`` cover ``load_rsc15`` alone (the peak is read from
    /proc before the split statistics, which are the harness's own extra work).
    """
    import logging

    from datasets.rsc15 import load_rsc15

    logging.basicConfig(level=logging.INFO, format="  %(name)s: %(message)s", stream=sys.stderr)
    started = time.perf_counter()
    dataset = load_rsc15(clicks, cache_dir=cache_dir)
    load_seconds = time.perf_counter() - started
    peak = _peak_rss_gib()
    print(
        json.dumps(
            {
                "cache": dataset.source["cache"],
                "load_seconds": load_seconds,
                "load_peak_rss_gib": peak,
                "counts": dataset.split_counts(),
            }
        )
    )


def _peak_rss_gib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def measure(clicks: Path | None, work_dir: Path, fraction: float, seed: int) -> dict:
    """Run the stages and return the measurements."""
    python = sys.executable
    report: dict = {"cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()}
    if clicks is None:
        clicks = work_dir / "yoochoose-clicks-simulated.dat"
        wall, cpu, rss, out = run_measured(
            [
                python,
                "-m",
                "datasets.generate_rsc15",
                str(clicks),
                "--fraction",
                str(fraction),
                "--seed",
                str(seed),
            ]
        )
        report["generate"] = {
            "seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_gib": rss,
            "output": out.strip(),
        }
    report["clicks"] = {"path": str(clicks), "bytes": clicks.stat().st_size}
    cache = work_dir / "cache"
    for stage in ("preprocess_cold", "load_cached"):
        wall, cpu, rss, out = run_measured(
            [python, "-m", "benchmark.perf.preprocess_scale", "--_load", str(clicks), str(cache)]
        )
        result = json.loads(out.strip().splitlines()[-1])
        report[stage] = {
            "seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_gib": rss,
            "cache": result["cache"],
            "load_seconds": result["load_seconds"],
            "load_peak_rss_gib": result["load_peak_rss_gib"],
        }
        report["counts"] = result["counts"]
    report["load_average_end"] = os.getloadavg()
    return report


def format_report(report: dict) -> str:
    loads = [f"{report[k][0]:.1f}" for k in ("load_average_start", "load_average_end")]
    lines = [
        f"machine: {report['cpu_count']} CPUs; 1-min load average {loads[0]} at start, "
        f"{loads[1]} at end (other users' work included)",
        f"input: {report['clicks']['path']} ({report['clicks']['bytes']:,} bytes)",
        "",
        "| stage | process wall (s) | process CPU (s) | process peak RSS (GiB) "
        "| load_rsc15 wall (s) | load_rsc15 peak RSS (GiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage in ("generate", "preprocess_cold", "load_cached"):
        if stage in report:
            r = report[stage]
            inner = (
                f"{r['load_seconds']:.1f} | {r['load_peak_rss_gib']:.2f}"
                if "load_seconds" in r
                else "- | -"
            )
            lines.append(
                f"| {stage} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} "
                f"| {r['peak_rss_gib']:.2f} | {inner} |"
            )
    lines += [
        "",
        "| split | events | sessions | items | real RSC15 (events / sessions / items) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for split, c in report["counts"].items():
        real = REAL_RSC15.get(split, {})
        real_text = " / ".join(f"{v:,}" for v in real.values())
        lines.append(
            f"| {split} | {c['events']:,} | {c['sessions']:,} | {c['items']:,} | {real_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.perf.preprocess_scale", description=__doc__.split("\n\n")[0]
    )
    add_data_options(
        parser,
        data_dir=False,
        cache_dir=False,
        clicks_help="existing raw click file (skip generation)",
    )
    parser.add_argument("--work-dir", type=Path, help="where to write the file and the cache")
    parser.add_argument("--fraction", type=float, default=1.0, help="generator fraction (1.0)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--_load", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._load:
        load_child(*args._load)
        return 0
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="preprocess-scale-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = measure(args.clicks, work_dir, args.fraction, args.seed)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            shutil.rmtree(work_dir / "cache", ignore_errors=True)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
