"""The neural models end to end on tiny data: shapes, the pad row, learning a chain, save/load,
resume after a kill, selection on valid, the speed script."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from algorithms.neural import NARM, SRGNN, STAMP, SASRec
from datasets.sessions import UNKNOWN, from_lists

N_ITEMS = 10
SMALL = {  # small and fast, high learning rates: each fit here takes a second or two
    "narm": (
        NARM,
        {"embedding_size": 16, "hidden_size": 16, "batch_size": 32, "learning_rate": 0.02},
    ),
    "stamp": (STAMP, {"embedding_size": 16, "batch_size": 32, "learning_rate": 0.02}),
    "sr-gnn": (SRGNN, {"hidden_size": 16, "batch_size": 32, "learning_rate": 0.02, "lr_step": 100}),
    "sasrec": (
        SASRec,
        {"hidden_size": 16, "batch_size": 16, "learning_rate": 0.01, "dropout": 0.1},
    ),
    "sasrec@ce": (
        SASRec,
        {
            "hidden_size": 16,
            "batch_size": 16,
            "learning_rate": 0.01,
            "dropout": 0.1,
            "loss": "cross-entropy",
        },
    ),  # fmt: skip
}


def _model(name, **extra):
    cls, params = SMALL[name]
    return cls(**{**params, "device": "cpu", "seed": 3, "n_threads": 1, **extra})


def _chain(n_sessions=80, seed=0, n_items=N_ITEMS):
    """Item i is always followed by item i + 1 (mod n_items)."""
    rng = np.random.default_rng(seed)
    return from_lists(
        [
            [(int(s) + k) % n_items for k in range(int(rng.integers(2, 7)))]
            for s in rng.integers(0, n_items, n_sessions)
        ],
        n_items,
    )


def _scores(model, sessions):
    """Scores after the last click, all slots stepped together (a session shorter than the
    longest repeats its last click: the same input for every model compared)."""
    width = max(len(s) for s in sessions)
    state = model.init_state(len(sessions))
    for t in range(width):
        items = np.array([s[min(t, len(s) - 1)] for s in sessions])
        scores = model.step(state, items, np.full(len(sessions), t == 0))
    return torch.as_tensor(scores).numpy()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_learns_a_deterministic_chain(name):
    # 30 items: SASRec's negatives are never items of the session, so on a catalogue hardly
    # larger than a session nothing would push the current item's own score down
    n = 30
    model = _model(name, n_epochs=15).fit(_chain(150, n_items=n))
    prefixes = [[i, (i + 1) % n, (i + 2) % n] for i in range(n)]
    scores = _scores(model, prefixes)
    assert scores.shape == (n, n)
    if name == "sasrec":  # its loss never sees an item of the session as a negative, so it
        # learns nothing about the prefix's own items: rank the target among the others
        for row, prefix in zip(scores, prefixes):
            row[prefix] = -np.inf
    top1 = scores.argmax(1)
    want = np.array([(i + 3) % n for i in range(n)])
    assert (top1 == want).mean() >= 0.9, (name, top1, model.history_[-1])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_the_pad_row_is_never_ranked(name):
    model = _model(name, n_epochs=1).fit(_chain(20))
    table = model.network_.item_table()
    assert table.shape[0] == N_ITEMS + 1  # row 0 is the pad
    state = model.init_state(3)
    # slots of different lengths (padding inside the batch), an unknown click, a reset
    clicks = [
        ([1, 4, UNKNOWN], [True] * 3),
        ([2, UNKNOWN, 7], [False] * 3),
        ([3, 5, 8], [False, True, False]),
    ]
    for items, reset in clicks[:-1]:
        model.step(state, np.array(items), np.array(reset))
    before = model.select_state(state, np.arange(3))
    base = torch.as_tensor(model.step(before, np.array(clicks[-1][0]), np.array(clicks[-1][1])))
    assert base.shape == (3, N_ITEMS) and torch.isfinite(base).all()
    with torch.no_grad():  # a huge pad row changes nothing: it is neither ranked nor read
        table[0] = 1e4
    after = torch.as_tensor(model.step(state, np.array(clicks[-1][0]), np.array(clicks[-1][1])))
    torch.testing.assert_close(after, base)


@pytest.mark.parametrize(("name", "max_len"), [("narm", 3), ("narm", None)])
def test_incremental_step_gives_the_prefix_recomputation(name, max_len):
    # Slots of different lengths, unknown clicks, resets, sessions longer than max_len (the
    # first clicks kept: the vector stops changing) or longer than the buffers (None: they
    # grow), and a shrinking batch: click-by-click state against the whole prefix each time.
    model = _model(name, n_epochs=1, max_len=max_len).fit(_chain(30))
    assert model.incremental()
    slow = _model(name, n_epochs=1, max_len=max_len).fit(_chain(30))
    slow.incremental = lambda: False
    rng = np.random.default_rng(5)
    fast_state, slow_state = model.init_state(4), slow.init_state(4)
    assert "items" not in fast_state and "items" in slow_state
    n = 4
    for t in range(20):
        if t == 12:  # the batch shrinks to slots 3, 0, 2
            keep = np.array([3, 0, 2])
            fast_state = model.select_state(fast_state, keep)
            slow_state = slow.select_state(slow_state, keep)
            n = 3
        items = rng.integers(0, N_ITEMS, n)
        items[rng.random(n) < 0.15] = UNKNOWN
        reset = (rng.random(n) < 0.1) | (t == 0)
        got = model.step(fast_state, items, reset)
        want = slow.step(slow_state, items, reset)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if max_len is None:
        assert fast_state["keys"].shape[1] > 8  # grown past its first capacity


@pytest.mark.parametrize("name", ["narm", "sasrec"])
def test_only_unknown_clicks_score_zero_everywhere(name):
    model = _model(name, n_epochs=1).fit(_chain(20))
    state = model.init_state(2)
    scores = model.step(state, np.array([UNKNOWN, 2]), np.array([True, True]))
    assert torch.all(scores[0] == 0) and not torch.all(scores[1] == 0)


@pytest.mark.parametrize("name", ["narm", "stamp", "sr-gnn", "sasrec"])
def test_save_load_and_pickle_round_trip(name, tmp_path):
    model = _model(name, n_epochs=2).fit(_chain(30))
    prefixes = [[1, 2], [5, 6, 7], [9]]
    want = _scores(model, prefixes)
    model.save(tmp_path / "model.pt")
    loaded = type(model).load(tmp_path / "model.pt")
    np.testing.assert_array_equal(_scores(loaded, prefixes), want)
    assert loaded.get_params() == model.get_params() and loaded.history_ == model.history_
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(_scores(clone, prefixes), want)
    with pytest.raises(ValueError, match="not"):
        (NARM if name != "narm" else STAMP).load(tmp_path / "model.pt")


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["narm", "stamp", "sr-gnn", "sasrec"])
def test_resume_after_a_kill_gives_the_uninterrupted_result(name, tmp_path):
    train, valid = _chain(40), _chain(10, seed=1)
    extra = {"n_epochs": 3, "lr_step": 2} if name == "sr-gnn" else {"n_epochs": 3}
    whole = _model(name, **extra).fit(train, valid=valid)

    def kill(model, epoch):
        if epoch == 2:
            raise Killed
        return {"seen": float(epoch)}

    path = tmp_path / "train.pt"
    with pytest.raises(Killed):
        _model(name, **extra).fit(train, valid=valid, on_epoch=kill, resume_file=path)
    assert path.is_file()  # holds epoch 1
    resumed = _model(name, **extra).fit(train, valid=valid, resume_file=path)
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3]
    assert resumed.history_[0]["seen"] == 1.0  # epoch 1 came from the file
    for a, b in zip(whole.history_, resumed.history_):
        assert a["loss"] == b["loss"] and a["valid_mrr20"] == b["valid_mrr20"]
    assert resumed.best_epoch_ == whole.best_epoch_
    for (k, a), (_, b) in zip(
        whole.network_.state_dict().items(), resumed.network_.state_dict().items()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # another setting does not continue from that file: it trains afresh
    other = _model(name, n_epochs=1, learning_rate=0.005).fit(train, resume_file=path)
    assert len(other.history_) == 1


def test_the_best_epoch_on_valid_is_kept_and_patience_stops(tmp_path):
    train, valid = _chain(40), _chain(10, seed=1)
    # whichever epoch is best on valid, its weights are the ones kept
    model = _model("stamp", n_epochs=6, patience=2).fit(train, valid=valid)
    mrr = [r["valid_mrr20"] for r in model.history_]
    assert model.best_epoch_ == int(np.argmax(mrr)) + 1
    assert len(mrr) == 6 or len(mrr) - model.best_epoch_ == 2
    state = model.network_.state_dict()
    check = _model("stamp", n_epochs=model.best_epoch_).fit(train)
    for k, v in check.network_.state_dict().items():
        torch.testing.assert_close(state[k], v, msg=k)
    np.testing.assert_allclose(
        model.validation_scores(valid)["valid_mrr20"], mrr[model.best_epoch_ - 1]
    )


def test_speed_script_runs_on_a_slice_of_the_100k_sample(shared_data, tmp_path):
    from benchmark.perf import neural_speed

    out = tmp_path / "speed.json"
    neural_speed.main(
        ["--data-dir", str(shared_data), "--device", "cpu", "--max-sessions", "30",
         "--models", "narm,stamp,sr-gnn,sasrec,sasrec@ce", "--out", str(out)]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert [m["model"] for m in result["models"]] == [
        "narm",
        "stamp",
        "sr-gnn",
        "sasrec",
        "sasrec@ce",
    ]
    targets = result["train_events"] - result["train_sessions"]  # every click but the first
    for row in result["models"]:
        assert row["events"] == targets and row["events_per_s"] > 0
        assert len(row["loadavg_before"]) == 3 and len(row["loadavg_after"]) == 3
    assert result["models"][-1]["params"]["loss"] == "cross-entropy"


def test_cpu_training_runs_torchs_deterministic_kernels_and_restores_the_flag():
    # algorithms.base.cpu_training around the harness's training, even when it fails
    seen = []

    def record(model, epoch):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return {}

    assert not torch.are_deterministic_algorithms_enabled()
    _model("stamp", n_epochs=2).fit(_chain(20), on_epoch=record)
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()

    def fail(model, epoch):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        _model("stamp", n_epochs=2).fit(_chain(20), on_epoch=fail)
    assert not torch.are_deterministic_algorithms_enabled()
