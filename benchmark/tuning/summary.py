"""Every study journal under a folder, one line each: how far its budget is spent and its best.

    python -m benchmark.tuning.summary [results/tune] [--budget rsc15-64=30 diginetica=20]

prints a Markdown table (dataset, algorithm, finished trials of the budget, complete, pruned,
failed, running, best trial, its validation MRR@20 and Recall@20), which is how the README reports
studies that are still running or were interrupted. Journals are read, never written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
from tabulate import tabulate

from benchmark.tuning.study import best_config, counts, journal_studies


@dataclass(frozen=True)
class StudyLine:
    dataset: str
    algorithm: str
    study: str
    complete: int
    pruned: int
    failed: int
    running: int
    best_trial: int | None
    mrr: float | None
    recall: float | None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def read_journal(path: Path) -> list[StudyLine]:
    """One line per study held in the journal file ``path`` (a file usually holds one)."""
    lines = []
    for study in journal_studies(path):
        attrs = study.user_attrs
        c = counts(study)
        try:
            best, _ = best_config(study)
            number, mrr, recall = (
                best.number,
                best.user_attrs.get("mrr@20"),
                best.user_attrs.get("recall@20"),
            )
        except ValueError:  # no complete trial yet
            number = mrr = recall = None
        lines.append(
            StudyLine(
                attrs.get("dataset", path.parent.name),
                attrs.get("algorithm", path.stem),
                study.study_name,
                c["complete"],
                c["pruned"],
                c["fail"],
                c["running"],
                number,
                mrr,
                recall,
            )
        )
    return lines


def collect(folder: Path) -> list[StudyLine]:
    lines = [line for path in sorted(folder.rglob("*.journal")) for line in read_journal(path)]
    return sorted(lines, key=lambda s: (s.dataset, s.algorithm, s.study))


def table(lines: list[StudyLine], budget: dict[str, int] | None = None) -> str:
    budget = budget or {}

    def num(x: float | None) -> str:
        return "–" if x is None else f"{x:.4f}"

    rows = [
        [
            s.dataset,
            s.algorithm,
            f"{s.finished} / {budget[s.dataset]}" if s.dataset in budget else str(s.finished),
            s.complete,
            s.pruned,
            s.failed,
            s.running,
            "–" if s.best_trial is None else s.best_trial,
            num(s.mrr),
            num(s.recall),
        ]
        for s in lines
    ]
    headers = [
        "dataset",
        "algorithm",
        "finished trials",
        "complete",
        "pruned",
        "failed",
        "running",
        "best trial",
        "valid MRR@20",
        "valid Recall@20",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _budget(items: list[str]) -> dict[str, int]:
    budget = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--budget {item!r}: expected DATASET=N with N >= 1, e.g. rsc15-64=30")
        budget[name] = int(value)
    return budget


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.tuning.summary",
        description="One line per study journal under a folder.",
    )
    p.add_argument("folder", nargs="?", type=Path, default=Path("results") / "tune")
    p.add_argument(
        "--budget",
        nargs="*",
        default=[],
        metavar="DATASET=N",
        help="show finished trials against each dataset's budget",
    )
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        budget = _budget(args.budget)
        if not args.folder.is_dir():
            raise ValueError(f"{args.folder} is not a folder")
        lines = collect(args.folder)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not lines:
        print(f"no study journal (*.journal) under {args.folder}")
        return 0
    print(table(lines, budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
