"""``python -m benchmark.tune``: a seeded Optuna search (or a grid) on the validation split.

    python -m benchmark.tune --dataset rsc15-64 --data-dir PATH --algorithm item-knn \\
        --trials 30

runs trials until the study holds 30 finished ones (a second call with the same ``--trials``
adds none), drawing settings from ``configs/search/<algorithm>.toml`` with a seeded TPE
sampler, and prints the best setting as a TOML table to paste into a config. The study lives in
``--storage``: a journal file (default ``results/tune/<dataset>/<algorithm>.journal``, committed
beside its picture ``<algorithm>.png``) or an RDB URL such as ``postgresql://host/db``, which
workers on several machines share. ``--grid 'name=v1,v2 ...'`` tries every combination instead
(no storage; ``--out`` writes its table).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import optuna

from algorithms.params import format_value
from benchmark.cli_options import add_data_options, event_log_options
from benchmark.config import ConfigError, load_preset
from benchmark.errors import boundary
from benchmark.evaluator import DEFAULT_TIE_MODE, TIE_MODES
from benchmark.registry import ALGORITHMS, get_algorithm
from benchmark.tuning import grid as grid_mod
from benchmark.tuning.picture import draw_study
from benchmark.tuning.space import load_space
from benchmark.tuning.study import (
    OBJECTIVES,
    StudyInfo,
    best_config,
    check_storage,
    counts,
    fail_dead_trials,
    is_url,
    open_storage,
    open_study,
    run_trials,
    trial_objective,
)

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.tune",
        description="A seeded Optuna search (or a grid) of one algorithm on the validation split.",
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="dataset name (rsc15, rsc15-100k, rsc15-64, ...) or the PATH of your own "
        "data, as run_benchmark.py --dataset PATH takes it",
    )
    p.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS))
    add_data_options(p)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--trials", type=int, help="the study's total of finished trials")
    mode.add_argument("--grid", help="try every combination, e.g. 'reg_lambda=0,20 n_sims=50,100'")
    mode.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw the study's picture (and print its best) without any trial",
    )
    mode.add_argument(
        "--fail-running",
        action="store_true",
        help="mark every RUNNING trial of the study FAIL (each is queued again "
        "once), then redraw: for a journal moved from another machine, "
        "whose workers this one cannot see; only when no worker is left",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="journal file path or RDB URL (default results/tune/<dataset>/<algorithm>.journal)",
    )
    p.add_argument("--study", default=None, help="study name (default <dataset>/<algorithm>)")
    p.add_argument(
        "--objective",
        choices=sorted(OBJECTIVES),
        default="mrr",
        help="validation metric @20 to maximise (default: mrr)",
    )
    p.add_argument(
        "--space",
        type=Path,
        default=None,
        help="search space file (default configs/search/<algorithm>.toml)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    p.add_argument("--no-prune", action="store_true", help="never stop a trial early")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="RDB storages: seconds between a worker's heartbeats; a trial silent "
        "for twice that is failed and retried (default 60)",
    )
    p.add_argument(
        "--preset", default=None, help="start from this preset of configs/presets/<algorithm>.toml"
    )
    p.add_argument(
        "--set",
        dest="fixed",
        default="",
        help="fixed hyperparameters, 'name=value ...' (over the preset's and the "
        "search space's; a fixed parameter is not searched)",
    )
    p.add_argument(
        "--epoch-curve",
        action="store_true",
        help="--grid: also record validation Recall@20 after every epoch",
    )
    p.add_argument("--tie-mode", choices=TIE_MODES, default=DEFAULT_TIE_MODE)
    p.add_argument(
        "--out", type=Path, default=None, help="--grid: write the table here (.csv or .json)"
    )
    return p


def fixed_params(spec: str) -> dict[str, Any]:
    fixed = {}
    for name, values in grid_mod.parse_grid(spec, option="--set").items():
        if len(values) != 1:
            raise ValueError(f"--set {name} takes one value, got {len(values)}")
        fixed[name] = values[0]
    return fixed


def check_values(algorithm: str, grid: dict[str, list[Any]], fixed: dict[str, Any]) -> None:
    """ConfigError for a grid or --set value outside the algorithm's declared range."""
    specs = get_algorithm(algorithm).param_specs()
    for name, values in {**{k: [v] for k, v in fixed.items()}, **grid}.items():
        if name not in specs:
            raise ConfigError(
                f"{algorithm} has no hyperparameter {name!r}; valid: {', '.join(specs)}"
            )
        for value in values:
            problem = specs[name].problem(value)
            if problem is not None:
                raise ConfigError(f"{name} = {format_value(value)}: {problem}")


def toml_table(
    label: str, params: dict[str, Any], tuning: dict[str, Any] | str | None = None
) -> str:
    """``[label]`` (quoted where it is not a bare TOML key, e.g. ``gru4rec@preset``) followed by
    ``name = value`` lines (TOML literals), and the ``tuning`` record the run's tables show
    (``"published"`` or a table; see :func:`benchmark.config.check_tuning`)."""
    bare = all((ch.isascii() and ch.isalnum()) or ch in "-_" for ch in label)
    lines = [
        f"[{label}]" if bare else f"[{json.dumps(label)}]",
        *(f"{k} = {json.dumps(v)}" for k, v in params.items()),
    ]
    if isinstance(tuning, str):
        lines.append(f"tuning = {json.dumps(tuning)}")
    elif tuning is not None:
        lines.append(
            "tuning = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in tuning.items()) + " }"
        )
    return "\n".join(lines)


def dataset_label(dataset: str) -> str:
    """The name results are filed under, known before the data is loaded."""
    from datasets import DATASETS
    from datasets.by_path import dataset_name

    return dataset if dataset in DATASETS else dataset_name(Path(dataset))


def default_journal(dataset: str, algorithm: str) -> Path:
    return Path("results") / "tune" / dataset_label(dataset) / f"{algorithm}.journal"


def picture_path(storage: str, dataset: str, algorithm: str) -> Path:
    """Beside the journal file; for an RDB storage, where the default journal would be."""
    journal = default_journal(dataset, algorithm) if is_url(storage) else Path(storage)
    return journal.with_suffix(".png")


def _load(args: argparse.Namespace):
    from datasets import DATASETS, load_dataset  # imported late: loading data is the slow part

    path = None if args.dataset in DATASETS else Path(args.dataset)
    dataset = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        clicks=args.clicks,
        cache_dir=args.cache_dir,
        path=path,
        events=event_log_options(args),
    )
    if dataset.valid_train is None or dataset.valid_test is None:
        raise ValueError(f"dataset {dataset.name!r} has no validation split to tune on")
    return dataset


def run_grid(args: argparse.Namespace, fixed: dict[str, Any]) -> int:
    grid = grid_mod.parse_grid(args.grid)
    if not grid:
        raise ValueError(f"--grid {args.grid!r}: give at least one term name=v1,v2,...")
    check_values(args.algorithm, grid, fixed)  # before the (slow) data loading
    if args.out is not None:
        grid_mod.check_table_path(args.out)
    result = grid_mod.grid_search(
        args.algorithm,
        _load(args),
        grid,
        fixed=fixed,
        objective=args.objective,
        tie_mode=args.tie_mode,
        epoch_curve=args.epoch_curve,
    )
    print(grid_mod.format_table(result.table))
    print(f"\nbest by {OBJECTIVES[args.objective]} on the validation split of {args.dataset}:")
    tuning = {"method": "grid", "trials": len(result.table), "objective": args.objective}
    print(toml_table(args.algorithm, result.best, tuning))
    if args.out is not None:
        grid_mod.write_table(result.table, args.out)
        print(f"table written to {args.out}")
    return 0


def run_study(args: argparse.Namespace, fixed: dict[str, Any]) -> int:
    grid_only = [
        flag
        for flag, given in (("--out", args.out is not None), ("--epoch-curve", args.epoch_curve))
        if given
    ]
    if grid_only:
        raise ValueError(f"{', '.join(grid_only)}: only with --grid (a study keeps its journal)")
    cls = get_algorithm(args.algorithm)
    check_values(args.algorithm, {}, fixed)
    space = load_space(args.algorithm, cls.param_specs(), args.space).with_fixed(fixed)
    if args.trials is not None and args.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {args.trials}")
    if args.heartbeat < 1:
        raise ValueError(f"--heartbeat must be >= 1 second, got {args.heartbeat}")
    if args.seed < 0:  # the sampler seeds numpy with (seed, trial number): no negatives
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    label = dataset_label(args.dataset)
    storage = (
        args.storage
        if args.storage is not None
        else str(default_journal(args.dataset, args.algorithm))
    )
    check_storage(storage)  # before the (slow) data loading: a bad path or URL fails at once
    name = args.study or f"{label}/{args.algorithm}"
    info = StudyInfo(args.algorithm, label, OBJECTIVES[args.objective], space.describe())
    no_trials = args.plot_only or args.fail_running
    if no_trials and not (is_url(storage) or Path(storage).is_file()):
        raise ValueError(f"no study: {storage} does not exist")
    # An RDB is reached before the (slow) data loading; a journal file is only created after it.
    opened = open_storage(storage, args.heartbeat) if is_url(storage) else None
    dataset = None if no_trials else _load(args)
    study = open_study(
        opened or open_storage(storage, args.heartbeat),
        name,
        info,
        seed=args.seed,
        prune=not args.no_prune,
    )
    if args.fail_running:
        failed = fail_dead_trials(study, every_running=True)
        print(f"# marked FAIL: {', '.join(map(str, failed)) or 'no running trial'}")
    if dataset is not None:
        objective = trial_objective(
            cls, space, dataset, objective=args.objective, tie_mode=args.tie_mode
        )
        run_trials(study, objective, args.trials, poll_s=min(5.0, args.heartbeat))
    picture = draw_study(
        study, picture_path(storage, args.dataset, args.algorithm), OBJECTIVES[args.objective]
    )
    c = counts(study)
    print(
        f"# study {name!r} in {storage}: {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed trials; picture {picture}"
    )
    if not c["complete"]:
        print("# no complete trial yet")
        return 0
    best, config = best_config(study)
    print(
        f"# best: trial {best.number}, validation {OBJECTIVES[args.objective]} = "
        f"{best.value:.4f} (recall@20 {best.user_attrs.get('recall@20', float('nan')):.4f}, "
        f"mrr@20 {best.user_attrs.get('mrr@20', float('nan')):.4f})"
    )
    # A URL may hold a password: the record names the study only.
    tuning = {
        "trials": c["complete"] + c["pruned"],
        "objective": args.objective,
        "study": name if is_url(storage) else storage,
    }
    print(toml_table(args.algorithm, config, tuning))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log says it per trial
    with boundary(interrupted_hint=INTERRUPTED_HINT) as outcome:
        try:
            fixed = fixed_params(args.fixed)
            if args.preset:
                fixed = {**load_preset(args.algorithm, args.preset), **fixed}
            if args.grid is not None:
                return run_grid(args, fixed)
            return run_study(args, fixed)
        except (ValueError, KeyError) as e:  # the checks of this module and the registry's
            raise ConfigError(e.args[0] if e.args else str(e)) from None
    return outcome.status


INTERRUPTED_HINT = (
    "a study keeps its finished trials (the one running is retried): the same command "
    "continues it; a grid starts again"
)

if __name__ == "__main__":
    sys.exit(main())
