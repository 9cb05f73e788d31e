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
from pathlib import Path

import numpy as np

from benchmark.cli_options import add_data_options
from benchmark.perf.epoch_timing import machine, time_one_epoch
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


def measure(args: argparse.Namespace) -> dict:
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train = data.train
    if args.max_sessions is not None:
        train = train.subset(np.arange(min(args.max_sessions, train.n_sessions)))
    machine_info = machine(args.device)
    device = machine_info["device"]
    result = {
        "dataset": args.dataset,
        "train_events": int(train.n_events),
        "train_sessions": int(train.n_sessions),
        **machine_info,
        "preset": args.preset or None,
        "models": [],
    }
    for name in filter(None, args.models.split(",")):
        row = {"model": name, **time_one_epoch(name, train, args.preset or None, device, args.seed)}
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
