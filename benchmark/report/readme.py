"""The results table of the top-level README, generated from the committed runs.

Usage (from the repository root)::

    python -m benchmark.report.readme            # rewrite the generated block of README.md
    python -m benchmark.report.readme --check    # exit 1, showing the difference, if it is stale

Each dataset folder under ``results/`` with runs gives one column: its latest run (the largest
run id by name; run ids start with the run's start time, ``20261203-071611-7a80``) that has a
``table.csv``. Folders that hold no runs of one dataset (``tune``, ``perf``, ``full-scale``,
``gru4rec-fidelity``, ``summary``) are skipped. Rows are the algorithm labels in order of first
appearance (the registered datasets in their order, then any other by name); a cell is ``Recall@20 / MRR@20``
with four decimals, ``–`` where a dataset has no such row, and the best Recall@20 and the best
MRR@20 of each column in bold (every cell that shows the best value, so a displayed tie is bold
twice). The third-party GRU4Rec rows (``gru4rec-keras``, ``gru4rec-tf``, ``gru4rec-recbole``) are
left out of it. Under the table one line links each source run's ``table.md``, then the headline
picture of the first column's run, where it has one, then that run's "Which GRU4Rec?" table
(the faithful rows beside the third-party ones), where it has one.

Only the text between :data:`BEGIN` and :data:`END` in README.md is replaced; everything else in
the file is written by hand. ``tests/test_readme.py`` fails when the block is out of date.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmark.report.which import VARIANTS
from datasets import DATASETS

REPO_ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- results-table:begin -->"
END = "<!-- results-table:end -->"
NOT_DATASETS = frozenset({"tune", "perf", "full-scale", "gru4rec-fidelity", "summary"})
"""Folders of ``results/`` that are not one dataset's runs."""
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]+")
MISSING = "–"
WHICH_HEADING = "## Which GRU4Rec?"
"""The heading of the third-party GRU4Rec table in a run's table.md (``report.which``)."""


def latest_runs(results_root: Path, keep: Callable[[Path], bool] | None = None) -> dict[str, Path]:
    """{dataset: its latest run folder with a table.csv}, in column order; only the run
    folders ``keep`` accepts, where given (the test takes the ones git tracks, so that a run
    the user just made does not count as a committed one)."""
    runs = {}
    for folder in sorted(p for p in Path(results_root).iterdir() if p.is_dir()):
        if folder.name in NOT_DATASETS:
            continue
        done = [
            r
            for r in folder.iterdir()
            if r.is_dir()
            and RUN_ID.fullmatch(r.name)
            and (r / "table.csv").is_file()
            and (keep is None or keep(r))
        ]
        if done:
            runs[folder.name] = max(done, key=lambda r: r.name)
    known = [d for d in DATASETS if d in runs]  # the registry's order, then the rest by name
    return {d: runs[d] for d in known + sorted(set(runs) - set(known))}


def read_scores(run_dir: Path) -> dict[str, tuple[float, float]]:
    """{algorithm label: (Recall@20, MRR@20)} of a run's table.csv, in its row order, without
    the third-party GRU4Rec rows (``which.VARIANTS``: they have their own table)."""
    table = pd.read_csv(Path(run_dir) / "table.csv")
    missing = {"algorithm", "recall@20", "mrr@20"} - set(table.columns)
    if missing:
        raise ValueError(f"{run_dir / 'table.csv'}: no column(s) {', '.join(sorted(missing))}")
    names = table["algorithm_name"] if "algorithm_name" in table else table["algorithm"]
    return {
        str(label): (float(recall), float(mrr))
        for label, name, recall, mrr in zip(
            table["algorithm"], names, table["recall@20"], table["mrr@20"]
        )
        if name not in VARIANTS
    }


def which_section(run_dir: Path) -> str | None:
    """The body of the "Which GRU4Rec?" section of a run's table.md, if it has one."""
    path = Path(run_dir) / "table.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    start = text.find(WHICH_HEADING)
    if start < 0:
        return None
    body = text[start + len(WHICH_HEADING) :]
    end = body.find("\n## ")
    return (body if end < 0 else body[:end]).strip()


def results_table(scores: dict[str, dict[str, tuple[float, float]]]) -> str:
    """The markdown table: one row per algorithm label, one column per dataset of ``scores``."""
    labels = list(dict.fromkeys(label for per in scores.values() for label in per))
    best = {
        d: tuple(f"{max(v[k] for v in per.values()):.4f}" for k in (0, 1))
        for d, per in scores.items()
    }

    def cell(dataset: str, label: str) -> str:
        if label not in scores[dataset]:
            return MISSING
        shown = [f"{v:.4f}" for v in scores[dataset][label]]
        return " / ".join(f"**{s}**" if s == b else s for s, b in zip(shown, best[dataset]))

    rows = [["algorithm", *scores]] + [[lb, *(cell(d, lb) for d in scores)] for lb in labels]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def build_block(
    results_root: Path,
    link_base: Path | None = None,
    keep: Callable[[Path], bool] | None = None,
) -> str:
    """The text between the markers: the table, its source runs and the headline picture.

    Links are relative to ``link_base`` (default: the folder holding ``results_root``, where
    README.md lies).
    """
    results_root = Path(results_root)
    base = Path(link_base) if link_base is not None else results_root.parent
    runs = latest_runs(results_root, keep)
    if not runs:
        raise ValueError(f"{results_root}: no dataset folder with a run holding table.csv")

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, base)).as_posix()

    sources = ", ".join(f"[`{link(r)}`]({link(r / 'table.md')})" for r in runs.values())
    lines = [
        results_table({d: read_scores(r) for d, r in runs.items()}),
        "",
        f"Recall@20 / MRR@20 on the test split, best per dataset in bold; from {sources}.",
    ]
    first, run = next(iter(runs.items()))
    if (run / "plots" / "headline.png").is_file():
        lines += [
            "",
            f"![{first}: Recall@20 and MRR@20 with 95% intervals; black diamonds: "
            f"published numbers]({link(run / 'plots' / 'headline.png')})",
        ]
    which = which_section(run)
    if which:
        others = ", ".join(
            f"[{d}]({link(r / 'table.md')}#which-gru4rec)"
            for d, r in runs.items()
            if d != first and which_section(r)
        )
        where = f"{first}; also in {others}" if others else first
        lines += ["", f"**Which GRU4Rec?** ({where}) {which}"]
    return "\n".join(lines)


def split_readme(text: str) -> tuple[str, str, str]:
    """(text up to and including BEGIN's line, the block, text from END on)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} block")
    head_end = text.index("\n", start) + 1
    return text[:head_end], text[head_end:end].rstrip("\n"), text[end:]


def with_block(text: str, block: str) -> str:
    """``text`` with its generated block replaced by ``block``."""
    head, _, tail = split_readme(text)
    return f"{head}{block}\n{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.report.readme",
        description="Regenerate the results table of README.md.",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and show the difference if README.md is stale",
    )
    p.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    p.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    args = p.parse_args(argv)
    try:
        text = args.readme.read_text(encoding="utf-8")
        current = split_readme(text)[1]
        block = build_block(args.results, link_base=args.readme.parent)
    except (OSError, ValueError) as e:
        print(f"error: {args.readme}: {e}", file=sys.stderr)
        return 2
    if current == block:
        print(f"{args.readme}: the results table is up to date")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(),
            block.splitlines(),
            "README.md (committed)",
            "README.md (from results/)",
            lineterm="",
        )
        print(
            f"{args.readme}: the results table is out of date; run "
            "`python -m benchmark.report.readme` to rewrite it:",
            file=sys.stderr,
        )
        print("\n".join(diff), file=sys.stderr)
        return 1
    args.readme.write_text(with_block(text, block), encoding="utf-8")
    print(f"{args.readme}: rewrote the results table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
