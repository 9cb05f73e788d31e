"""Grid search, for exact reproductions: every combination of given values, no sampler.

A grid is space-separated ``name=v1,v2,...`` terms; values are read as TOML literals (``20``,
``0.5``, ``true``), anything else as a string (``session``). Each setting is fitted on
``Dataset.valid_train`` and scored on ``Dataset.valid_test``; the test split is never read.
"""

from __future__ import annotations

import itertools
import logging
import shlex
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from algorithms.base import SessionRecommender
from benchmark.config import renamed_hint
from benchmark.errors import writable_target
from benchmark.evaluator import DEFAULT_TIE_MODE
from benchmark.registry import get_algorithm
from benchmark.tuning.study import OBJECTIVES, epoch_reporter, validation_scores
from datasets import io
from datasets.sessions import Dataset

log = logging.getLogger(__name__)


@dataclass
class GridResult:
    """All settings tried (one row each) and the chosen one."""

    table: pd.DataFrame
    best: dict[str, Any]
    objective: str


def parse_value(text: str) -> Any:
    """A TOML literal (int, float, bool, quoted string, list), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_grid(spec: str, option: str = "--grid") -> dict[str, list[Any]]:
    """``'a=1,2 b=x'`` -> ``{'a': [1, 2], 'b': ['x']}``; ValueError naming ``option`` and a
    malformed term."""
    grid: dict[str, list[Any]] = {}
    shape = "name=v1,v2,..." if option == "--grid" else "name=value"
    for term in shlex.split(spec):
        name, sep, values = term.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"{option}: term {term!r} must look like {shape}")
        if name in grid:
            raise ValueError(f"{option}: {name!r} is given twice")
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
            f"{renamed_hint(cls, unknown)}valid: {', '.join(cls.param_names())}"
        )


def score_setting(
    cls: type[SessionRecommender],
    params: dict[str, Any],
    dataset: Dataset,
    tie_mode: str,
    epoch_curve: bool = False,
) -> dict[str, Any]:
    """Fit on valid_train, score valid_test; the row of the results table. With
    ``epoch_curve`` the row adds the validation Recall@20 after every epoch."""
    model = cls(**params)
    on_epoch = epoch_reporter(dataset.valid_test, 1, tie_mode) if epoch_curve else None
    start = time.perf_counter()
    model.fit(dataset.valid_train, valid=dataset.valid_test, on_epoch=on_epoch)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = validation_scores(model, dataset.valid_test, tie_mode)
    row = {
        **params,
        **scores,
        "fit_s": round(fit_s, 2),
        "eval_s": round(time.perf_counter() - start, 2),
    }
    if epoch_curve:
        curve = [h.get("valid_recall20") for h in getattr(model, "history_", [])]
        row["recall@20_by_epoch"] = " ".join(f"{r:.4f}" for r in curve if r is not None)
    return row


def grid_search(
    algorithm: str,
    dataset: Dataset,
    grid: dict[str, list[Any]],
    *,
    fixed: dict[str, Any] | None = None,
    objective: str = "mrr",
    tie_mode: str = DEFAULT_TIE_MODE,
    epoch_curve: bool = False,
) -> GridResult:
    """Try every grid setting (on top of ``fixed``) on the validation split; pick the best
    by ``objective`` (ties broken by the other metric, then by grid order)."""
    if dataset.valid_train is None or dataset.valid_test is None:
        raise ValueError(f"dataset {dataset.name!r} has no validation split to tune on")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    cls = get_algorithm(algorithm)
    fixed = dict(fixed or {})
    check_params(cls, [*grid, *fixed], algorithm)
    rows = []
    settings = expand(grid)
    for k, setting in enumerate(settings, 1):
        params = {**fixed, **setting}
        log.info("setting %d/%d: %s", k, len(settings), params)
        rows.append(score_setting(cls, params, dataset, tie_mode, epoch_curve))
        log.info("  %s", {m: round(rows[-1][m], 4) for m in OBJECTIVES.values()})
    table = pd.DataFrame(rows)
    order = [OBJECTIVES[objective], *(m for m in OBJECTIVES.values() if m != OBJECTIVES[objective])]
    best_index = table.sort_values(order, ascending=False, kind="stable").index[0]
    # From the settings themselves, not the table row: a row mixes dtypes and turns ints to floats.
    return GridResult(table=table, best={**fixed, **settings[best_index]}, objective=objective)


def format_table(table: pd.DataFrame) -> str:
    """The table as Markdown, metrics with 4 decimals, hyperparameters as given."""
    shown = table.astype(object)
    for metric in OBJECTIVES.values():
        shown[metric] = table[metric].map(lambda v: f"{v:.4f}")
    return shown.to_markdown(index=False, disable_numparse=True)


TABLE_SUFFIXES = (".csv", ".json")


def check_table_path(path: Path) -> None:
    """ValueError, before any work, unless the grid's table can be written to ``path``: a
    ``.csv`` or ``.json`` name, not a folder, in a folder that exists (or can be made) and is
    writable (a ConfigError, a ValueError too)."""
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder; give a file name ending in .csv or .json")
    if path.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"--out {path}: the table is written as .csv or .json; name it so")
    writable_target(path, "--out")


def write_table(table: pd.DataFrame, path: Path) -> None:
    """The grid's table as CSV or JSON (by ``path``'s suffix), written atomically."""
    if path.suffix == ".json":
        io.write_text(path, table.to_json(orient="records", indent=1))
    else:
        io.write_csv(path, table)
