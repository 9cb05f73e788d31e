"""GRU4Rec speed: training events/s and evaluation predictions/s, written as JSON.

    python -m benchmark.perf.gru4rec_speed --dataset rsc15-64 --data-dir PATH \
        --preset rsc15-best --batch-size 32 --device cpu --epochs 1 [--out speed.json]

``--data-dir PATH`` is the folder holding one subfolder per dataset (default ``data``, inside
the repository; docs/data.md); give it explicitly where the data lies elsewhere.

A training event is one (input, target) pair; events/s is measured over whole epochs by
``GRU4Rec.fit`` (per epoch, wall clock), and also as events per CPU-second of the whole ``fit``
(setup included), which approximates a quiet machine's wall time when training uses one thread. Evaluation runs the
benchmark's evaluator over the test split (full ranking, conservative ties) and reports
predictions/s. The machine's load average is recorded before and after, because on a shared
machine the numbers are only meaningful when it is quiet.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from algorithms.gru4rec import GRU4Rec, kernels
from algorithms.gru4rec.optimizer import default_layout
from benchmark.cli_options import add_data_options
from benchmark.config import load_preset
from benchmark.evaluator import evaluate
from benchmark.metrics import mrr_at, recall_at
from datasets import load_dataset
from datasets.sessions import Sessions

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="rsc15-64")
    add_data_options(p, clicks=False, cache_dir=False)
    p.add_argument("--preset", default="rsc15-best")
    p.add_argument("--batch-size", type=int, default=None, help="overrides the preset's")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=1, help="training epochs to time")
    p.add_argument(
        "--train-sessions",
        type=int,
        default=None,
        help="time on the first N training sessions only (quick runs)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads while training")
    p.add_argument(
        "--impl",
        choices=["torch", "numba"],
        default=None,
        help="the CPU training step: numba (the default where installed) or torch (the reference)",
    )
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """Train and evaluate once; return the measurements and everything they depend on."""
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train = data.train
    if args.train_sessions is not None:
        train = train.subset(np.arange(min(args.train_sessions, train.n_sessions)))
    params = load_preset("gru4rec", args.preset)
    params.update(n_epochs=args.epochs, device=args.device, seed=args.seed, n_threads=args.threads)
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    if args.impl is not None:  # else SESSIONBENCH_GRU4REC_IMPL, or numba where it can run
        kernels.DEFAULT_IMPL = args.impl
    model, timing = fit_timed(train, params)
    fit_seconds, fit_cpu_seconds = timing["fit_seconds"], timing["fit_cpu_seconds"]
    load_before = timing["loadavg_before"]
    result = {
        "dataset": args.dataset,
        "preset": args.preset,
        "params": model.get_params(),
        "device": str(model.device_),
        "device_name": _device_name(model.device_),
        "torch": torch.__version__,
        "torch_threads_eval": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "train_impl": kernels.resolve_impl(
            args.impl, model.device_.type, default_layout(model.device_)
        ),
        "train_events_per_epoch": train.n_predictions,
        "train_events_per_s": [row["events_per_s"] for row in model.history_],
        "train_events_per_s_best": max(row["events_per_s"] for row in model.history_),
        "train_loss": timing["loss"],
        "train_threads_at_epoch_end": [row["threads"] for row in model.history_],
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "train_events_per_cpu_s": train.n_predictions * args.epochs / fit_cpu_seconds,
        "loadavg_before": load_before,
    }
    if not args.no_eval:
        start = time.perf_counter()
        preds = evaluate(model, data.test, batch_size=args.eval_batch_size, progress=False)
        seconds = time.perf_counter() - start
        result.update(
            eval_predictions=len(preds),
            eval_seconds=seconds,
            eval_predictions_per_s=len(preds) / seconds,
            recall20=recall_at(preds.rank, 20),
            mrr20=mrr_at(preds.rank, 20),
        )
    result["loadavg_after"] = os.getloadavg()
    return result


def fit_timed(train: Sessions, params: dict) -> tuple[GRU4Rec, dict]:
    """Fit ``GRU4Rec(**params)`` on ``train``; return the model and its timing: training events
    per epoch (``train.n_predictions``), events/s and thread count of every epoch (wall clock of
    the epoch loop, from ``history_``), the fit's wall and CPU seconds (setup included), the
    load average before and after."""
    load_before = os.getloadavg()
    model = GRU4Rec(**params)
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(train)
    fit_seconds = time.perf_counter() - start
    # CPU time of this process: with one training thread it approximates the wall time on a
    # quiet machine, where a busy one stretches the wall time (setup included, so a bit low).
    fit_cpu_seconds = time.process_time() - cpu_start
    return model, {
        "params": model.get_params(),
        "events": train.n_predictions,
        "events_per_s": [row["events_per_s"] for row in model.history_],
        "threads": [row["threads"] for row in model.history_],
        "loss": [row["loss"] for row in model.history_],
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def emit(result: dict, out: Path | None) -> None:
    """Print the result as JSON on stdout, and write it to ``out`` if given."""
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    emit(measure(args), args.out)


if __name__ == "__main__":
    main()
