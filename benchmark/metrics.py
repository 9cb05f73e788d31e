"""Metrics as pure functions of per-prediction ranks (they never see a model).

A rank is 1-based; ``inf`` means the target cannot be ranked (an item unseen in training), which
counts as a miss at every cutoff. Ranks may be fractional (the ``median`` tie mode).
"""

from __future__ import annotations

import numpy as np


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Share of predictions whose target is ranked within the top ``k`` (rank <= k)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        return float("nan")
    return float(np.mean(ranks <= k))


def mrr_at(ranks: np.ndarray, k: int) -> float:
    """Mean of 1/rank over predictions, where a rank above ``k`` contributes 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        return float("nan")
    return float(np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0)))


METRICS = {"recall": recall_at, "mrr": mrr_at}


def compute_metrics(ranks: np.ndarray, cutoffs: list[int]) -> list[dict]:
    """Tidy rows ``{metric, cutoff, value, n_predictions}`` for every metric and cutoff."""
    return [
        {"metric": name, "cutoff": int(k), "value": fn(ranks, k), "n_predictions": len(ranks)}
        for name, fn in METRICS.items()
        for k in cutoffs
    ]
