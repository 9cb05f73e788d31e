"""GRU4Rec building blocks against known answers: losses, sampling, optimizer, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from algorithms.gru4rec.batching import PAD, plan_epoch
from algorithms.gru4rec.losses import LOSSES, FinalActivation
from algorithms.gru4rec.optimizer import EPS, DenseAdagradM, SparseAdagradM
from algorithms.gru4rec.sampling import SampleCache
from datasets.sessions import from_lists

# ----------------------------------------------------------------------------- losses
# Row i's positive is column i; columns 3 and 4 are the extra samples.
Y = [[1.0, 0.0, -1.0, 0.5, 0.0], [0.0, 2.0, 0.0, -0.5, 1.0], [-1.0, 0.5, 0.5, 0.0, 0.0]]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _neg_softmax(row: list[float], i: int) -> list[float]:
    e = [math.exp(v) if j != i else 0.0 for j, v in enumerate(row)]
    return [x / sum(e) for x in e]


def _hand(loss: str, bpreg: float) -> float:
    """The loss written out element by element, straight from the formulas."""
    total = 0.0
    for i, row in enumerate(Y):
        s = _neg_softmax(row, i)
        negs = [j for j in range(5) if j != i]
        if loss == "cross-entropy":
            total += math.log(sum(math.exp(v) for v in row)) - row[i]
        elif loss == "bpr-max":
            total += -math.log(sum(s[j] * _sig(row[i] - row[j]) for j in negs))
            total += bpreg * sum(s[j] * row[j] ** 2 for j in negs)
        elif loss == "top1-max":
            total += sum(s[j] * (_sig(row[j] - row[i]) + _sig(row[j] ** 2)) for j in negs)
        elif loss == "bpr":  # the official mean over all 5 columns: the positive's term is log 2
            total += (math.log(2) - sum(math.log(_sig(row[i] - row[j])) for j in negs)) / 5
        else:  # ... and sigma(0) = 1/2 here, without the positive's own regulariser
            total += (0.5 + sum(_sig(row[j] - row[i]) + _sig(row[j] ** 2) for j in negs)) / 5
    return total / 3


# Values of _hand, computed once; row 0 of cross-entropy by hand:
# log(e^1 + e^0 + e^-1 + e^0.5 + e^0) - 1 = log(6.73488) - 1 = 0.90730.
EXPECTED = {
    ("cross-entropy", 0.0): 0.8947858373132855,
    ("bpr-max", 0.0): 0.36517148857417575,
    ("bpr-max", 0.5): 0.5197361441905031,
    ("top1-max", 0.0): 0.872950937434161,
    ("bpr", 0.0): 0.3863794521825992,
    ("top1", 0.0): 0.7623362652630522,
}


@pytest.mark.parametrize("loss,bpreg", list(EXPECTED))
def test_loss_value_matches_hand_computation(loss: str, bpreg: float) -> None:
    assert _hand(loss, bpreg) == pytest.approx(EXPECTED[(loss, bpreg)], abs=1e-12)
    value, _ = LOSSES[loss](torch.tensor(Y, dtype=torch.float64), bpreg)
    assert float(value) == pytest.approx(EXPECTED[(loss, bpreg)], abs=1e-9)
    # The official normalisation: the sum over rows divided by the batch size (here 8, as in
    # the tail of an epoch where only 3 of 8 slots are left).
    value, _ = LOSSES[loss](torch.tensor(Y, dtype=torch.float64), bpreg, 8)
    assert float(value) == pytest.approx(EXPECTED[(loss, bpreg)] * 3 / 8, abs=1e-9)


def _autograd_reference(loss: str, y: torch.Tensor, bpreg: float) -> torch.Tensor:
    eye = torch.eye(y.shape[0], y.shape[1], dtype=torch.bool)
    pos = y.diagonal().unsqueeze(1)
    s = torch.softmax(y.masked_fill(eye, float("-inf")), 1)
    if loss == "cross-entropy":
        return -torch.log_softmax(y, 1).diagonal().mean()
    if loss == "bpr-max":
        return (-torch.log((s * torch.sigmoid(pos - y)).sum(1)) + bpreg * (s * y**2).sum(1)).mean()
    if loss == "top1-max":
        return (s * (torch.sigmoid(y - pos) + torch.sigmoid(y**2))).sum(1).mean()
    if loss == "bpr":
        return -torch.nn.functional.logsigmoid(pos - y).mean(1).mean()
    return (torch.sigmoid(y - pos) + torch.sigmoid(y**2).masked_fill(eye, 0.0)).mean(1).mean()


@pytest.mark.parametrize("loss,bpreg", list(EXPECTED))
def test_loss_gradient_matches_autograd(loss: str, bpreg: float) -> None:
    y = torch.tensor(Y, dtype=torch.float64, requires_grad=True)
    ref = _autograd_reference(loss, y, bpreg)
    (expected,) = torch.autograd.grad(ref, y)
    value, grad = LOSSES[loss](y.detach().clone(), bpreg)
    assert float(value) == pytest.approx(float(ref.detach()), abs=1e-9)
    torch.testing.assert_close(grad, expected, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("name", ["tanh", "elu-0.5", "elu", "linear"])
def test_final_activation_derivative_matches_autograd(name: str) -> None:
    s = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    act = FinalActivation(name)
    ref = {
        "tanh": torch.tanh,
        "linear": lambda v: v * 1.0,
        "elu": torch.nn.functional.elu,
        "elu-0.5": lambda v: torch.nn.functional.elu(v, 0.5),
    }[name](s)
    dy = torch.linspace(1, 2, 13, dtype=torch.float64)
    (expected,) = torch.autograd.grad(ref, s, dy)
    raw = s.detach().clone()
    y = act.forward(raw.clone())
    torch.testing.assert_close(y, ref.detach())
    torch.testing.assert_close(act.backward(y, raw, dy.clone()), expected)


def test_final_activation_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="final_act"):
        FinalActivation("relu6")


# ----------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_extra_samples_follow_support_power_alpha(alpha: float) -> None:
    support = np.array([1.0, 4.0, 9.0, 16.0, 0.0, 25.0])
    gen = torch.Generator().manual_seed(3)
    cache = SampleCache(
        support, alpha, n_sample=1000, cache_size=50_000, device=torch.device("cpu"), generator=gen
    )
    draws = torch.cat([cache.next()[0] for _ in range(200)]).numpy()  # 200k draws, 4 refills
    counts = np.bincount(draws, minlength=6)
    assert counts[4] == 0  # an item without support is never drawn
    weights = np.delete(support, 4) ** alpha
    expected = weights / weights.sum() * len(draws)
    result = stats.chisquare(np.delete(counts, 4), expected)
    assert result.pvalue > 1e-3, (counts, expected)


def test_sample_cache_log_weights_are_alpha_log_popularity() -> None:
    support = np.array([1.0, 3.0])
    cache = SampleCache(
        support,
        0.5,
        n_sample=4,
        cache_size=8,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    items, logw = cache.next()
    expected = 0.5 * np.log(support)[items.numpy()]  # log(count ** alpha): raw counts
    np.testing.assert_allclose(logw.numpy(), expected, rtol=1e-6)


# ----------------------------------------------------------------------------- optimizer
def _dense_reference(p, acc, vel, rows, grads, lr, mu):
    """Adagrad with classic momentum on the dense gradient, applied to the touched rows only."""
    g = np.zeros_like(p)
    np.add.at(g, rows, grads)
    touched = np.unique(rows)
    for r in touched:
        acc[r] += g[r] ** 2
        u = g[r] / np.sqrt(acc[r] + EPS)
        if mu > 0:
            vel[r] = mu * vel[r] - lr * u
            p[r] += vel[r]
        else:
            p[r] -= lr * u


@pytest.mark.parametrize("layout", ["unique", "static"])
@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_sparse_optimizer_matches_dense_adagrad_on_touched_rows(
    layout: str, momentum: float
) -> None:
    rng = np.random.default_rng(0)
    init = rng.normal(size=(7, 3))
    opt = SparseAdagradM(torch.tensor(init), lr=0.1, momentum=momentum, layout=layout)
    p, acc, vel = init.copy(), np.zeros_like(init), np.zeros_like(init)
    for rows in ([1, 3, 1, 5], [3, 3, 0], [5, 1, 2, 2, 2]):  # duplicates on purpose
        grads = rng.normal(size=(len(rows), 3))
        opt.step(torch.tensor(rows), torch.tensor(grads))
        _dense_reference(p, acc, vel, np.array(rows), grads, 0.1, momentum)
        np.testing.assert_allclose(opt.param.numpy(), p, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(opt.acc.numpy() - EPS, acc, rtol=1e-10, atol=1e-12)
    untouched = [4, 6]
    np.testing.assert_array_equal(opt.param.numpy()[untouched], init[untouched])
    assert (opt.acc[untouched] == EPS).all()


def test_dense_optimizer_is_adagrad_with_classic_momentum() -> None:
    # The official rule, by hand: acc += g^2; v = mu v - lr g / sqrt(acc + 1e-6); p += v.
    # lr = mu = 0.5; entry 0 starts at 1 and gets g = 1, then 0.5:
    #   step 1: acc = 1,    v = -0.5 / sqrt(1 + 1e-6)           = -0.49999975, p = 0.50000025
    #   step 2: acc = 1.25, v = 0.5 v - 0.5 * 0.5 / sqrt(1.25 + 1e-6) = -0.47360658, p = 0.02639367
    opt = DenseAdagradM({"a": (2,), "b": (1, 2)}, lr=0.5, momentum=0.5, device=torch.device("cpu"))
    opt.views["a"].copy_(torch.tensor([1.0, -1.0]))
    p, acc, vel = np.array([1.0, -1.0, 0.0, 0.0]), np.zeros(4), np.zeros(4)
    for g in ([1.0, 2.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5]):
        opt.grad.copy_(torch.tensor(g))
        opt.step()
        g = np.array(g)
        acc += g**2
        vel = 0.5 * vel - 0.5 * g / np.sqrt(acc + EPS)
        p = p + vel
        np.testing.assert_allclose(opt.flat.numpy(), p, rtol=1e-6)
    assert float(opt.flat[0]) == pytest.approx(0.02639367, abs=2e-8)
    assert opt.views["b"].shape == (1, 2)


def test_sparse_optimizer_leaves_an_unused_last_column_alone() -> None:
    # Row 1 uses its last column (a bias) in one occurrence, row 2 in none: row 2's bias, its
    # accumulator and velocity stay as they are although momentum would move them.
    for layout in ("unique", "static"):
        opt = SparseAdagradM(torch.ones(4, 2), lr=0.1, momentum=0.5, layout=layout)
        opt.vel.fill_(0.2)
        rows, grads = torch.tensor([1, 2, 1]), torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
        opt.step(rows, grads, last_col=torch.tensor([0.0, 0.0, 1.0]))
        u = 1.0 / math.sqrt(1.0 + EPS)
        assert float(opt.param[1, 1]) == pytest.approx(1.0 + 0.5 * 0.2 - 0.1 * u, abs=1e-6)
        assert float(opt.param[2, 0]) == pytest.approx(1.0 + 0.5 * 0.2 - 0.1 * u, abs=1e-6)
        assert (float(opt.param[2, 1]), float(opt.vel[2, 1]), float(opt.acc[2, 1])) == (
            1.0,
            pytest.approx(0.2),
            pytest.approx(EPS),
        )


# ----------------------------------------------------------------------------- batching
def test_session_parallel_plan_known_layout() -> None:
    # Items name (session, position): session s has items 10*s, 10*s+1, ...
    sessions = from_lists([[0, 1, 2], [10, 11], [20, 21, 22, 23], [30, 31], [40]], n_items=50)
    plan = plan_epoch(sessions, batch_size=2)
    # slot 0: s0 (steps 0-1), then s3 (step 2); slot 1: s1 (step 0), s2 (steps 1-3).
    # Session 4 has one click, hence no pair. At step 3 only s2 is left: the batch shrinks.
    assert plan.n_active.tolist() == [2, 2, 2, 1]
    assert plan.inputs.tolist() == [[0, 10], [1, 20], [30, 21], [22, PAD]]
    assert plan.targets.tolist() == [[1, 11], [2, 21], [31, 22], [23, PAD]]
    assert plan.reset.tolist() == [[True, True], [False, True], [True, False], [False, False]]
    assert plan.keep[3].tolist() == [1]  # slot 1 carries on, now as row 0
    assert plan.keep[:3] == [None, None, None]
    assert plan.n_events == 7 == sessions.n_predictions


def test_plan_rejects_data_without_pairs() -> None:
    with pytest.raises(ValueError, match="two clicks"):
        plan_epoch(from_lists([[1], [2]], n_items=3), batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        plan_epoch(from_lists([[1, 2]], n_items=3), batch_size=0)
