"""The benchmark's command line: ``python run_benchmark.py --dataset rsc15`` or
``sessionbench run --dataset rsc15`` (see ``--help``); ``run_benchmark.py`` is a shim over this
module."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from benchmark.cli_options import EVENT_FIELDS, add_data_options
from benchmark.config import ConfigError
from benchmark.errors import boundary
from benchmark.evaluator import TIE_MODES
from benchmark.options import DEFAULT_ALGORITHMS, DEFAULT_CUTOFFS, RunOptions, plan
from benchmark.runner import command_line, new_run_dir, run
from datasets import DATASETS, datasets_for_all
from datasets.progress import disable_bars
from datasets.registry import describe_datasets

log = logging.getLogger("run_benchmark")  # the name the logs have always had


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark session-based recommenders on the RSC15 next-click protocol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="synthetic",
        help=f"one of: {describe_datasets()}; several separated by commas; 'all' "
        "for every dataset whose files are present under --data-dir; or the "
        "PATH of your own data: a folder with all_train_seq.txt + test.txt "
        "(SR-GNN pickles), a folder with train.tsv + test.tsv or "
        "*_train_full.txt + *_test.txt (GRU4Rec TSV, optional validation "
        "pair train_tr.tsv + valid.tsv / *_train_tr.txt + *_train_valid.txt), or "
        "a raw RSC15-format click file (preprocessed by the protocol's rules); "
        "named after the folder or file, it gets no shipped config (defaults "
        "or --config) and no published numbers",
    )
    add_data_options(p, cache_dir=False)
    p.add_argument(
        "--algorithms",
        default=",".join(DEFAULT_ALGORITHMS),
        help="comma-separated names (NAME@PRESET selects a preset, "
        "e.g. gru4rec@2016-top1-100; labels defined in --config work too)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="each run writes a new folder <out>/<dataset>/<run-id>/",
    )
    p.add_argument(
        "--cutoffs",
        type=int,
        nargs="+",
        default=list(DEFAULT_CUTOFFS),
        help="K of Recall@K and MRR@K",
    )
    p.add_argument(
        "--tie-mode",
        choices=TIE_MODES,
        default="conservative",
        help="how a target tied with other items is ranked",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic algorithms")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat stochastic algorithms with seeds seed..seed+N-1 (mean ± std)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where GPU-capable algorithms run",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file of per-algorithm hyperparameters, over configs/<dataset>.toml",
    )
    add_data_options(p, data_dir=False, clicks=False)
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="finish an interrupted run, reusing every algorithm that had finished "
        "(the options come from its run.json; --data-dir, --clicks, --cache-dir "
        "may point to the same data elsewhere, any other option must match; "
        "--algorithms adds labels and fits only those this time (other unfinished rows stay "
        "pending), and with --seeds N gives those labels N seeds)",
    )
    p.add_argument(
        "--eval-batch-size", type=int, default=256, help="test sessions evaluated in parallel"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the table")
    return p


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    return parser(prog).parse_args(argv)


def explicit_options(argv: list[str] | None) -> dict:
    """The options actually written on the command line (not their defaults), by dest."""
    p = parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return vars(p.parse_args(argv))


def dataset_specs(spec: str, data_dir: Path) -> list[tuple[str, Path | None]]:
    """(name, path) of every dataset asked for; path is set for a dataset given by its path."""
    if spec == "all":
        found, skipped = datasets_for_all(data_dir)
        log.info("--dataset all under %s: found %s", data_dir, ", ".join(found))
        for name, why in skipped.items():
            log.info("--dataset all: skipped %s (%s)", name, why)
        return [(name, None) for name in found]
    out: list[tuple[str, Path | None]] = []
    for part in (s.strip() for s in spec.split(",")):
        if not part:
            continue
        if part in DATASETS:
            out.append((part, None))
        elif "/" in part or Path(part).exists():
            from datasets.by_path import dataset_name

            out.append((dataset_name(Path(part)), Path(part).absolute()))
        else:
            raise ConfigError(
                f"unknown dataset {part!r}; valid: {', '.join(DATASETS)}, all, "
                "or the path of a data folder or click file"
            )
    if not out:
        raise ConfigError(f"--dataset {spec!r}: give a dataset name or path")
    return out


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    if args.no_progress:  # every bar, those inside the algorithms and libraries too
        disable_bars()
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    with boundary(interrupted_hint="no run folder had been made yet") as outcome:
        if args.resume is not None:
            given = explicit_options(argv)
            overrides = {k: v for k, v in given.items() if k in RUN_OPTION_NAMES}
            if "algorithms" in overrides:
                overrides["algorithms"] = _split(overrides["algorithms"])
            if "no_progress" in given:
                overrides["progress"] = not args.no_progress
            plans = [plan(RunOptions(dataset=""), resume=args.resume, overrides=overrides)]
        else:
            plans = []
            cutoffs_given = "cutoffs" in explicit_options(argv)
            for name, path in dataset_specs(args.dataset, args.data_dir):
                options = RunOptions(
                    dataset=name,
                    algorithms=_split(args.algorithms),
                    data_dir=args.data_dir,
                    clicks=args.clicks,
                    out=args.out,
                    cutoffs=args.cutoffs,
                    tie_mode=args.tie_mode,
                    seed=args.seed,
                    seeds=args.seeds,
                    device=args.device,
                    config=args.config,
                    cache_dir=args.cache_dir,
                    eval_batch_size=args.eval_batch_size,
                    progress=not args.no_progress,
                    dataset_path=path,
                    **{k: getattr(args, k) for k in EVENT_FIELDS},
                )
                # every dataset is checked before the first runs
                plans.append(dataclasses.replace(plan(options), cutoffs_given=cutoffs_given))
        run_dirs = [run(p, command=command_line()) for p in plans]
        summary_dir = None
        if len(run_dirs) > 1:  # one folder per invocation: concurrent runs never share one
            from benchmark.report.render import summarize

            summary_dir = new_run_dir(args.out, "summary")
            summarize(run_dirs, summary_dir)
    if outcome.status:
        return outcome.status
    for run_dir in run_dirs:
        print(f"\n{run_dir}\n")
        print((run_dir / "table.md").read_text())
    if summary_dir is not None:
        print((summary_dir / "summary.md").read_text())
    return 0


RUN_OPTION_NAMES = {f.name for f in dataclasses.fields(RunOptions)}


def _split(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


if __name__ == "__main__":
    sys.exit(main())
