"""Rows whose reference code picks the epoch count on held-out data (NARM, SR-GNN, RecBole's
GRU4Rec): the runner picks it on the validation split, then trains on the full training set for
exactly that many epochs; the test set is never watched."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import benchmark.runner as runner
from algorithms.gru4rec_variants.recbole import GRU4RecRecBole
from algorithms.neural import NARM, SRGNN, STAMP, SASRec
from benchmark.options import plan
from benchmark.report.render import tuning_texts
from benchmark.runner import RunOptions, run
from datasets import io
from datasets.sessions import Dataset, from_lists

NARM_SMALL = (
    "[narm]\nembedding_size = 8\nhidden_size = 8\nbatch_size = 16\nlearning_rate = 0.02\n"
    'n_epochs = 4\nn_threads = 1\ndevice = "cpu"\n'
)


def _chain(n_sessions, seed, n_items=9):
    rng = np.random.default_rng(seed)
    return from_lists(
        [
            [(int(s) + k) % n_items for k in range(int(rng.integers(2, 6)))]
            for s in rng.integers(0, n_items, n_sessions)
        ],
        n_items,
    )


def _dataset(with_valid: bool) -> Dataset:
    train = _chain(60, 0)
    return Dataset(
        name="tiny",
        train=train,
        test=_chain(8, 1),
        item_ids=np.arange(100, 109),
        policy={"unseen_targets": "misses"},
        valid_train=train.subset(np.arange(45)) if with_valid else None,
        valid_test=train.subset(np.arange(45, 60)) if with_valid else None,
    )


def _run(tmp_path, monkeypatch, data, toml=NARM_SMALL, algorithm="narm"):
    monkeypatch.setattr(runner, "load_dataset", lambda name, **kw: data)
    calls = []  # (training data, valid) of every fit, by fingerprint
    real_fit = NARM.fit

    def spy(self, train, *, valid=None, on_epoch=None, resume_file=None):
        calls.append((train.fingerprint(), None if valid is None else valid.fingerprint()))
        return real_fit(self, train, valid=valid, on_epoch=on_epoch, resume_file=resume_file)

    monkeypatch.setattr(NARM, "fit", spy)
    config = tmp_path / "small.toml"
    config.write_text(toml)
    options = RunOptions(
        dataset="tiny",
        algorithms=[algorithm],
        out=tmp_path / "out",
        progress=False,
        cutoffs=[1, 5],
        config=config,
    )
    return run(plan(options), command="test"), calls


def test_the_epoch_count_is_chosen_on_valid_then_the_full_set_is_trained(tmp_path, monkeypatch):
    data = _dataset(with_valid=True)
    run_dir, calls = _run(tmp_path, monkeypatch, data)
    # first the validation split (its training part, watching its held-out part), then the full
    # training set with no held-out data at all; the test sessions are never handed to fit
    assert calls == [
        (data.valid_train.fingerprint(), data.valid_test.fingerprint()),
        (data.train.fingerprint(), None),
    ]
    selection = pd.read_csv(run_dir / "history" / "selection" / "narm.csv")
    assert selection["epoch"].tolist() == [1, 2, 3, 4]  # NARM has no patience: all 4 watched
    chosen = int(np.argmax(selection["valid_mrr20"].to_numpy())) + 1  # the first best
    done = io.read_json(run_dir / "done" / "narm.json")
    record = done["config"]["epoch_selection"]
    assert record["epochs"] == chosen and record["max_epochs"] == 4
    assert record["chosen_on"] == "validation split" and record["trained_epochs"] == 4
    assert done["config"]["params"]["n_epochs"] == chosen  # what the row was trained with
    assert len(pd.read_csv(run_dir / "history" / "narm.csv")) == chosen
    config = io.read_json(run_dir / "run.json")["config"]
    assert tuning_texts({"config": config})["narm"].endswith(
        f"; {chosen} of at most 4 epochs, chosen on valid"
    )
    assert not (run_dir / "training").exists()  # both training files removed when done


def test_without_a_validation_split_every_epoch_is_trained_and_said(tmp_path, monkeypatch, caplog):
    data = _dataset(with_valid=False)
    with caplog.at_level(logging.WARNING, logger="benchmark.runner"):
        run_dir, calls = _run(tmp_path, monkeypatch, data)
    assert calls == [(data.train.fingerprint(), None)]
    assert "narm: tiny has no validation split to choose the epoch count on; all 4 are trained" in (
        caplog.text
    )
    config = io.read_json(run_dir / "run.json")["config"]
    assert config["narm"]["params"]["n_epochs"] == 4
    assert tuning_texts({"config": config})["narm"].endswith(
        "; all 4 epochs (no validation split to choose on)"
    )


def test_which_rows_select_their_epochs():
    assert NARM().selects_epochs and SRGNN().selects_epochs  # best epoch kept by their code
    assert GRU4RecRecBole().selects_epochs  # RecBole always stops early
    assert not STAMP().selects_epochs and not SASRec().selects_epochs  # fixed epochs
    assert STAMP(patience=2).selects_epochs  # a patience asks for selection
    refit = NARM(hidden_size=7, n_epochs=30).with_epochs(6)
    assert refit.n_epochs == 6 and refit.hidden_size == 7 and not hasattr(refit, "history_")


def test_recbole_keeps_the_last_of_tied_best_epochs():
    model = GRU4RecRecBole()
    model.history_ = [{"valid_mrr10": v} for v in (0.1, 0.3, 0.3, 0.2)]
    assert model.chosen_epochs() == 3  # ">=": a tie replaces the best, as RecBole's early_stopping
    model.history_ = []
    with pytest.raises(ValueError, match="needs a fit given valid"):
        model.chosen_epochs()
