"""BPR-MF: the session vector is the mean of the seen item vectors, and training learns."""

import numpy as np
import pytest

from algorithms.bpr_mf import BPRMF
from benchmark.evaluator import evaluate
from benchmark.metrics import recall_at
from datasets.sessions import UNKNOWN, from_lists

N_ITEMS = 20


def _two_groups(n_sessions: int, seed: int):
    """Sessions that stay inside one of two item groups (0-9 or 10-19)."""
    rng = np.random.default_rng(seed)
    sessions = []
    for _ in range(n_sessions):
        group = int(rng.integers(2)) * 10
        sessions.append(list(group + rng.integers(0, 10, size=int(rng.integers(2, 7)))))
    return from_lists(sessions, N_ITEMS)


@pytest.fixture(scope="module")
def fitted():
    return BPRMF(factors=8, n_epochs=30, learning_rate=0.05, device="cpu").fit(
        _two_groups(300, seed=0)
    )


def test_session_vector_is_the_mean_of_the_seen_item_vectors_plus_a_bias_one(fitted):
    q = fitted.item_factors_.astype(np.float64)
    state = fitted.init_state(2)
    fitted.step(state, np.array([3, 12]), np.array([True, True]))
    fitted.step(state, np.array([UNKNOWN, 12]), np.array([False, False]))
    scores = fitted.step(state, np.array([5, 17]), np.array([False, False]))

    # Slot 0 saw 3, UNKNOWN (ignored), 5; slot 1 saw 12 twice and 17 (repeats count).
    expected = np.stack([q[[3, 5]].mean(axis=0), q[[12, 12, 17]].mean(axis=0)])
    expected[:, -1] = 1.0  # the bias column of the items pairs with a constant 1
    np.testing.assert_allclose(fitted.session_vectors(state), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scores, expected @ q.T, rtol=1e-5, atol=1e-6)
    # Equivalently: mean of the factor part dotted with the factors, plus the item bias.
    np.testing.assert_allclose(
        scores[0], q[[3, 5], :-1].mean(axis=0) @ q[:, :-1].T + q[:, -1], rtol=1e-5, atol=1e-6
    )


def test_item_factors_carry_the_bias_column(fitted):
    assert fitted.item_factors_.shape == (N_ITEMS, 8 + 1)


def test_a_session_of_unknown_items_scores_everything_zero(fitted):
    state = fitted.init_state(2)
    fitted.step(state, np.array([UNKNOWN, 4]), np.array([True, True]))
    scores = fitted.step(state, np.array([UNKNOWN, UNKNOWN]), np.array([False, False]))
    np.testing.assert_array_equal(scores[0], np.zeros(N_ITEMS))
    assert np.any(scores[1] != 0)


def test_learns_the_group_structure(fitted):
    test = _two_groups(100, seed=1)
    preds = evaluate(fitted, test, progress=False)
    # The next item is one of the 10 items of the session's group: it should rank in the top 10.
    assert recall_at(preds.rank, 10) >= 0.95


def test_same_seed_same_factors_with_one_thread():
    train = _two_groups(100, seed=2)
    a = BPRMF(factors=4, n_epochs=5, seed=7, device="cpu", n_threads=1).fit(train)
    b = BPRMF(factors=4, n_epochs=5, seed=7, device="cpu", n_threads=1).fit(train)
    c = BPRMF(factors=4, n_epochs=5, seed=8, device="cpu", n_threads=1).fit(train)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"factors": 0}, "factors"),
        ({"n_epochs": 1.5}, "n_epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"regularization": -0.1}, "regularization"),
        ({"n_threads": -1}, "n_threads"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_invalid_hyperparameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        BPRMF(**params).fit(_two_groups(10, seed=3))


def test_cuda_without_a_cuda_build_is_a_clear_error():
    import implicit.gpu

    if implicit.gpu.HAS_CUDA:
        pytest.skip("this implicit build has CUDA")
    with pytest.raises(ValueError, match='device = "cuda": no CUDA GPU'):
        BPRMF(device="cuda").fit(_two_groups(10, seed=3))


@pytest.mark.cuda
def test_gpu_training_learns_the_group_structure():
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        pytest.skip("implicit was built without CUDA")
    model = BPRMF(factors=8, n_epochs=30, learning_rate=0.05, device="cuda").fit(
        _two_groups(300, seed=0)
    )
    assert model.device_ == "cuda"
    preds = evaluate(model, _two_groups(100, seed=1), progress=False)
    assert recall_at(preds.rank, 10) >= 0.95


def test_on_epoch_sees_every_iteration_and_can_stop_training():
    train = _two_groups(10, seed=3)
    seen = []

    def on_epoch(model, epoch):
        seen.append((epoch, model.item_factors_.copy()))
        if epoch == 3:
            raise LookupError("stop")  # any exception; tuning raises optuna.TrialPruned
        return {"n": float(epoch)}

    model = BPRMF(factors=4, n_epochs=10, seed=7, device="cpu", n_threads=1)
    with pytest.raises(LookupError):
        model.fit(train, on_epoch=on_epoch)
    assert [e for e, _ in seen] == [1, 2, 3]
    assert not np.array_equal(seen[0][1], seen[1][1])  # the live factors, not one snapshot
    assert model.history_ == [{"epoch": 1, "n": 1.0}, {"epoch": 2, "n": 2.0}]


def test_on_epoch_at_the_last_iteration_sees_the_final_model():
    train = _two_groups(10, seed=3)
    kw = dict(factors=4, n_epochs=5, seed=7, device="cpu", n_threads=1)
    last = {}
    model = BPRMF(**kw)
    model.fit(train, on_epoch=lambda m, e: last.update({e: m.item_factors_.copy()}))
    np.testing.assert_array_equal(last[5], BPRMF(**kw).fit(train).item_factors_)
