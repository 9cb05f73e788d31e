"""The contract of SessionRecommender, checked for every registered algorithm.

A new algorithm registered in benchmark/registry.py is picked up here automatically; give it
small, fast hyperparameters in FAST_PARAMS if its defaults take long on tiny data.
"""

import numpy as np
import pytest
import torch

from benchmark.evaluator import evaluate
from benchmark.registry import ALGORITHMS, get_algorithm
from datasets.sessions import UNKNOWN, Sessions, from_lists

N_ITEMS = 12
FAST_PARAMS = {
    "bpr-mf": {"factors": 8, "n_epochs": 5},
    "gru4rec": {"layers": [16], "batch_size": 8, "n_epochs": 1, "n_sample": 4},
    "sasrec": {"n_epochs": 5},
    "gru4rec-recbole": {"n_epochs": 5},
}


def _as_numpy(scores) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        return scores.detach().float().cpu().numpy()
    return np.asarray(scores, dtype=np.float64)


@pytest.fixture(scope="module")
def train() -> Sessions:
    rng = np.random.default_rng(3)
    sessions = []
    for _ in range(60):
        start = int(rng.integers(N_ITEMS))
        length = int(rng.integers(2, 6))
        sessions.append([(start + k) % N_ITEMS for k in range(length)])
    sessions.append([N_ITEMS - 1, N_ITEMS - 1])
    return from_lists(sessions, N_ITEMS)


def _build(name: str):
    cls = get_algorithm(name)
    params = dict(FAST_PARAMS.get(name, {}))
    names = cls.param_names()
    if "device" in names:
        params["device"] = "cpu"
    if "seed" in names:
        params["seed"] = 1
    return cls(**params)


@pytest.fixture(scope="module", params=sorted(ALGORITHMS))
def fitted(request, train):
    return request.param, _build(request.param).fit(train)


def _feed(model, state, clicks, reset_first=True):
    """Feed a list of per-step item arrays; return the last scores."""
    scores = None
    for t, items in enumerate(clicks):
        reset = np.full(len(items), t == 0 and reset_first)
        scores = _as_numpy(model.step(state, np.asarray(items, dtype=np.int64), reset))
    return scores


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_fit_returns_self_and_leaves_input_unchanged(name, train):
    items, offsets = train.items.copy(), train.offsets.copy()
    model = _build(name)
    assert model.fit(train) is model
    np.testing.assert_array_equal(train.items, items)
    np.testing.assert_array_equal(train.offsets, offsets)


def test_scores_have_one_row_per_slot_and_one_column_per_item(fitted):
    name, model = fitted
    state = model.init_state(3)
    scores = _feed(model, state, [[0, 5, 11], [1, 6, 0]])
    assert scores.shape == (3, N_ITEMS), name
    assert np.isfinite(scores).all(), name


def test_unknown_items_as_input_do_not_break(fitted):
    name, model = fitted
    state = model.init_state(2)
    scores = _feed(model, state, [[UNKNOWN, 3], [4, UNKNOWN], [UNKNOWN, UNKNOWN]])
    assert scores.shape == (2, N_ITEMS) and np.isfinite(scores).all(), name


def test_reset_slot_equals_fresh_state(fitted):
    name, model = fitted
    used = model.init_state(2)
    _feed(model, used, [[3, 7], [4, 8], [5, 9]])
    # Slot 0 starts a new session 1 -> 2 (reset), slot 1 goes on with its old session.
    a1 = _as_numpy(model.step(used, np.array([1, 10]), np.array([True, False])))[0]
    a2 = _as_numpy(model.step(used, np.array([2, 11]), np.array([False, False])))[0]
    fresh = model.init_state(1)
    b1 = _as_numpy(model.step(fresh, np.array([1]), np.array([True])))[0]
    b2 = _as_numpy(model.step(fresh, np.array([2]), np.array([False])))[0]
    np.testing.assert_allclose(a1, b1, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(a2, b2, rtol=1e-5, atol=1e-6, err_msg=name)


def test_select_state_keeps_the_chosen_slots(fitted):
    name, model = fitted
    state = model.init_state(3)
    _feed(model, state, [[0, 4, 8], [1, 5, 9]])
    kept = model.select_state(state, np.array([2, 0]))
    got = _as_numpy(model.step(kept, np.array([10, 2]), np.array([False, False])))
    full = _as_numpy(model.step(state, np.array([2, 6, 10]), np.array([False] * 3)))
    np.testing.assert_allclose(got, full[[2, 0]], rtol=1e-5, atol=1e-6, err_msg=name)


def test_hyperparameters_round_trip(fitted):
    name, model = fitted
    params = model.get_params()
    clone = type(model)(**params)
    assert clone.get_params() == params, name
    assert set(params) == set(type(model).param_names()), name


def test_evaluator_ranks_equal_ranks_from_each_session_alone(fitted, train):
    # The evaluator steps many sessions at once (4 slots, resets, a shrinking batch); the ranks
    # must be those of feeding each session alone and counting, by hand, the items that score
    # at least as high as the target (conservative ties: the target counts itself).
    name, model = fitted
    test = train.subset(np.arange(10))
    preds = evaluate(model, test, batch_size=4, progress=False)
    expected = {}
    for s in range(test.n_sessions):
        clicks = test.session(s)
        state = model.init_state(1)
        for k in range(len(clicks) - 1):
            scores = _as_numpy(model.step(state, clicks[k : k + 1], np.array([k == 0])))[0]
            expected[(s, k + 1)] = float(np.count_nonzero(scores >= scores[clicks[k + 1]]))
    assert len(preds) == test.n_predictions == len(expected), name
    got = {(int(s), int(p)): float(r) for s, p, r in zip(preds.session, preds.position, preds.rank)}
    assert got == pytest.approx(expected), name
