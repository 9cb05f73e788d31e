"""Fit and evaluation cost of the baselines at full RSC15 scale, on seeded synthetic sessions.

Full RSC15 after preprocessing has 31,637,239 training clicks in 7,966,257 sessions over
37,483 items, and 55,898 test predictions. This script builds training and test ``Sessions``
of that shape in memory with the click model of :mod:`datasets.synthetic` (Zipf-Mandelbrot
item popularity, clustered Markov walks, RSC15-like session lengths: training sessions have
at least 2 clicks, mean about 3.97, a long tail capped at 200) and measures, stage by stage:

- Item-KNN: fit time and peak memory (default hyperparameters, per-session counting);
- BPR-MF: seconds per training iteration (from fits of two lengths, so the set-up cancels
  out) and peak memory, for each thread count asked for;
- evaluation of POP, S-POP, Item-KNN and BPR-MF on the 55,898 predictions x 37,483 items with
  :func:`benchmark.evaluator.evaluate` (conservative ties).

Peak memory is the process's peak RSS during the stage (``benchmark.resources.measure``
resets the kernel's high-water mark at the stage start), so it includes the ~0.3 GiB of
training data the process holds throughout; ``rss_start_mb`` gives the level at the start.
Results go to stdout and, with ``--out``, to a JSON file::

    python -m benchmark.perf.baselines_scale --out results/perf/baselines_scale.json
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.base import SessionRecommender
from benchmark.evaluator import evaluate
from benchmark.metrics import recall_at
from benchmark.perf.gru4rec_speed import emit
from benchmark.resources import measure
from datasets.sessions import Sessions
from datasets.synthetic import ClickModel, make_catalogue, sample_items, sample_lengths

log = logging.getLogger(__name__)

RSC15_TRAIN_SESSIONS = 7_966_257
RSC15_ITEMS = 37_483
RSC15_TEST_PREDICTIONS = 55_898

SCALE_MODEL = ClickModel(
    n_items=RSC15_ITEMS,
    n_clusters=750,  # about 50 items per cluster, as in the small synthetic dataset
    p_single=0.0,  # preprocessed RSC15 training sessions have at least 2 clicks
)
"""RSC15's training shape: extra clicks beyond 2 average 0.8 * 1 + 0.2 * 5.75 = 1.95."""


def make_sessions(
    model: ClickModel, catalogue, lengths: np.ndarray, rng: np.random.Generator
) -> Sessions:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = sample_items(catalogue, model, lengths, rng)
    return Sessions(items=items, offsets=offsets, n_items=model.n_items)


def target_lengths(model: ClickModel, n_predictions: int, rng: np.random.Generator) -> np.ndarray:
    """Session lengths (>= 2) giving exactly ``n_predictions`` next-click targets."""
    lengths = sample_lengths(model, 2 * n_predictions, rng)
    n = int(np.searchsorted(np.cumsum(lengths - 1), n_predictions)) + 1
    lengths = lengths[:n].copy()
    lengths[-1] -= int((lengths - 1).sum()) - n_predictions
    if lengths[-1] < 2:  # the last session is too short to trim: merge its clicks into one more
        lengths[-2] += lengths[-1] - 1
        lengths = lengths[:-1]
    return lengths


def generate(
    fraction: float,
    seed: int,
    model: ClickModel = SCALE_MODEL,
    test_predictions: int = RSC15_TEST_PREDICTIONS,
) -> tuple[Sessions, Sessions]:
    """Training sessions (``fraction`` of RSC15's count) and a test set of ``test_predictions``
    next-click targets (default RSC15's 55,898)."""
    rng = np.random.default_rng(seed)
    catalogue = make_catalogue(model, rng)
    n_train = max(int(round(RSC15_TRAIN_SESSIONS * fraction)), 1)
    train = make_sessions(model, catalogue, sample_lengths(model, n_train, rng), rng)
    test = make_sessions(model, catalogue, target_lengths(model, test_predictions, rng), rng)
    return train, test


def rss_mb() -> float:
    """Current resident set size of this process in MiB (NaN where /proc is not available)."""
    try:
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    except OSError:
        return float("nan")
    return int(match.group(1)) / 1024 if match else float("nan")


def staged(name: str, fn: Callable[[], Any], results: list[dict]) -> Any:
    """Run ``fn`` as a measured stage; append its record to ``results``; return its value."""
    start_rss = rss_mb()
    with measure() as usage:
        value = fn()
    record = {
        "stage": name,
        "seconds": round(usage.seconds, 2),
        "peak_rss_mb": round(usage.peak_rss_mb),
        "rss_start_mb": round(start_rss),
        "peak_is_per_stage": usage.peak_is_per_stage,
    }
    log.info("%s", record)
    results.append(record)
    return value


def bpr_seconds_per_iteration(
    train: Sessions, threads: int, results: list[dict]
) -> SessionRecommender:
    """Fits of 1 and 3 iterations; (t3 - t1) / 2 is the time of one iteration."""
    from algorithms.bpr_mf import BPRMF

    times = {}
    model = None
    for iterations in (1, 3):
        model = BPRMF(n_epochs=iterations, n_threads=threads, device="cpu")
        staged(
            f"bpr-mf fit, {iterations} it, {threads or 'all'} thread(s)",
            lambda m=model: m.fit(train),
            results,
        )
        times[iterations] = results[-1]["seconds"]
    per_iteration = (times[3] - times[1]) / 2
    results.append(
        {
            "stage": f"bpr-mf seconds per iteration, {threads or 'all'} thread(s)",
            "seconds": round(per_iteration, 2),
        }
    )
    log.info("%s", results[-1])
    return model


def evaluation_stage(
    name: str, model: SessionRecommender, test: Sessions, results: list[dict], batch_size: int
) -> None:
    preds = staged(
        f"{name} evaluate",
        lambda: evaluate(model, test, batch_size=batch_size, progress=False),
        results,
    )
    results[-1]["predictions"] = len(preds)
    results[-1]["recall@20"] = round(recall_at(preds.rank, 20), 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from algorithms.item_knn import ItemKNN
    from algorithms.pop import Pop
    from algorithms.spop import SPop

    results: list[dict] = []
    train, test = staged("generate", lambda: generate(args.fraction, args.seed), results)
    shape = {"train": train.stats(), "test": test.stats()}
    log.info("shape: %s", shape)
    knn = staged("item-knn fit", lambda: ItemKNN().fit(train), results)
    results[-1]["similarities"] = int(knn.sims_.nnz)
    bpr = None
    for threads in args.bpr_threads:
        bpr = bpr_seconds_per_iteration(train, threads, results)
    pop = staged("pop fit", lambda: Pop().fit(train), results)
    spop = staged("spop fit", lambda: SPop().fit(train), results)
    models = [("pop", pop), ("spop", spop), ("item-knn", knn), ("bpr-mf", bpr)]
    for name, model in models:
        if model is not None:
            evaluation_stage(name, model, test, results, args.batch_size)
    return {
        "command": " ".join(["python -m benchmark.perf.baselines_scale", *sys.argv[1:]]),
        "fraction": args.fraction,
        "seed": args.seed,
        "model": dataclasses.asdict(SCALE_MODEL),
        "shape": shape,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": results,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.perf.baselines_scale", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="share of RSC15's training sessions to generate (default 1.0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bpr-threads",
        type=int,
        nargs="*",
        default=[1, 0],
        help="BPR-MF thread counts to time (0 = all cores); none skips BPR-MF",
    )
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    p.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    emit(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
