"""Tables of a run (and of several runs) as data frames and Markdown, from the saved CSV files.

Pure functions: they take the frames read from a run directory and return frames or text; the
files are read and written by :mod:`benchmark.report.render`. Column names are explained in
``results/README.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.report.published import PUBLISHED, REFERENCE_POINTS, published_for

METRIC_NAMES = {"recall": "Recall", "mrr": "MRR"}


def col(metric: str, cutoff: int) -> str:
    """Wide column name of a metric at a cutoff, e.g. ``recall@20``."""
    return f"{metric}@{cutoff}"


def headline_cutoff(cutoffs: Sequence[int], preferred: int = 20) -> int:
    """The cutoff the headline numbers use: 20 if the run has it, else its largest cutoff."""
    cutoffs = sorted(int(k) for k in cutoffs)
    return preferred if preferred in cutoffs else cutoffs[-1]


def is_reference(label: str, reference: str) -> bool:
    """Whether a run label belongs to the reference method (e.g. every ``gru4rec*`` label)."""
    return label.startswith(reference)


def metric_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Wide frame indexed by algorithm label (run order): ``recall@K``, ``recall@K_ci_low``, ...."""
    labels = list(dict.fromkeys(metrics["algorithm"]))
    out = pd.DataFrame(index=pd.Index(labels, name="algorithm"))
    for (metric, cutoff), rows in metrics.groupby(["metric", "cutoff"], sort=False):
        rows = rows.set_index("algorithm")
        name = col(metric, int(cutoff))
        out[name] = rows["value"]
        for bound in ("ci_low", "ci_high"):
            out[f"{name}_{bound}"] = rows[bound] if bound in rows else np.nan
    out["n_predictions"] = metrics.groupby("algorithm", sort=False)["n_predictions"].first()
    return out


def timing_table(timings: pd.DataFrame | None, labels: list[str]) -> pd.DataFrame:
    """``fit_s``, ``evaluate_s``, ``peak_rss_mb`` (max over stages) and ``peak_gpu_mb``."""
    out = pd.DataFrame(index=pd.Index(labels, name="algorithm"))
    if timings is None or timings.empty:
        return out
    by_stage = timings.pivot_table(
        index="algorithm", columns="stage", values="seconds", aggfunc="sum"
    )
    for stage in ("fit", "evaluate"):
        out[f"{stage}_s"] = by_stage[stage] if stage in by_stage else np.nan
    for memory in ("peak_rss_mb", "peak_gpu_mb"):
        if memory in timings:
            out[memory] = timings.groupby("algorithm")[memory].max()
    return out


def seed_table(seeds: pd.DataFrame | None, labels: list[str], cutoff: int) -> pd.DataFrame:
    """Mean, sample std and count over seeds of the headline metrics (only seeded labels)."""
    out = pd.DataFrame(index=pd.Index(labels, name="algorithm"))
    if seeds is None or seeds.empty:
        return out
    rows = seeds[seeds["cutoff"] == cutoff]
    stats = rows.groupby(["algorithm", "metric"])["value"].agg(["mean", "std", "count"])
    for metric in METRIC_NAMES:
        if metric not in stats.index.get_level_values("metric"):
            continue
        part = stats.xs(metric, level="metric")
        out[f"{col(metric, cutoff)}_seed_mean"] = part["mean"]
        out[f"{col(metric, cutoff)}_seed_std"] = part["std"]
        out["seeds_n"] = part["count"]
    return out


def significance_table(
    significance: pd.DataFrame | None, labels: list[str], primary: str | None, cutoff: int
) -> pd.DataFrame:
    """p-values of the primary reference against each label, one column per headline metric."""
    out = pd.DataFrame(index=pd.Index(labels, name="algorithm"))
    if significance is None or significance.empty or primary is None:
        return out
    rows = significance[(significance["reference"] == primary) & (significance["cutoff"] == cutoff)]
    for metric in METRIC_NAMES:
        part = rows[rows["metric"] == metric].set_index("algorithm")
        out[f"p_{col(metric, cutoff)}"] = part["p_value"]
    return out


def primary_reference(table: pd.DataFrame, reference: str, cutoff: int) -> str | None:
    """The reference label with the highest Recall@cutoff (``None`` if the run has none)."""
    refs = [label for label in table.index if is_reference(label, reference)]
    if not refs:
        return None
    return str(table.loc[refs, col("recall", cutoff)].idxmax())


def best_baseline(table: pd.DataFrame, reference: str, cutoff: int) -> str | None:
    """The non-reference label with the highest Recall@cutoff (``None`` if there is none)."""
    baselines = [label for label in table.index if not is_reference(label, reference)]
    if not baselines:
        return None
    return str(table.loc[baselines, col("recall", cutoff)].idxmax())


def run_table(
    metrics: pd.DataFrame,
    *,
    timings: pd.DataFrame | None = None,
    significance: pd.DataFrame | None = None,
    seeds: pd.DataFrame | None = None,
    algorithms: dict[str, str] | None = None,
    dataset: str = "",
    reference: str = "gru4rec",
    tuning: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per algorithm with every number the run's tables show (the ``table.csv`` frame).

    Args:
        metrics: ``metrics.csv`` (with ``ci_low``/``ci_high`` if the run was finalized).
        timings: ``timings.csv``.
        significance: ``significance.csv``.
        seeds: ``seeds.csv``.
        algorithms: run label -> registry algorithm name (from ``run.json``), used to find
            published numbers; a label missing here is taken as its own algorithm name.
        dataset: dataset name, used to find published numbers.
        reference: prefix of the labels of the reference method (GRU4Rec).
        tuning: run label -> how its hyperparameters were chosen (``config.tuning_text``);
            given, the frame gets a ``tuning`` column and the headline table shows it.

    Returns:
        The wide frame, indexed by label in run order; columns are documented in
        ``results/README.md``.
    """
    algorithms = algorithms or {}
    table = metric_table(metrics)
    labels = list(table.index)
    cutoff = headline_cutoff(metrics["cutoff"].unique())
    primary = primary_reference(table, reference, cutoff)
    baseline = best_baseline(table, reference, cutoff)
    table.insert(0, "algorithm_name", [algorithms.get(label, label) for label in labels])
    table.insert(1, "role", [_role(label, reference, primary, baseline) for label in labels])
    if tuning:
        table.insert(2, "tuning", [tuning.get(label, "not recorded") for label in labels])
    table = table.join(timing_table(timings, labels))
    for metric in METRIC_NAMES:
        name = col(metric, cutoff)
        base = table.loc[baseline, name] if baseline is not None else np.nan
        table[f"{name}_change_pct"] = 100.0 * (table[name] - base) / base if base else np.nan
    table["best_baseline"] = baseline or ""
    table["reference"] = primary or ""
    table = table.join(significance_table(significance, labels, primary, cutoff))
    table = table.join(seed_table(seeds, labels, cutoff))
    return table.join(_published_columns(labels, algorithms, dataset, cutoff))


def _role(label: str, reference: str, primary: str | None, baseline: str | None) -> str:
    if label == primary:
        return "reference"
    if is_reference(label, reference):
        return "reference variant"
    return "best baseline" if label == baseline else "baseline"


def _published_columns(
    labels: list[str], algorithms: dict[str, str], dataset: str, cutoff: int
) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.Index(labels, name="algorithm"))
    if cutoff != 20 or dataset not in PUBLISHED:
        return out
    found = {label: published_for(dataset, algorithms.get(label, label)) for label in labels}
    out["published_recall@20"] = [p.recall20 if p else np.nan for p in found.values()]
    out["published_mrr@20"] = [p.mrr20 if p else np.nan for p in found.values()]
    out["published_source"] = [p.source if p else "" for p in found.values()]
    return out


# ---------------------------------------------------------------------------- formatting


def fmt_value(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4f}"


def fmt_ci(value: float, low: float, high: float) -> str:
    """``0.7102 [0.7051, 0.7150]``; just the value when there is no interval."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return fmt_value(value)
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def fmt_change(pct: float) -> str:
    return "–" if not np.isfinite(pct) else f"{pct:+.1f}%"


def fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_seconds(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    if seconds < 10:
        return f"{seconds:.2f}"
    return f"{seconds:.1f}" if seconds < 100 else f"{seconds:,.0f}"


def fmt_mb(mb: float) -> str:
    return "–" if not np.isfinite(mb) else f"{mb:,.0f}"


def _get(table: pd.DataFrame, label: str, column: str) -> float:
    if column not in table.columns:
        return math.nan
    value = table.loc[label, column]
    return float(value) if value is not None and not pd.isna(value) else math.nan


def headline_markdown(table: pd.DataFrame, cutoff: int) -> str:
    """The Recall@K / MRR@K table with CIs, change vs the best baseline, p-values, published."""
    baseline = table["best_baseline"].iloc[0] or None
    reference = table["reference"].iloc[0] or None
    header = ["algorithm", f"Recall@{cutoff} [95% CI]", f"MRR@{cutoff} [95% CI]"]
    if "tuning" in table:
        header.insert(1, "tuning")
    if baseline:
        header += [f"Δ Recall@{cutoff} vs {baseline}", f"Δ MRR@{cutoff} vs {baseline}"]
    if reference and f"p_recall@{cutoff}" in table:
        header += [f"p vs {reference} (Recall / MRR)"]
    seeded = "seeds_n" in table and table["seeds_n"].notna().any()
    if seeded:
        header += [f"over seeds: Recall@{cutoff} / MRR@{cutoff} (mean ± std)"]
    published = "published_recall@20" in table and table["published_recall@20"].notna().any()
    if published:
        header += ["published Recall@20 / MRR@20"]
    rows = [
        _headline_row(table, label, cutoff, baseline, reference, seeded, published)
        for label in table.index
    ]
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def _headline_row(
    table: pd.DataFrame,
    label: str,
    cutoff: int,
    baseline: str | None,
    reference: str | None,
    seeded: bool,
    published: bool,
) -> list[str]:
    r, m = col("recall", cutoff), col("mrr", cutoff)
    role = table.loc[label, "role"]
    name = f"**{label}**" if role == "reference" else label
    row = [
        name,
        fmt_ci(*(_get(table, label, c) for c in (r, f"{r}_ci_low", f"{r}_ci_high"))),
        fmt_ci(*(_get(table, label, c) for c in (m, f"{m}_ci_low", f"{m}_ci_high"))),
    ]
    if "tuning" in table:
        row.insert(1, table.loc[label, "tuning"])
    if baseline:
        if label == baseline:
            row += ["(best baseline)", "(best baseline)"]
        else:
            row += [
                fmt_change(_get(table, label, f"{r}_change_pct")),
                fmt_change(_get(table, label, f"{m}_change_pct")),
            ]
    if reference and f"p_{r}" in table:
        row += [
            "(reference)"
            if label == reference
            else f"{fmt_p(_get(table, label, f'p_{r}'))} / {fmt_p(_get(table, label, f'p_{m}'))}"
        ]
    if seeded:
        n = _get(table, label, "seeds_n")
        row += [
            "–"
            if not np.isfinite(n) or n < 2
            else f"{_get(table, label, f'{r}_seed_mean'):.4f} ± {_get(table, label, f'{r}_seed_std'):.4f}"
            f" / {_get(table, label, f'{m}_seed_mean'):.4f} ± "
            f"{_get(table, label, f'{m}_seed_std'):.4f} ({int(n)} seeds)"
        ]
    if published:
        pr, pm = _get(table, label, "published_recall@20"), _get(table, label, "published_mrr@20")
        row += ["–" if not np.isfinite(pr) else f"{pr:.4f} / {pm:.4f}"]
    return row


def detail_markdown(table: pd.DataFrame, cutoffs: Sequence[int]) -> str:
    """Every metric at every cutoff, plus fit/evaluation time and peak memory."""
    header = ["algorithm"] + [f"{METRIC_NAMES[m]}@{k}" for m in METRIC_NAMES for k in cutoffs]
    cost = [
        ("fit_s", "fit (s)", fmt_seconds),
        ("evaluate_s", "evaluate (s)", fmt_seconds),
        ("peak_rss_mb", "peak RSS (MB)", fmt_mb),
    ]
    if "peak_gpu_mb" in table and (table["peak_gpu_mb"].fillna(0) > 0).any():
        cost.append(("peak_gpu_mb", "peak GPU (MB)", fmt_mb))
    cost = [c for c in cost if c[0] in table]
    header += [title for _, title, _ in cost]
    rows = []
    for label in table.index:
        row = [label] + [
            fmt_value(_get(table, label, col(m, k))) for m in METRIC_NAMES for k in cutoffs
        ]
        rows.append(row + [fmt(_get(table, label, name)) for name, _, fmt in cost])
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def repeat_markdown(breakdown: pd.DataFrame | None, labels: Sequence[str]) -> str | None:
    """Recall/MRR per algorithm for targets that repeat an item of their session's prefix and
    for new ones, with each group's share; ``None`` when the run has no repeat breakdown."""
    if breakdown is None or "by" not in breakdown:
        return None
    part = breakdown[breakdown["by"] == "repeat"]
    if part.empty:
        return None
    cutoff = int(part["cutoff"].iloc[0])
    groups = part.drop_duplicates("bucket").set_index("bucket_label")["n_predictions"]
    total = int(groups.sum())
    shares = ", ".join(f"{g} {int(n):,} ({100 * n / total:.1f}%)" for g, n in groups.items())
    header = ["algorithm"] + [
        f"{METRIC_NAMES[m]}@{cutoff} {g}" for g in groups.index for m in METRIC_NAMES
    ]
    value = part.set_index(["algorithm", "bucket_label", "metric"])["value"]
    rows = [
        [label]
        + [
            fmt_value(value.get((label, g, m), float("nan")))
            for g in groups.index
            for m in METRIC_NAMES
        ]
        for label in labels
        if label in set(part["algorithm"])
    ]
    table = tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
    return (
        f"Test targets that repeat an item already clicked earlier in their session, and new "
        f"ones: {shares} of {total:,}.\n\n{table}"
    )


def published_notes(table: pd.DataFrame, dataset: str) -> list[str]:
    """Markdown bullet lines naming the sources of the published column and other methods."""
    lines = []
    if "published_source" in table:
        for source in dict.fromkeys(s for s in table["published_source"] if s):
            users = [
                label for label in table.index if table.loc[label, "published_source"] == source
            ]
            lines.append(f"- Published numbers for {', '.join(users)}: {source}.")
    present = set(table["algorithm_name"]) if "algorithm_name" in table else set(table.index)
    others = [p for k, p in REFERENCE_POINTS.get(dataset, {}).items() if k not in present]
    for source in dict.fromkeys(p.source for p in others):
        listed = "; ".join(
            f"{p.method} {p.recall20:.4f} / {p.mrr20:.4f}" for p in others if p.source == source
        )
        lines.append(
            f"- Other published results on this split (Recall@20 / MRR@20), from "
            f"{source}: {listed}."
        )
    return lines


def summary_frame(
    runs: list[tuple[str, pd.DataFrame, dict[str, str]]], cutoff: int = 20
) -> pd.DataFrame:
    """Tidy ``dataset, algorithm, metric, cutoff, value, ci_low, ci_high, published`` rows.

    Args:
        runs: ``(dataset, metrics.csv frame, label -> algorithm name)`` per run.
        cutoff: the cutoff to summarize.
    """
    parts = []
    for dataset, metrics, algorithms in runs:
        rows = metrics[metrics["cutoff"] == cutoff].copy()
        for bound in ("ci_low", "ci_high"):
            if bound not in rows:
                rows[bound] = np.nan
        rows.insert(0, "dataset", dataset)
        rows["published"] = [
            _published_value(dataset, algorithms.get(a, a), m, cutoff)
            for a, m in zip(rows["algorithm"], rows["metric"])
        ]
        parts.append(
            rows[
                [
                    "dataset",
                    "algorithm",
                    "metric",
                    "cutoff",
                    "value",
                    "ci_low",
                    "ci_high",
                    "n_predictions",
                    "published",
                ]
            ]
        )
    return pd.concat(parts, ignore_index=True)


def _published_value(dataset: str, algorithm: str, metric: str, cutoff: int) -> float:
    found = published_for(dataset, algorithm)
    if found is None or cutoff != 20 or metric not in METRIC_NAMES:
        return math.nan
    return found.recall20 if metric == "recall" else found.mrr20


def summary_markdown(summary: pd.DataFrame) -> str:
    """One table per metric: algorithms x datasets, ``value [CI]`` and the published number."""
    blocks = []
    for metric in METRIC_NAMES:
        part = summary[summary["metric"] == metric]
        if part.empty:
            continue
        cutoff = int(part["cutoff"].iloc[0])
        datasets = list(dict.fromkeys(part["dataset"]))
        labels = list(dict.fromkeys(part["algorithm"]))
        cells = {(r.dataset, r.algorithm): r for r in part.itertuples()}
        rows = []
        for label in labels:
            row = [label]
            for dataset in datasets:
                r = cells.get((dataset, label))
                if r is None:
                    row.append("–")
                    continue
                text = fmt_ci(r.value, r.ci_low, r.ci_high)
                row.append(
                    text + (f" (published {r.published:.4f})" if np.isfinite(r.published) else "")
                )
            rows.append(row)
        title = f"### {METRIC_NAMES[metric]}@{cutoff} [95% CI]"
        blocks.append(
            title
            + "\n\n"
            + tabulate(
                rows, headers=["algorithm", *datasets], tablefmt="github", disable_numparse=True
            )
        )
    return "\n\n".join(blocks)
