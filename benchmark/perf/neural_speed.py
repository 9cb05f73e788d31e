"""Speed of the neural models (NARM, STAMP, SR-GNN, SASRec): one training epoch each, as JSON.

    python -m benchmark.perf.neural_speed --dataset rsc15-100k --data-dir ../shared/data \
        --device cpu [--models narm,stamp,sr-gnn,sasrec] [--preset authors] [--max-sessions N]

A training event is one target the model trains on in that epoch (a prefix example for NARM,
STAMP and SR-GNN; a non-pad target position for SASRec); events/s is the epoch's wall clock as
the model's ``fit`` measures it (``history_[0]``). The load average is recorded before and after
each model: on a shared machine the numbers mean something only when it is quiet.
``--max-sessions`` keeps the first N training sessions (a quick check on a small slice).
The JSON goes to ``results/perf/neural_speed_<dataset>_<device>.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.cli_options import add_data_options
from benchmark.config import load_preset
from benchmark.registry import get_algorithm
from datasets import load_dataset

MODELS = ("narm", "stamp", "sr-gnn", "sasrec")
RESULTS = Path(__file__).resolve().parents[2] / "results" / "perf"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="rsc15-100k")
    add_data_options(p, clicks=False, cache_dir=False)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--preset", default="authors", help="a preset of each model ('' for none)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-sessions", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def time_model(name: str, train, preset: str | None, device: str, seed: int) -> dict:
    spec = name.partition("@")
    algorithm, preset = spec[0], spec[2] or preset
    params = load_preset(algorithm, preset) if preset else {}
    params.update(n_epochs=1, device=device, seed=seed)
    model = get_algorithm(algorithm)(**params)
    load_before = os.getloadavg()
    start = time.perf_counter()
    cpu_start = time.process_time()
    model.fit(train)
    row = model.history_[0]
    return {
        "model": name,
        "params": model.get_params(),
        "events": row["events"],
        "events_per_s": row["events_per_s"],
        "fit_seconds": time.perf_counter() - start,
        "fit_cpu_seconds": time.process_time() - cpu_start,
        "loss": row["loss"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def measure(args: argparse.Namespace) -> dict:
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train = data.train
    if args.max_sessions is not None:
        train = train.subset(np.arange(min(args.max_sessions, train.n_sessions)))
    device = str(torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device)))  # fmt: skip
    result = {
        "dataset": args.dataset,
        "train_events": int(train.n_events),
        "train_sessions": int(train.n_sessions),
        "device": device,
        "device_name": torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),  # fmt: skip
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "preset": args.preset or None,
        "models": [],
    }
    for name in filter(None, args.models.split(",")):
        row = time_model(name, train, args.preset or None, device, args.seed)
        print(f"{name}: {row['events_per_s']:.0f} events/s", flush=True)
        result["models"].append(row)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = measure(args)
    out = (
        args.out
        or RESULTS / f"neural_speed_{args.dataset}_{result['device'].replace(':', '')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
