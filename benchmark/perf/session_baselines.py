"""Fit and evaluation cost of the seven session baselines (sknn, vsknn, stan, vstan, sr, ar,
markov).

Each method is built from the dataset's shipped config (``configs/<dataset>.toml``), fitted on
the training split and evaluated on the test split with :func:`benchmark.evaluator.evaluate`
(conservative ties), one after the other in one process. Per stage: wall time and the peak RSS
during the stage (``benchmark.resources.measure`` resets the kernel's high-water mark at its
start, so the figure includes the prepared data the process holds throughout). The load
average before and after every stage is recorded too: on a shared machine it says how many
other jobs competed for the cores. Examples::

    python -m benchmark.perf.session_baselines --dataset rsc15-64 --data-dir PATH \\
        --out results/perf/session_baselines_rsc15-64.json
    python -m datasets.generate_rsc15 /tmp/scale/yoochoose-clicks.dat --seed 0
    python -m benchmark.perf.session_baselines --dataset rsc15 \\
        --clicks /tmp/scale/yoochoose-clicks.dat --cache-dir /tmp/scale/cache \\
        --out results/perf/session_baselines_rsc15_simulated.json
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cli_options import add_data_options
from benchmark.config import load_tables, resolve
from benchmark.evaluator import evaluate
from benchmark.metrics import mrr_at, recall_at
from benchmark.perf.gru4rec_speed import emit
from benchmark.resources import measure

log = logging.getLogger(__name__)

METHODS = ("sknn", "vsknn", "stan", "vstan", "sr", "ar", "markov")


def _stage(name: str, fn, results: list[dict]) -> Any:
    load_before = os.getloadavg()
    with measure() as usage:
        value = fn()
    results.append(
        {
            "stage": name,
            "seconds": round(usage.seconds, 2),
            "peak_rss_mb": round(usage.peak_rss_mb, 1),
            "peak_is_per_stage": usage.peak_is_per_stage,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
    )
    log.info("%s", results[-1])
    return value


def _measure_one(spec, train, test, batch_size: int, seed: int, results: list[dict]) -> dict:
    """Fit and evaluate one method; its hyperparameters."""
    model = spec.build(seed=seed, device="cpu")
    _stage(f"{spec.label} fit", lambda: model.fit(train), results)
    preds = _stage(
        f"{spec.label} evaluate",
        lambda: evaluate(model, test, batch_size=batch_size, progress=False),
        results,
    )
    results[-1].update(
        predictions=len(preds),
        **{
            "recall@20": round(recall_at(preds.rank, 20), 4),
            "mrr@20": round(mrr_at(preds.rank, 20), 4),
        },
    )
    return model.get_params()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import load_dataset

    results: list[dict] = []
    start = time.perf_counter()
    data = _stage(
        "load data",
        lambda: load_dataset(
            args.dataset, data_dir=args.data_dir, clicks=args.clicks, cache_dir=args.cache_dir
        ),
        results,
    )
    test = data.test
    if args.max_test_sessions is not None:
        test = test.subset(np.arange(min(args.max_test_sessions, test.n_sessions)))
    tables, sources = load_tables(args.dataset, args.config)
    specs = resolve(args.algorithms, tables, " + ".join(sources) or "defaults")
    methods = {}
    for spec in specs:
        methods[spec.label] = _measure_one(
            spec, data.train, test, args.batch_size, args.seed, results
        )
        gc.collect()  # the fitted model is gone: the next stage starts from the data alone
    return {
        "command": " ".join(["python -m benchmark.perf.session_baselines", *sys.argv[1:]]),
        "dataset": args.dataset,
        "counts": {"train": data.train.stats(), "test": test.stats()},
        "hyperparameters": methods,
        "config": sources,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_seconds": round(time.perf_counter() - start, 1),
        "stages": results,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.perf.session_baselines", description=__doc__.split("\n")[0]
    )
    p.add_argument("--dataset", required=True)
    add_data_options(p)
    p.add_argument("--config", type=Path, default=None, help="TOML over the shipped config")
    p.add_argument("--algorithms", type=lambda s: s.split(","), default=list(METHODS))
    p.add_argument(
        "--max-test-sessions",
        type=int,
        default=None,
        help="evaluate only the first N test sessions (default: all)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    emit(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
