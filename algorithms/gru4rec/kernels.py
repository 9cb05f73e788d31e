"""Compiled loops (numba) of GRU4Rec's fast CPU training step, and the choice of implementation.

A CPU training step at batch size 32 is a few hundred microseconds of arithmetic spread over
dozens of small tensor ops; half of it used to be the item-row path (deduplicating the touched
rows with ``torch.unique``, copying their [param, acc, vel] blocks out, reindexing the score
columns, merging duplicate columns, computing increments and scattering them back). The loops
here do that work in one pass each, in place, on numpy views of the torch buffers:

- :func:`gather_rows`: the scored items' ``[W | b]``, each distinct item once (a position map
  instead of ``unique``), and the input rows, straight from the optimizer table into contiguous
  buffers; :func:`expand_columns` / :func:`merge_columns` map the distinct items' score columns
  to one per occurrence (with the logQ shift) and their gradients back;
- :func:`update_rows`: the sparse Adagrad-momentum update: gradients of duplicate rows are summed
  in place (a row-to-first-occurrence map that is reset afterwards, no ``unique``), then each
  distinct row's parameter, accumulator and velocity is updated once;
- :func:`dense_step`: the dense Adagrad-momentum update in one pass over the flat buffers;
- :func:`gru_backward`: the elementwise part of the reset-after GRU cell's backward pass (with
  dropout and the bias gradients' column sums) between its matrix products;
- :func:`reset_rows`: the hidden-state reset of slots that start a session;
- :func:`search_right`: the extra samples' inverse-CDF lookup, the same answers as
  ``torch.searchsorted`` from a bucketed start (``sampling.SampleCache(fast_search=True)``).

The row loops prefetch the rows a few iterations ahead (:func:`prefetch_row`, ``llvm.prefetch``):
the touched rows are scattered over tables far bigger than the caches, and without it every row
waits for memory in turn (measured: gather 300 -> 156 us, update 974 -> 378 us a step).

(A compiled forward cell lost to torch: numba's scalar ``tanh`` costs ~35 ns an element, torch's
vectorised one ~7; the backward pass has no transcendental function and wins about 4x.)

Every loop computes what ``optimizer.py`` and ``gru.py`` compute with torch ops (which stay as
the reference implementation, ``impl="torch"``) up to float rounding; the tests compare them.
``fastmath`` stays off: no reassociation, so results do not depend on the vector width.

Which implementation trains is :func:`resolve_impl`'s answer: ``"numba"`` on the CPU when numba
is importable, ``"torch"`` otherwise (and always on a GPU, whose path is the static row layout).
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba is a dependency, but the torch path must keep working without it
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    NUMBA_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    NUMBA_AVAILABLE = False

    def njit(*args, **kwargs):  # the plain Python functions: importable, slow, never chosen
        if args and callable(args[0]):
            return args[0]
        return lambda fn: fn

    def prefetch_row(arr, row):
        pass


IMPLS = ("torch", "numba")
"""The training step's implementations: ``"torch"`` (tensor ops only; the reference, and the GPU
path) and ``"numba"`` (the CPU fast path: the loops of this module where they pay)."""

DEFAULT_IMPL: str | None = os.environ.get("SESSIONBENCH_GRU4REC_IMPL") or None
"""The module switch: the implementation a trainer built without ``impl`` uses; None picks
``"numba"`` when it can (CPU, numba importable, the ``"unique"`` row layout), else ``"torch"``.
Set from the environment variable ``SESSIONBENCH_GRU4REC_IMPL`` (``torch`` / ``numba``), so
that any entry point (``run_benchmark.py``, tuning) can train with the reference step."""


def resolve_impl(impl: str | None, device_type: str, layout: str) -> str:
    """The implementation to train with (see :data:`IMPLS`, :data:`DEFAULT_IMPL`).

    Raises:
        ValueError: for an unknown name, or ``"numba"`` where it cannot run (no numba, not the
            CPU, or the GPU's ``"static"`` row layout).
    """
    impl = impl if impl is not None else DEFAULT_IMPL
    if impl is None:
        ok = NUMBA_AVAILABLE and device_type == "cpu" and layout == "unique"
        return "numba" if ok else "torch"
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "numba":
        if not NUMBA_AVAILABLE:
            raise ValueError("impl 'numba' needs the numba package (pip install numba)")
        if device_type != "cpu" or layout != "unique":
            raise ValueError(
                f"impl 'numba' runs on the CPU with the 'unique' row layout, not on "
                f"{device_type} with {layout!r}"
            )
    return impl


_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
"""``error_model="numpy"``: a division by zero gives inf / nan as in torch instead of raising,
which also lets LLVM vectorize the loops (the Python model's zero checks keep them scalar)."""

PREFETCH_AHEAD = 6
"""Rows ahead that the row loops ask the memory for: the touched rows are scattered over tables
too big for the caches, and one row's latency would otherwise stall the loop every row."""

if NUMBA_AVAILABLE:

    @intrinsic
    def prefetch_row(typingctx, arr, row):
        """Hint the CPU to load every cache line of ``arr[row]`` (a C-contiguous array's leading
        index; ``llvm.prefetch``, for writing): no effect on results."""
        sig = types.void(arr, row)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            zero = context.get_constant(types.intp, 0)
            index = [args[1]] + [zero] * (aryty.ndim - 1)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, index, wraparound=False)
            i8, i32 = ir.IntType(8), ir.IntType(32)
            base = builder.bitcast(ptr, i8.as_pointer())
            # the intrinsic's name carries the pointer type: "p0" (opaque pointers) or "p0i8"
            name = "llvm.prefetch.p0" if str(base.type) == "ptr" else "llvm.prefetch.p0i8"
            fnty = ir.FunctionType(ir.VoidType(), [base.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            flags = [ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)]
            nbytes = builder.extract_value(ary.strides, 0)  # one row, C layout
            line = context.get_constant(types.intp, 64)
            with cgutils.for_range_slice(builder, zero, nbytes, line) as (offset, _):
                builder.call(fn, [builder.gep(base, [offset])] + flags)
            last = builder.sub(nbytes, context.get_constant(types.intp, 1))  # a row's tail line
            builder.call(fn, [builder.gep(base, [last])] + flags)
            return context.get_dummy_value()

        return sig, codegen


# ----------------------------------------------------------------------------- item rows
@njit(**_JIT)
def gather_rows(
    table,
    first,
    targets,
    samples,
    log_count,
    log_weight,
    logq,
    rows,
    w_u,
    col,
    shift,
    inputs,
    x,
    x_mask,
):  # pragma: no cover
    """Copy the parameter rows the step scores and reads into contiguous buffers; return U.

    The scored items (the n ``targets``, then the ``samples``) are deduplicated on the way (a
    row-to-position map, ``first``: all -1 on entry and on return): ``rows[:U]`` are the distinct
    items in order of first occurrence, ``w_u[j] = table[rows[j], 0]`` their ``[W | b]``, and
    score column k is item ``rows[col[k]]``, shifted by the logQ correction ``shift[k]``:
    ``logq * log_count[targets[k]]`` for a target, ``logq * log_weight[samples[k - n]]`` for a
    sample (an item can be both, with different shifts, so the shift stays per column).
    ``x[i] = table[inputs[i], 0, :x.shape[1]] * x_mask[i]``: the input embedding after dropout
    (``x_mask`` (0, 0): no dropout; empty ``inputs``: no input rows).
    """
    width = w_u.shape[1]
    n = targets.shape[0]
    n_s = samples.shape[0]
    n_in = inputs.shape[0]
    total = n + n_s
    ahead = PREFETCH_AHEAD
    u = 0
    for k in range(total + n_in):
        if k + ahead < total:  # the whole [param, acc, vel] block: the update finds it cached
            q = k + ahead
            prefetch_row(table, targets[q] if q < n else samples[q - n])
        elif k + ahead - total < n_in:
            prefetch_row(table, inputs[k + ahead - total])
        if k >= total:
            break
        if k < n:
            r = targets[k]
            shift[k] = logq * log_count[r]
        else:
            r = samples[k - n]
            shift[k] = logq * log_weight[r]
        j = first[r]
        if j < 0:
            j = u
            first[r] = u
            rows[u] = r
            for c in range(width):
                w_u[u, c] = table[r, 0, c]
            u += 1
        col[k] = j
    for j in range(u):
        first[rows[j]] = -1
    cols = x.shape[1]
    dropout = x_mask.shape[0] > 0
    for i in range(n_in):
        if i + ahead < n_in:
            prefetch_row(table, inputs[i + ahead])
        r = inputs[i]
        if dropout:
            for c in range(cols):
                x[i, c] = table[r, 0, c] * x_mask[i, c]
        else:
            for c in range(cols):
                x[i, c] = table[r, 0, c]
    return u


@njit(**_JIT)
def expand_columns(scores_u, col, shift, out):  # pragma: no cover
    """``out[i, k] = scores_u[i, col[k]] - shift[k]``: one score column per scored occurrence
    (the loss sees every target and sample), with the logQ correction."""
    for i in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[i, k] = scores_u[i, col[k]] - shift[k]


@njit(**_JIT)
def merge_columns(d_scores, col, d_u):  # pragma: no cover
    """``d_u[i, j] = sum of d_scores[i, k] over the columns k with col[k] == j``: the gradient of
    each distinct item's scores (the inverse of :func:`expand_columns`)."""
    for i in range(d_u.shape[0]):
        for j in range(d_u.shape[1]):
            d_u[i, j] = 0.0
        for k in range(d_scores.shape[1]):
            d_u[i, col[k]] += d_scores[i, k]


@njit(**_JIT)
def update_rows(table, first, rows1, rows2, grads_a, rows_b, grads_b, lr, mu):  # pragma: no cover
    """Adagrad with classic momentum on the touched rows of ``table``, in place.

    Args:
        table: float32 (n_rows, 2 or 3, width): [param, acc(, vel)] per row (3: momentum).
        first: int64 (n_rows,), all -1 on entry and on return: scratch, the position of a row's
            first occurrence while the step's gradients are merged.
        rows1, rows2: int64 row indices of the full-width gradients ``grads_a`` (its first
            ``len(rows1)`` rows, then ``len(rows2)``): the scored items, targets then samples.
        grads_a: float32 (len(rows1) + len(rows2), width); overwritten (sums of duplicates).
        rows_b, grads_b: rows with gradients of the first ``grads_b.shape[1]`` columns only (the
            inputs of a shared embedding: their bias is not a parameter of the step); a row that
            occurs only here keeps its other columns, accumulator and velocity as they are.
        lr, mu: float32 learning rate and momentum (``mu`` unused without a velocity slot).

    Every distinct row is updated once with the sum of its gradients::

        acc += g^2;  u = g * (1 / sqrt(acc));  v = mu v - lr u;  p += v   (p -= lr u without v)
    """
    n1 = rows1.shape[0]
    n_a = n1 + rows2.shape[0]
    n_b = rows_b.shape[0]
    width = table.shape[2]
    width_b = grads_b.shape[1]
    order = np.empty(n_a + n_b, dtype=np.int64)  # first occurrence of each distinct row
    m = 0
    for i in range(n_a):
        r = rows1[i] if i < n1 else rows2[i - n1]
        k = first[r]
        if k < 0:
            first[r] = i
            order[m] = i
            m += 1
        else:
            for c in range(width):
                grads_a[k, c] += grads_a[i, c]
    for i in range(n_b):
        r = rows_b[i]
        k = first[r]
        if k < 0:
            first[r] = n_a + i
            order[m] = n_a + i
            m += 1
        elif k < n_a:
            for c in range(width_b):
                grads_a[k, c] += grads_b[i, c]
        else:
            for c in range(width_b):
                grads_b[k - n_a, c] += grads_b[i, c]
    one = np.float32(1.0)
    momentum = table.shape[1] == 3
    ahead = PREFETCH_AHEAD
    for j in range(m):
        if j + ahead < m:
            k = order[j + ahead]
            if k < n1:
                prefetch_row(table, rows1[k])
            elif k < n_a:
                prefetch_row(table, rows2[k - n1])
            else:
                prefetch_row(table, rows_b[k - n_a])
        k = order[j]
        if k < n_a:
            r = rows1[k] if k < n1 else rows2[k - n1]
            g = grads_a[k]
            cols = width
        else:
            r = rows_b[k - n_a]
            g = grads_b[k - n_a]
            cols = width_b
        first[r] = -1
        p = table[r, 0]
        acc = table[r, 1]
        if momentum:
            vel = table[r, 2]
            for c in range(cols):
                a = acc[c] + g[c] * g[c]
                acc[c] = a
                v = mu * vel[c] - lr * (g[c] * (one / np.sqrt(a)))
                vel[c] = v
                p[c] += v
        else:
            for c in range(cols):
                a = acc[c] + g[c] * g[c]
                acc[c] = a
                p[c] -= lr * (g[c] * (one / np.sqrt(a)))


# ----------------------------------------------------------------------------- sampling
@njit(**_JIT)
def search_right(cdf, starts, u, out):  # pragma: no cover
    """``out[i] = min(searchsorted(cdf, u[i], right=True), len(cdf) - 1)``, exactly.

    ``starts[b]`` (len M + 1) is ``searchsorted(cdf, b / M, right=True)``: the bucket of ``u``
    narrows the binary search to a few entries. The bucket is only a guess (``u * M`` rounds), so
    its bounds are checked against ``cdf`` and widened when wrong: the answer is always the first
    index with ``cdf[i] > u``, as torch's ``searchsorted`` gives it.
    """
    n = cdf.shape[0]
    m = starts.shape[0] - 1
    for i in range(u.shape[0]):
        x = u[i]
        b = min(max(int(x * m), 0), m - 1)
        lo = starts[b]
        hi = starts[b + 1]
        if lo > 0 and cdf[lo - 1] > x:  # the bucket starts too late
            lo = 0
        if hi < n and cdf[hi] <= x:  # ... or ends too early
            hi = n
        while lo < hi:  # first index in [lo, hi] with cdf > x
            mid = (lo + hi) >> 1
            if cdf[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        out[i] = min(lo, n - 1)


# ----------------------------------------------------------------------------- dense
@njit(**_JIT)
def dense_step(flat, grad, acc, vel, lr, mu):  # pragma: no cover
    """The same update over flat float32 buffers; ``vel`` empty: no momentum."""
    one = np.float32(1.0)
    if vel.shape[0] == 0:
        for i in range(flat.shape[0]):
            g = grad[i]
            a = acc[i] + g * g
            acc[i] = a
            flat[i] -= lr * (g * (one / np.sqrt(a)))
    else:
        for i in range(flat.shape[0]):
            g = grad[i]
            a = acc[i] + g * g
            acc[i] = a
            v = mu * vel[i] - lr * (g * (one / np.sqrt(a)))
            vel[i] = v
            flat[i] += v


# ----------------------------------------------------------------------------- GRU cell
@njit(**_JIT)
def reset_rows(h, keep):  # pragma: no cover
    """Zero the rows of ``h`` whose ``keep`` is 0 (slots that start a session), in place."""
    for i in range(h.shape[0]):
        if keep[i] == 0.0:
            for j in range(h.shape[1]):
                h[i, j] = 0.0


@njit(**_JIT)
def gru_backward(d_out, mask, h, rz, gh_c, c, dgx, d_cr, grad_bx, grad_bh):  # pragma: no cover
    """The backward pass of the reset-after cell (``gru.gru_step_backward`` and
    ``gru.recurrent_candidate_grad``, with the output's dropout).

    ``d_out`` (B, H) is the gradient of the state after dropout (``mask`` (0, 0): none). Writes
    ``dgx`` (B, 3H), the gradient of the pre-activations ``gx``; ``d_cr`` (B, H), the candidate's
    recurrent gradient ``dgx_c * r`` (``dWc = h^T d_cr``); and the bias gradients, column sums:
    ``grad_bx`` (3H,) of ``dgx``, ``grad_bh`` (3H,) of ``dgx[:, :2H]`` then ``d_cr``.
    """
    n, size = h.shape
    dropout = mask.shape[0] > 0
    one = np.float32(1.0)
    grad_bx[:] = 0.0
    grad_bh[:] = 0.0
    for i in range(n):
        for j in range(size):
            d = d_out[i, j]
            if dropout:
                d *= mask[i, j]
            r = rz[i, j]
            z = rz[i, size + j]
            cand = c[i, j]
            dc = (d * z) * (one - cand * cand)
            dr = (dc * gh_c[i, j]) * (r * (one - r))
            dz = (d * (cand - h[i, j])) * (z * (one - z))
            dcr = dc * r
            dgx[i, j] = dr
            dgx[i, size + j] = dz
            dgx[i, 2 * size + j] = dc
            d_cr[i, j] = dcr
            grad_bx[j] += dr
            grad_bx[size + j] += dz
            grad_bx[2 * size + j] += dc
            grad_bh[j] += dr
            grad_bh[size + j] += dz
            grad_bh[2 * size + j] += dcr


def as_f32(value: float) -> np.float32:
    """A hyperparameter as the float32 scalar the loops compute with (as torch's float32 ops)."""
    return np.float32(value)


def warm_up() -> None:
    """Compile (or load from numba's cache) every loop for the argument types the training step
    passes, so that the first step of a timed epoch does not pay for it (a cold compile takes
    seconds). Called when a trainer of the ``"numba"`` implementation is built."""
    if not NUMBA_AVAILABLE or getattr(warm_up, "done", False):
        return
    f32, i64, f64 = np.float32, np.int64, np.float64
    table, first = np.zeros((2, 3, 3), f32), np.full(2, -1, dtype=i64)
    rows, none = np.zeros(1, i64), np.zeros(0, i64)
    vec, mat = np.zeros(1, f32), np.zeros((1, 3), f32)
    col, shift = np.zeros(1, i64), np.zeros(1, f32)
    gather_rows(table, first, rows, none, vec, vec, f32(0), rows.copy(), mat, col, shift, rows,
                np.zeros((1, 2), f32), np.zeros((0, 0), f32))  # fmt: skip
    expand_columns(np.zeros((1, 1), f32), col, shift, np.zeros((1, 1), f32))
    merge_columns(np.zeros((1, 1), f32), col, np.zeros((1, 1), f32))
    update_rows(table, first, rows, none, mat, none, np.zeros((0, 0), f32), f32(0), f32(0))
    dense_step(vec, vec.copy(), vec.copy() + 1, vec.copy(), f32(0), f32(0))
    dense_step(vec, vec.copy(), vec.copy() + 1, np.zeros(0, f32), f32(0), f32(0))
    square = np.zeros((1, 1), f32)
    gru_backward(square, square, square, np.zeros((1, 2), f32), square, square,
                 np.zeros((1, 3), f32), square.copy(), np.zeros(3, f32), np.zeros(3, f32))  # fmt: skip
    reset_rows(square.copy(), np.ones(1, f32))
    search_right(np.ones(1, f64), np.zeros(2, i64), np.zeros(1, f64), np.zeros(1, i64))
    warm_up.done = True
