"""The synthetic click model and the ``synthetic`` dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datasets.clicks import MICROS
from datasets.sessions import Sessions
from datasets.synthetic import (
    HOURLY_PROFILE,
    ClickModel,
    draw_in_cluster,
    generate_clicks,
    load_synthetic,
    make_catalogue,
    sample_lengths,
)


@pytest.fixture(scope="module")
def synthetic():
    return load_synthetic(0)


def transitions(sessions: Sessions) -> pd.DataFrame:
    """(previous item, next item) of every click but the first of its session."""
    nxt = np.ones(sessions.n_events, dtype=bool)
    nxt[sessions.offsets[:-1]] = False
    idx = np.flatnonzero(nxt)
    return pd.DataFrame({"prev": sessions.items[idx - 1], "next": sessions.items[idx]})


def test_seeded_and_deterministic(synthetic):
    assert load_synthetic(0).fingerprint() == synthetic.fingerprint()
    assert load_synthetic(1).fingerprint() != synthetic.fingerprint()


def test_size_fits_a_quick_cpu_run(synthetic):
    counts = synthetic.split_counts()
    assert 18_000 <= counts["train"]["sessions"] <= 22_000
    assert 1_500 <= synthetic.n_items <= 2_000
    assert 2_000 <= counts["test"]["sessions"] <= 3_500
    assert synthetic.valid_train is not None and synthetic.valid_test.n_sessions > 1_000
    assert synthetic.source["seed"] == 0 and "model" in synthetic.source


def test_split_follows_the_rsc15_rules(synthetic):
    train, test = synthetic.train, synthetic.test
    assert train.lengths.min() >= 2 and test.lengths.min() >= 2
    assert test.times.max() - 86_400 <= test.times[test.offsets[1:] - 1].min()
    assert train.times[train.offsets[1:] - 1].max() < test.times.max() - 86_400
    support = np.bincount(train.items, minlength=synthetic.n_items)
    assert support.min() >= 1
    first = train.times[train.offsets[:-1]]
    assert np.all(np.diff(first) >= 0)  # sessions in order of their first click


def test_sequences_are_learnable(synthetic):
    """The most frequent next item of each item carries over half of all transitions."""
    pairs = transitions(synthetic.train)
    counts = pairs.groupby(["prev", "next"]).size()
    best = counts.groupby(level="prev").max().sum()
    assert best / len(pairs) > 0.5
    # ... while the single most popular item is the next click far less often.
    top = np.bincount(synthetic.train.items).argmax()
    assert (pairs["next"] == top).mean() < 0.1


def test_popularity_is_skewed(synthetic):
    support = np.sort(np.bincount(synthetic.train.items))[::-1]
    assert support[:20].sum() / support.sum() > 0.15
    assert support[0] > 20 * np.median(support)


def test_daily_cycle_in_start_times():
    rng = np.random.default_rng(0)
    model = ClickModel()
    clicks, _ = generate_clicks(make_catalogue(model, rng), model, np.full(5, 4_000), rng)
    starts = clicks.time[np.r_[0, np.flatnonzero(np.diff(clicks.session_id)) + 1]]
    hours = (starts // MICROS) % 86_400 // 3600
    share = np.bincount(hours, minlength=24) / len(hours)
    expected = HOURLY_PROFILE / HOURLY_PROFILE.sum()
    assert np.abs(share - expected).max() < 0.01
    assert share[19] > 5 * share[3]


def test_length_model_mean_and_singletons():
    lengths = sample_lengths(ClickModel(), 200_000, np.random.default_rng(1))
    assert abs(lengths.mean() - 3.57) < 0.05
    assert abs((lengths == 1).mean() - 0.13) < 0.005
    assert lengths.max() > 30


def test_cluster_draws_stay_in_their_cluster():
    rng = np.random.default_rng(2)
    catalogue = make_catalogue(ClickModel(n_items=100, n_clusters=7), rng)
    clusters = rng.integers(0, 7, 5_000)
    items = draw_in_cluster(catalogue, clusters, rng)
    assert np.array_equal(catalogue.cluster[items], clusters)
    assert np.array_equal(catalogue.cluster[catalogue.successor], catalogue.cluster)


def test_invalid_model_parameters():
    with pytest.raises(ValueError, match="p_repeat"):
        ClickModel(p_repeat=0.5, p_successor=0.5, p_cluster=0.2)
    with pytest.raises(ValueError, match="n_clusters"):
        ClickModel(n_items=5, n_clusters=10)
