"""The evaluator's fast paths give exactly the ranks of the plain ones.

- ``count_rows``: numba's one-pass count (where installed) and numpy's blocked count against
  the definition, on ties, NaN, infinities and signed zeros;
- a float CPU tensor ranked as the numpy array it is, against torch's own counting;
- ``rank.buffer``: the same memory at every step;
- GRU4Rec's and the neural models' ``step_ranked`` (scores written into that buffer) against
  their plain ``step`` in every tie mode, over a batch that refills and shrinks, with unknown
  clicks (and prefixes that are still empty);
- ``benchmark.perf.eval_speed`` end to end on the synthetic data (what it records, not how fast).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import benchmark.evaluator as evaluator
from algorithms.gru4rec import GRU4Rec
from algorithms.neural import NARM, SRGNN, STAMP, SASRec
from benchmark.evaluator import TIE_MODES, count_rows, evaluate, rank_targets
from datasets.sessions import UNKNOWN, from_lists

COMPILED = [
    pytest.param(True, marks=pytest.mark.skipif(not evaluator.COMPILED, reason="no numba")),
    False,
]


def _awkward_scores(dtype, seed=0, shape=(60, 257)):
    """Few distinct values (ties everywhere), NaN, +-inf, +-0.0."""
    rng = np.random.default_rng(seed)
    values = np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, 0.5, 2.0, np.inf, np.nan], dtype=dtype)
    return values[rng.integers(0, len(values), shape)], values


@pytest.mark.parametrize("compiled", COMPILED, ids=["compiled", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strict", [False, True])
def test_count_rows_is_the_definition(compiled, dtype, strict, monkeypatch):
    monkeypatch.setattr(evaluator, "COMPILED", compiled)
    monkeypatch.setattr(evaluator, "_COUNT_BLOCK", 1000)  # several blocks on the numpy path
    scores, values = _awkward_scores(dtype)
    threshold = values[np.random.default_rng(1).integers(0, len(values) - 1, len(scores))]
    want = [sum((x > t) if strict else (x >= t) for x in row) for row, t in zip(scores, threshold)]
    got = count_rows(scores, threshold, strict=strict)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    # a view with a row stride (a chunk of a larger array) counts the same
    wide = np.zeros((len(scores), scores.shape[1] + 5), dtype=dtype)
    wide[:, 2:-3] = scores
    np.testing.assert_array_equal(count_rows(wide[:, 2:-3], threshold, strict=strict), want)


@pytest.mark.parametrize("mode", TIE_MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_cpu_tensor_ranks_as_torch_counts(mode, dtype, monkeypatch):
    scores, _ = _awkward_scores(np.float64, seed=2)
    targets = np.random.default_rng(3).integers(0, scores.shape[1], len(scores))
    scores[np.arange(len(scores)), targets] = 0.5  # a number: NaN target scores are an error
    scores[:, 0] = 0.5  # (and where an unknown target is looked up)
    targets[::7] = UNKNOWN
    t = torch.tensor(scores, dtype=dtype)
    got = rank_targets(t, targets, mode)  # as numpy
    monkeypatch.setattr(evaluator, "_numpy_view_ok", lambda s: False)  # torch's own counting
    np.testing.assert_array_equal(got, rank_targets(t, targets, mode))
    assert np.isinf(got[::7]).all()


def test_the_buffer_is_the_same_memory_at_every_step():
    ranker = evaluator._Ranker(None, np.zeros(4, dtype=np.int64), 6, "conservative", {})
    a = ranker.buffer(4, torch.float32, "cpu")
    b = ranker.buffer(3, torch.float32, "cpu")
    assert a.shape == (4, 6) and b.shape == (3, 6) and b.data_ptr() == a.data_ptr()
    c = ranker.buffer(2, np.float64)
    assert isinstance(c, np.ndarray) and c.shape == (2, 6)
    assert ranker.buffer(2, np.float64).ctypes.data == c.ctypes.data


class StepOnly:
    """A model (or the kNN reference scorer) seen through ``step`` only: a fresh score matrix a
    step, no ``step_ranked``; tests/test_knn_fast.py uses it too."""

    name = "plain"

    def __init__(self, model):
        self.model = model

    def init_state(self, n_slots):
        return self.model.init_state(n_slots)

    def step(self, state, items, reset):
        return self.model.step(state, items, reset)

    def select_state(self, state, keep):
        return self.model.select_state(state, keep)


N_ITEMS = 12


def _data():
    rng = np.random.default_rng(0)
    train = from_lists(
        [rng.integers(0, N_ITEMS, rng.integers(2, 8)).tolist() for _ in range(120)], N_ITEMS
    )
    test = [rng.integers(-1, N_ITEMS, rng.integers(2, 9)).tolist() for _ in range(40)]
    test += [[UNKNOWN, UNKNOWN, 3, 4], [UNKNOWN, 5]]  # prefixes that start empty
    return train, from_lists(test, N_ITEMS)


CPU = {"device": "cpu", "seed": 1, "n_threads": 1, "n_epochs": 1}
TORCH_MODELS = {
    "gru4rec": lambda: GRU4Rec(layers=8, n_sample=8, batch_size=8, sample_cache_size=4096, **CPU),
    "narm": lambda: NARM(embedding_size=8, hidden_size=8, batch_size=32, **CPU),
    "stamp": lambda: STAMP(embedding_size=8, batch_size=32, **CPU),
    "sr-gnn": lambda: SRGNN(hidden_size=8, batch_size=32, **CPU),
    "sasrec": lambda: SASRec(hidden_size=8, batch_size=16, **CPU),
}


@pytest.mark.parametrize("name", sorted(TORCH_MODELS))
def test_step_ranked_gives_the_ranks_of_step(name):
    train, test = _data()
    model = TORCH_MODELS[name]()
    model.fit(train)
    assert hasattr(model, "step_ranked")
    for mode in TIE_MODES:
        want = evaluate(StepOnly(model), test, tie_mode=mode, batch_size=7, progress=False)
        got = evaluate(model, test, tie_mode=mode, batch_size=7, progress=False)
        np.testing.assert_array_equal(got.rank, want.rank)
        np.testing.assert_array_equal(got.session, want.session)
        np.testing.assert_array_equal(got.position, want.position)


@pytest.mark.parametrize("name", ["gru4rec", "narm"])
def test_scores_written_into_a_buffer_are_the_same_values(name):
    train, _ = _data()
    model = TORCH_MODELS[name]()
    model.fit(train)
    net = model.network_
    if name == "gru4rec":
        vectors = torch.randn(5, net.layer_sizes[-1])
    else:
        items = torch.tensor([[1, 2, 3], [4, 0, 0]])
        vectors = net.session_vectors(items, items > 0).detach()
    into = torch.full((len(vectors), N_ITEMS), np.nan)
    with torch.no_grad():
        assert net.scores(vectors, into=into) is into
        assert torch.equal(into, net.scores(vectors))


def test_the_eval_speed_script_records_every_evaluation(tmp_path):
    from benchmark.perf import eval_speed

    out = tmp_path / "speed.json"
    eval_speed.main(
        ["--dataset", "synthetic", "--algorithms", "pop,sknn,narm,dense-random",
         "--max-test-sessions", "30", "--epochs", "1", "--fit-sessions", "200",
         "--repeats", "2", "--threads", "1", "--torch-threads", "1", "--out", str(out)]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert [r["algorithm"] for r in result["results"]] == ["pop", "sknn", "narm", "dense-random"]
    assert result["counts"]["fit"]["sessions"] == 200
    assert result["machine"]["torch_threads"] == 1
    predictions = result["counts"]["test"]["predictions"]
    for row in result["results"]:
        assert len(row["evaluations"]) == 2
        for run in row["evaluations"]:
            assert run["predictions"] == predictions
            assert len(run["loadavg_before"]) == len(run["loadavg_after"]) == 3
    narm = result["results"][2]
    assert narm["hyperparameters"]["n_epochs"] == 1
