"""The session-kNN family's fast scorer against the plain one it replaced, bit for bit.

tests/reference_knn_batched.py keeps the batched scorer as it was before the fast path
(candidates merged by sorting, one ``searchsorted`` per slot and item, the matches grouped and
the neighbours chosen by stable argsorts, one ``np.bincount`` over all neighbours' items). The
fast path must give exactly the same candidates and scores (not merely close ones: the
conservative tie handling depends on exact equality), hence the same ranks in every tie mode.
Here: its helpers on hand-checkable inputs, the three-session example of test_sknn.py, and
randomized sessions (long ones, repeats, unknown clicks, resets, a shrinking batch, several
chunks) for every method and variant, with numba's compiled loop and without it.
"""

import math

import numpy as np
import pytest
from reference_knn_batched import (  # tests/reference_knn_batched.py
    ReferenceScorer,
    merge_candidates,
    top_k,
)
from test_eval_fast import StepOnly  # tests/test_eval_fast.py

import algorithms.neighborhood as neighborhood
from algorithms.neighborhood import (
    build_entry_rows,
    build_index,
    count_at_most,
    sampling_order,
    top_k_mask,
)
from algorithms.sknn import SKNN, VSKNN
from algorithms.stan import STAN, VSTAN
from benchmark.evaluator import TIE_MODES, evaluate
from datasets.sessions import UNKNOWN, Sessions, from_lists

TRAIN = [[0, 1, 2], [1, 3], [2, 1, 4, 1]]  # the example of test_sknn.py
N_ITEMS = 6


def test_count_at_most_is_a_binary_search_per_slice():
    values = np.array([1, 3, 3, 7, 2, 4, 9, 9, 9], dtype=np.int32)
    # slices [1, 3, 3, 7] and [2, 4, 9, 9, 9]
    starts = np.array([0, 0, 0, 4, 4, 4, 4])
    counts = np.array([4, 4, 2, 5, 5, 5, 0])
    bounds = np.array([3, 0, 9, 8, 9, 1, 5])
    np.testing.assert_array_equal(
        count_at_most(values, starts, counts, bounds), [3, 0, 2, 2, 5, 0, 0]
    )
    rng = np.random.default_rng(0)
    values = np.sort(rng.integers(0, 50, 400)).astype(np.int32)
    starts = rng.integers(0, 300, 200)
    counts = rng.integers(0, 100, 200)
    bounds = rng.integers(-5, 60, 200)
    slow = [
        np.searchsorted(values[a : a + c], b, "right") for a, c, b in zip(starts, counts, bounds)
    ]
    np.testing.assert_array_equal(count_at_most(values, starts, counts, bounds), slow)


def test_the_reference_keeps_the_m_smallest_of_the_union_as_candidates():
    rng = np.random.default_rng(1)
    train = from_lists([rng.integers(0, 12, rng.integers(1, 6)).tolist() for _ in range(60)], 12)
    index = build_index(train, sampling_order(train, "recent", 0))
    sentinel = index.n_sessions
    for m in (1, 3, 8, 100):
        sets = [set() for _ in range(20)]
        cand = np.full((20, min(m, sentinel)), sentinel, dtype=np.int32)
        for _ in range(5):
            items = rng.integers(0, 12, 20)
            cand = merge_candidates(cand, index, items)
            for r, i in enumerate(items):
                a, b = index.item_offsets[i], index.item_offsets[i + 1]
                sets[r] |= set(index.item_sessions[a:b].tolist())
                want = sorted(sets[r])[: cand.shape[1]]
                want += [sentinel] * (cand.shape[1] - len(want))
                np.testing.assert_array_equal(cand[r], want)


def test_entry_rows_cut_each_session_into_rows():
    train = from_lists(TRAIN, N_ITEMS)
    index = build_index(train, sampling_order(train, "recent", 0))
    # sampling order: n2 (= 0), n1 (= 1), n0 (= 2); distinct items ascending with last positions
    # n2: 1->4, 2->1, 4->3; n1: 1->1, 3->2; n0: 0->1, 1->2, 2->3
    rows = build_entry_rows(index, width=2)
    assert rows.max_position == 4
    np.testing.assert_array_equal(rows.first, [0, 2, 3, 5])
    np.testing.assert_array_equal(rows.items, [[1, 2], [4, 0], [1, 3], [0, 1], [2, 0]])
    np.testing.assert_array_equal(
        rows.pad, [[False, False], [False, True], [False, False], [False, False], [False, True]]
    )
    shifted = rows.shifted - (rows.max_position - 1)  # back to positions
    np.testing.assert_array_equal(
        np.where(rows.pad, 0, shifted), [[4, 1], [3, 0], [1, 2], [1, 2], [3, 0]]
    )
    assert (rows.shifted[rows.pad] == 3 * rows.max_position).all()


def test_top_k_mask_keeps_the_largest_positive_and_the_leftmost_of_ties():
    values = np.array([[0.5, 0.9, 0.5, 0.0, 0.5], [0.0, 0.2, 0.0, 0.0, 0.1], [3, 2, 1, 0, 0.0]])
    np.testing.assert_array_equal(
        top_k_mask(values, 2),
        [[True, True, False, False, False], [False, True, False, False, True], [1, 1, 0, 0, 0]],
    )
    np.testing.assert_array_equal(top_k_mask(values, 4)[0], [True, True, True, False, True])
    rng = np.random.default_rng(4)  # many ties and non-positive values: the plain argsort's
    values = rng.integers(-2, 4, (50, 30)).astype(np.float64) / 2
    for k in (1, 3, 10, 29, 30, 40):
        np.testing.assert_array_equal(top_k_mask(values, k), top_k(values, k))


def _fit_both(model, train):
    model.fit(train)
    return model, ReferenceScorer(model)


def _assert_same_steps(model, train, tests):
    """Both scorers, click by click, with the slots of ``tests`` in parallel (reset at t = 0)."""
    model, ref = _fit_both(model, train)
    fast, slow = model.init_state(len(tests)), ref.init_state(len(tests))
    for t in range(max(map(len, tests))):
        items = np.array([s[t] if t < len(s) else UNKNOWN for s in tests])
        reset = np.full(len(tests), t == 0)
        got, want = model.step(fast, items, reset), ref.step(slow, items, reset)
        np.testing.assert_array_equal(fast["cand"], slow["cand"])
        assert np.array_equal(got, want), (repr(model), t, np.abs(got - want).max())


@pytest.mark.parametrize(
    "model",
    [SKNN(k=2), SKNN(k=1, similarity="jaccard"), VSKNN(k=3, weighting="log", idf_weight=2.0)]
    + [STAN(k=2, sessions_per_day=1.0), VSTAN(k=3, anchor="reference", sessions_per_day=1.0)],
    ids=repr,
)
def test_the_three_session_example_is_scored_bit_for_bit_alike(model):
    train = from_lists(TRAIN, N_ITEMS)
    _assert_same_steps(model, train, [[1, 2], [3], [1, UNKNOWN, 2, 4, 1], [UNKNOWN, 5]])


def test_the_hand_computed_sknn_scores_come_out_of_the_fast_path():
    # test_sknn.py: s = [1, 2], cosine: n0 2/sqrt(6), n1 1/2, n2 2/sqrt(6)
    model = SKNN(k=3).fit(from_lists(TRAIN, N_ITEMS))
    state = model.init_state(1)
    model.step(state, np.array([1]), np.array([True]))
    got = model.step(state, np.array([2]), np.array([False]))[0]
    a = 2 / math.sqrt(6)
    np.testing.assert_allclose(got, [a, 2 * a + 0.5, 2 * a, 0.5, a, 0.0], rtol=1e-15)


def random_data(seed: int, timed: bool, n_items: int = 25):
    """Training sessions of 1-30 clicks over few items (so long sessions share many items and
    a pair's weight sum adds more than 8 weights: numpy's pairwise order), test sessions with
    repeats and unknown clicks."""
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(250) < 0.2, rng.integers(10, 31, 250), rng.integers(1, 6, 250))
    train = from_lists([rng.integers(0, n_items, n).tolist() for n in lengths], n_items)
    if timed:
        hours = rng.permutation(train.n_sessions).astype(np.float64) * 3600
        train = Sessions(train.items, train.offsets, n_items, times=np.repeat(hours, train.lengths))
    lengths = np.where(rng.random(70) < 0.3, rng.integers(10, 26, 70), rng.integers(1, 6, 70))
    tests = [rng.integers(-1, n_items, n).tolist() for n in lengths]
    return train, tests


class GenericSTAN(STAN):
    """STAN without the distance table: the entry factor computed elementwise."""

    entry_factor_by_distance = False


MODELS = [
    SKNN(k=5, sample_size=10),
    SKNN(k=40, sample_size=1000, similarity="jaccard"),
    SKNN(k=4, sample_size=7, sampling="random", seed=3, remove_session_items=True),
    *[
        VSKNN(k=8, sample_size=30, weighting=w, decay=d)
        for w, d in [
            ("div", "div"),
            ("quadratic", "quadratic"),
            ("log", "log"),
            ("same", "same"),
            ("linear", "linear"),
            ("linear-reference", "linear-reference"),
        ]
    ],
    VSKNN(k=6, sample_size=15, normalization="cosine", idf_weight=3.0, remove_session_items=True),
    STAN(k=12, sample_size=40, sessions_per_day=10.0),
    STAN(k=6, sample_size=20, normalization="reference", anchor="reference", lambda_snh=0.1),
    STAN(k=3, sample_size=9, sampling="random", lambda_spw=1e-5, lambda_inh=math.inf),
    STAN(k=30, sample_size=200, lambda_spw=0.0108, lambda_snh=2.0, lambda_inh=1.277),
    GenericSTAN(k=7, sample_size=25, anchor="reference"),
    VSTAN(k=10, sample_size=30),
    VSTAN(k=4, sample_size=15, remove_session_items=True, anchor="reference"),
    VSTAN(k=8, sample_size=50, lambda_ipw=math.inf, lambda_idf=0.0, normalization="paper"),
]


COMPILED = [
    pytest.param(True, marks=pytest.mark.skipif(not neighborhood.COMPILED, reason="no numba")),
    False,
]


@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("timed", [False, True])
@pytest.mark.parametrize("compiled", COMPILED, ids=["compiled", "numpy"])
def test_random_sessions_are_scored_bit_for_bit_alike(model, timed, compiled, monkeypatch):
    """Both ways of adding up the neighbours' contributions (numba's loop, numpy's bincount)."""
    monkeypatch.setattr(neighborhood, "COMPILED", compiled)
    train, tests = random_data(seed=2 + timed, timed=timed)
    _assert_same_steps(model, train, tests)


def test_step_on_two_threads_gives_the_same_scores(monkeypatch):
    monkeypatch.setattr(neighborhood, "_PAIR_BUDGET", 100)  # several chunks of slots a step
    monkeypatch.setattr(neighborhood, "THREADS", 2)
    train, tests = random_data(seed=11, timed=True)
    _assert_same_steps(VSTAN(k=10, sample_size=30), train, tests)
    _assert_same_steps(SKNN(k=5, sample_size=10, remove_session_items=True), train, tests)


def test_scoring_threads_follow_the_setting_and_the_free_cores(monkeypatch):
    monkeypatch.setattr(neighborhood, "THREADS", 1)
    assert neighborhood.scoring_threads() == 1
    monkeypatch.setattr(neighborhood, "THREADS", 2)
    assert neighborhood.scoring_threads() == 2
    monkeypatch.setattr(neighborhood, "THREADS", None)
    assert neighborhood.scoring_threads() in (1, 2)


@pytest.mark.parametrize("width", [1, 2, 3, 40])
def test_every_row_width_gives_the_same_scores(width, monkeypatch):
    real = neighborhood.build_entry_rows
    monkeypatch.setattr(neighborhood, "build_entry_rows", lambda index: real(index, width))
    train, tests = random_data(seed=5, timed=False)
    _assert_same_steps(STAN(k=10, sample_size=30), train, tests)
    _assert_same_steps(VSKNN(k=10, sample_size=30, idf_weight=1.0), train, tests)


@pytest.mark.parametrize(
    "model",
    [
        SKNN(k=6, sample_size=20, remove_session_items=True),
        VSKNN(k=8, sample_size=25, idf_weight=1.0),
        VSTAN(k=9, sample_size=40),
    ],
    ids=repr,
)
@pytest.mark.parametrize(
    "budget,threads",
    [(2**22, 1), (128, 1), (128, 2)],  # one chunk a step, or a few slots a chunk on 1 or 2 threads
)
def test_evaluated_ranks_are_identical_in_every_tie_mode(model, budget, threads, monkeypatch):
    monkeypatch.setattr(neighborhood, "_PAIR_BUDGET", budget)
    monkeypatch.setattr(neighborhood, "THREADS", threads)
    train, tests = random_data(seed=7, timed=True)
    test = from_lists([[i for i in s if i != UNKNOWN] or [0] for s in tests] + tests, train.n_items)
    model, ref = _fit_both(model, train)
    for mode in TIE_MODES:
        want = evaluate(StepOnly(ref), test, tie_mode=mode, batch_size=16, progress=False)
        got = evaluate(model, test, tie_mode=mode, batch_size=16, progress=False)  # step_ranked
        plain = evaluate(StepOnly(model), test, tie_mode=mode, batch_size=16, progress=False)
        np.testing.assert_array_equal(got.rank, want.rank)
        np.testing.assert_array_equal(plain.rank, want.rank)
        np.testing.assert_array_equal(got.session, want.session)
        np.testing.assert_array_equal(got.position, want.position)


def test_matches_too_wide_to_pack_are_grouped_by_the_plain_argsort(monkeypatch):
    monkeypatch.setattr(neighborhood, "_KEY_BITS", 8)
    train, tests = random_data(seed=13, timed=False)
    for model in (
        SKNN(k=5, sample_size=10),
        VSKNN(k=6, sample_size=20),
        VSTAN(k=8, sample_size=25),
    ):
        _assert_same_steps(model, train, tests)
