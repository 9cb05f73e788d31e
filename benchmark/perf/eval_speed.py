"""How long the evaluation of a fitted model takes: :func:`benchmark.evaluator.evaluate` alone.

Each algorithm is built from the dataset's shipped config (``configs/<dataset>.toml``, as
``benchmark.perf.session_baselines`` does, whose options this script shares; defaults for an
algorithm without a table) and fitted on the training split; then the full-ranking evaluation
of the test split is timed, ``--repeats`` times. Per evaluation: wall and CPU seconds,
predictions/s, and the load average before and after (on a shared machine it says how many
other jobs competed for the cores). ``dense-random`` is no algorithm but a model whose step
returns a fixed dense float32 score matrix: it times the evaluator itself (queueing, ranking).

Threads: the session-kNN methods score on two threads while a second core is free
(``algorithms.neighborhood.THREADS``, ``--threads``; the record counts the steps scored on each
count); GRU4Rec and the neural models evaluate with torch's thread count (``--torch-threads``,
default torch's own: all cores). How long a model trained does not change what its evaluation
costs, so ``--epochs N`` fits the models that train in epochs for N epochs only, and
``--fit-sessions N`` fits on the first N training sessions (the scores still cover every
training item; for GRU4Rec and the neural models only: a smaller kNN index or rule table would
evaluate faster); both are recorded. Each model's first evaluation of a few sessions, which
loads the compiled loops, is not timed.
Examples::

    python -m benchmark.perf.eval_speed --dataset rsc15-64 --data-dir PATH \\
        --out results/perf/eval_speed_rsc15-64.json
    python -m benchmark.perf.eval_speed --dataset rsc15-64 --data-dir PATH \\
        --algorithms gru4rec,gru4rec@rsc15-best-paramfile,narm,stamp,sr-gnn,sasrec \\
        --epochs 1 --fit-sessions 20000 --torch-threads 2 \\
        --out results/perf/eval_speed_rsc15-64_neural.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
import torch

import algorithms.neighborhood as neighborhood
from benchmark.config import load_tables, resolve
from benchmark.evaluator import DEFAULT_TIE_MODE, TIE_MODES, evaluate
from benchmark.metrics import mrr_at, recall_at
from benchmark.options import DEFAULT_ALGORITHMS
from benchmark.perf import session_baselines
from benchmark.perf.epoch_timing import machine
from benchmark.perf.gru4rec_speed import emit
from benchmark.registry import get_algorithm

log = logging.getLogger(__name__)

SLOW_FITS = ("bpr-mf", "gru4rec")
"""Left out of the default list: they train for minutes (name them, with ``--epochs``)."""

DEFAULT = (*(a for a in DEFAULT_ALGORITHMS if a not in SLOW_FITS), "dense-random")


class DenseRandom:
    """Scores every item with a fixed random float32 matrix (one row per slot): the evaluator's
    own cost with a model whose step costs nothing but returns dense scores."""

    name = "dense-random"

    def __init__(self, n_items: int, seed: int = 0) -> None:
        self.n_items, self.seed = n_items, seed

    def get_params(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "seed": self.seed}

    def fit(self, train) -> DenseRandom:
        return self

    def init_state(self, n_slots: int) -> None:
        rng = np.random.default_rng(self.seed)
        self.scores_ = rng.random((n_slots, self.n_items), dtype=np.float32)

    def select_state(self, state, keep: np.ndarray) -> None:
        return None

    def step(self, state, items: np.ndarray, reset: np.ndarray) -> np.ndarray:
        return self.scores_[: len(items)]


def _loads() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _time_evaluations(model, test, args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    decided: Counter[int] = Counter()
    choose = neighborhood.scoring_threads

    def counted() -> int:
        n = choose()
        decided[n] += 1
        return n

    neighborhood.scoring_threads = counted
    try:
        for _ in range(args.repeats):
            decided.clear()
            gc.collect()
            before = _loads()
            cpu, wall = time.process_time(), time.perf_counter()
            preds = evaluate(
                model, test, tie_mode=args.tie_mode, batch_size=args.batch_size, progress=False
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            runs.append(
                {
                    "seconds": round(wall, 2),
                    "cpu_seconds": round(cpu, 2),
                    "predictions": len(preds),
                    "predictions_per_s": round(len(preds) / wall),
                    "loadavg_before": before,
                    "loadavg_after": _loads(),
                    "recall@20": round(recall_at(preds.rank, 20), 4),
                    "mrr@20": round(mrr_at(preds.rank, 20), 4),
                    **({"steps_by_threads": dict(decided)} if decided else {}),
                }
            )
            log.info("%s evaluate: %s", getattr(model, "name", ""), runs[-1])
    finally:
        neighborhood.scoring_threads = choose
    return runs


def _build(spec, args: argparse.Namespace):
    """The unfitted model of ``spec``, to train for ``--epochs`` epochs where it has epochs."""
    if args.epochs is not None and "n_epochs" in get_algorithm(spec.algorithm).param_names():
        spec = dataclasses.replace(spec, params={**spec.params, "n_epochs": args.epochs})
    return spec.build(seed=args.seed, device="cpu")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import load_dataset

    start = time.perf_counter()
    data = load_dataset(
        args.dataset, data_dir=args.data_dir, clicks=args.clicks, cache_dir=args.cache_dir
    )
    keep = data.test.n_sessions if args.max_test_sessions is None else args.max_test_sessions
    test = data.test.subset(np.arange(min(keep, data.test.n_sessions)))
    train = data.train
    if args.fit_sessions is not None:  # the same items (the width of the scores), fewer sessions
        train = train.subset(np.arange(min(args.fit_sessions, train.n_sessions)))
    tables, sources = load_tables(args.dataset, args.config)
    real = [a for a in args.algorithms if a != "dense-random"]
    specs = {s.label: s for s in resolve(real, tables, " + ".join(sources) or "defaults")}
    results = []
    for label in args.algorithms:
        if label == "dense-random":
            model = DenseRandom(train.n_items, args.seed)
        else:
            model = _build(specs[label], args)
        fit = time.perf_counter()
        model.fit(train)
        fit = time.perf_counter() - fit
        # Untimed: the compiled loops load (or compile, the first time) on first use.
        evaluate(model, test.subset(np.arange(min(10, test.n_sessions))), progress=False)
        runs = _time_evaluations(model, test, args)
        results.append(
            {
                "algorithm": label,
                "hyperparameters": model.get_params(),
                "fit_seconds": round(fit, 2),
                "evaluations": runs,
                "best_seconds": min(r["seconds"] for r in runs),
                "best_predictions_per_s": max(r["predictions_per_s"] for r in runs),
            }
        )
        del model
        gc.collect()
    return {
        "command": " ".join(["python -m benchmark.perf.eval_speed", *sys.argv[1:]]),
        "dataset": args.dataset,
        "counts": {"train": data.train.stats(), "fit": train.stats(), "test": test.stats()},
        "config": sources,
        "batch_size": args.batch_size,
        "tie_mode": args.tie_mode,
        "knn_threads": args.threads,
        "epochs": args.epochs,
        "fit_sessions": args.fit_sessions,
        "machine": {
            **machine("cpu"),  # torch's thread count in force for the evaluations
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "numpy": np.__version__,
            "compiled_loops": neighborhood.COMPILED,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "total_seconds": round(time.perf_counter() - start, 1),
        "results": results,
    }


def _parser() -> argparse.ArgumentParser:
    """``session_baselines``' options (dataset, data, config, algorithms, test sessions, batch
    size, seed, out) and this script's own."""
    p = session_baselines._parser()
    p.prog = "python -m benchmark.perf.eval_speed"
    p.description = __doc__.split("\n")[0]
    p.set_defaults(algorithms=list(DEFAULT))
    p.add_argument("--tie-mode", choices=TIE_MODES, default=DEFAULT_TIE_MODE)
    p.add_argument("--repeats", type=int, default=1, help="evaluations per algorithm")
    p.add_argument(
        "--threads",
        choices=("auto", "1", "2"),
        default="auto",
        help="threads of the session-kNN scoring (auto: 2 while a second core is free)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch's CPU threads while GRU4Rec and the neural models evaluate (default: torch's)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="fit the models that train in epochs for this many only (default: the config's)",
    )
    p.add_argument(
        "--fit-sessions",
        type=int,
        default=None,
        help="fit on the first N training sessions only (the scores keep every training item)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    neighborhood.THREADS = None if args.threads == "auto" else int(args.threads)
    if args.torch_threads is not None:  # the models' fits restore it after training
        torch.set_num_threads(args.torch_threads)
    emit(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
