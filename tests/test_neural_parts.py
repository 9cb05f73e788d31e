"""Known answers for the parts of the neural models (algorithms/neural/), computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.neural.harness import gather_padded, prefix_examples, truncate_window
from algorithms.neural.narm import NARM, hard_sigmoid
from algorithms.neural.sasrec import SASRec
from algorithms.neural.srgnn import SRGNN, session_graph
from algorithms.neural.stamp import STAMP, STAMPNetwork
from datasets.sessions import from_lists


def test_prefix_examples_are_every_prefix_of_every_session():
    train = from_lists([[4, 5, 6], [7], [1, 2]], 8)
    starts, lengths = prefix_examples(train)
    # session 0 (offset 0): [4] -> 5, [4, 5] -> 6; session 1 has none; session 2 (offset 4): [1] -> 2
    np.testing.assert_array_equal(starts, [0, 0, 4])
    np.testing.assert_array_equal(lengths, [1, 2, 1])
    np.testing.assert_array_equal(train.items[starts + lengths], [5, 6, 2])


def test_truncation_keeps_the_first_or_the_last_clicks_and_pads_to_the_batch_maximum():
    flat = torch.arange(1, 31)  # one session of 30 clicks, items 1..30
    starts, lengths = torch.tensor([0, 0]), torch.tensor([25, 3])
    s, ln = truncate_window(starts, lengths, 19, "first")
    rows, mask = gather_padded(flat, s, ln)
    assert rows.shape == (2, 19)  # the batch's own maximum
    assert rows[0].tolist() == list(range(1, 20))  # the FIRST 19 of 25 (NARM's data_process.py)
    assert rows[1].tolist() == [1, 2, 3] + [0] * 16 and mask[1].sum() == 3
    s, ln = truncate_window(starts, lengths, 19, "last")
    rows, _ = gather_padded(flat, s, ln)
    assert rows[0].tolist() == list(range(7, 26))  # clicks 7..25, the last 19


def test_srgnn_session_graph_of_the_specification_example():
    # prefix [1, 2, 1, 3] and, in the same batch, [5, 5] (a self-loop) padded to length 4
    items = torch.tensor([[1, 2, 1, 3], [5, 5, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    alias, a, nodes = session_graph(items, mask)
    assert nodes.tolist() == [[1, 2, 3], [5, 0, 0]]
    assert alias[0].tolist() == [0, 1, 0, 2] and alias[1, :2].tolist() == [0, 0]
    assert a.shape == (2, 3, 6)
    a_in, a_out = a[0, :, :3], a[0, :, 3:]
    # edges 1->2, 2->1, 1->3 (nodes 0->1, 1->0, 0->2)
    np.testing.assert_allclose(a_out[0], [0, 0.5, 0.5])
    np.testing.assert_allclose(a_in[0], [0, 1, 0])
    np.testing.assert_allclose(a_out[1], [1, 0, 0])
    np.testing.assert_allclose(a_in[1], [1, 0, 0])
    np.testing.assert_allclose(a_out[2], [0, 0, 0])
    np.testing.assert_allclose(a_in[2], [1, 0, 0])
    # the self-loop 5->5 counts once: in- and out-degree 1; padded nodes have no edges
    np.testing.assert_allclose(a[1], [[1, 0, 0, 1, 0, 0], [0] * 6, [0] * 6])


def test_srgnn_repeated_transition_counts_once():
    items = torch.tensor([[1, 2, 1, 2]])  # 1->2 twice, 2->1 once
    alias, a, _ = session_graph(items, torch.ones(1, 4, dtype=torch.bool))
    np.testing.assert_allclose(a[0], [[0, 1, 0, 1], [1, 0, 1, 0]])


def test_srgnn_length_groups_give_the_vectors_and_gradients_of_one_padded_batch(monkeypatch):
    import algorithms.neural.srgnn as srgnn

    net = srgnn.SRGNNNetwork(50, 16, 1, torch.Generator().manual_seed(1))
    lengths = torch.randint(1, 6, (100,), generator=torch.Generator().manual_seed(2))
    lengths[7], lengths[60] = 40, 23  # two long prefixes pad the one-batch graph to 40
    items = torch.randint(1, 51, (100, 40), generator=torch.Generator().manual_seed(3))
    mask = torch.arange(40)[None] < lengths[:, None]
    items = torch.where(mask, items, 0)

    def vectors_and_grads():
        net.zero_grad()
        out = net.session_vectors(items, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    grouped, grouped_grads = vectors_and_grads()  # four groups of 25
    monkeypatch.setattr(srgnn, "GROUP_ROWS", 1000)
    whole, whole_grads = vectors_and_grads()  # one graph batch padded to 40
    torch.testing.assert_close(grouped, whole, rtol=0, atol=1e-6)
    for a, b in zip(grouped_grads, whole_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_stamp_attention_on_a_two_item_session_by_hand():
    net = STAMPNetwork(n_items=3, size=4, max_norm=1.0, gen=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.E[1] = torch.tensor([3.0, 0.0, 4.0, 0.0])  # norm 5: clipped to norm 1
        net.E[2] = torch.tensor([0.1, 0.2, 0.0, -0.2])  # norm 0.3: kept
    items, mask = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool)
    a, _, _, _ = net.attention(items, mask)
    e = net.E.detach().numpy().astype(np.float64)
    w = {k: getattr(net, k).detach().numpy().astype(np.float64) for k in ("W1", "W2", "W3")}
    x1, x2 = e[1] / 5.0, e[2]
    m_s, x_t = (x1 + x2) / 2, x2

    def sig(v):
        return 1 / (1 + np.exp(-v))

    w0 = net.w0.detach().numpy()
    want = [w0 @ sig(w["W1"] @ x + w["W2"] @ x_t + w["W3"] @ m_s) for x in (x1, x2)]
    np.testing.assert_allclose(a[0].detach().numpy(), want, rtol=1e-5, atol=1e-7)
    assert abs(sum(want) - 1) > 1e-3  # not normalised
    m_a = want[0] * x1 + want[1] * x2 + m_s  # the code's + m_s
    ws, wt = net.Ws.detach().numpy(), net.Wt.detach().numpy()
    vec = np.tanh(ws @ m_a) * np.tanh(wt @ x_t)
    got = net.session_vectors(items, mask)[0].detach().numpy()
    np.testing.assert_allclose(got, vec, rtol=1e-5, atol=1e-7)
    scores = net.scores(net.session_vectors(items, mask))[0].detach().numpy()
    np.testing.assert_allclose(scores, e[1:] @ vec, rtol=1e-4, atol=1e-6)  # unclipped rows
    assert torch.allclose(net.E[1], torch.tensor([3.0, 0.0, 4.0, 0.0]))  # table not rewritten


def test_hard_sigmoid_is_theanos():
    x = torch.tensor([-5.0, -2.5, 0.0, 1.0, 2.5, 5.0])
    np.testing.assert_allclose(hard_sigmoid(x), [0, 0, 0.5, 0.7, 1, 1])


def _chain(n_items=10, n_sessions=40, length=25):
    rng = np.random.default_rng(0)
    return from_lists(
        [
            [(int(s) + k) % n_items for k in range(length)]
            for s in rng.integers(0, n_items, n_sessions)
        ],
        n_items,
    )


@pytest.mark.parametrize("truncate", ["first", "last"])
def test_narm_keeps_the_first_19_clicks_by_default(truncate):
    train = _chain(length=5)
    model = NARM(
        embedding_size=8,
        hidden_size=8,
        n_epochs=1,
        device="cpu",
        n_threads=1,
        truncate=truncate,
    ).fit(train)
    session = [(3 + k) % 10 for k in range(25)]
    state = model.init_state(1)
    after = []
    for t, item in enumerate(session):
        after.append(model.step(state, np.array([item]), np.array([t == 0])).numpy()[0])
    if truncate == "first":  # clicks 20..25 change nothing: the first 19 are kept
        for t in range(19, 25):
            np.testing.assert_array_equal(after[t], after[18])
        assert not np.allclose(after[17], after[18])
    else:  # the last 19: the same as a session of just those clicks
        fresh = model.init_state(1)
        for t, item in enumerate(session[-19:]):
            last = model.step(fresh, np.array([item]), np.array([t == 0])).numpy()[0]
        np.testing.assert_allclose(after[-1], last, rtol=1e-5, atol=1e-6)
        assert not np.allclose(after[-1], after[18])


def test_stamp_by_length_batches_are_equal_length_and_cover_every_example_once():
    train = from_lists([[1, 2, 3], [4, 5, 6], [1, 2], [3, 4, 5, 6, 7], [2, 3, 4]], 8)
    model = STAMP(batch_size=2, device="cpu")
    model.device_ = torch.device("cpu")
    data = model._prepare(train)
    batches = model._plan(data, torch.Generator().manual_seed(0))
    seen = torch.cat(batches).sort().values
    assert seen.tolist() == list(range(data["n_examples"]))
    starts, lengths = data["starts"].numpy(), data["lengths"].numpy()
    session_of = np.searchsorted(train.offsets, starts, side="right") - 1
    for batch in batches:
        b = batch.numpy()
        assert len(set(lengths[b])) == 1  # one prefix position per step
        assert len(set(train.lengths[session_of[b]])) == 1  # sessions of one length
        assert len(b) <= 2
    # sessions of length 3 (three of them, chunks of 2): 2 chunks x 2 positions; length 2: 1;
    # length 5: 4 positions
    assert len(batches) == 4 + 1 + 4


def test_sasrec_negatives_avoid_the_session_items():
    train = from_lists([[0, 1, 2, 3, 4], [5, 6]], 8)
    model = SASRec(device="cpu", max_len=4)
    model.device_ = torch.device("cpu")
    data = model._prepare(train)
    off, length = data["offsets"], data["lengths"]
    valid = torch.ones(2, 4, dtype=torch.bool)
    for seed in range(20):
        negs = model._negatives(data, off, length, valid, torch.Generator().manual_seed(seed))
        assert not set(negs[0].tolist()) & {1, 2, 3, 4, 5}  # shifted by one
        assert not set(negs[1].tolist()) & {6, 7}
        assert negs.min() >= 1 and negs.max() <= 8


def test_srgnn_learning_rate_drops_after_epochs_2_5_8():
    model = SRGNN()
    assert [model._lr_factor(e) for e in range(1, 10)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001]
    )


@pytest.mark.parametrize(
    ("cls", "params", "key"),
    [
        (NARM, {"hidden_size": 0}, "hidden_size"),
        (NARM, {"truncate": "middle"}, "truncate"),
        (NARM, {"max_len": -1}, "max_len"),
        (NARM, {"dropout_context": 1.0}, "dropout_context"),
        (STAMP, {"batching": "sorted"}, "batching"),
        (STAMP, {"learning_rate": 0.0}, "learning_rate"),
        (SRGNN, {"batch_size": -5}, "batch_size"),
        (SRGNN, {"gnn_steps": 0}, "gnn_steps"),
        (SASRec, {"loss": "bpr"}, "loss"),
        (SASRec, {"n_heads": 3}, "n_heads"),
        (SASRec, {"n_epochs": 0}, "n_epochs"),
        (SASRec, {"device": "tpu"}, "device"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_key(cls, params, key):
    model = cls(**params)
    with pytest.raises(ValueError, match=key):
        model.validate()
    with pytest.raises(ValueError, match=key):  # before any data is read
        model.fit(None)
