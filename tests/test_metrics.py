import math

import numpy as np
import pytest

from benchmark.metrics import compute_metrics, mrr_at, recall_at

RANKS = np.array([1.0, 3.0, 20.0, 21.0, np.inf])


def test_recall_counts_rank_equal_to_cutoff_as_hit():
    # rank <= K, not rank < K (the 2016 off-by-one)
    assert recall_at(RANKS, 20) == pytest.approx(3 / 5)
    assert recall_at(RANKS, 1) == pytest.approx(1 / 5)
    assert recall_at(RANKS, 3) == pytest.approx(2 / 5)


def test_mrr_by_hand():
    assert mrr_at(RANKS, 20) == pytest.approx((1 + 1 / 3 + 1 / 20) / 5)
    assert mrr_at(RANKS, 2) == pytest.approx(1 / 5)


def test_fractional_median_ranks():
    assert mrr_at(np.array([1.5, 2.5]), 20) == pytest.approx((1 / 1.5 + 1 / 2.5) / 2)
    assert recall_at(np.array([1.5, 2.5]), 2) == pytest.approx(0.5)


def test_unseen_targets_are_misses_everywhere():
    ranks = np.array([np.inf, np.inf])
    assert recall_at(ranks, 1000) == 0.0 and mrr_at(ranks, 1000) == 0.0


def test_compute_metrics_rows():
    rows = compute_metrics(RANKS, [1, 20])
    assert [(r["metric"], r["cutoff"]) for r in rows] == [
        ("recall", 1),
        ("recall", 20),
        ("mrr", 1),
        ("mrr", 20),
    ]
    assert all(r["n_predictions"] == 5 for r in rows)
    assert math.isnan(recall_at(np.array([]), 5))
