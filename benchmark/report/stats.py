"""Uncertainty of per-prediction metrics, with the test session as the unit of resampling.

Predictions of one test session are correlated (same user, same intent, the same model state
carried from click to click), so treating them as independent would make intervals too narrow
and p-values too small. Every function here first reduces the per-prediction values to
per-session sums and counts, then resamples or permutes *sessions*:

* :func:`bootstrap_ci` -- percentile bootstrap (cluster bootstrap) of the mean over predictions.
  A resample draws ``n_sessions`` sessions with replacement; its statistic is the ratio
  ``sum(resampled session sums) / sum(resampled session counts)``, i.e. the metric exactly as
  it would be computed on a test set made of the resampled sessions.
* :func:`paired_test` -- two-sided sign-flip permutation test of the mean paired difference,
  with the per-session difference as the exchangeable unit.

All randomness comes from a ``numpy.random.Generator`` passed by the caller; nothing is seeded
globally. Work is vectorised and done in chunks so memory stays bounded (a few tens of MB)
whatever the number of resamples.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_CHUNK_ELEMENTS = 4_000_000
"""Upper bound on (resamples x sessions) handled at once: 32 MB of float64."""


def session_totals(values: np.ndarray, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-session sums of ``values`` and per-session prediction counts.

    Args:
        values: shape ``(n_predictions,)`` or ``(n_predictions, n_stats)``; must be finite.
        sessions: shape ``(n_predictions,)``; any labels (ints), in any order.

    Returns:
        ``(sums, counts)``: ``sums`` has shape ``(n_sessions,)`` or ``(n_sessions, n_stats)``,
        ``counts`` shape ``(n_sessions,)``, sessions in the order of ``np.unique(sessions)``.

    Raises:
        ValueError: if the lengths differ, there are no predictions, or a value is not finite.
    """
    values = np.asarray(values, dtype=np.float64)
    sessions = np.asarray(sessions)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must be 1-D or 2-D, got shape {values.shape}")
    if sessions.ndim != 1 or len(sessions) != len(values):
        raise ValueError(
            f"sessions must be 1-D with one label per prediction: got {sessions.shape} "
            f"for values of shape {values.shape}"
        )
    if len(values) == 0:
        raise ValueError("no predictions")
    if not np.all(np.isfinite(values)):
        raise ValueError(
            "values must be finite (turn ranks into per-prediction metric values "
            "first: a miss is 0, not inf)"
        )
    _, inverse = np.unique(sessions, return_inverse=True)
    inverse = inverse.ravel()
    n_sessions = int(inverse.max()) + 1
    counts = np.bincount(inverse, minlength=n_sessions).astype(np.float64)
    if values.ndim == 1:
        sums = np.bincount(inverse, weights=values, minlength=n_sessions)
    else:
        sums = np.stack(
            [
                np.bincount(inverse, weights=values[:, j], minlength=n_sessions)
                for j in range(values.shape[1])
            ],
            axis=1,
        )
    return sums, counts


def _chunks(total: int, n_sessions: int) -> Iterator[int]:
    """Sizes of the resample chunks: at most ``_CHUNK_ELEMENTS`` matrix entries each."""
    size = max(1, _CHUNK_ELEMENTS // max(n_sessions, 1))
    for start in range(0, total, size):
        yield min(size, total - start)


def _bootstrap_counts(n_sessions: int, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_rows, n_sessions)`` float64 matrix: how often each session is drawn per resample.

    Each row is a multinomial(n_sessions, uniform) draw, built as a bincount of uniform indices.
    """
    picks = rng.integers(0, n_sessions, size=(n_rows, n_sessions))
    picks += (np.arange(n_rows) * n_sessions)[:, None]
    counts = np.bincount(picks.ravel(), minlength=n_rows * n_sessions)
    return counts.reshape(n_rows, n_sessions).astype(np.float64)


def _coin_flips(n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_rows, n_cols)`` float64 matrix of independent fair 0/1 coins (bits of random bytes)."""
    random_bytes = rng.integers(0, 256, size=(n_rows, (n_cols + 7) // 8), dtype=np.uint8)
    return np.unpackbits(random_bytes, axis=1, count=n_cols).astype(np.float64)


def bootstrap_distribution(
    values: np.ndarray,
    sessions: np.ndarray,
    n_boot: int = 1000,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """Bootstrap replicates of the mean over predictions, resampling whole sessions.

    Args:
        values: per-prediction values, shape ``(n,)`` or ``(n, n_stats)`` (several metrics
            share the same resampled sessions, which is faster and keeps them consistent).
        sessions: per-prediction session labels, shape ``(n,)``.
        n_boot: number of resamples.
        rng: source of randomness.

    Returns:
        Shape ``(n_boot,)`` or ``(n_boot, n_stats)``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    sums, counts = session_totals(values, sessions)
    n_sessions = len(counts)
    parts = []
    for rows in _chunks(n_boot, n_sessions):
        weights = _bootstrap_counts(n_sessions, rows, rng)
        numerator = weights @ sums
        denominator = weights @ counts  # > 0: every session has at least one prediction
        parts.append(numerator / (denominator if sums.ndim == 1 else denominator[:, None]))
    return np.concatenate(parts, axis=0)


def bootstrap_cis(
    values: np.ndarray,
    sessions: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """Percentile session-bootstrap intervals for several statistics at once.

    Args:
        values: per-prediction values, shape ``(n, n_stats)``.
        sessions: per-prediction session labels, shape ``(n,)``.
        n_boot: number of resamples.
        alpha: 1 - confidence level (0.05 gives 95% intervals).
        rng: source of randomness.

    Returns:
        Shape ``(n_stats, 2)``: ``[low, high]`` per statistic.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (n_predictions, n_stats), got {values.shape}")
    replicates = bootstrap_distribution(values, sessions, n_boot, rng=rng)
    bounds = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return bounds.T


def bootstrap_ci(
    values: np.ndarray,
    sessions: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    *,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling test sessions.

    The statistic of one resample is (sum of the per-session sums of the drawn sessions) /
    (sum of their prediction counts): the metric as it would be computed on that resampled
    test set. The interval is the ``alpha/2`` and ``1 - alpha/2`` quantiles of ``n_boot`` such
    replicates.

    Args:
        values: per-prediction metric values (e.g. 1.0/0.0 hits for Recall@20), shape ``(n,)``.
        sessions: per-prediction test-session labels, shape ``(n,)``.
        n_boot: number of bootstrap resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        rng: source of randomness.

    Returns:
        ``(low, high)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    low, high = bootstrap_cis(values[:, None], sessions, n_boot, alpha, rng=rng)[0]
    return float(low), float(high)


def paired_test(
    values_a: np.ndarray,
    values_b: np.ndarray,
    sessions: np.ndarray,
    n_resamples: int = 10_000,
    *,
    rng: np.random.Generator,
) -> float:
    """Two-sided paired sign-flip permutation test at the session level.

    Null hypothesis: within every session, the labels "a" and "b" are exchangeable, so the
    per-session difference ``d_s = sum over the session's predictions of (a - b)`` is
    symmetric around zero. The statistic is ``T = |sum_s d_s|`` (proportional to the mean
    paired difference over predictions). Each resample flips the sign of every ``d_s``
    independently with probability 1/2; the Monte-Carlo p-value is

        p = (1 + #{resamples with |T*| >= T}) / (1 + n_resamples),

    so it is never 0 (the smallest value is ``1 / (1 + n_resamples)``), and it is exactly 1 when
    the two inputs are identical (every ``d_s`` is 0, so every ``|T*| = 0 >= T = 0``).

    Args:
        values_a: per-prediction values of algorithm a (e.g. reciprocal ranks), shape ``(n,)``.
        values_b: the same predictions scored for algorithm b, shape ``(n,)``.
        sessions: per-prediction test-session labels, shape ``(n,)``.
        n_resamples: number of random sign flips.
        rng: source of randomness.

    Returns:
        The two-sided p-value in ``(0, 1]``.
    """
    values_a = np.asarray(values_a, dtype=np.float64)
    values_b = np.asarray(values_b, dtype=np.float64)
    if values_a.shape != values_b.shape or values_a.ndim != 1:
        raise ValueError(
            f"values_a and values_b must be 1-D of equal length (paired predictions), got "
            f"{values_a.shape} and {values_b.shape}"
        )
    return float(
        paired_tests(values_a[:, None], values_b[:, None], sessions, n_resamples, rng=rng)[0]
    )


def paired_tests(
    values_a: np.ndarray,
    values_b: np.ndarray,
    sessions: np.ndarray,
    n_resamples: int = 10_000,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """:func:`paired_test` for several statistics at once, sharing the same sign flips.

    Args:
        values_a: shape ``(n, n_stats)``.
        values_b: shape ``(n, n_stats)``, the same predictions scored for algorithm b.
        sessions: per-prediction test-session labels, shape ``(n,)``.
        n_resamples: number of random sign flips.
        rng: source of randomness.

    Returns:
        Shape ``(n_stats,)``: one two-sided p-value per statistic.
    """
    values_a = np.asarray(values_a, dtype=np.float64)
    values_b = np.asarray(values_b, dtype=np.float64)
    if values_a.shape != values_b.shape or values_a.ndim != 2:
        raise ValueError(
            f"values_a and values_b must be 2-D of equal shape (paired predictions), got "
            f"{values_a.shape} and {values_b.shape}"
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    diffs, _ = session_totals(values_a - values_b, sessions)  # (n_sessions, n_stats)
    total = diffs.sum(axis=0)
    # Permuted sums equal to the observed one up to rounding must count as ">=".
    tolerance = 1e-9 * np.maximum(np.abs(diffs).sum(axis=0), 1e-300)
    threshold = np.abs(total) - tolerance
    n_extreme = np.zeros(diffs.shape[1], dtype=np.int64)
    for rows in _chunks(n_resamples, len(diffs)):
        flips = _coin_flips(rows, len(diffs), rng)
        permuted = total - 2.0 * (flips @ diffs)  # flipping the set F: sum(d) - 2 sum_F(d)
        n_extreme += np.count_nonzero(np.abs(permuted) >= threshold, axis=0)
    return (1.0 + n_extreme) / (1.0 + n_resamples)
