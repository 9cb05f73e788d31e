"""GRU4Rec end to end: exact gradients, hidden-state resets, learning, checkpoints, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.gru4rec import GRU4Rec
from algorithms.gru4rec.batching import plan_epoch
from algorithms.gru4rec.losses import LOSSES
from algorithms.gru4rec.model import init_params
from algorithms.gru4rec.trainer import TrainConfig, Trainer
from benchmark.evaluator import evaluate
from benchmark.metrics import mrr_at, recall_at
from benchmark.registry import get_algorithm
from datasets.sessions import UNKNOWN, Sessions, from_lists

CPU = torch.device("cpu")
SMALL_CACHE = 4096  # the default pre-draws 10M samples: seconds per fit, too slow for tests


def _config(**overrides) -> TrainConfig:
    base = dict(
        loss="cross-entropy",
        final_act="softmax",
        n_sample=0,
        sample_alpha=0.5,
        sample_cache_size=1000,
        logq=0.0,
        bpreg=0.5,
        learning_rate=0.1,
        momentum=0.0,
        dropout_embed=0.0,
        dropout_hidden=0.0,
    )
    return TrainConfig(**{**base, **overrides})


def _disjoint_sessions(lengths: list[int]) -> Sessions:
    """Session s holds items 10*s, 10*s+1, ...: an input item names its session and position."""
    return from_lists(
        [[10 * s + k for k in range(n)] for s, n in enumerate(lengths)], n_items=10 * len(lengths)
    )


def _trainer(
    train: Sessions,
    layers: list[int],
    embedding,
    config: TrainConfig,
    batch_size: int,
    seed: int = 0,
    layout: str = "unique",
) -> Trainer:
    gen = torch.Generator().manual_seed(seed)
    params = init_params(train.n_items, layers, embedding, gen, CPU)
    support = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
    return Trainer(
        params, embedding, config, support, plan_epoch(train, batch_size), CPU, gen, layout=layout
    )


# ------------------------------------------------------------------ session-parallel resets
@pytest.mark.parametrize("layout", ["unique", "static"])
@pytest.mark.parametrize("embedding", ["shared", 0, 6])
def test_session_parallel_hidden_states_equal_each_session_alone(embedding, layout) -> None:
    lengths = [3, 2, 5, 2, 4, 6, 2, 3, 7, 2]
    train = _disjoint_sessions(lengths)
    trainer = _trainer(
        train, [8, 5], embedding, _config(learning_rate=0.0), batch_size=3, layout=layout
    )
    net = trainer.net
    # Each session alone: the last layer's state after each of its clicks (batch of one).
    alone = {}
    for s, n in enumerate(lengths):
        hidden = [torch.zeros(1, h) for h in net.layer_sizes]
        for k in range(n - 1):
            item = 10 * s + k
            out = net.step(hidden, torch.tensor([item]), torch.tensor([k == 0]))
            alone[item] = out[0].clone()
    trainer.reset_hidden()
    seen = 0
    for t in range(trainer.plan.n_steps):
        trainer.train_step(t)
        for row, item in enumerate(trainer.plan.inputs[t, : trainer.plan.n_active[t]]):
            torch.testing.assert_close(trainer.hidden[-1][row], alone[int(item)])
            seen += 1
    assert seen == sum(n - 1 for n in lengths)
    assert trainer.plan.n_active[-1] < 3  # the tail (a shrinking batch) was exercised


# ------------------------------------------------------------------ logQ
# (Step-by-step equality with the autograd reference: tests/test_gru4rec_reference.py.)
def test_logq_subtracts_log_counts_of_targets_and_alpha_log_counts_of_samples() -> None:
    # The official correction with raw click counts c_j (not probabilities): target columns
    # lose logq * log(c_j), sample columns logq * log(c_j ** alpha). Counts in this data:
    # item 0: 1, 1: 2, 2: 3, 3: 2, 4: 1, 5: 1, 6: 1, 7: 1.
    train = from_lists([[0, 1, 2, 3], [4, 5, 1], [2, 2, 6], [7, 3]], n_items=8)
    config = _config(n_sample=4, logq=0.8, sample_alpha=0.5)
    trainer = _trainer(train, [5], "shared", config, batch_size=3)
    trainer.reset_hidden()
    seen = {}
    real = trainer.loss_fn
    trainer.loss_fn = lambda y, bpreg, norm: (
        seen.setdefault("y", y.clone()),
        real(y, bpreg, norm),
    )[1]
    captured = {}
    next_samples = trainer.samples.next
    trainer.samples.next = lambda: captured.setdefault("sample", next_samples())
    params = {k: v.clone() for k, v in trainer.net.params.items()}
    trainer.train_step(0)
    targets, sample = trainer.targets[0, :3], captured["sample"][0]
    assert targets.tolist() == [1, 5, 2]
    cols = torch.cat([targets, sample])
    o = trainer.hidden[-1]
    raw = o @ params["output.weight"][cols].T + params["output.bias"][cols]
    counts = torch.tensor([1.0, 2, 3, 2, 1, 1, 1, 1])
    shift = 0.8 * torch.cat(
        [torch.log(torch.tensor([2.0, 1.0, 3.0])), 0.5 * torch.log(counts[sample])]
    )
    torch.testing.assert_close(seen["y"], raw - shift, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ learning
def _chain(n_items: int = 30, n_sessions: int = 300, seed: int = 0) -> Sessions:
    """Deterministic chain: the item after i is always i + 1 (mod n_items)."""
    rng = np.random.default_rng(seed)
    sessions = []
    for _ in range(n_sessions):
        start, length = rng.integers(n_items), rng.integers(2, 7)
        sessions.append([(start + k) % n_items for k in range(length)])
    return from_lists(sessions, n_items)


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_learns_a_deterministic_chain(loss: str) -> None:
    chain = _chain()
    model = GRU4Rec(
        layers=24,
        loss=loss,
        n_sample=8,
        logq=0.0,
        bpreg=0.5,
        learning_rate=0.1,
        momentum=0.2,
        dropout_hidden=0.0,
        batch_size=8,
        n_epochs=3,
        device="cpu",
        seed=0,
        sample_cache_size=SMALL_CACHE,
    )
    model.fit(chain)
    ranks = evaluate(model, chain, progress=False).rank
    assert recall_at(ranks, 1) > 0.95
    assert [row["epoch"] for row in model.history_] == [1, 2, 3]
    assert all(np.isfinite(row["loss"]) and row["events_per_s"] > 0 for row in model.history_)


def test_fit_is_seeded_and_forgets_earlier_fits() -> None:
    chain = _chain(seed=1)
    kw = dict(
        layers=8,
        n_sample=4,
        batch_size=4,
        n_epochs=1,
        device="cpu",
        dropout_hidden=0.3,
        sample_cache_size=SMALL_CACHE,
    )
    a = GRU4Rec(seed=5, **kw).fit(chain)
    b = GRU4Rec(seed=5, **kw).fit(chain)
    for k, v in a.network_.params.items():
        torch.testing.assert_close(v, b.network_.params[k], rtol=0, atol=0)
    a.fit(_chain(seed=2))
    assert len(a.history_) == 1


# ------------------------------------------------------------------ inference contract
def test_unknown_input_keeps_the_hidden_state() -> None:
    model = GRU4Rec(
        layers=[6, 5],
        n_sample=4,
        batch_size=4,
        n_epochs=1,
        device="cpu",
        sample_cache_size=SMALL_CACHE,
    )
    model.fit(_chain())
    state = model.init_state(2)
    model.step(state, np.array([3, 3]), np.array([True, True]))
    before = [h.clone() for h in state]
    scores = model.step(state, np.array([UNKNOWN, 4]), np.array([False, False]))
    torch.testing.assert_close(state[0][0], before[0][0])
    assert not torch.equal(state[0][1], before[0][1])
    fresh = model.init_state(1)
    empty = model.step(fresh, np.array([UNKNOWN]), np.array([True]))  # unknown first click
    assert torch.count_nonzero(fresh[0]) == 0 and empty.shape == (1, 30)
    assert scores.shape == (2, 30) and torch.isfinite(scores).all()


def test_checkpoint_round_trip_scores_identically(tmp_path) -> None:
    chain = _chain()
    model = GRU4Rec(
        layers=[7],
        embedding=5,
        loss="top1-max",
        final_act="elu-0.5",
        logq=0.0,
        n_sample=4,
        batch_size=4,
        n_epochs=1,
        device="cpu",
        sample_cache_size=SMALL_CACHE,
    ).fit(chain)
    path = tmp_path / "gru4rec.pt"
    model.save(path)
    raw = torch.load(path, weights_only=True)  # plain dicts, tensors and numbers only
    assert raw["params"] == model.get_params() and set(raw) >= {"network", "history"}
    loaded = GRU4Rec.load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_
    np.testing.assert_array_equal(
        evaluate(loaded, chain, progress=False).rank, evaluate(model, chain, progress=False).rank
    )
    s1, s2 = model.init_state(3), loaded.init_state(3)
    for items in ([1, 2, 3], [2, UNKNOWN, 4]):
        a = model.step(s1, np.array(items), np.array([True] * 3))
        b = loaded.step(s2, np.array(items), np.array([True] * 3))
        assert torch.equal(a, b)


def test_nan_loss_raises(monkeypatch) -> None:
    def nan_loss(y, bpreg, norm=None):
        value, grad = LOSSES["bpr"](y, bpreg, norm)
        return value * float("nan"), grad

    monkeypatch.setitem(LOSSES, "cross-entropy", nan_loss)
    with pytest.raises(FloatingPointError, match="NaN"):
        GRU4Rec(
            layers=4,
            n_sample=2,
            batch_size=2,
            n_epochs=1,
            device="cpu",
            sample_cache_size=SMALL_CACHE,
        ).fit(_chain())


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(loss="hinge"), "loss"),
        (dict(layers=[0]), "layers"),
        (dict(embedding=-3), "embedding"),
        (dict(final_act="softmax", loss="bpr-max", logq=0.0), "final_act"),
        (dict(logq=1.0, loss="bpr"), "logq"),
        (dict(dropout_hidden=1.0), "dropout_hidden"),
        (dict(momentum=1.5), "momentum"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(batch_size=0), "batch_size"),
        (dict(device="tpu"), "device"),
        (dict(learning_rate=float("nan")), "learning_rate = nan"),
        (dict(cell="lstm"), "cell"),
        (dict(n_sample=4, sample_cache_size=2), "sample_cache_size"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        GRU4Rec(**kwargs).fit(_chain())


def test_registered_and_constructor_only_stores_arguments() -> None:
    assert get_algorithm("gru4rec") is GRU4Rec
    model = GRU4Rec(layers=[3, 4], seed=9)
    assert model.get_params()["layers"] == [3, 4] and model.get_params()["seed"] == 9
    assert not any(k.endswith("_") for k in vars(model))


# ------------------------------------------------------------------ CUDA (skipped without one)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_learns_the_chain_and_scores_on_the_gpu() -> None:
    chain = _chain()
    model = GRU4Rec(
        layers=24,
        n_sample=8,
        logq=1.0,
        learning_rate=0.1,
        dropout_hidden=0.0,
        batch_size=8,
        n_epochs=3,
        device="cuda",
        sample_cache_size=SMALL_CACHE,
    ).fit(chain)
    scores = model.step(model.init_state(2), np.array([1, UNKNOWN]), np.array([True, True]))
    assert scores.device.type == "cuda"
    assert recall_at(evaluate(model, chain, progress=False).rank, 1) > 0.95


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_sparse_optimizer_matches_cpu() -> None:
    from algorithms.gru4rec.optimizer import SparseAdagradM

    init = torch.randn(9, 4)
    cpu = SparseAdagradM(init, 0.1, 0.3)
    gpu = SparseAdagradM(init.cuda(), 0.1, 0.3)
    assert gpu.layout == "static"
    for rows in ([1, 1, 2], [2, 8, 8, 8]):
        grads = torch.randn(len(rows), 4)
        cpu.step(torch.tensor(rows), grads)
        gpu.step(torch.tensor(rows).cuda(), grads.cuda())
    torch.testing.assert_close(gpu.param.cpu(), cpu.param)


# ------------------------------------------------------------------ real data (slow)
@pytest.mark.slow
def test_rsc15_64_shipped_config_reaches_sr_gnn_level(shared_data) -> None:
    # configs/rsc15-64.toml [gru4rec]: the best of its 30-trial study (512 units, batch 64).
    from benchmark.config import load_tables, resolve
    from datasets import load_dataset

    data = load_dataset("rsc15-64", data_dir=shared_data)
    tables, _ = load_tables("rsc15-64", None)
    [spec] = resolve(["gru4rec"], tables)
    model = spec.build(seed=0, device="cpu").fit(data.train)
    ranks = evaluate(model, data.test, progress=False).rank
    assert len(ranks) == 55_898
    assert recall_at(ranks, 20) >= 0.70 and mrr_at(ranks, 20) >= 0.30


def test_every_preset_builds_a_valid_model() -> None:
    import tomllib

    from benchmark.config import PRESET_DIR, load_preset

    with open(PRESET_DIR / "gru4rec.toml", "rb") as f:
        names = list(tomllib.load(f))
    assert {"rsc15-best", "rsc15-bprmax", "2016-top1-100", "2016-bpr-1000"} <= set(names)
    for name in names:
        model = GRU4Rec(**load_preset("gru4rec", name))
        model.validate()
    best = load_preset("gru4rec", "rsc15-best")
    assert (
        best["loss"],
        best["embedding"],
        best["layers"],
        best["batch_size"],
        best["n_sample"],
        best["logq"],
    ) == ("cross-entropy", "shared", [100], 32, 2048, 1.0)


def test_without_a_terminal_training_logs_progress_lines(monkeypatch, caplog) -> None:
    # Every LOG_EVERY_S seconds (here: every check) a line with events done, events/s and the
    # running loss, so a long epoch in a log file is never silent.
    import logging

    from algorithms.gru4rec import epochs as epochs_module

    monkeypatch.setattr(epochs_module, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(epochs_module, "bars_enabled", lambda: False)
    with caplog.at_level(logging.INFO, logger="algorithms.gru4rec.epochs"):
        GRU4Rec(
            layers=8,
            n_sample=4,
            batch_size=4,
            n_epochs=1,
            device="cpu",
            sample_cache_size=SMALL_CACHE,
        ).fit(_chain(n_sessions=400))
    lines = [r.getMessage() for r in caplog.records if r.name == "algorithms.gru4rec.epochs"]
    assert lines and all("events/s, running loss" in line for line in lines)
    assert lines[0].startswith("epoch 1: 256/")  # the first check: 64 steps of 4 slots


def test_on_epoch_scores_the_current_weights_and_its_values_enter_the_history() -> None:
    # The caller evaluates; the model only hands itself over after every epoch. The last
    # epoch's value is the final model's, and what the callback returns is in history_.
    chain = _chain()
    seen = []

    def on_epoch(model: GRU4Rec, epoch: int) -> dict[str, float]:
        seen.append(epoch)
        return {"valid_recall1": recall_at(evaluate(model, chain, progress=False).rank, 1)}

    model = GRU4Rec(
        layers=24,
        n_sample=8,
        logq=0.0,
        learning_rate=0.1,
        batch_size=8,
        n_epochs=3,
        device="cpu",
        seed=0,
        sample_cache_size=SMALL_CACHE,
    )
    model.fit(chain, on_epoch=on_epoch)
    assert seen == [1, 2, 3]
    curve = [row["valid_recall1"] for row in model.history_]
    assert curve[-1] == recall_at(evaluate(model, chain, progress=False).rank, 1) > 0.95
    assert "on_epoch" not in model.get_params()


def test_an_exception_in_on_epoch_stops_training() -> None:
    class Stop(Exception):
        pass

    def stop_after_one(model: GRU4Rec, epoch: int) -> None:
        raise Stop(epoch)

    model = GRU4Rec(
        layers=8,
        n_sample=0,
        logq=0.0,
        batch_size=8,
        n_epochs=5,
        device="cpu",
        sample_cache_size=SMALL_CACHE,
    )
    with pytest.raises(Stop, match="1"):
        model.fit(_chain(), on_epoch=stop_after_one)
