"""Grid search of one algorithm's hyperparameters on a dataset's validation split.

Every setting is fitted on ``Dataset.valid_train`` and evaluated on ``Dataset.valid_test``; the
test set is never read. The best setting is chosen by Recall@20 (``--select recall``, the
default; ties broken by MRR@20) or by MRR@20 (``--select mrr``). Example::

    python -m benchmark.tune --dataset rsc15-64 --algorithm item-knn \\
        --grid 'reg_lambda=0,20,50 n_sims=50,100,200' --out results/tune/rsc15-64-item-knn.csv

A grid is space-separated ``name=v1,v2,...`` terms; values are read as TOML literals (``20``,
``0.5``, ``true``), anything else as a string (``session``). Parameters not in the grid keep
their constructor defaults (``--set 'name=value ...'`` fixes them instead). The table is printed
and, with ``--out``, written as CSV (or JSON for a ``.json`` name), one row per setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shlex
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import ConfigError, load_preset
from benchmark.evaluator import DEFAULT_TIE_MODE, TIE_MODES, evaluate
from benchmark.interface import SessionRecommender
from benchmark.metrics import mrr_at, recall_at
from benchmark.params import format_value
from benchmark.registry import ALGORITHMS, get_algorithm
from datasets.sessions import Dataset

log = logging.getLogger(__name__)

CUTOFF = 20
SELECT_METRICS = {"recall": f"recall@{CUTOFF}", "mrr": f"mrr@{CUTOFF}"}
DEFAULT_GRIDS = {
    "item-knn": "reg_lambda=0,20,50,100 n_sims=100,200 include_self=false,true",
    "bpr-mf": "factors=100 learning_rate=0.01,0.05,0.1 regularization=0.001,0.01 iterations=50,100",
}


@dataclass
class TuneResult:
    """All settings tried (one row each) and the chosen one."""

    table: pd.DataFrame
    best: dict[str, Any]
    select: str


def parse_value(text: str) -> Any:
    """A TOML literal (int, float, bool, quoted string), else the text itself as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_grid(spec: str) -> dict[str, list[Any]]:
    """``'a=1,2 b=x'`` -> ``{'a': [1, 2], 'b': ['x']}``; ValueError naming a malformed term."""
    grid: dict[str, list[Any]] = {}
    for term in shlex.split(spec):
        name, sep, values = term.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"grid term {term!r} must look like name=v1,v2,...")
        if name in grid:
            raise ValueError(f"grid parameter {name!r} is given twice")
        grid[name] = [parse_value(v) for v in values.split(",")]
    return grid


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the last parameter varying fastest."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]


def check_params(cls: type[SessionRecommender], names: list[str], algorithm: str) -> None:
    unknown = sorted(set(names) - set(cls.param_names()))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for {algorithm}; "
            f"valid: {', '.join(cls.param_names())}"
        )


def score_setting(
    cls: type[SessionRecommender], params: dict[str, Any], dataset: Dataset, tie_mode: str,
    epoch_curve: bool = False,
) -> dict[str, Any]:
    """Fit on valid_train, evaluate on valid_test; the row of the results table.

    With ``epoch_curve`` the model also gets ``valid_test`` during ``fit`` and the row adds its
    per-epoch validation Recall@20 (``history_[*]["valid_recall20"]``, as GRU4Rec records it).
    """
    model = cls(**params)
    start = time.perf_counter()
    model.fit(dataset.valid_train, valid=dataset.valid_test if epoch_curve else None)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    ranks = evaluate(model, dataset.valid_test, tie_mode=tie_mode, progress=False).rank
    eval_s = time.perf_counter() - start
    row = {
        **params,
        SELECT_METRICS["recall"]: recall_at(ranks, CUTOFF),
        SELECT_METRICS["mrr"]: mrr_at(ranks, CUTOFF),
        "fit_s": round(fit_s, 2),
        "eval_s": round(eval_s, 2),
    }
    if epoch_curve:
        curve = [h.get("valid_recall20") for h in getattr(model, "history_", [])]
        row["recall@20_by_epoch"] = " ".join(f"{r:.4f}" for r in curve if r is not None)
    return row


def tune(
    algorithm: str,
    dataset: Dataset,
    grid: dict[str, list[Any]],
    *,
    fixed: dict[str, Any] | None = None,
    select: str = "recall",
    tie_mode: str = DEFAULT_TIE_MODE,
    epoch_curve: bool = False,
) -> TuneResult:
    """Try every grid setting (on top of ``fixed``) on the validation split; pick the best."""
    if dataset.valid_train is None or dataset.valid_test is None:
        raise ValueError(f"dataset {dataset.name!r} has no validation split to tune on")
    if select not in SELECT_METRICS:
        raise ValueError(f"select must be one of {', '.join(SELECT_METRICS)}, got {select!r}")
    cls = get_algorithm(algorithm)
    fixed = dict(fixed or {})
    check_params(cls, [*grid, *fixed], algorithm)
    rows = []
    settings = expand(grid)
    for k, setting in enumerate(settings, 1):
        params = {**fixed, **setting}
        log.info("setting %d/%d: %s", k, len(settings), params)
        rows.append(score_setting(cls, params, dataset, tie_mode, epoch_curve))
        log.info("  %s", {m: round(rows[-1][m], 4) for m in SELECT_METRICS.values()})
    table = pd.DataFrame(rows)
    order = [SELECT_METRICS[select], *(m for m in SELECT_METRICS.values() if m != SELECT_METRICS[select])]
    best_index = table.sort_values(order, ascending=False, kind="stable").index[0]
    # From the settings themselves, not the table row: a row mixes dtypes and turns ints to floats.
    best = {**fixed, **settings[best_index]}
    return TuneResult(table=table, best=best, select=select)


def toml_table(algorithm: str, params: dict[str, Any]) -> str:
    """``[algorithm]`` followed by ``name = value`` lines (TOML literals)."""
    lines = [f"[{algorithm}]"]
    for name, value in params.items():
        lines.append(f"{name} = {json.dumps(value)}")
    return "\n".join(lines)


def format_table(table: pd.DataFrame) -> str:
    """The table as Markdown, metrics with 4 decimals, hyperparameters as given."""
    shown = table.astype(object)
    for metric in SELECT_METRICS.values():
        shown[metric] = table[metric].map(lambda v: f"{v:.4f}")
    return shown.to_markdown(index=False, disable_numparse=True)


def write_table(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(table.to_json(orient="records", indent=1))
    else:
        table.to_csv(path, index=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.tune", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True,
                   help="dataset name (rsc15, rsc15-100k, rsc15-64, ...) or the PATH of your own "
                        "data, as run_benchmark.py --dataset PATH takes it")
    p.add_argument("--algorithm", required=True, choices=sorted(ALGORITHMS))
    p.add_argument("--data-dir", type=Path, default=None, help="where the dataset's files lie")
    p.add_argument("--clicks", type=Path, default=None,
                   help="rsc15 only: the raw clicks file (default <data-dir>/rsc15/yoochoose-clicks.dat)")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"),
                   help="rsc15 only: where the prepared splits are cached")
    p.add_argument("--grid", default=None, help="e.g. 'reg_lambda=0,20,50 n_sims=50,100,200' "
                   "(default: a built-in grid for item-knn and bpr-mf)")
    p.add_argument("--preset", default=None,
                   help="start from this preset of configs/presets/<algorithm>.toml")
    p.add_argument("--set", dest="fixed", default="",
                   help="fixed hyperparameters, 'name=value ...' (over the preset's)")
    p.add_argument("--epoch-curve", action="store_true",
                   help="also record validation Recall@20 after every epoch (GRU4Rec)")
    p.add_argument("--select", choices=sorted(SELECT_METRICS), default="recall",
                   help="metric @20 that chooses the best setting (default: recall)")
    p.add_argument("--tie-mode", choices=TIE_MODES, default=DEFAULT_TIE_MODE)
    p.add_argument("--out", type=Path, default=None, help="write the table here (.csv or .json)")
    return p


def _fixed_params(spec: str) -> dict[str, Any]:
    fixed = {}
    for name, values in parse_grid(spec).items():
        if len(values) != 1:
            raise ValueError(f"--set {name} takes one value, got {len(values)}")
        fixed[name] = values[0]
    return fixed


def check_values(algorithm: str, grid: dict[str, list[Any]], fixed: dict[str, Any]) -> None:
    """ConfigError for a grid or --set value outside the algorithm's declared range."""
    specs = get_algorithm(algorithm).param_specs()
    for name, values in {**{k: [v] for k, v in fixed.items()}, **grid}.items():
        if name not in specs:
            raise ConfigError(f"{algorithm} has no hyperparameter {name!r}; valid: "
                              f"{', '.join(specs)}")
        for value in values:
            problem = specs[name].problem(value)
            if problem is not None:
                raise ConfigError(f"{name} = {format_value(value)}: {problem}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from datasets import DATASETS, load_dataset  # imported late: loading data is the slow part
    from datasets.errors import DataError

    grid_spec = args.grid or DEFAULT_GRIDS.get(args.algorithm)
    if grid_spec is None:
        raise SystemExit(f"--grid is required for {args.algorithm} (no built-in grid)")
    try:
        grid, fixed = parse_grid(grid_spec), _fixed_params(args.fixed)
        if args.preset:
            fixed = {**load_preset(args.algorithm, args.preset), **fixed}
        check_values(args.algorithm, grid, fixed)  # before the (slow) data loading
        path = None if args.dataset in DATASETS else Path(args.dataset)
        dataset = load_dataset(args.dataset, data_dir=args.data_dir, clicks=args.clicks,
                               cache_dir=args.cache_dir, path=path)
        result = tune(args.algorithm, dataset, grid, fixed=fixed, select=args.select,
                      tie_mode=args.tie_mode, epoch_curve=args.epoch_curve)
    except (ValueError, KeyError, DataError, ConfigError) as e:
        raise SystemExit(f"error: {e}") from None
    print(format_table(result.table))
    print(f"\nbest by {SELECT_METRICS[args.select]} on the validation split of {args.dataset}:")
    print(toml_table(args.algorithm, result.best))
    if args.out is not None:
        write_table(result.table, args.out)
        print(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
