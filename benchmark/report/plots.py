"""PNG plots of a run, drawn only from the files saved in its directory.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas) rather than ``pyplot``: no
global backend switch, no figure registry to leak, and style set through a local
``rc_context``. Every figure is 1000 px wide (8 in at 125 dpi) with fonts that stay readable
when a README shows it at ~800 px.

Files written under ``<run>/plots/``:
- ``headline.png``: Recall@20 and MRR@20 per algorithm, 95% CI error bars, published markers.
- ``cutoffs.png``: Recall@K and MRR@K for K = 1..20 (from ``curves.csv``).
- ``by_position.png``: Recall@20 and MRR@20 by the target's position in its session.
- ``by_popularity.png``: the same by the target's popularity decile (unseen targets excluded).
- ``training.png``: GRU4Rec loss and validation Recall@20 per epoch (from ``history/*.csv``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from datasets import io

log = logging.getLogger(__name__)

WIDTH_IN, DPI = 8.0, 125
_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_METRICS = (("recall", "Recall"), ("mrr", "MRR"))


def colors(labels: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per label (in run order), the same in every plot of the run."""
    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _figure(height: float, ncols: int = 2, nrows: int = 1, **kwargs) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel())
    return fig, axes


def _legend(fig: Figure, ax: Axes) -> None:
    """One legend for the figure, below the panels, so it never hides data."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # a label drawn several times is listed once
    unique = dict(sorted(unique.items(), key=lambda kv: kv[0].startswith("published")))
    labels, handles = list(unique), list(unique.values())
    if handles:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(len(labels), 6), frameon=False
        )


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG atomically."""
    io.atomic_write(Path(path), lambda p: fig.savefig(p, format="png"))
    return Path(path)


# ---------------------------------------------------------------------------- headline


def plot_headline(
    metrics: pd.DataFrame,
    path: Path,
    *,
    cutoff: int = 20,
    title: str = "",
    published: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Horizontal bars of Recall@cutoff and MRR@cutoff per algorithm with CI error bars.

    Args:
        metrics: ``metrics.csv`` (``ci_low``/``ci_high`` drawn when present).
        path: output PNG.
        cutoff: the cutoff shown.
        title: figure title (the dataset).
        published: label -> (published Recall@20, MRR@20), drawn as black diamonds.
    """
    labels = list(dict.fromkeys(metrics["algorithm"]))
    palette = colors(labels)
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(0.9 + 0.42 * len(labels))
        for ax, (metric, name) in zip(axes, _METRICS):
            rows = metrics[(metrics["metric"] == metric) & (metrics["cutoff"] == cutoff)]
            rows = rows.set_index("algorithm").reindex(labels)
            _bars(ax, rows, palette)
            if published:
                _published_markers(ax, labels, published, 0 if metric == "recall" else 1)
            ax.set_xlabel(f"{name}@{cutoff}")
            ax.set_title(f"{name}@{cutoff} (95% CI)")
        axes[1].set_yticklabels([])
        _legend(fig, axes[0])
        fig.suptitle(title)
        return save(fig, path)


def _bars(ax: Axes, rows: pd.DataFrame, palette: dict[str, tuple]) -> None:
    y = np.arange(len(rows))[::-1]
    values = rows["value"].to_numpy(float)
    err = None
    if {"ci_low", "ci_high"} <= set(rows.columns) and rows["ci_low"].notna().all():
        # A degenerate interval (every session scores the same) can miss the value by an ulp.
        err = np.maximum(
            np.vstack(
                [values - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - values]
            ),
            0.0,
        )
    ax.barh(
        y,
        values,
        xerr=err,
        color=[palette[label] for label in rows.index],
        height=0.65,
        error_kw={"elinewidth": 1.2, "capsize": 3, "ecolor": "black"},
    )
    ends = values if err is None else values + err[1]
    for yi, v, end in zip(y, values, ends):
        ax.text(end, yi, f" {v:.3f}", va="center", ha="left", fontsize=8)
    ax.set_yticks(y, rows.index)
    ax.set_xlim(0, max(np.nanmax(ends), 1e-9) * 1.22)
    ax.grid(axis="y", visible=False)


def _published_markers(
    ax: Axes, labels: list[str], published: dict[str, tuple[float, float]], which: int
) -> None:
    y = np.arange(len(labels))[::-1]
    points = [(published[label][which], yi) for label, yi in zip(labels, y) if label in published]
    if points:
        xs, ys = zip(*points)
        ax.scatter(
            xs,
            ys,
            marker="D",
            s=22,
            color="black",
            zorder=3,
            label="published (same split; sources in table.md)",
        )
        ax.set_xlim(0, max(ax.get_xlim()[1], max(xs) * 1.22))


# ---------------------------------------------------------------------------- curves


def plot_cutoff_curves(curves: pd.DataFrame, path: Path, *, title: str = "") -> Path:
    """Recall@K and MRR@K against K (one line per algorithm) from ``curves.csv``."""
    labels = list(dict.fromkeys(curves["algorithm"]))
    palette = colors(labels)
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(3.8)
        for ax, (metric, name) in zip(axes, _METRICS):
            for label in labels:
                rows = curves[(curves["algorithm"] == label) & (curves["metric"] == metric)]
                ax.plot(
                    rows["cutoff"],
                    rows["value"],
                    marker="o",
                    markersize=3,
                    color=palette[label],
                    label=label,
                )
            ks = sorted(curves["cutoff"].unique())
            ax.set_xticks([k for k in ks if k == 1 or k % 5 == 0])
            ax.set_xlabel("K (length of the recommendation list)")
            ax.set_ylabel(f"{name}@K")
            ax.set_title(f"{name}@K")
            ax.set_ylim(bottom=0)
        _legend(fig, axes[0])
        fig.suptitle(title)
        return save(fig, path)


# ---------------------------------------------------------------------------- breakdowns


def plot_breakdown(
    breakdown: pd.DataFrame, by: str, path: Path, *, title: str = "", note: str = ""
) -> Path:
    """Recall and MRR per bucket of ``by`` (``position`` or ``popularity``), from breakdown.csv.

    The x tick labels carry the bucket and, for positions, how many predictions it holds.
    """
    part = breakdown[breakdown["by"] == by]
    labels = list(dict.fromkeys(part["algorithm"]))
    palette = colors(labels)
    cutoff = int(part["cutoff"].iloc[0])
    buckets = part.drop_duplicates("bucket").sort_values("bucket")
    if by == "position":
        ticks = [
            f"{b}\nn={_short(n)}" for b, n in zip(buckets["bucket_label"], buckets["n_predictions"])
        ]
        xlabel = (
            "position of the target in its session (1 = the 2nd click) and number of predictions"
        )
    else:
        ticks = [f"D{b}\n{lab}" for b, lab in zip(buckets["bucket"], buckets["bucket_label"])]
        xlabel = (
            "popularity decile of the target (D1 = least popular) and its number of "
            f"training clicks\n({_short(int(buckets['n_predictions'].sum()))} "
            "predictions with a seen target, ~10% per decile)"
        )
    x = np.arange(len(buckets))
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(5.6, ncols=1, nrows=2, sharex=True)
        for ax, (metric, name) in zip(axes, _METRICS):
            for label in labels:
                rows = part[(part["algorithm"] == label) & (part["metric"] == metric)]
                rows = rows.set_index("bucket").reindex(buckets["bucket"])
                ax.plot(
                    x, rows["value"], marker="o", markersize=4, color=palette[label], label=label
                )
            ax.set_ylabel(f"{name}@{cutoff}")
            ax.set_ylim(bottom=0)
        axes[-1].set_xticks(x, ticks, fontsize=8.5)
        axes[-1].set_xlabel(xlabel)
        _legend(fig, axes[0])
        fig.suptitle(
            f"{title}: Recall@{cutoff} and MRR@{cutoff} by {by}" + (f"\n({note})" if note else "")
        )
        return save(fig, path)


def _short(n: int) -> str:
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


# ---------------------------------------------------------------------------- training


def plot_training(
    histories: dict[str, pd.DataFrame],
    path: Path,
    *,
    title: str = "",
    losses: dict[str, str] | None = None,
) -> Path:
    """Training loss and validation Recall@20 per epoch, one line per GRU4Rec label.

    Args:
        histories: label -> ``history/<label>.csv``.
        path: output PNG.
        title: figure title (the dataset).
        losses: label -> name of its training loss, shown in the legend.
    """
    losses = losses or {}
    has_valid = any(
        "valid_recall20" in h and h["valid_recall20"].notna().any() for h in histories.values()
    )
    palette = colors(list(histories))
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(3.4, 2 if has_valid else 1)
        for label, history in histories.items():
            name = f"{label} ({losses[label]} loss)" if label in losses else label
            axes[0].plot(
                history["epoch"],
                history["loss"],
                marker="o",
                markersize=3,
                color=palette[label],
                label=name,
            )
            if has_valid and "valid_recall20" in history:
                axes[1].plot(
                    history["epoch"],
                    history["valid_recall20"],
                    marker="o",
                    markersize=3,
                    color=palette[label],
                    label=name,
                )
        axes[0].set_title(
            "training loss per epoch"
            if has_valid
            else "training loss per epoch (no validation split used in this run)"
        )
        axes[0].set_ylabel("mean training loss")
        if has_valid:
            axes[1].set_title("validation Recall@20 per epoch")
            axes[1].set_ylabel("Recall@20 on the validation split")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
        _legend(fig, axes[0])
        fig.suptitle(title + _speed_note(histories))
        return save(fig, path)


def _speed_note(histories: dict[str, pd.DataFrame]) -> str:
    speeds = [
        f"{label} {h['events_per_s'].median():,.0f}"
        for label, h in histories.items()
        if "events_per_s" in h and h["events_per_s"].notna().any()
    ]
    return f" (median training events/s: {', '.join(speeds)})" if speeds else ""


# ---------------------------------------------------------------------------- summary


def draw_summary(summary: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: one group per dataset, one bar per algorithm, CI error bars."""
    datasets = list(dict.fromkeys(summary["dataset"]))
    labels = list(dict.fromkeys(summary["algorithm"]))
    palette = colors(labels)
    width = 0.8 / len(labels)
    with matplotlib.rc_context(_RC):
        fig, axes = _figure(3.8)
        for ax, (metric, name) in zip(axes, _METRICS):
            part = summary[summary["metric"] == metric].set_index(["dataset", "algorithm"])
            for i, label in enumerate(labels):
                rows = part.reindex([(d, label) for d in datasets])
                values = rows["value"].to_numpy(float)
                err = np.vstack(
                    [
                        values - rows["ci_low"].to_numpy(float),
                        rows["ci_high"].to_numpy(float) - values,
                    ]
                )
                ax.bar(
                    np.arange(len(datasets)) + (i - (len(labels) - 1) / 2) * width,
                    values,
                    width,
                    yerr=np.maximum(np.nan_to_num(err), 0.0),
                    color=palette[label],
                    label=label,
                    error_kw={"elinewidth": 1, "capsize": 2},
                )
                if "published" in rows and rows["published"].notna().any():
                    ax.scatter(
                        np.arange(len(datasets)) + (i - (len(labels) - 1) / 2) * width,
                        rows["published"],
                        marker="D",
                        s=18,
                        color="black",
                        zorder=3,
                        label="published (same split)",
                    )
            cutoff = int(part["cutoff"].iloc[0])
            ax.set_xticks(np.arange(len(datasets)), datasets)
            ax.set_ylabel(f"{name}@{cutoff}")
            ax.set_title(f"{name}@{cutoff} (95% CI)")
            ax.grid(axis="x", visible=False)
        _legend(fig, axes[0])
        return save(fig, path)


# ---------------------------------------------------------------------------- a run


def draw_run(
    run_dir: Path,
    *,
    title: str = "",
    published: dict[str, tuple[float, float]] | None = None,
    losses: dict[str, str] | None = None,
) -> list[Path]:
    """Every plot of a run directory whose input files exist; returns the files written.

    Args:
        run_dir: the run directory.
        title: figure titles (the dataset).
        published: label -> published (Recall@20, MRR@20), marked on the headline plot.
        losses: label -> training loss name, for the training-curve legend.
    """
    run_dir = Path(run_dir)
    out = run_dir / "plots"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    cutoff = 20 if 20 in set(metrics["cutoff"]) else int(metrics["cutoff"].max())
    written = [
        plot_headline(
            metrics,
            out / "headline.png",
            cutoff=cutoff,
            title=title,
            published=published if cutoff == 20 else None,
        )
    ]
    if (run_dir / "curves.csv").is_file():
        written.append(
            plot_cutoff_curves(
                pd.read_csv(run_dir / "curves.csv"), out / "cutoffs.png", title=title
            )
        )
    if (run_dir / "breakdown.csv").is_file():
        breakdown = pd.read_csv(run_dir / "breakdown.csv")
        written.append(plot_breakdown(breakdown, "position", out / "by_position.png", title=title))
        written.append(
            plot_breakdown(
                breakdown,
                "popularity",
                out / "by_popularity.png",
                title=title,
                note=_unseen_note(run_dir),
            )
        )
    histories = {p.stem: pd.read_csv(p) for p in sorted((run_dir / "history").glob("*.csv"))}
    histories = {k: h for k, h in histories.items() if not h.empty}
    if histories:
        written.append(plot_training(histories, out / "training.png", title=title, losses=losses))
    log.info("%s: drew %s", run_dir, ", ".join(p.name for p in written))
    return written


def _unseen_note(run_dir: Path) -> str:
    support = pd.read_parquet(run_dir / "predictions.parquet", columns=["target_support"])[
        "target_support"
    ]
    unseen = int((support == 0).sum())
    return f"{unseen:,} predictions with unseen targets excluded" if unseen else ""
