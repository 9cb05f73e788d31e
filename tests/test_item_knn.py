"""Item-KNN against hand-computed similarities and a chain whose next item is known."""

import numpy as np
import pytest

import algorithms.sparse as sparse
from algorithms.item_knn import ItemKNN
from benchmark.evaluator import evaluate
from benchmark.metrics import recall_at
from datasets.sessions import UNKNOWN, from_lists

# Five sessions over four items; item 0 is clicked twice in s4, item 1 twice in s2.
FIVE_SESSIONS = [[0, 1, 2], [0, 1], [1, 2, 1], [2, 3], [0, 3, 0]]


@pytest.fixture
def five():
    return from_lists(FIVE_SESSIONS, 4)


def test_session_counting_matches_hand_computation(five):
    # supp = sessions containing the item: 3, 3, 3, 2.
    # cooc(0,1) = 2 (s0, s1), cooc(0,2) = 1 (s0), cooc(0,3) = 1 (s4), cooc(1,2) = 2 (s0, s2),
    # cooc(1,3) = 0, cooc(2,3) = 1 (s3). With lambda = 1, alpha = 0.5:
    # sim(0,1) = 2 / sqrt(4 * 4) = 0.5, sim(0,2) = 1 / 4 = 0.25, sim(0,3) = 1 / sqrt(4 * 3).
    model = ItemKNN(reg_lambda=1.0, alpha=0.5, counting="session").fit(five)
    r12 = 1 / np.sqrt(12)
    expected = [
        [0, 0.5, 0.25, r12],
        [0.5, 0, 0.5, 0],
        [0.25, 0.5, 0, r12],
        [r12, 0, r12, 0],
    ]
    np.testing.assert_array_equal(model.support_, [3, 3, 3, 2])
    np.testing.assert_allclose(model.sims_.toarray(), expected, rtol=1e-6)


def test_event_counting_matches_hand_computation(five):
    # supp = clicks: 4, 4, 3, 2. cooc = sum over sessions of clicks(i) * clicks(j):
    # cooc(0,1) = 1 + 1 = 2, cooc(0,2) = 1, cooc(0,3) = 2 * 1 = 2, cooc(1,2) = 1 + 2 * 1 = 3,
    # cooc(2,3) = 1. With lambda = 0, alpha = 1: sim(i, j) = cooc(i, j) / supp(i) (asymmetric).
    model = ItemKNN(reg_lambda=0.0, alpha=1.0, counting="event").fit(five)
    expected = [
        [0, 2 / 4, 1 / 4, 2 / 4],
        [2 / 4, 0, 3 / 4, 0],
        [1 / 3, 3 / 3, 0, 1 / 3],
        [2 / 2, 0, 1 / 2, 0],
    ]
    np.testing.assert_array_equal(model.support_, [4, 4, 3, 2])
    np.testing.assert_allclose(model.sims_.toarray(), expected, rtol=1e-6)


def test_include_self_uses_the_same_formula_on_the_diagonal(five):
    # Event mode: cooc(0,0) = 1 + 1 + 2 * 2 = 6, so sim(0,0) = 6 / 4; cooc(3,3) = 2 -> 1.
    # With n_sims = 2, row 0 keeps 1.5 and the tie 0.5 / 0.5 goes to the lower index (1).
    model = ItemKNN(reg_lambda=0.0, alpha=1.0, counting="event", include_self=True, n_sims=2).fit(
        five
    )
    expected = [[1.5, 0.5, 0, 0], [0, 1.5, 0.75, 0], [0, 1, 1, 0], [1, 0, 0, 1]]
    np.testing.assert_allclose(model.sims_.toarray(), expected, rtol=1e-6)


def test_scores_are_the_last_items_similarity_row(five):
    model = ItemKNN(reg_lambda=1.0).fit(five)
    state = model.init_state(3)
    model.step(state, np.array([3, 0, 1]), np.ones(3, bool))
    scores = model.step(state, np.array([0, UNKNOWN, 2]), np.zeros(3, bool))
    dense = model.sims_.toarray()
    np.testing.assert_array_equal(scores, [dense[0], np.zeros(4), dense[2]])


def _suffix_chains(n_items: int):
    """Sessions [s, s+1, ..., n-1] for every start s: the next item is always i + 1.

    Then cooc(i, i+1) = #starts <= i exceeds cooc(i, i-1) = #starts <= i-1, and among the
    items after i (equal cooc) i + 1 has the smallest support (supp(j) = j + 1), so
    sim(i, i+1) is the largest. The one-click session [n-1] keeps supp(n-1) above supp(n-2).
    """
    return from_lists([list(range(s, n_items)) for s in range(n_items)], n_items)


def test_chain_next_item_is_ranked_first():
    n = 30
    train = _suffix_chains(n)
    test = from_lists(
        [[0, 1, 2, 3], [5, 6, 7, 8, 9, 10], [20, 21, 22, 23, 24, 25, 26, 27, 28, 29]], n
    )
    model = ItemKNN(n_sims=5).fit(train)
    preds = evaluate(model, test, tie_mode="conservative", progress=False)
    np.testing.assert_array_equal(preds.rank, np.ones(test.n_predictions))
    assert recall_at(preds.rank, 1) == 1.0


def test_top_k_keeps_exactly_n_sims_per_row():
    rng = np.random.default_rng(0)
    sessions = [list(rng.choice(40, size=8, replace=False)) for _ in range(400)]
    train = from_lists(sessions, 40)
    full = ItemKNN(n_sims=40).fit(train).sims_.toarray()
    model = ItemKNN(n_sims=7).fit(train)
    assert np.all(np.diff(model.sims_.indptr) == 7)
    for i in range(40):
        row = model.sims_.getrow(i)
        # The kept values are the 7 largest of the full row.
        np.testing.assert_allclose(np.sort(row.data), np.sort(full[i])[-7:], rtol=1e-6)


def test_rows_with_few_neighbours_keep_only_positive_similarities(five):
    model = ItemKNN(n_sims=100).fit(five)
    assert np.diff(model.sims_.indptr).tolist() == [3, 2, 3, 2]
    assert np.all(model.sims_.data > 0)


def test_blocked_fit_equals_single_block(monkeypatch):
    rng = np.random.default_rng(1)
    sessions = [list(rng.integers(0, 60, size=rng.integers(2, 9))) for _ in range(500)]
    train = from_lists(sessions, 60)
    whole = ItemKNN(n_sims=10, counting="event").fit(train).sims_
    monkeypatch.setattr(sparse, "BLOCK_ENTRIES", 50)
    assert len(sparse.row_blocks(sparse.session_item_matrix(train, binary=False))) > 10
    blocked = ItemKNN(n_sims=10, counting="event").fit(train).sims_
    np.testing.assert_array_equal(blocked.indptr, whole.indptr)
    np.testing.assert_array_equal(blocked.indices, whole.indices)
    np.testing.assert_array_equal(blocked.data, whole.data)


def test_unknown_clicks_in_training_are_ignored():
    train = from_lists([[0, UNKNOWN, 1], [UNKNOWN], [1, 2]], 3)
    model = ItemKNN(reg_lambda=0.0).fit(train)
    np.testing.assert_array_equal(model.support_, [1, 2, 1])
    np.testing.assert_allclose(model.sims_.toarray()[1], [1 / np.sqrt(2), 0, 1 / np.sqrt(2)])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_sims": 0}, "n_sims"),
        ({"n_sims": 2.5}, "n_sims"),
        ({"reg_lambda": -1.0}, "reg_lambda"),
        ({"alpha": 1.5}, "alpha"),
        ({"counting": "click"}, "counting"),
        ({"include_self": "yes"}, "include_self"),
    ],
)
def test_invalid_hyperparameters_are_named(five, params, message):
    with pytest.raises(ValueError, match=message):
        ItemKNN(**params).fit(five)
