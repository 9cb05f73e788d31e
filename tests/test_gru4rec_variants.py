"""All three GRU4Rec variants: save/load, resume, on_epoch, presets, real-data learning, perf."""

import json

import numpy as np
import pytest
import torch

from benchmark.evaluator import evaluate
from benchmark.metrics import recall_at
from benchmark.registry import get_algorithm
from datasets.sessions import UNKNOWN, from_lists

VARIANTS = ["gru4rec-keras", "gru4rec-tf", "gru4rec-recbole"]
TINY = {
    "gru4rec-keras": {"units": 16, "batch_size": 4},
    "gru4rec-tf": {"rnn_size": 16, "batch_size": 4},
    "gru4rec-recbole": {"embedding_size": 8, "hidden_size": 16, "batch_size": 16},
}


@pytest.fixture(scope="module")
def train():
    rng = np.random.default_rng(0)
    return from_lists(
        [[int(x) for x in rng.integers(0, 9, int(rng.integers(2, 7)))] for _ in range(40)], 9
    )


def _model(name, **extra):
    return get_algorithm(name)(**{**TINY[name], "device": "cpu", "seed": 3, **extra})


def _scores(model, sessions):
    state = model.init_state(len(sessions[0]))
    out = []
    for t, items in enumerate(sessions):
        s = model.step(state, np.asarray(items), np.full(len(items), t == 0))
        out.append(torch.as_tensor(s).cpu().numpy())
    return np.stack(out)


CLICKS = [[0, 3, UNKNOWN], [4, UNKNOWN, 1], [8, 8, 2]]


@pytest.mark.parametrize("name", VARIANTS)
def test_save_load_gives_the_same_scores(name, train, tmp_path):
    model = _model(name, n_epochs=2).fit(train)
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt")
    assert loaded.get_params() == model.get_params() and loaded.history_ == model.history_
    np.testing.assert_array_equal(_scores(loaded, CLICKS), _scores(model, CLICKS))
    assert _scores(model, CLICKS).shape == (3, 3, train.n_items)


@pytest.mark.parametrize("name", VARIANTS)
def test_resume_gives_the_uninterrupted_result(name, train, tmp_path):
    whole = _model(name, n_epochs=3).fit(train)
    seen = []
    part = _model(name, n_epochs=1).fit(
        train, resume_file=tmp_path / "r.pt", on_epoch=lambda m, e: seen.append(e)
    )
    assert seen == [1] and (tmp_path / "r.pt").is_file()
    resumed = _model(name, n_epochs=3).fit(
        train, resume_file=tmp_path / "r.pt", on_epoch=lambda m, e: seen.append(e)
    )
    assert seen == [1, 2, 3]  # epoch 1 came from the file
    for k, v in whole.network_.items():
        torch.testing.assert_close(resumed.network_[k], v, rtol=0, atol=0)
    assert [r["loss"] for r in resumed.history_] == [r["loss"] for r in whole.history_]
    assert not torch.equal(next(iter(part.network_.values())), next(iter(whole.network_.values())))


@pytest.mark.parametrize("name", VARIANTS)
def test_resume_file_of_other_hyperparameters_is_not_continued(name, train, tmp_path):
    _model(name, n_epochs=1).fit(train, resume_file=tmp_path / "r.pt")
    other = _model(name, n_epochs=1, learning_rate=0.01).fit(train, resume_file=tmp_path / "r.pt")
    fresh = _model(name, n_epochs=1, learning_rate=0.01).fit(train)
    for k, v in fresh.network_.items():
        torch.testing.assert_close(other.network_[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_seed_decides_the_result(name, train):
    a, b = _model(name, n_epochs=1).fit(train), _model(name, n_epochs=1).fit(train)
    c = _model(name, n_epochs=1, seed=4).fit(train)
    k = next(iter(a.network_))
    assert torch.equal(a.network_[k], b.network_[k]) and not torch.equal(
        a.network_[k], c.network_[k]
    )


@pytest.mark.parametrize("name", VARIANTS)
def test_presets_build_valid_models(name):
    from benchmark.config import load_preset, resolve

    for preset in ("paper-oob", "fixed"):
        params = load_preset(name, preset)
        get_algorithm(name)(**params).validate()
        [spec] = resolve([f"{name}@{preset}"], {})
        assert all(spec.params[k] == v for k, v in params.items())
    assert load_preset(name, "paper-oob")["n_epochs"] == 5


def test_fixed_presets_switch_the_bugs_off():
    from benchmark.config import load_preset

    keras = load_preset("gru4rec-keras", "fixed")
    assert not any(keras[k] for k in ("zero_refilled_every_step", "stop_when_sessions_run_out",
                                       "keep_state_across_epochs"))  # fmt: skip
    assert load_preset("gru4rec-keras", "paper-oob")["batch_size"] == 48
    assert not load_preset("gru4rec-tf", "fixed")["stop_when_sessions_run_out"]


# One epoch on the real rsc15-100k sample (skipped where ../shared/data is absent). Small
# batches / a larger RecBole step size give the one epoch enough updates to learn.
REAL = {
    "gru4rec-keras": {"batch_size": 64},
    "gru4rec-tf": {},
    "gru4rec-recbole": {"batch_size": 128, "learning_rate": 0.01, "max_seq_length": 10},
}


@pytest.mark.parametrize("name", VARIANTS)
def test_one_epoch_on_rsc15_100k_beats_pop(name, shared_data):
    from algorithms.pop import Pop
    from datasets import load_dataset

    data = load_dataset("rsc15-100k", data_dir=shared_data)
    pop = recall_at(evaluate(Pop().fit(data.train), data.test, progress=False).rank, 20)
    model = get_algorithm(name)(**REAL[name], n_epochs=1, device="cpu", seed=0).fit(data.train)
    got = recall_at(evaluate(model, data.test, progress=False).rank, 20)
    assert pop < 0.1 and got > 2 * pop, (name, got, pop)


def test_variants_speed_script_on_tiny_data(tmp_path, monkeypatch):
    from benchmark.perf import variants_speed

    train = from_lists([[k % 5, (k + 1) % 5, (k + 2) % 5] for k in range(30)], 5)

    class Data:
        pass

    data = Data()
    data.train = train
    monkeypatch.setattr(variants_speed, "load_dataset", lambda name, data_dir: data)
    out = tmp_path / "speed.json"
    variants_speed.main(["--dataset", "tiny", "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [v["variant"] for v in result["variants"]] == VARIANTS
    for v in result["variants"]:
        assert v["events_per_s"] > 0 and len(v["loadavg_after"]) == 3
    # 30 sessions of 3 clicks, 30 slots: every session starts at once, so even the sources that
    # stop when no unused session is left train every pair; RecBole trains every prefix
    assert [v["events"] for v in result["variants"]] == [60, 60, 60]


@pytest.mark.parametrize("name", VARIANTS)
def test_cpu_training_runs_torchs_deterministic_kernels_and_restores_the_flag(name, train):
    # algorithms.base.cpu_training, shared with the neural harness
    seen = []

    def record(model, epoch):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return {}

    assert not torch.are_deterministic_algorithms_enabled()
    _model(name, n_epochs=2).fit(train, on_epoch=record)
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()
