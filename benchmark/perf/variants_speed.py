"""Speed of the third-party GRU4Rec re-implementations: one training epoch each, as JSON.

    python -m benchmark.perf.variants_speed --dataset rsc15-100k --data-dir ../shared/data \
        --device cpu [--variants gru4rec-keras,gru4rec-tf,gru4rec-recbole] [--preset paper-oob]

A training event is one (input, target) pair the variant trains on in that epoch (the Keras and
TF loops skip the clicks their early stop leaves; RecBole's is one prefix example); events/s is
the epoch's wall clock as the model's ``fit`` measures it. The load average is recorded before
and after each variant: on a shared machine the numbers mean something only when it is quiet.
The JSON goes to ``results/perf/variants_speed_<dataset>_<device>.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.cli_options import add_data_options
from benchmark.perf.epoch_timing import machine, time_one_epoch
from datasets import load_dataset

VARIANTS = ("gru4rec-keras", "gru4rec-tf", "gru4rec-recbole")
RESULTS = Path(__file__).resolve().parents[2] / "results" / "perf"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="rsc15-100k")
    add_data_options(p, clicks=False, cache_dir=False)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--preset", default=None, help="a preset of each variant (e.g. paper-oob)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    machine_info = machine(args.device)
    device = machine_info["device"]
    return {
        "dataset": args.dataset,
        "train_events": int(data.train.n_events),
        **machine_info,
        "preset": args.preset,
        "variants": [
            {"variant": v, **time_one_epoch(v, data.train, args.preset, device, args.seed)}
            for v in args.variants.split(",")
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = measure(args)
    out = (
        args.out
        or RESULTS / f"variants_speed_{args.dataset}_{result['device'].replace(':', '')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for v in result["variants"]:
        print(f"{v['variant']:>16}: {v['events_per_s']:9.0f} events/s ({v['events']} events)")
    print(f"written to {out}")
    return result


if __name__ == "__main__":
    main()
