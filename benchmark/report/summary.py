"""The answer across datasets: ``python -m benchmark.report summary``.

Reads the latest committed run of every dataset under ``results/`` (the same runs the README
table shows, :func:`benchmark.report.readme.latest_runs`) and writes
``results/summary/<id>/``:

- ``answer.md``: one table, rows = algorithm labels, columns = datasets, cells
  ``Recall@20 / MRR@20`` with each dataset's best value in bold, then GRU4Rec's rank among all
  rows of each dataset (by Recall@20 and by MRR@20), then the per-metric tables with intervals;
- ``answer.csv``: the same numbers, tidy;
- ``heatmap.png``: MRR@20 and Recall@20 as two heatmaps, each dataset's column scaled to its
  best row (1.0 = the best of that dataset), the value written in each cell.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from benchmark.report.readme import REPO_ROOT, latest_runs  # noqa: E402
from datasets import io  # noqa: E402

log = logging.getLogger(__name__)

METRICS = {"recall@20": "Recall@20", "mrr@20": "MRR@20"}
FAITHFUL = "gru4rec"
"""The algorithm whose rank the summary reports: the faithful GRU4Rec's rows (``gru4rec``,
``gru4rec@preset``), not the third-party variants (``gru4rec-keras``...)."""


def collect(runs: dict[str, Path]) -> pd.DataFrame:
    """Tidy ``dataset, algorithm, metric, value, run`` rows from each run's table.csv."""
    rows = []
    for dataset, run_dir in runs.items():
        table = pd.read_csv(run_dir / "table.csv")
        for _, r in table.iterrows():
            for metric in METRICS:
                rows.append(
                    {
                        "dataset": dataset,
                        "algorithm": str(r["algorithm"]),
                        "metric": metric,
                        "value": float(r[metric]),
                        "run": run_dir.name,
                    }
                )
    return pd.DataFrame(rows)


def is_faithful_gru4rec(label: str) -> bool:
    return label == FAITHFUL or label.startswith(FAITHFUL + "@")


def ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank (1 = best; ties share the better rank) of every row within its dataset and metric."""
    out = frame.copy()
    out["rank"] = (
        out.groupby(["dataset", "metric"])["value"].rank(ascending=False, method="min").astype(int)
    )
    return out


def answer_markdown(frame: pd.DataFrame) -> str:
    """The algorithms x datasets table, best per dataset in bold, and GRU4Rec's ranks."""
    frame = ranks(frame)
    datasets = list(dict.fromkeys(frame["dataset"]))
    labels = list(dict.fromkeys(frame["algorithm"]))
    cell = frame.set_index(["dataset", "algorithm", "metric"])
    rows = []
    for label in labels:
        row = [label]
        for d in datasets:
            if (d, label, "recall@20") not in cell.index:
                row.append("–")
                continue
            parts = []
            for metric in METRICS:
                r = cell.loc[(d, label, metric)]
                text = f"{r['value']:.4f}"
                parts.append(f"**{text}**" if r["rank"] == 1 else text)
            row.append(" / ".join(parts))
        rows.append(row)
    table = tabulate(
        rows, headers=["algorithm", *datasets], tablefmt="github", disable_numparse=True
    )
    lines = [table, "", "GRU4Rec's rank among the rows of each dataset (Recall@20 / MRR@20):", ""]
    rank_rows = []
    for label in (lab for lab in labels if is_faithful_gru4rec(lab)):
        row = [label]
        for d in datasets:
            if (d, label, "recall@20") not in cell.index:
                row.append("–")
                continue
            n = int((frame["dataset"] == d).sum() // len(METRICS))
            r = [int(cell.loc[(d, label, m)]["rank"]) for m in METRICS]
            row.append(f"{r[0]} / {r[1]} of {n}")
        rank_rows.append(row)
    lines.append(
        tabulate(rank_rows, headers=["row", *datasets], tablefmt="github", disable_numparse=True)
    )
    return "\n".join(lines)


def draw_heatmap(frame: pd.DataFrame, path: Path) -> Path:
    """Two heatmaps (Recall@20, MRR@20): each column scaled to its dataset's best row."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    labels = list(dict.fromkeys(frame["algorithm"]))
    fig, axes = plt.subplots(
        1, 2, figsize=(2.2 + 1.6 * len(datasets) * 2, 1.2 + 0.32 * len(labels)), squeeze=False
    )
    for k, (ax, (metric, name)) in enumerate(zip(axes[0], METRICS.items())):
        grid = (
            frame[frame["metric"] == metric]
            .pivot(index="algorithm", columns="dataset", values="value")
            .reindex(index=labels, columns=datasets)
        )
        values = grid.to_numpy(float)
        scaled = values / np.nanmax(values, axis=0, keepdims=True)
        image = ax.imshow(scaled, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if scaled[i, j] < 0.6 else "black")  # fmt: skip
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), labels if k == 0 else [], fontsize=8)
        ax.set_title(name)
    fig.suptitle("colour: share of the dataset's best row (1 = best)", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_summary(results_root: Path, out_dir: Path) -> Path:
    """Write ``answer.md``, ``answer.csv`` and ``heatmap.png`` for the latest runs."""
    runs = latest_runs(results_root)
    if not runs:
        raise SystemExit(f"error: {results_root}: no dataset folder with a finished run")
    frame = collect(runs)
    io.write_csv(out_dir / "answer.csv", frame)
    sources = "\n".join(f"- {d}: `{_shown(r)}`" for d, r in runs.items())
    io.write_text(
        out_dir / "answer.md",
        "# The answer across datasets\n\n"
        "Recall@20 / MRR@20 of the latest committed run of each dataset; the best of each "
        "dataset in bold.\n\n"
        f"{answer_markdown(frame)}\n\n![heatmap](heatmap.png)\n\nRuns:\n\n{sources}\n\n"
        "Written by `python -m benchmark.report summary`.\n",
    )
    draw_heatmap(frame, out_dir / "heatmap.png")
    return out_dir


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.report summary",
        description="The answer across datasets from the latest run of each.",
    )
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: <results>/summary/<latest run id>"
    )
    args = parser.parse_args(argv)
    runs = latest_runs(args.results)
    out = args.out or args.results / "summary" / max(
        (r.name for r in runs.values()), default="none"
    )
    print(write_summary(args.results, out) / "answer.md")
    return 0
