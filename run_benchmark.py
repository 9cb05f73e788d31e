"""Command line: ``python run_benchmark.py --dataset rsc15`` (see ``--help``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmark.config import ConfigError
from benchmark.evaluator import TIE_MODES
from benchmark.progress import disable_bars
from benchmark.runner import DEFAULT_ALGORITHMS, DEFAULT_CUTOFFS, RunOptions, command_line, run
from datasets import DATASETS, available_datasets
from datasets.errors import DataError

log = logging.getLogger("run_benchmark")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark session-based recommenders on the RSC15 next-click protocol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default="synthetic",
                   help=f"one of {', '.join(DATASETS)}; several separated by commas; or 'all' "
                        "for every dataset whose files are present")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="folder holding one subfolder per dataset (laid out as shared/data)")
    p.add_argument("--clicks", type=Path, default=None,
                   help="rsc15 only: path of yoochoose-clicks.dat "
                        "(default <data-dir>/rsc15/yoochoose-clicks.dat)")
    p.add_argument("--algorithms", default=",".join(DEFAULT_ALGORITHMS),
                   help="comma-separated names (NAME@PRESET selects a preset, "
                        "e.g. gru4rec@2016-top1-100; labels defined in --config work too)")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="each run writes a new folder <out>/<dataset>/<run-id>/")
    p.add_argument("--cutoffs", type=int, nargs="+", default=list(DEFAULT_CUTOFFS),
                   help="K of Recall@K and MRR@K")
    p.add_argument("--tie-mode", choices=TIE_MODES, default="conservative",
                   help="how a target tied with other items is ranked")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic algorithms")
    p.add_argument("--seeds", type=int, default=1,
                   help="repeat stochastic algorithms with seeds seed..seed+N-1 (mean ± std)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where GPU-capable algorithms run")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file of per-algorithm hyperparameters, over configs/<dataset>.toml")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"),
                   help="where preprocessed splits are cached")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="finish an interrupted run, reusing every algorithm that had finished "
                        "(all other options come from its run.json)")
    p.add_argument("--eval-batch-size", type=int, default=256,
                   help="test sessions evaluated in parallel")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and the table")
    return p.parse_args(argv)


def dataset_names(spec: str, data_dir: Path) -> list[str]:
    if spec == "all":
        return available_datasets(data_dir)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise ConfigError(f"unknown dataset {', '.join(unknown) or spec!r}; "
                          f"valid: {', '.join(DATASETS)}, all")
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_progress:  # every bar, those inside the algorithms and libraries too
        disable_bars()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        if args.resume is not None:
            run_dirs = [run(RunOptions(dataset=""), resume=args.resume, command=command_line())]
        else:
            run_dirs = []
            for name in dataset_names(args.dataset, args.data_dir):
                options = RunOptions(
                    dataset=name, algorithms=[a.strip() for a in args.algorithms.split(",") if a.strip()],
                    data_dir=args.data_dir, clicks=args.clicks, out=args.out, cutoffs=args.cutoffs,
                    tie_mode=args.tie_mode, seed=args.seed, seeds=args.seeds, device=args.device,
                    config=args.config, cache_dir=args.cache_dir,
                    eval_batch_size=args.eval_batch_size, progress=not args.no_progress)
                run_dirs.append(run(options, command=command_line()))
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished algorithms are kept: rerun with --resume RUN_DIR "
              "(the run folder printed above) to finish the rest", file=sys.stderr)
        return 130
    if len(run_dirs) > 1:
        from benchmark.report import summarize

        summarize(run_dirs, args.out / "summary")
    for run_dir in run_dirs:
        print(f"\n{run_dir}\n")
        print((run_dir / "table.md").read_text())
    if len(run_dirs) > 1:
        print((args.out / "summary" / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
