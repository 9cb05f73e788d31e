"""Known answers for the session-level bootstrap and the paired sign-flip test."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.report.stats import (
    bootstrap_ci,
    bootstrap_cis,
    paired_test,
    paired_tests,
    session_totals,
)


def _sessions(n_sessions: int, rng: np.random.Generator, max_len: int = 6) -> np.ndarray:
    """Session label per prediction, sessions of 1..max_len predictions, in session order."""
    return np.repeat(np.arange(n_sessions), rng.integers(1, max_len + 1, n_sessions))


def test_session_totals_sums_and_counts_by_hand():
    sums, counts = session_totals(np.array([1.0, 0.0, 1.0, 1.0, 0.5]), np.array([7, 7, 3, 9, 3]))
    # sessions in sorted order: 3, 7, 9
    np.testing.assert_allclose(sums, [1.5, 1.0, 1.0])
    np.testing.assert_allclose(counts, [2, 2, 1])


def test_session_totals_rejects_infinite_values():
    with pytest.raises(ValueError, match="finite"):
        session_totals(np.array([1.0, np.inf]), np.array([0, 1]))


def test_bootstrap_ci_of_bernoulli_covers_true_value_with_the_right_width():
    rng = np.random.default_rng(0)
    sessions = _sessions(4000, rng)
    values = (rng.random(len(sessions)) < 0.3).astype(float)  # independent: iid width applies
    low, high = bootstrap_ci(values, sessions, n_boot=1000, rng=np.random.default_rng(1))
    assert low < 0.3 < high
    assert low < values.mean() < high
    expected_width = 2 * 1.96 * np.sqrt(0.3 * 0.7 / len(values))
    assert 0.8 * expected_width < high - low < 1.2 * expected_width


def test_bootstrap_ci_widens_when_predictions_of_a_session_are_correlated():
    rng = np.random.default_rng(2)
    lengths = np.full(1000, 5)
    sessions = np.repeat(np.arange(1000), lengths)
    values = np.repeat((rng.random(1000) < 0.3).astype(float), lengths)  # same outcome per session
    low, high = bootstrap_ci(values, sessions, rng=np.random.default_rng(3))
    naive_low, naive_high = bootstrap_ci(
        values, np.arange(len(values)), rng=np.random.default_rng(3)
    )
    # Five identical outcomes are one observation: the honest interval is ~sqrt(5) wider.
    assert 1.8 < (high - low) / (naive_high - naive_low) < 2.7
    assert low < 0.3 < high


def test_bootstrap_ci_of_a_constant_is_that_constant():
    sessions = np.array([0, 0, 1, 2, 2, 2])
    assert bootstrap_ci(
        np.full(6, 0.25), sessions, n_boot=50, rng=np.random.default_rng(0)
    ) == pytest.approx((0.25, 0.25))


def test_bootstrap_is_reproducible_and_shares_resamples_across_statistics():
    rng = np.random.default_rng(4)
    sessions = _sessions(300, rng)
    a = rng.random(len(sessions))
    both = bootstrap_cis(
        np.column_stack([a, a]), sessions, n_boot=200, rng=np.random.default_rng(9)
    )
    single = bootstrap_ci(a, sessions, n_boot=200, rng=np.random.default_rng(9))
    np.testing.assert_allclose(both[0], single)
    np.testing.assert_allclose(both[1], single)


def test_paired_test_gives_exactly_one_for_identical_inputs():
    rng = np.random.default_rng(5)
    sessions = _sessions(500, rng)
    values = (rng.random(len(sessions)) < 0.4).astype(float)
    assert paired_test(values, values.copy(), sessions, rng=np.random.default_rng(0)) == 1.0


def test_paired_test_gives_a_small_p_value_for_a_clearly_better_ranker():
    rng = np.random.default_rng(6)
    sessions = _sessions(500, rng)
    good = (rng.random(len(sessions)) < 0.6).astype(float)
    bad = (rng.random(len(sessions)) < 0.4).astype(float)
    p = paired_test(good, bad, sessions, n_resamples=2000, rng=np.random.default_rng(0))
    assert p < 0.01
    assert p == pytest.approx(1 / 2001)  # no sign flip reaches the observed difference


def test_paired_test_works_at_the_session_level():
    # One long session where a always hits and b always misses; identical elsewhere. A test
    # over single predictions would call this significant; over sessions there is one
    # informative session, whose sign flip gives |T*| = |T| every time.
    sessions = np.concatenate([np.zeros(100, int), np.repeat(np.arange(1, 51), 2)])
    a = np.concatenate([np.ones(100), np.tile([1.0, 0.0], 50)])
    b = np.concatenate([np.zeros(100), np.tile([1.0, 0.0], 50)])
    assert paired_test(a, b, sessions, n_resamples=500, rng=np.random.default_rng(0)) == 1.0


def test_paired_test_is_symmetric_in_its_arguments():
    rng = np.random.default_rng(7)
    sessions = _sessions(200, rng)
    a, b = rng.random(len(sessions)), rng.random(len(sessions))
    assert paired_test(a, b, sessions, 500, rng=np.random.default_rng(1)) == paired_test(
        b, a, sessions, 500, rng=np.random.default_rng(1)
    )


def test_paired_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(8)
    p_values = []
    for _ in range(200):
        sessions = _sessions(60, rng)
        shared = np.repeat(rng.normal(size=60), np.bincount(sessions))  # session effect
        a = (shared + rng.normal(size=len(sessions)) > 0).astype(float)
        b = (shared + rng.normal(size=len(sessions)) > 0).astype(float)
        p_values.append(paired_test(a, b, sessions, n_resamples=199, rng=rng))
    rejected = np.mean(np.array(p_values) <= 0.05)
    assert 0.01 <= rejected <= 0.10


def test_paired_tests_matches_paired_test_per_column():
    rng = np.random.default_rng(10)
    sessions = _sessions(100, rng)
    a, b = rng.random((len(sessions), 2)), rng.random((len(sessions), 2))
    both = paired_tests(a, b, sessions, 300, rng=np.random.default_rng(2))
    assert both[0] == paired_test(a[:, 0], b[:, 0], sessions, 300, rng=np.random.default_rng(2))
    assert both[1] == paired_test(a[:, 1], b[:, 1], sessions, 300, rng=np.random.default_rng(2))


def test_paired_test_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="equal length"):
        paired_test(np.ones(3), np.ones(4), np.arange(3), rng=np.random.default_rng(0))
