"""GRU4Rec CPU training speed on a quiet machine and beside busy processes, written as JSON.

    python -m benchmark.perf.gru4rec_contention --dataset rsc15-64 --data-dir PATH \
        --train-sessions 40000 --busy 2 --out results/perf/gru4rec_contention.json

(``--data-dir PATH``: the folder holding one subfolder per dataset, default ``data``; give it
explicitly where the data lies elsewhere.)

For each thread setting (the default, chosen while training, and fixed counts) it trains one
epoch twice: once on the machine as it is, once while ``--busy`` processes spin on the CPU (a
pure-Python busy loop each, the worst neighbour a training thread can have), and reports
training events/s and the busy/quiet ratio. Each measurement runs in a fresh process, so the
thread pools of one do not leak into the next. Run it on an otherwise idle machine: the quiet
figures are only quiet if nothing else runs (the load average is recorded before each run).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmark.cli_options import add_data_options
from benchmark.perf.gru4rec_speed import emit

log = logging.getLogger(__name__)

SETTINGS = {"default": None, "1 thread": 1, "all threads": os.cpu_count() or 1}


def _spin(stop: mp.synchronize.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _train_once(args: argparse.Namespace, threads: int | None) -> dict:
    """One epoch in a child process; its JSON result."""
    cmd = [
        sys.executable,
        "-m",
        "benchmark.perf.gru4rec_speed",
        "--dataset",
        args.dataset,
        "--data-dir",
        str(args.data_dir),
        "--preset",
        args.preset,
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--no-eval",
    ]
    if args.train_sessions:
        cmd += ["--train-sessions", str(args.train_sessions)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def measure(args: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    for name, threads in SETTINGS.items():
        row: dict[str, object] = {"threads": threads}
        for condition in ("quiet", "busy"):
            stop = mp.Event()
            spinners = [
                mp.Process(target=_spin, args=(stop,), daemon=True)
                for _ in range(args.busy if condition == "busy" else 0)
            ]
            for p in spinners:
                p.start()
            time.sleep(1.0 if spinners else 0.0)
            load = os.getloadavg()
            try:
                res = _train_once(args, threads)
            finally:
                stop.set()
                for p in spinners:
                    p.join()
            row[condition] = {
                "events_per_s": res["train_events_per_s_best"],
                "loadavg_before": load,
            }
            log.info("%s, %s: %.0f events/s", name, condition, res["train_events_per_s_best"])
        row["busy_over_quiet"] = row["busy"]["events_per_s"] / row["quiet"]["events_per_s"]
        results[name] = row
    return {
        "dataset": args.dataset,
        "preset": args.preset,
        "train_sessions": args.train_sessions,
        "busy_processes": args.busy,
        "cpu_count": os.cpu_count(),
        "settings": results,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="rsc15-64")
    add_data_options(p, clicks=False, cache_dir=False)
    p.add_argument("--preset", default="rsc15-best")
    p.add_argument(
        "--train-sessions", type=int, default=40_000, help="train on the first N sessions (0: all)"
    )
    p.add_argument("--busy", type=int, default=2, help="busy-loop processes beside training")
    p.add_argument("--out", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    emit(measure(args), args.out)


if __name__ == "__main__":
    main()
