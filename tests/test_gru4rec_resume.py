"""A GRU4Rec fit killed between epochs continues from its training state to the very same model.

Every piece of state that one epoch hands to the next (parameters, Adagrad accumulators, momentum
velocities, the random generator, the pre-drawn samples and dropout masks not used yet) has to
come back: leaving out any one of them changes the parameters after the next epoch, so these
tests compare the parameters bit for bit (one CPU thread, so float sums add in one order).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from algorithms.gru4rec import GRU4Rec
from algorithms.gru4rec.checkpoint import load_training_state
from datasets.sessions import Sessions, from_lists

# 300 sessions in batches of 8: 127 steps per epoch, so the 256-step dropout blocks and the
# 50-row sample cache (400 // 8) both run across epoch boundaries.
SETTINGS = [
    dict(
        layers=12,
        embedding="shared",
        loss="cross-entropy",
        n_sample=8,
        logq=0.5,
        dropout_embed=0.2,
        dropout_hidden=0.3,
        momentum=0.3,
    ),
    dict(
        layers=[10, 6],
        embedding=5,
        loss="bpr-max",
        n_sample=8,
        bpreg=0.5,
        logq=0.0,
        dropout_embed=0.1,
        dropout_hidden=0.25,
        momentum=0.1,
    ),
    dict(
        layers=9,
        embedding=0,
        loss="top1-max",
        n_sample=8,
        logq=0.0,
        dropout_embed=0.2,
        dropout_hidden=0.0,
        momentum=0.0,
    ),
]
COMMON = dict(
    batch_size=8,
    n_epochs=3,
    learning_rate=0.08,
    sample_cache_size=400,
    device="cpu",
    n_threads=1,
    seed=3,
)


def _sessions(n_items: int = 25, n_sessions: int = 300, seed: int = 0) -> Sessions:
    rng = np.random.default_rng(seed)
    return from_lists(
        [rng.integers(0, n_items, rng.integers(2, 8)).tolist() for _ in range(n_sessions)], n_items
    )


def _fit(settings: dict, train: Sessions, resume_file=None, callback=None) -> GRU4Rec:
    return GRU4Rec(**{**COMMON, **settings}).fit(train, on_epoch=callback, resume_file=resume_file)


def _killed_at(epoch: int):
    def callback(model, e):
        if e == epoch:
            raise KeyboardInterrupt
        return {"mark": np.float64(e)}  # a numpy value, as a validation metric often is

    return callback


def _recorder(seen: list):
    def callback(model, epoch):
        seen.append(epoch)
        return {"mark": np.float64(epoch)}

    return callback


def _assert_same_model(a: GRU4Rec, b: GRU4Rec) -> None:
    assert a.network_.params.keys() == b.network_.params.keys()
    for name, value in a.network_.params.items():
        assert torch.equal(value, b.network_.params[name]), name
    assert [row["loss"] for row in a.history_] == [row["loss"] for row in b.history_]


@pytest.mark.parametrize("settings", SETTINGS, ids=["shared-ce", "embedding-bprmax", "onehot"])
def test_a_fit_killed_between_epochs_continues_to_the_same_model(tmp_path, settings):
    train = _sessions()
    whole = _fit(settings, train)
    path = tmp_path / "training.pt"

    with pytest.raises(KeyboardInterrupt):  # killed during epoch 2's callback: epoch 1 is kept
        _fit(settings, train, path, _killed_at(2))
    assert load_training_state(path)["epoch"] == 1

    seen: list[int] = []
    resumed = _fit(settings, train, path, _recorder(seen))
    assert seen == [2, 3]
    _assert_same_model(whole, resumed)
    assert [(row["epoch"], row["mark"]) for row in resumed.history_] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
    ]
    assert load_training_state(path)["epoch"] == 3

    # A kill after the last epoch (during evaluation, say): the next fit trains nothing.
    seen.clear()
    again = _fit(settings, train, path, _recorder(seen))
    assert seen == []
    _assert_same_model(whole, again)


@pytest.mark.parametrize(
    "change,epochs,reason",
    [
        ({"learning_rate": 0.05}, [1, 2, 3], "written for other hyperparameters (learning_rate)"),
        (
            {"dropout_hidden": 0.1, "momentum": 0.2},
            [1, 2, 3],
            "written for other hyperparameters (dropout_hidden, momentum)",
        ),
        ({"n_epochs": 2}, [1, 2], "holds epoch 3, more than n_epochs = 2"),
        ({"n_epochs": 5, "n_threads": 2}, [4, 5], None),  # more epochs, other threads: continued
    ],
)
def test_a_state_of_other_hyperparameters_is_not_continued(
    tmp_path, caplog, change, epochs, reason
):
    train = _sessions()
    path = tmp_path / "training.pt"
    _fit(SETTINGS[0], train, path)
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="algorithms.gru4rec.recommender"):
        _fit({**SETTINGS[0], **change}, train, path, _recorder(seen))
    assert seen == epochs
    if reason is None:
        assert not caplog.records
    else:
        assert caplog.messages == [f"{path}: {reason}; training from epoch 1"]


def test_a_state_of_other_data_or_no_state_at_all_starts_afresh(tmp_path, caplog):
    path = tmp_path / "training.pt"
    _fit(SETTINGS[0], _sessions(seed=0), path)
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, logger="algorithms.gru4rec.recommender"):
        _fit(SETTINGS[0], _sessions(seed=1), path, _recorder(seen))
    assert seen == [1, 2, 3]
    assert "written for other training data; training from epoch 1" in caplog.text

    caplog.clear()
    path.write_bytes(b"not a checkpoint")
    seen.clear()
    with caplog.at_level(logging.WARNING, logger="algorithms.gru4rec.recommender"):
        _fit(SETTINGS[0], _sessions(seed=0), path, _recorder(seen))
    assert seen == [1, 2, 3]
    assert f"{path}: not readable as a GRU4Rec training state" in caplog.text
    assert load_training_state(path)["epoch"] == 3  # overwritten by a good one


def test_a_state_that_does_not_fit_its_own_settings_stops_the_fit(tmp_path):
    # Same key but a tensor of another shape: another code's file, never silently half-loaded.
    train = _sessions()
    path = tmp_path / "training.pt"
    _fit(SETTINGS[0], train, path)
    state = load_training_state(path)
    state["trainer"]["dense"]["acc"] = state["trainer"]["dense"]["acc"][:-1]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"optimizer state does not fit.*delete the file"):
        _fit(SETTINGS[0], train, path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_fit_killed_between_epochs_continues_to_the_same_model(tmp_path):
    # On a GPU the sparse updates add in no fixed order, so the match is up to rounding.
    train = _sessions()
    settings = {**SETTINGS[0], "device": "cuda"}
    whole = _fit(settings, train)
    path = tmp_path / "training.pt"
    with pytest.raises(KeyboardInterrupt):
        _fit(settings, train, path, _killed_at(2))
    seen: list[int] = []
    resumed = _fit(settings, train, path, _recorder(seen))
    assert seen == [2, 3]
    for name, value in whole.network_.params.items():
        torch.testing.assert_close(resumed.network_.params[name], value, rtol=1e-4, atol=1e-5)


def test_a_training_state_or_garbage_is_not_loaded_as_a_fitted_model(tmp_path):
    path = tmp_path / "training.pt"
    _fit({**SETTINGS[0], "n_epochs": 1}, _sessions(), path)
    with pytest.raises(
        ValueError,
        match=r"not a GRU4Rec checkpoint of format 'gru4rec/1' "
        r"\(found 'gru4rec-training/1'\)",
    ):
        GRU4Rec.load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"training.pt: not readable as a GRU4Rec checkpoint"):
        GRU4Rec.load(path)
