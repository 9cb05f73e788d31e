"""gru4rec-recbole: prefix examples, the tied CE over N + 1 rows, parameter count, step(),
RecBole's early-stopping rule."""

import math

import numpy as np
import pytest
import torch

from algorithms.gru4rec_variants.recbole import (
    GRU4RecRecBole,
    _Net,
    _Trainer,
    init_recbole_params,
    prefix_examples,
    window,
)
from datasets.sessions import from_lists


def test_prefix_examples_are_cut_on_the_left_and_right_padded():
    a, b, c, d = 3, 5, 7, 9  # ids are shifted by one: 0 is the padding
    train = from_lists([[a, b, c, d]], 10)
    first, target = prefix_examples(train)
    items = torch.as_tensor(train.items)
    seq, length = window(items, torch.as_tensor(first), torch.as_tensor(target), 2)
    got = list(zip(seq.tolist(), length.tolist(), (items[target] + 1).tolist()))
    assert got == [([a + 1, 0], 1, b + 1), ([a + 1, b + 1], 2, c + 1), ([b + 1, c + 1], 2, d + 1)]


def test_ce_with_the_dense_layer_zeroed_is_ln_n_plus_1():
    n = 10
    params = init_recbole_params(n, 64, 128, torch.Generator().manual_seed(0))
    params["dense_weight"].zero_()
    params["dense_bias"].zero_()
    net = _Net(params, 0.3)
    seq, length = torch.tensor([[1, 2, 0], [4, 5, 6]]), torch.tensor([2, 3])
    out = net(seq, length, None)
    logits = out @ net.p["item_embedding"].T  # all N + 1 rows, the pad row included
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([3, 7]))
    assert loss.item() == pytest.approx(math.log(n + 1))


def test_packed_forward_gives_the_padded_pass_outputs_and_gradients():
    # The fast path skips the GRU steps on the right padding; the source runs over them.
    # Causality makes the outputs at the last real position identical, gradients too.
    gen = torch.Generator().manual_seed(0)
    seq = torch.tensor([[3, 0, 0, 0], [1, 2, 5, 0], [6, 7, 8, 9], [4, 4, 0, 0]])
    length = torch.tensor([1, 3, 4, 2])
    results = []
    for padded in (True, False):
        net = _Net(init_recbole_params(9, 8, 16, torch.Generator().manual_seed(1)), 0.3)
        net.padded = padded
        gen.manual_seed(0)  # the same dropout mask in both passes
        out = net(seq, length, gen)
        out.square().sum().backward()
        results.append((out.detach(), {k: v.grad for k, v in net.p.items()}))
    (want, want_g), (got, got_g) = results
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for k in want_g:
        torch.testing.assert_close(got_g[k], want_g[k], rtol=1e-5, atol=1e-6)


def test_parameter_count_at_10_items():
    # Embedding 11*64, GRU (no biases) 3*128*64 + 3*128*128, Linear 128*64 + 64.
    params = init_recbole_params(10, 64, 128, torch.Generator())
    assert sum(p.numel() for p in params.values()) == 82_688
    assert params["item_embedding"][0].abs().sum() > 0  # xavier_normal_ overwrites the pad row


def test_step_is_the_sources_forward_over_the_window():
    train = from_lists([[(s + k) % 9 for k in range(6)] for s in range(30)], 9)
    model = GRU4RecRecBole(n_epochs=2, batch_size=16, max_seq_length=3, device="cpu").fit(train)
    net = _Net({k: v.clone() for k, v in model.network_.items()}, 0.0)
    session = [4, 1, 7, 7, 2, 8, 0]  # longer than max_seq_length: the left cut is exercised
    state = model.init_state(1)
    items = torch.as_tensor(session)
    for k in range(len(session)):
        got = model.step(state, np.array([session[k]]), np.array([k == 0]))
        seq, length = window(items, torch.tensor([0]), torch.tensor([k + 1]), 3)
        want = net(seq, length, None) @ net.p["item_embedding"][1:].T
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_early_stopping_follows_recboles_rule_and_keeps_the_best_epoch():
    train = from_lists([[0, 1, 2], [2, 3, 4]], 5)
    model = GRU4RecRecBole(device="cpu", stopping_step=2)
    model.validate()
    model.device_ = torch.device("cpu")
    trainer = _Trainer(model, train, valid=train)
    scores = iter([0.1, 0.3, 0.3, 0.2, 0.25, 0.1])
    trainer.valid_mrr = lambda: next(scores)
    stops = []
    for epoch in range(1, 7):
        trainer.net.p["dense_bias"].data.fill_(epoch)  # marks the epoch's weights
        stops.append(trainer.after_epoch(epoch)[1])
    # 0.3 again counts as better (>=); then three epochs below it: stop once the count > 2.
    assert stops == [False, False, False, False, False, True]
    assert trainer.final_params()["dense_bias"][0].item() == 3.0


def test_fit_stops_early_on_valid_and_records_the_metric():
    train = from_lists([[(s + k) % 6 for k in range(4)] for s in range(24)], 6)
    # The reversed chain gets worse as the chain is learned: it stops, keeping an early epoch.
    valid = from_lists([[(s - k) % 6 for k in range(4)] for s in range(6)], 6)
    model = GRU4RecRecBole(n_epochs=40, stopping_step=1, batch_size=8, learning_rate=0.05,
                           device="cpu").fit(train, valid=valid)  # fmt: skip
    assert "valid_mrr10" in model.history_[0]
    assert len(model.history_) < 40 and model.history_[-1]["stopped"]


def test_bpr_learns_a_chain():
    from benchmark.evaluator import evaluate
    from benchmark.metrics import recall_at

    n = 8
    train = from_lists([[(s + k) % n for k in range(5)] for s in range(80)], n)
    model = GRU4RecRecBole(loss_type="BPR", batch_size=16, n_epochs=30, learning_rate=0.01,
                           device="cpu").fit(train)  # fmt: skip
    test = from_lists([[(s + k) % n for k in range(4)] for s in range(n)], n)
    assert recall_at(evaluate(model, test, progress=False).rank, 1) > 0.9


def test_validate_names_the_key():
    with pytest.raises(ValueError, match="loss_type"):
        GRU4RecRecBole(loss_type="ce").validate()
    with pytest.raises(ValueError, match="max_seq_length"):
        GRU4RecRecBole(max_seq_length=0).validate()
