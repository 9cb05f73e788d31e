"""gru4rec-keras: the source's loader, its reset bug, the Keras GRU and the parameter count."""

import math

import numpy as np
import pytest
import torch

from algorithms.gru4rec_variants.common import EpsHatAdam, plan_source_epoch
from algorithms.gru4rec_variants.keras import (
    GRU4RecKeras,
    _Trainer,
    init_keras_params,
    keras_gru_step,
)
from datasets.sessions import from_lists

# Sessions of lengths 2, 5, 4, 2 (items chosen so that every click is recognisable).
SESSIONS = [[0, 1], [2, 3, 4, 5, 6], [7, 8, 9, 0], [1, 2]]


def _trace(plan, train):
    return [
        (train.items[pos].tolist(), train.items[pos + 1].tolist(), zero.tolist())
        for slot, pos, zero in (plan.step(t) for t in range(plan.n_steps))
    ]


def test_loader_gives_the_sources_four_steps_and_leaves_the_last_session_untrained():
    train = from_lists(SESSIONS, 10)
    plan = plan_source_epoch(
        train, 2, stop_when_sessions_run_out=True, zero_refilled_every_step=True
    )
    # Hand-run of SessionDataLoader.__iter__: block 1 (minlen 2): one step; slot 0 takes
    # session 2; block 2 (minlen 4): three steps; then slot 0 takes session 3 and slot 1 finds
    # no session left: finished, session 3 ([1, 2]) is never fed.
    assert _trace(plan, train) == [
        ([0, 2], [1, 3], [False, False]),
        ([7, 3], [8, 4], [True, False]),
        ([8, 4], [9, 5], [True, False]),  # the bug: slot 0 zeroed again
        ([9, 5], [0, 6], [True, False]),
    ]
    assert plan.untrained_sessions == 1 and plan.n_events == 8


def test_reset_bug_switched_off_zeroes_a_refilled_slot_once_and_trains_every_click():
    train = from_lists(SESSIONS, 10)
    once = plan_source_epoch(
        train, 2, stop_when_sessions_run_out=True, zero_refilled_every_step=False
    )
    assert [z for _, _, z in _trace(once, train)] == [
        [False, False],
        [True, False],
        [False, False],
        [False, False],
    ]
    fixed = plan_source_epoch(
        train, 2, stop_when_sessions_run_out=False, zero_refilled_every_step=False
    )
    trace = _trace(fixed, train)
    assert trace[-1] == ([1], [2], [True])  # session 3, alone in a shrunken batch
    assert fixed.untrained_sessions == 0 and fixed.n_events == sum(len(s) - 1 for s in SESSIONS)


def test_the_reset_bug_changes_what_is_learned():
    train = from_lists(SESSIONS * 5, 10)
    a = GRU4RecKeras(batch_size=2, n_epochs=1, device="cpu").fit(train)
    b = GRU4RecKeras(batch_size=2, n_epochs=1, device="cpu", zero_refilled_every_step=False)
    b.fit(train)
    assert not torch.equal(a.network_["gru_kernel"], b.network_["gru_kernel"])


def test_parameter_count_is_35011_at_10_items_and_100_units():
    # One-hot width n_items + 1 = 11: GRU 11*300 + 100*300 + 2*300 (reset_after biases),
    # Dense 100*11 + 11.
    params = init_keras_params(10, 100, torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in params.values()) == 35_011
    assert params["gru_bias"].abs().sum() == 0 and params["dense_bias"].abs().sum() == 0
    rec = params["gru_recurrent_kernel"]
    torch.testing.assert_close(rec @ rec.T, torch.eye(100), atol=1e-5, rtol=0)  # orthogonal
    assert params["gru_kernel"].abs().max() <= math.sqrt(6 / (11 + 300))


def test_keras_gru_is_torch_gru_cell_with_keras_gate_order():
    gen = torch.Generator().manual_seed(1)
    p = init_keras_params(6, 4, gen)
    p["gru_bias"] = torch.randn(2, 12, generator=gen)
    cell = torch.nn.GRUCell(7, 4)
    z, r, h = (slice(0, 4), slice(4, 8), slice(8, 12))
    with torch.no_grad():  # torch: rows [r, z, n]; Keras: columns [z, r, h]
        cell.weight_ih.copy_(torch.cat([p["gru_kernel"][:, s] for s in (r, z, h)], 1).T)
        cell.weight_hh.copy_(torch.cat([p["gru_recurrent_kernel"][:, s] for s in (r, z, h)], 1).T)
        cell.bias_ih.copy_(torch.cat([p["gru_bias"][0, s] for s in (r, z, h)]))
        cell.bias_hh.copy_(torch.cat([p["gru_bias"][1, s] for s in (r, z, h)]))
    items = torch.tensor([0, 3, 6])
    h0 = torch.randn(3, 4, generator=gen)
    want = cell(torch.nn.functional.one_hot(items, 7).float(), h0)
    torch.testing.assert_close(keras_gru_step(p, items, h0), want)


def test_eps_hat_adam_first_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = EpsHatAdam([p], lr=0.1, eps=1e-7)
    p.grad = torch.tensor([0.5, -1e-6])
    opt.step()
    b1, b2, g = 0.9, 0.999, np.array([0.5, -1e-6])
    m, v = (1 - b1) * g, (1 - b2) * g**2
    step = 0.1 * math.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p.detach().numpy(), np.array([1.0, -2.0]) - step, rtol=1e-6)


def test_defaults_are_the_sources():
    m = GRU4RecKeras()
    assert (m.units, m.batch_size, m.n_epochs, m.dropout, m.learning_rate, m.epsilon) == (
        100, 512, 9, 0.25, 0.001, 1e-7)  # fmt: skip
    assert m.zero_refilled_every_step and m.stop_when_sessions_run_out
    assert m.keep_state_across_epochs


def test_state_is_kept_across_epochs_only_with_the_switch_on():
    train = from_lists(SESSIONS * 3, 10)
    trainers = []
    for keep in (True, False):
        model = GRU4RecKeras(batch_size=2, device="cpu", keep_state_across_epochs=keep)
        model.validate()
        model.device_ = torch.device("cpu")
        trainers.append(_Trainer(model, train))
    for t in trainers:
        t.train_epoch()
    # The first epoch starts from zero either way; the second does not with the switch on.
    torch.testing.assert_close(trainers[0].net["dense_kernel"], trainers[1].net["dense_kernel"])
    assert trainers[0].hidden.abs().sum() > 0
    for t in trainers:
        t.train_epoch()
    assert not torch.equal(trainers[0].net["dense_kernel"], trainers[1].net["dense_kernel"])


def test_validate_names_the_key():
    with pytest.raises(ValueError, match="dropout"):
        GRU4RecKeras(dropout=1.0).validate()
    with pytest.raises(ValueError, match="zero_refilled_every_step"):
        GRU4RecKeras(zero_refilled_every_step=1).validate()
