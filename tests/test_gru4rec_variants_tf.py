"""gru4rec-tf: model.py's losses, the learning-rate schedule, keep-prob dropout, the TF1 cell."""

import math

import pytest
import torch

from algorithms.gru4rec_variants.common import plan_source_epoch
from algorithms.gru4rec_variants.tf import (
    GRU4RecTF,
    init_tf_params,
    keep_dropout,
    tf1_gru_step,
    tf_learning_rate,
    tf_loss,
)
from datasets.sessions import from_lists


@pytest.mark.parametrize("b", [2, 7, 50])
def test_losses_with_the_output_weights_zeroed(b):
    # softmax_W = 0 and softmax_b = 0 make every in-batch logit 0.
    out = torch.randn(b, 100)
    logits = out @ torch.zeros(b, 100).T + torch.zeros(b)
    assert tf_loss("cross-entropy", "softmax", logits).item() == pytest.approx(math.log(b))
    assert tf_loss("bpr", "softmax", logits).item() == pytest.approx(math.log(2))  # tanh
    assert tf_loss("top1", "softmax", logits).item() == pytest.approx(1 - 0.5 / b)


def test_bpr_mean_includes_the_diagonal():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # final activation linear
    # cells (j, i): sigmoid(yhat[j, j] - yhat[j, i]): diagonal 0.5 each, off 2 and 1
    want = -(2 * math.log(0.5) + math.log(torch.sigmoid(torch.tensor(2.0)).item())
             + math.log(torch.sigmoid(torch.tensor(1.0)).item())) / 4  # fmt: skip
    assert tf_loss("bpr", "linear", logits).item() == pytest.approx(want)


def test_learning_rate_schedule():
    lr = [tf_learning_rate(s, 0.001, 0.96, 10_000) for s in (0, 9_999, 10_000, 20_000)]
    assert lr == pytest.approx([0.001, 0.001, 0.00096, 0.0009216])
    assert tf_learning_rate(10_000_000, 0.001, 0.96, 10_000) == 1e-5  # the floor


def test_keep_prob_dropout_keeps_20_percent_at_0_2():
    x = torch.ones(200_000)
    y = keep_dropout(x, 0.2, torch.Generator().manual_seed(0))
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert torch.allclose(y[kept], torch.tensor(5.0))


def test_tf1_cell_at_zero_kernels_uses_the_gate_bias_one():
    p = init_tf_params(10, 4, torch.Generator().manual_seed(0))
    assert torch.equal(p["gates_bias"], torch.ones(8)) and p["candidate_bias"].abs().sum() == 0
    limit = math.sqrt(6 / (10 + 4))
    assert p["embedding"].abs().max() <= limit and p["softmax_w"].abs().max() <= limit
    p["gates_kernel"].zero_()
    p["candidate_kernel"].zero_()
    h = torch.randn(3, 4)
    # r = u = sigmoid(1), candidate tanh(0) = 0: h' = sigmoid(1) * h
    out = tf1_gru_step(p, torch.randn(3, 4), h, torch.tanh)
    torch.testing.assert_close(out, torch.sigmoid(torch.tensor(1.0)) * h)


def test_reset_before_candidate_uses_r_times_h():
    gen = torch.Generator().manual_seed(2)
    p = {k: torch.randn(v.shape, generator=gen) for k, v in init_tf_params(5, 3, gen).items()}
    x, h = torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen)
    g = torch.sigmoid(torch.cat([x, h], 1) @ p["gates_kernel"] + p["gates_bias"])
    r, u = g[:, :3], g[:, 3:]
    c = torch.tanh(x @ p["candidate_kernel"][:3] + (r * h) @ p["candidate_kernel"][3:]
                   + p["candidate_bias"])  # fmt: skip
    torch.testing.assert_close(tf1_gru_step(p, x, h, torch.tanh), u * h + (1 - u) * c)


def test_parameter_count():
    p = init_tf_params(10, 100, torch.Generator())
    # embedding 1000, softmax_W 1000, softmax_b 10, gates 200*200 + 200, candidate 200*100 + 100
    assert sum(v.numel() for v in p.values()) == 62_310


def test_a_refilled_slot_is_zeroed_once():
    train = from_lists([[0, 1], [2, 3, 4, 5, 6], [7, 8, 9, 0], [1, 2]], 10)
    plan = plan_source_epoch(
        train, 2, stop_when_sessions_run_out=True, zero_refilled_every_step=False
    )
    zeros = [plan.step(t)[2].tolist() for t in range(plan.n_steps)]
    assert zeros == [[False, False], [True, False], [False, False], [False, False]]


def test_defaults_and_validation():
    m = GRU4RecTF()
    assert (m.batch_size, m.n_epochs, m.rnn_size, m.dropout_p_hidden, m.loss) == (
        50, 3, 100, 0.5, "cross-entropy")  # fmt: skip
    with pytest.raises(ValueError, match="final_act"):
        GRU4RecTF(loss="top1", final_act="relu").validate()
    with pytest.raises(ValueError, match="loss"):
        GRU4RecTF(loss="bpr-max").validate()


@pytest.mark.parametrize("loss", ["bpr", "top1"])
def test_ranking_losses_learn_a_chain(loss):
    from benchmark.evaluator import evaluate
    from benchmark.metrics import recall_at

    n = 8
    train = from_lists([[(s + k) % n for k in range(5)] for s in range(80)], n)
    model = GRU4RecTF(loss=loss, batch_size=8, n_epochs=8, learning_rate=0.02, device="cpu")
    model.fit(train)
    test = from_lists([[(s + k) % n for k in range(4)] for s in range(n)], n)
    assert recall_at(evaluate(model, test, progress=False).rank, 1) > 0.9
