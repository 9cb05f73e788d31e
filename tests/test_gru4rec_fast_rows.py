"""GRU4Rec's compiled CPU path (``impl="numba"``, ``algorithms/gru4rec/kernels.py``) against the
torch ops it replaces (``impl="torch"``, the reference).

The sparse row update merges duplicate rows itself (targets, samples and inputs share rows), so
the duplicate cases are checked by hand first, then on random batches, then whole trainings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.gru4rec import GRU4Rec, kernels
from algorithms.gru4rec.gru import gru_step, gru_step_backward, recurrent_candidate_grad
from algorithms.gru4rec.optimizer import EPS, DenseAdagradM, SparseAdagradM

pytestmark = pytest.mark.skipif(not kernels.NUMBA_AVAILABLE, reason="needs numba")

CPU = torch.device("cpu")
F32 = np.float32


# ----------------------------------------------------------------------------- by hand
def _opt(momentum: float) -> SparseAdagradM:
    """2 rows x 2 columns ([weight, bias]); parameters 1, accumulators 5, velocities 0.2."""
    opt = SparseAdagradM(torch.ones(2, 2), lr=0.3, momentum=momentum)
    opt.acc.fill_(5.0)
    if opt.vel is not None:
        opt.vel.fill_(0.2)
    return opt


# With acc 5, lr 0.3, mu 0.5, v 0.2: a summed gradient g = 2 gives acc 9, u = 2/3,
# v = 0.5 * 0.2 - 0.3 * 2/3 = -0.1, p = 0.9 (without momentum p = 1 - 0.2 = 0.8);
# g = -2 gives v = 0.3, p = 1.3 (0.8 -> 1.2); g = 0 keeps acc 5, v = 0.1, p = 1.1 (1.0).
MOVED = {2.0: (0.9, 9.0, -0.1), -2.0: (1.3, 9.0, 0.3), 0.0: (1.1, 5.0, 0.1)}
MOVED_NO_MOMENTUM = {2.0: (0.8, 9.0), -2.0: (1.2, 9.0), 0.0: (1.0, 5.0)}
UNTOUCHED = (1.0, 5.0, 0.2)

CASES = {
    # name: (rows1, rows2, grads, rows_b, grads_b, expected {(row, col): summed gradient})
    # Two targets share row 0: [1, .5] + [1, 1.5] = [2, 2]; row 1 is not touched.
    "two-targets-one-row": ([0, 0], [], [[1, 0.5], [1, 1.5]], [], None, {(0, 0): 2, (0, 1): 2}),
    # A sample equals a target (row 1): [1.5, .5] + [.5, 1.5]; row 0 is a target with [-2, 0].
    "sample-equals-target": (
        [1, 0],
        [1],
        [[1.5, 0.5], [-2, 0], [0.5, 1.5]],
        [],
        None,
        {(1, 0): 2, (1, 1): 2, (0, 0): -2, (0, 1): 0},
    ),
    # Input rows (weight column only) 0 and 1; row 0 is also a target: [1, 2] + [1, -] = [2, 2].
    # Row 1 is only an input: its bias column (parameter, accumulator, velocity) stays.
    "input-equals-output": (
        [0],
        [],
        [[1, 2]],
        [0, 1],
        [[1], [2]],
        {(0, 0): 2, (0, 1): 2, (1, 0): 2},
    ),
}


def _fast_update(opt: SparseAdagradM, rows1, rows2, grads, rows_b, grads_b) -> None:
    opt.update_rows(
        np.array(rows1, dtype=np.int64),
        np.array(grads, dtype=F32).reshape(-1, 2),
        np.array(rows2, dtype=np.int64),
        np.array(rows_b, dtype=np.int64),
        None if grads_b is None else np.array(grads_b, dtype=F32),
    )


def _torch_update(opt: SparseAdagradM, rows1, rows2, grads, rows_b, grads_b) -> None:
    """The reference: one gradient row per occurrence, input rows padded with a zero bias
    gradient and flagged as not using the last column."""
    rows = rows1 + rows2 + rows_b
    full = [list(g) for g in grads] + [list(g) + [0.0] for g in grads_b or []]
    last_col = [1.0] * (len(rows1) + len(rows2)) + [0.0] * len(rows_b)
    opt.step(torch.tensor(rows), torch.tensor(full), last_col=torch.tensor(last_col))


@pytest.mark.parametrize("momentum", [0.5, 0.0])
@pytest.mark.parametrize("update", [_fast_update, _torch_update], ids=["numba", "torch"])
@pytest.mark.parametrize("case", list(CASES))
def test_duplicate_rows_update_by_hand(case: str, update, momentum: float) -> None:
    rows1, rows2, grads, rows_b, grads_b, summed = CASES[case]
    opt = _opt(momentum)
    update(opt, rows1, rows2, grads, rows_b, grads_b)
    for row in range(2):
        for col in range(2):
            got = (float(opt.param[row, col]), float(opt.acc[row, col]))
            if momentum:
                got += (float(opt.vel[row, col]),)
                want = MOVED[summed[(row, col)]] if (row, col) in summed else UNTOUCHED
            else:
                want = MOVED_NO_MOMENTUM[summed[(row, col)]] if (row, col) in summed else (1, 5)
            assert got == pytest.approx(want, abs=1e-6), (row, col)
    if update is _fast_update:  # the compiled update's scratch map is reset for the next step
        assert (opt._first == -1).all()


# ----------------------------------------------------------------------------- random
@pytest.mark.parametrize("momentum", [0.3, 0.0])
def test_row_update_matches_the_torch_reference_on_random_batches(momentum: float) -> None:
    rng = np.random.default_rng(5)
    init = torch.tensor(rng.normal(size=(40, 7)), dtype=torch.float32)
    fast = SparseAdagradM(init, lr=0.2, momentum=momentum)
    ref = SparseAdagradM(init, lr=0.2, momentum=momentum, layout="unique")
    for _ in range(30):  # rows from a small range: many duplicates within and across parts
        n1, n2, nb = rng.integers(1, 12), rng.integers(0, 30), rng.integers(0, 12)
        rows1, rows2, rows_b = (rng.integers(0, 40, size=k) for k in (n1, n2, nb))
        grads = rng.normal(size=(n1 + n2, 7)).astype(F32)
        grads_b = rng.normal(size=(nb, 6)).astype(F32)
        full = np.concatenate([grads, np.pad(grads_b, ((0, 0), (0, 1)))])
        last_col = np.r_[np.ones(n1 + n2), np.zeros(nb)].astype(F32)
        ref.step(
            torch.tensor(np.r_[rows1, rows2, rows_b]),
            torch.tensor(full),
            last_col=torch.tensor(last_col),
        )
        fast.update_rows(rows1, grads.copy(), rows2, rows_b, grads_b.copy())
        torch.testing.assert_close(fast.table, ref.table, atol=1e-6, rtol=1e-5)
    assert (fast._first == -1).all()


def test_gather_deduplicates_scored_items_and_columns_map_back() -> None:
    # Targets [3, 1, 3], samples [1, 4, 3]: distinct items 3, 1, 4 in order of first occurrence.
    table = np.arange(6 * 2 * 3, dtype=F32).reshape(6, 2, 3)
    first = np.full(6, -1, dtype=np.int64)
    targets, samples = np.array([3, 1, 3]), np.array([1, 4, 3])
    log_count = np.arange(6, dtype=F32) + 10
    log_weight = np.arange(6, dtype=F32) + 20
    rows, w_u, col, shift = (
        np.empty(6, np.int64),
        np.empty((6, 3), F32),
        np.empty(6, np.int64),
        np.empty(6, F32),
    )
    inputs, x, mask = np.array([4, 4]), np.empty((2, 2), F32), np.array([[2, 0], [1, 1]], F32)
    u = kernels.gather_rows(
        table, first, targets, samples, log_count, log_weight, F32(0.5), rows, w_u, col, shift,
        inputs, x, mask,
    )  # fmt: skip
    assert u == 3 and rows[:3].tolist() == [3, 1, 4] and (first == -1).all()
    np.testing.assert_array_equal(w_u[:3], table[[3, 1, 4], 0])
    assert col.tolist() == [0, 1, 0, 1, 2, 0]
    # targets shift by logq * log_count, samples by logq * log_weight (item 3: 6.5 vs 11.5)
    np.testing.assert_allclose(shift, [6.5, 5.5, 6.5, 10.5, 12.0, 11.5])
    np.testing.assert_array_equal(x, table[4, 0, :2] * mask)
    scores_u = np.array([[1.0, 2.0, 3.0]], F32)
    out = np.empty((1, 6), F32)
    kernels.expand_columns(scores_u, col[:6], shift, out)
    np.testing.assert_allclose(out[0], [1 - 6.5, 2 - 5.5, 1 - 6.5, 2 - 10.5, 3 - 12.0, 1 - 11.5])
    d_u = np.full((1, 3), 99.0, F32)
    kernels.merge_columns(np.array([[1, 2, 3, 4, 5, 6]], F32), col[:6], d_u)
    np.testing.assert_array_equal(d_u[0], [1 + 3 + 6, 2 + 4, 5])


@pytest.mark.parametrize("momentum", [0.4, 0.0])
def test_fused_dense_step_matches_the_torch_step(momentum: float) -> None:
    shapes = {"a": (3, 5), "b": (7,)}
    fast, ref = (DenseAdagradM(shapes, 0.1, momentum, CPU) for _ in range(2))
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(fast.flat.shape, generator=gen)
    fast.flat.copy_(start)
    ref.flat.copy_(start)
    for _ in range(5):
        g = torch.randn(fast.grad.shape, generator=gen)
        fast.grad.copy_(g)
        ref.grad.copy_(g)
        fast.fused_step()
        ref.step()
        torch.testing.assert_close(fast.flat, ref.flat, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fast.acc, ref.acc, atol=1e-6, rtol=1e-5)
    assert float(fast.acc.min()) >= EPS


@pytest.mark.parametrize("dropout", [False, True])
def test_fused_gru_backward_matches_gru_py(dropout: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    n, size = 5, 4
    h, gx = torch.randn(n, size, generator=gen), torch.randn(n, 3 * size, generator=gen)
    w_rz, w_c = torch.randn(size, 2 * size, generator=gen), torch.randn(size, size, generator=gen)
    b_h, d_out = torch.randn(3 * size, generator=gen), torch.randn(n, size, generator=gen)
    mask = (torch.rand(n, size, generator=gen) > 0.3).float() / 0.7 if dropout else None

    _, cache = gru_step(h, gx, w_rz, w_c, b_h)
    d_ref = d_out * mask if mask is not None else d_out
    ref_dgx = gru_step_backward(cache, d_ref, w_c, torch.empty(n, 3 * size))
    _, ref_dcr = recurrent_candidate_grad(cache, ref_dgx)

    mask_np = np.zeros((0, 0), F32) if mask is None else mask.numpy()
    h, rz, _, gh_c, c = cache
    dgx, d_cr = torch.empty(n, 3 * size), torch.empty(n, size)
    grad_bx, grad_bh = torch.full((3 * size,), 9.0), torch.full((3 * size,), 9.0)
    kernels.gru_backward(
        d_out.numpy(), mask_np, h.numpy(), rz.numpy(), gh_c.numpy(), c.numpy(), dgx.numpy(),
        d_cr.numpy(), grad_bx.numpy(), grad_bh.numpy(),
    )  # fmt: skip
    torch.testing.assert_close(dgx, ref_dgx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d_cr, ref_dcr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_bx, ref_dgx.sum(0), atol=1e-5, rtol=1e-5)
    ref_bh = torch.cat([ref_dgx[:, : 2 * size].sum(0), ref_dcr.sum(0)])
    torch.testing.assert_close(grad_bh, ref_bh, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- choice
def test_impl_choice_and_fallback(monkeypatch) -> None:
    assert kernels.resolve_impl(None, "cpu", "unique") == "numba"
    assert kernels.resolve_impl(None, "cpu", "static") == "torch"
    assert kernels.resolve_impl(None, "cuda", "static") == "torch"
    assert kernels.resolve_impl("torch", "cpu", "unique") == "torch"
    with pytest.raises(ValueError, match="impl"):
        kernels.resolve_impl("cython", "cpu", "unique")
    with pytest.raises(ValueError, match="CPU"):
        kernels.resolve_impl("numba", "cuda", "static")
    monkeypatch.setattr(kernels, "DEFAULT_IMPL", "torch")
    assert kernels.resolve_impl(None, "cpu", "unique") == "torch"
    monkeypatch.setattr(kernels, "DEFAULT_IMPL", None)
    monkeypatch.setattr(kernels, "NUMBA_AVAILABLE", False)  # as without numba installed
    assert kernels.resolve_impl(None, "cpu", "unique") == "torch"
    with pytest.raises(ValueError, match="numba"):
        kernels.resolve_impl("numba", "cpu", "unique")


# ----------------------------------------------------------------------------- whole trainings
def _sessions():
    from datasets.sessions import from_lists

    rng = np.random.default_rng(11)
    p = 1.0 / np.arange(1, 41)
    sessions = [list(rng.choice(40, size=rng.integers(2, 8), p=p / p.sum())) for _ in range(120)]
    return from_lists(sessions, n_items=40)


FITS = {
    # the two RSC15 settings in small: README (no momentum) and parameter file (momentum)
    "readme-like": dict(momentum=0.0, dropout_embed=0.1, dropout_hidden=0.0, sample_alpha=0.75),
    "paramfile-like": dict(momentum=0.2, dropout_embed=0.0, dropout_hidden=0.4, sample_alpha=0.5),
    "bprmax-two-layers": dict(
        loss="bpr-max", final_act="elu-0.5", layers=[12, 10], momentum=0.3, logq=0.0
    ),
    "separate-embedding": dict(embedding=6, momentum=0.3, dropout_embed=0.2),
    "onehot-reset-before": dict(embedding=0, cell="reset-before", momentum=0.3, logq=0.0),
}


@pytest.mark.parametrize("case", list(FITS))
def test_a_short_fit_trains_the_same_model_with_either_impl(case: str, monkeypatch) -> None:
    train = _sessions()
    results = {}
    for impl in ("torch", "numba"):
        monkeypatch.setattr(kernels, "DEFAULT_IMPL", impl)
        params = dict(
            layers=[10], n_sample=16, sample_cache_size=4096, batch_size=8, n_epochs=3,
            learning_rate=0.1, device="cpu", seed=3, n_threads=1,
        )  # fmt: skip
        params.update(FITS[case])
        model = GRU4Rec(**params).fit(train)
        results[impl] = (model.history_, {k: v.clone() for k, v in model.network_.params.items()})
    (h_torch, p_torch), (h_numba, p_numba) = results["torch"], results["numba"]
    assert [row["loss"] for row in h_numba] == pytest.approx(
        [row["loss"] for row in h_torch], rel=1e-4
    )
    for name in p_torch:
        torch.testing.assert_close(p_numba[name], p_torch[name], atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("case", ["xe-shared-logq", "bprmax-embedding", "top1max-onehot-2layers"])
def test_the_torch_impl_still_matches_the_autograd_reference(case: str, monkeypatch) -> None:
    """The reference test (tests/test_gru4rec_reference.py) runs the default, the numba step, in
    the "unique" layout; here the torch step is held to the same standard."""
    import test_gru4rec_reference as reference_test

    monkeypatch.setattr(kernels, "DEFAULT_IMPL", "torch")
    fast, _, _ = reference_test._pair(case, "unique")
    assert fast.impl == "torch"
    reference_test.test_fast_trainer_matches_the_reference_step_by_step(
        case, "unique", "reset-after"
    )


def test_the_reference_test_runs_the_numba_step() -> None:
    import test_gru4rec_reference as reference_test

    fast, _, _ = reference_test._pair("xe-shared-logq", "unique")
    assert fast.impl == "numba"


# ----------------------------------------------------------------------------- sampling
def test_fast_sample_search_draws_exactly_the_same_items() -> None:
    from algorithms.gru4rec.sampling import SampleCache

    rng = np.random.default_rng(4)
    support = np.floor(rng.pareto(1.0, size=500) * 5)  # zeros (never drawn) and a long tail
    caches = [
        SampleCache(
            support, 0.5, 64, 64 * 50, CPU, torch.Generator().manual_seed(9), fast_search=fast
        )
        for fast in (False, True)
    ]
    for _ in range(120):  # 2 refills and a bit
        (items_ref, logw_ref), (items, logw) = (cache.next() for cache in caches)
        assert torch.equal(items, items_ref)
        assert logw is None  # looked up by the fast step itself:
        assert torch.equal(caches[1].item_log_weight[items], logw_ref)
    # The edges: u on a cdf value exactly, 0, just below 1, and within flat (zero-weight) runs.
    cache = caches[1]
    cdf = cache._cdf_np
    u = np.r_[cdf[:-1], 0.0, np.nextafter(1.0, 0.0), np.nextafter(cdf[:-1], 0.0), rng.random(999)]
    got = np.empty(len(u), dtype=np.int64)
    kernels.search_right(cdf, cache._starts, u, got)
    want = torch.searchsorted(torch.tensor(cdf), torch.tensor(u), right=True).clamp_(
        max=len(cdf) - 1
    )
    np.testing.assert_array_equal(got, want.numpy())
    assert support[got].min() > 0


def test_training_falls_back_to_torch_without_numba() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"  # import numba -> ImportError
        "from algorithms.gru4rec import GRU4Rec, kernels\n"
        "from datasets.sessions import from_lists\n"
        "assert not kernels.NUMBA_AVAILABLE\n"
        "assert kernels.resolve_impl(None, 'cpu', 'unique') == 'torch'\n"
        "m = GRU4Rec(layers=[4], n_sample=4, sample_cache_size=64, batch_size=2, n_epochs=1,\n"
        "            device='cpu', n_threads=1).fit(from_lists([[0, 1, 2], [2, 1], [3, 0]], 4))\n"
        "print(m.history_[0]['loss'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
