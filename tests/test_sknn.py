"""SKNN and V-SKNN on a three-session example computed on paper, and the batched scorer
against its slow twin on random data.

Training sessions (no timestamps: file order is time order, so n2 is the most recent):
    n0 = [0, 1, 2]   n1 = [1, 3]   n2 = [2, 1, 4, 1]       (6 items; item 5 never clicked)
Current session s = [1, 2]: L = 2, set(s) = {1, 2}, item 1 at p = 1, item 2 at p = 2.
Every training session shares an item with s, so all three are candidates.
"""

import math
import re

import numpy as np
import pytest
from reference_knn import reference_scores  # tests/reference_knn.py, the slow twin

from algorithms.neighborhood import DECAYS, WEIGHTINGS
from algorithms.sknn import SKNN, VSKNN
from datasets.sessions import UNKNOWN, Sessions, from_lists

TRAIN = [[0, 1, 2], [1, 3], [2, 1, 4, 1]]
N_ITEMS = 6
S = [1, 2]


def _scores(model, session, train=None):
    model.fit(train or from_lists(TRAIN, N_ITEMS))
    state = model.init_state(1)
    for t, item in enumerate(session):
        scores = model.step(state, np.array([item]), np.array([t == 0]))
    return scores[0], state


def test_sknn_cosine_all_neighbours():
    # sim = |∩| / sqrt(|s| |n|): n0 2/sqrt(6), n1 1/sqrt(4) = 0.5, n2 2/sqrt(6)
    a, b = 2 / math.sqrt(6), 0.5
    got, _ = _scores(SKNN(k=3), S)
    np.testing.assert_allclose(got, [a, 2 * a + b, 2 * a, b, a, 0.0])


def test_sknn_k_keeps_the_most_similar_and_the_more_recent_of_ties():
    a = 2 / math.sqrt(6)
    got, _ = _scores(SKNN(k=2), S)  # n0 and n2 (n1 is less similar)
    np.testing.assert_allclose(got, [a, 2 * a, 2 * a, 0.0, a, 0.0])
    got, _ = _scores(SKNN(k=1), S)  # n0 and n2 tie: the more recent n2 wins
    np.testing.assert_allclose(got, [0.0, a, a, 0.0, a, 0.0])


def test_sknn_jaccard():
    # sim = |∩| / |∪|: n0 2/3, n1 1/3, n2 2/3
    got, _ = _scores(SKNN(k=3, similarity="jaccard"), S)
    np.testing.assert_allclose(got, [2 / 3, 5 / 3, 4 / 3, 1 / 3, 2 / 3, 0.0])


def test_sampling_keeps_exactly_the_m_most_recent_sessions():
    # M = 2: n2 and n1 (the two latest in file order); n0 is not a candidate.
    a, b = 2 / math.sqrt(6), 0.5
    got, state = _scores(SKNN(k=3, sample_size=2), S)
    model = SKNN(k=3, sample_size=2).fit(from_lists(TRAIN, N_ITEMS))
    np.testing.assert_allclose(got, [0.0, a + b, a, b, a, 0.0])
    kept = model.index_.original[state["cand"][0]]
    np.testing.assert_array_equal(kept, [2, 1])


def test_sampling_uses_last_click_times_when_there_are_timestamps():
    base = from_lists(TRAIN, N_ITEMS)
    # Last clicks: n0 at 300 s, n1 at 100 s, n2 at 200 s: the two most recent are n0 and n2.
    times = np.array([100, 200, 300, 50, 100, 110, 120, 130, 200], dtype=np.float64)
    train = Sessions(base.items, base.offsets, N_ITEMS, times=times)
    model = SKNN(k=3, sample_size=2)
    got, state = _scores(model, S, train)
    np.testing.assert_array_equal(np.sort(model.index_.original[state["cand"][0]]), [0, 2])
    a = 2 / math.sqrt(6)
    np.testing.assert_allclose(got, [a, 2 * a, 2 * a, 0.0, a, 0.0])


# V-SKNN: weights of item 1 (p = 1) and item 2 (p = 2) in s (L = 2), per family.
W = {
    "div": (0.5, 1.0),
    "quadratic": (0.25, 1.0),
    "log": (1 / math.log10(2.7), 1 / math.log10(1.7)),
    "same": (1.0, 1.0),
    "linear": (0.9, 1.0),
    "linear-reference": (0.9, 1.0),
}
# Decays at x = 1 (n0, n2: their latest match is s's last click) and x = 2 (n1: item 1, p = 1).
D = {
    "div": (1.0, 0.5),
    "quadratic": (1.0, 0.25),
    "log": (1 / math.log10(2.7), 1 / math.log10(3.7)),
    "same": (1.0, 1.0),
    "linear": (0.9, 0.8),
    "linear-reference": (0.9, 0.8),
}


@pytest.mark.parametrize("weighting", sorted(W))
@pytest.mark.parametrize("decay", sorted(D))
def test_vsknn_every_weighting_and_decay(weighting, decay):
    w1, w2 = W[weighting]
    d1, d2 = D[decay]
    # vec: sum of the shared items' weights / |set(s)| = 2
    s0, s1, s2 = (w1 + w2) / 2, w1 / 2, (w1 + w2) / 2
    expected = [s0 * d1, s0 * d1 + s1 * d2 + s2 * d1, s0 * d1 + s2 * d1, s1 * d2, s2 * d1, 0.0]
    got, _ = _scores(VSKNN(k=3, weighting=weighting, decay=decay), S)
    np.testing.assert_allclose(got, expected)


def test_vsknn_defaults_and_neighbour_set():
    # div / div: sims n0 0.75, n1 0.25, n2 0.75; decays 1, 0.5, 1.
    got, _ = _scores(VSKNN(k=3), S)
    np.testing.assert_allclose(got, [0.75, 1.625, 1.5, 0.125, 0.75, 0.0])
    got, _ = _scores(VSKNN(k=1), S)  # n0, n2 tie at 0.75: the more recent n2
    np.testing.assert_allclose(got, [0.0, 0.75, 0.75, 0.0, 0.75, 0.0])


def test_vsknn_cosine_and_idf():
    # cosine: 1.5 / sqrt(2 * 3), 0.5 / sqrt(2 * 2), 1.5 / sqrt(2 * 3)
    a, b = 1.5 / math.sqrt(6), 0.25
    got, _ = _scores(VSKNN(k=3, normalization="cosine"), S)
    np.testing.assert_allclose(got, [a, 2 * a + b * 0.5, 2 * a, b * 0.5, a, 0.0])
    # idf(j) = ln(3 sessions / clicks of j): clicks 1, 4, 2, 1, 1, 0 (item 5: no clicks -> 0)
    idf = np.log(3 / np.array([1, 4, 2, 1, 1, 3]))
    idf[5] = 0.0
    got, _ = _scores(VSKNN(k=3, idf_weight=10.0), S)
    np.testing.assert_allclose(got, np.array([0.75, 1.625, 1.5, 0.125, 0.75, 0.0]) * (1 + 10 * idf))


def test_linear_families_differ_only_beyond_ten_clicks():
    p = np.arange(1, 13, dtype=np.float64)
    np.testing.assert_allclose(WEIGHTINGS["linear"](p, 12.0), np.r_[0, 0, np.arange(1, 11) / 10])
    # session-rec's formula: 1 - 0.1 (L - p) for p <= 10 (so -0.1 at p = 1), 0 for p > 10
    np.testing.assert_allclose(
        WEIGHTINGS["linear-reference"](p, 12.0), np.r_[np.arange(-1, 9) / 10, 0, 0]
    )
    np.testing.assert_allclose(DECAYS["linear"](np.array([1.0, 12.0])), [0.9, 0.0])
    np.testing.assert_allclose(
        DECAYS["linear-reference"](np.array([1.0, 12.0, 101.0])), [0.9, -0.2, 0.0]
    )


def test_unknown_clicks_take_a_position_but_match_nothing():
    # s = [1, UNKNOWN, 2]: L = 3, item 1 at p = 1 (w 1/3), item 2 at p = 3 (w 1); |set(s)| = 2
    got, _ = _scores(VSKNN(k=3), [1, UNKNOWN, 2])
    s0, s1 = (1 / 3 + 1) / 2, (1 / 3) / 2  # n1's latest match is 2 clicks back: x = 3
    np.testing.assert_allclose(got, [s0, 2 * s0 + s1 / 3, 2 * s0, s1 / 3, s0, 0.0])
    only_unknown, _ = _scores(VSKNN(k=3), [UNKNOWN])
    np.testing.assert_array_equal(only_unknown, np.zeros(N_ITEMS))


def test_one_click_session():
    # s = [3]: only n1 = [1, 3] is a candidate; cosine 1 / sqrt(1 * 2)
    got, _ = _scores(SKNN(k=3), [3])
    np.testing.assert_allclose(got, [0, 1 / math.sqrt(2), 0, 1 / math.sqrt(2), 0, 0])


def test_remove_session_items():
    got, _ = _scores(VSKNN(k=3, remove_session_items=True), S)
    np.testing.assert_allclose(got, [0.75, 0.0, 0.0, 0.125, 0.75, 0.0])


@pytest.mark.parametrize(
    "model",
    [
        SKNN(k=5, sample_size=10),
        SKNN(k=3, sample_size=100, similarity="jaccard"),
        SKNN(k=4, sample_size=7, sampling="random", seed=3),
        VSKNN(k=5, sample_size=12, weighting="log", decay="quadratic", idf_weight=2.0),
        VSKNN(
            k=5,
            sample_size=12,
            weighting="linear-reference",
            decay="linear-reference",
            normalization="cosine",
            remove_session_items=True,
        ),
    ],
    ids=repr,
)
@pytest.mark.parametrize("timed", [False, True])
def test_batched_scores_equal_the_slow_twin(model, timed):
    check_against_slow_twin(model, timed)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("weighting", sorted(WEIGHTINGS))
def test_a_short_session_beside_a_long_one_is_scored_without_warnings(weighting):
    """Slot 1 starts a new session while slot 0 is 4 clicks in: the batch is 4 positions wide,
    and w(p, L) of slot 1's padding (p = 4, L = 1) must not be computed from invalid values
    (1 / log10(L - p + 1.7) was, with a RuntimeWarning, before its result was masked)."""
    model = VSKNN(k=3, weighting=weighting)
    model.fit(from_lists(TRAIN, N_ITEMS))
    state = model.init_state(2)
    clicks = [(0, 1), (1, 3), (2, 2), (4, 2)]  # (slot 0, slot 1); slot 1 restarts at step 4
    for t, items in enumerate(clicks):
        scores = model.step(state, np.array(items), np.array([t == 0, t in (0, 3)]))
    np.testing.assert_allclose(
        scores[0], reference_scores(model, from_lists(TRAIN, N_ITEMS), [0, 1, 2, 4]), rtol=1e-12
    )
    np.testing.assert_allclose(
        scores[1], reference_scores(model, from_lists(TRAIN, N_ITEMS), [2]), rtol=1e-12
    )


def check_against_slow_twin(model, timed: bool, seed: int = 0) -> None:
    """Every slot's scores after every click equal reference_scores on random sessions."""
    rng = np.random.default_rng(seed)
    n_items = 15
    sessions = [rng.integers(0, n_items, rng.integers(1, 7)).tolist() for _ in range(80)]
    train = from_lists(sessions, n_items)
    if timed:  # a session's clicks share a random hour, so recency differs from file order
        hours = rng.permutation(len(sessions)).astype(np.float64) * 3600
        train = Sessions(train.items, train.offsets, n_items, times=np.repeat(hours, train.lengths))
    tests = [rng.integers(-1, n_items, rng.integers(1, 9)).tolist() for _ in range(25)]
    model.fit(train)
    state = model.init_state(len(tests))
    for t in range(max(map(len, tests))):
        items = np.array([s[t] if t < len(s) else 0 for s in tests])
        scores = model.step(state, items, np.full(len(tests), t == 0))
        for row, session in enumerate(tests):
            if t < len(session):
                slow = reference_scores(model, train, session[: t + 1])
                np.testing.assert_allclose(
                    scores[row], slow, rtol=1e-9, atol=1e-12, err_msg=repr(model)
                )


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        ("sknn", {"k": 0}, "k = 0: must be an integer >= 1"),
        ("sknn", {"similarity": "dice"}, 'similarity = "dice": must be one of "cosine", "jaccard"'),
        ("vsknn", {"idf_weight": -1.0}, "idf_weight = -1.0: must be a finite number >= 0"),
        ("stan", {"lambda_snh": float("nan")}, "lambda_snh = nan: must be a number"),
        ("vstan", {"sample_size": 2.5}, "sample_size = 2.5: must be an integer >= 1"),
        ("sr", {"steps": 0}, "steps = 0: must be an integer >= 1"),
        ("markov", {"pruning": 1.5}, "pruning = 1.5: must be an integer >= 0 or a finite number"),
    ],
)
def test_declared_hyperparameters_are_checked_by_fit(cls, kwargs, message):
    from benchmark.registry import get_algorithm

    with pytest.raises(ValueError, match=re.escape(message)):
        get_algorithm(cls)(**kwargs).fit(from_lists([[0, 1], [1, 2]], 3))
    # an infinite λ turns its factor off and is allowed
    get_algorithm("stan")(lambda_inh=float("inf")).fit(from_lists([[0, 1], [1, 2]], 3))
