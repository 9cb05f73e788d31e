"""Numbers derived from a run's per-prediction ranks: intervals, paired tests, curves, breakdowns.

Pure functions of arrays and frames (no files): :mod:`benchmark.report.render` reads the run directory,
calls these and writes the results. Per-prediction values are defined here once
(:func:`metric_values`) and checked against ``metrics.csv`` before anything is derived.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report import stats, tables

ALPHA = 0.05
MAX_CURVE_K = 20
POSITION_CAP = 10
N_POPULARITY_BINS = 10
_VALUE_TOLERANCE = 1e-9


def metric_values(ranks: np.ndarray, metric: str, cutoff: int) -> np.ndarray:
    """Per-prediction values whose mean is the metric (hit 0/1 for recall, 1/rank for MRR)."""
    hit = ranks <= cutoff
    if metric == "recall":
        return hit.astype(np.float64)
    if metric == "mrr":
        return np.where(hit, 1.0 / ranks, 0.0)
    raise ValueError(f"no per-prediction definition for metric {metric!r}")


def check_metric_values(metrics: pd.DataFrame, ranks: dict[str, np.ndarray]) -> None:
    """Raise if a value in ``metrics.csv`` is not what the saved ranks give (files disagree)."""
    for row in metrics.itertuples():
        if row.metric not in tables.METRIC_NAMES:
            continue
        expected = metric_values(ranks[row.algorithm], row.metric, int(row.cutoff)).mean()
        if abs(expected - row.value) > _VALUE_TOLERANCE:
            raise ValueError(
                f"metrics.csv: {row.algorithm} {row.metric}@{row.cutoff} is {row.value!r} but "
                f"ranks/{row.algorithm}.parquet gives {expected!r}"
            )


def confidence_intervals(
    metrics: pd.DataFrame,
    ranks: dict[str, np.ndarray],
    sessions: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """``metrics`` with ``ci_low``/``ci_high`` set for every recall/MRR row.

    Every algorithm uses a fresh ``default_rng(seed)``: all algorithms see the same resampled
    sessions (common random numbers), and the result does not depend on the order of the rows.
    """
    out = metrics.drop(columns=["ci_low", "ci_high"], errors="ignore").copy()
    out["ci_low"], out["ci_high"] = np.nan, np.nan
    for label, rows in out.groupby("algorithm", sort=False):
        rows = rows[rows["metric"].isin(list(tables.METRIC_NAMES))]
        if rows.empty:
            continue
        values = np.column_stack(
            [metric_values(ranks[label], m, int(k)) for m, k in zip(rows["metric"], rows["cutoff"])]
        )
        bounds = stats.bootstrap_cis(
            values, sessions, n_boot, alpha, rng=np.random.default_rng(seed)
        )
        out.loc[rows.index, "ci_low"] = bounds[:, 0]
        out.loc[rows.index, "ci_high"] = bounds[:, 1]
    return out


def significance(
    ranks: dict[str, np.ndarray],
    sessions: np.ndarray,
    *,
    reference: str,
    cutoff: int,
    n_resamples: int,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Each reference label against every other label at ``cutoff``, paired over predictions.

    Returns:
        Rows ``reference, algorithm, metric, cutoff, reference_value, value, difference,
        difference_ci_low, difference_ci_high, p_value, n_predictions, n_sessions,
        n_resamples``; ``difference = reference_value - value`` (positive: reference better).
    """
    rows = []
    n_sessions = len(np.unique(sessions))
    for ref in (label for label in ranks if tables.is_reference(label, reference)):
        ref_values = _headline_values(ranks[ref], cutoff)
        for other in (label for label in ranks if label != ref):
            values = _headline_values(ranks[other], cutoff)
            p = stats.paired_tests(
                ref_values, values, sessions, n_resamples, rng=np.random.default_rng(seed)
            )
            ci = stats.bootstrap_cis(
                ref_values - values, sessions, n_boot, rng=np.random.default_rng(seed)
            )
            for j, metric in enumerate(tables.METRIC_NAMES):
                a, b = ref_values[:, j].mean(), values[:, j].mean()
                rows.append(
                    {
                        "reference": ref,
                        "algorithm": other,
                        "metric": metric,
                        "cutoff": cutoff,
                        "reference_value": a,
                        "value": b,
                        "difference": a - b,
                        "difference_ci_low": ci[j, 0],
                        "difference_ci_high": ci[j, 1],
                        "p_value": p[j],
                        "n_predictions": len(sessions),
                        "n_sessions": n_sessions,
                        "n_resamples": n_resamples,
                    }
                )
    return pd.DataFrame(rows, columns=_SIGNIFICANCE_COLUMNS)


_SIGNIFICANCE_COLUMNS = [
    "reference",
    "algorithm",
    "metric",
    "cutoff",
    "reference_value",
    "value",
    "difference",
    "difference_ci_low",
    "difference_ci_high",
    "p_value",
    "n_predictions",
    "n_sessions",
    "n_resamples",
]


def _headline_values(ranks: np.ndarray, cutoff: int) -> np.ndarray:
    return np.column_stack([metric_values(ranks, m, cutoff) for m in tables.METRIC_NAMES])


def cutoff_curves(ranks: dict[str, np.ndarray], max_k: int = MAX_CURVE_K) -> pd.DataFrame:
    """Tidy ``algorithm, metric, cutoff, value`` for every K in 1..max_k (``curves.csv``)."""
    rows = []
    for label, r in ranks.items():
        for k in range(1, max_k + 1):
            for metric in tables.METRIC_NAMES:
                rows.append(
                    {
                        "algorithm": label,
                        "metric": metric,
                        "cutoff": k,
                        "value": metric_values(r, metric, k).mean(),
                    }
                )
    return pd.DataFrame(rows)


def position_buckets(position: np.ndarray, cap: int = POSITION_CAP) -> tuple[np.ndarray, list[str]]:
    """Bucket of each prediction by position (1..cap-1, then ``cap+``) and the bucket labels."""
    bucket = np.minimum(position, cap)
    return bucket, [str(p) for p in range(1, cap)] + [f"{cap}+"]


def popularity_buckets(
    support: np.ndarray, n_bins: int = N_POPULARITY_BINS
) -> tuple[np.ndarray, list[str]]:
    """Popularity decile (1 = least popular) of each prediction's target; 0 for unseen targets.

    Predictions with a seen target are ordered by the target's training support (ties kept in
    prediction order) and cut into ``n_bins`` groups of equal size, so every decile holds 10% of
    those predictions. Unseen targets (support 0, always a miss) are left out of the deciles.

    Returns:
        Bucket per prediction (0 = unseen) and labels ``"1–3"`` (support range) for 1..n_bins.
    """
    bucket = np.zeros(len(support), dtype=np.int64)
    seen = np.flatnonzero(support > 0)
    if len(seen) == 0:
        return bucket, []
    n_bins = min(n_bins, len(seen))
    order = seen[np.argsort(support[seen], kind="stable")]
    bucket[order] = 1 + (np.arange(len(order)) * n_bins) // len(order)
    labels = []
    for b in range(1, n_bins + 1):
        s = support[bucket == b]
        labels.append(f"{s.min():,}" if s.min() == s.max() else f"{s.min():,}–{s.max():,}")
    return bucket, labels


REPEAT_LABELS = ["repeat", "new"]


def repeat_buckets(repeat: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bucket 1 for a target that repeats an item of its session's prefix, 2 for a new one."""
    return np.where(repeat, 1, 2), REPEAT_LABELS


def breakdown(predictions: pd.DataFrame, ranks: dict[str, np.ndarray], cutoff: int) -> pd.DataFrame:
    """Recall/MRR at ``cutoff`` by position, by popularity decile and by repeat/new target
    (``breakdown.csv``).

    Returns:
        Tidy rows ``algorithm, by, bucket, bucket_label, metric, cutoff, value,
        n_predictions``; ``by`` is ``position``, ``popularity`` or ``repeat`` (bucket 1
        ``repeat``: the target occurred earlier in its session; 2 ``new``). Runs written
        before predictions.parquet had a ``repeat`` column have no ``repeat`` rows.
    """
    groupings = {
        "position": position_buckets(predictions["position"].to_numpy(np.int64)),
        "popularity": popularity_buckets(predictions["target_support"].to_numpy(np.int64)),
    }
    if "repeat" in predictions:
        groupings["repeat"] = repeat_buckets(predictions["repeat"].to_numpy(bool))
    rows = []
    for by, (bucket, labels) in groupings.items():
        for b, label in enumerate(labels, start=1):
            mask = bucket == b
            if not mask.any():
                continue
            for algorithm, r in ranks.items():
                for metric in tables.METRIC_NAMES:
                    rows.append(
                        {
                            "algorithm": algorithm,
                            "by": by,
                            "bucket": b,
                            "bucket_label": label,
                            "metric": metric,
                            "cutoff": cutoff,
                            "value": metric_values(r[mask], metric, cutoff).mean(),
                            "n_predictions": int(mask.sum()),
                        }
                    )
    return pd.DataFrame(rows)
