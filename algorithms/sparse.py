"""Sparse-matrix helpers shared by the co-occurrence algorithms (Item-KNN, the rule family, BPR-MF).

All matrices are scipy CSR with float32 values; item indices are int32, and ``UNKNOWN`` (-1) rows
read as zeros.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from datasets.sessions import UNKNOWN, Sessions

BLOCK_ENTRIES = 2**24
"""Co-occurrence entries processed at once; bounds the working memory of a fit (~0.5 GiB)."""


def session_item_matrix(sessions: Sessions, binary: bool) -> sp.csr_matrix:
    """The float32 session x item matrix of click counts (or 0/1 if ``binary``); UNKNOWN dropped.

    Rows are built straight from the session offsets (the clicks are already grouped by
    session), so no sort over all clicks is needed. The input arrays are not modified.
    """
    known = sessions.items != UNKNOWN
    kept_before = np.concatenate(([0], np.cumsum(known)))
    indptr = kept_before[sessions.offsets]
    indices = sessions.items[known].astype(np.int32)
    data = np.ones(len(indices), dtype=np.float32)
    x = sp.csr_matrix(
        (data, indices, indptr), shape=(sessions.n_sessions, sessions.n_items), copy=False
    )
    x.sum_duplicates()  # sorts each row and adds up repeated clicks
    if binary:
        x.data[:] = 1.0
    return x


def row_blocks(x: sp.csr_matrix) -> list[tuple[int, int]]:
    """Item ranges whose co-occurrence products hold about ``BLOCK_ENTRIES`` entries each.

    The work (and the worst-case output) of item row i of ``X^T X`` is the total length of
    the sessions containing i; blocks are cut where the running total crosses the budget, and
    hold at most ``2 ** row_bits(n_items)`` items (so that ``top_k_per_row``'s sort keys fit).
    """
    n_items = x.shape[1]
    session_len = np.diff(x.indptr)
    work = np.bincount(x.indices, weights=np.repeat(session_len, session_len), minlength=n_items)
    block_of_row = (np.cumsum(work) - work) // BLOCK_ENTRIES
    block_of_row += np.arange(n_items) >> row_bits(n_items)  # a new block at every 2^bits rows
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(block_of_row)) + 1, [n_items]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def col_bits(n_items: int) -> int:
    return max(int(n_items - 1).bit_length(), 1)


def row_bits(n_items: int) -> int:
    """Bits left for the row in a 64-bit key of (row, 32-bit similarity, column)."""
    return 32 - col_bits(n_items)


def top_k_per_row(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest ``sims`` per row (ties: lower column first), as (rows, cols, sims).

    ``sims`` are positive float32, whose bit patterns order like their values; one uint64 key
    per entry, (row | inverted similarity bits | column), sorts by row, then by similarity
    descending, then by column, in a single fast ``np.sort`` (no argsort, no lexsort).
    ``rows`` must be < 2 ** row_bits(n_items).
    """
    cbits = col_bits(n_items)
    inverted = (~sims.astype(np.float32).view(np.uint32)).astype(np.uint64)
    keys = (rows.astype(np.uint64) << np.uint64(32 + cbits)) | (inverted << np.uint64(cbits))
    keys |= cols.astype(np.uint64)
    keys.sort()
    rows = (keys >> np.uint64(32 + cbits)).astype(np.int64)
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank_in_row = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
    keys = keys[rank_in_row < k]
    cols = (keys & np.uint64((1 << cbits) - 1)).astype(np.int64)
    bits = ((keys >> np.uint64(cbits)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return (keys >> np.uint64(32 + cbits)).astype(np.int64), cols, (~bits).view(np.float32)


def assemble_csr(parts: list, n_items: int) -> sp.csr_matrix:
    """One float32 CSR matrix from the per-block (rows, cols, sims) triplets (rows ascending)."""
    if parts:
        rows = np.concatenate([p[0] for p in parts])
        cols = np.concatenate([p[1] for p in parts]).astype(np.int32)
        sims = np.concatenate([p[2] for p in parts]).astype(np.float32)
    else:
        rows = np.empty(0, np.int64)
        cols = np.empty(0, np.int32)
        sims = np.empty(0, np.float32)
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_items), out=indptr[1:])
    return sp.csr_matrix((sims, cols, indptr), shape=(n_items, n_items))


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of a CSR matrix as a dense array; an ``UNKNOWN`` row is all zeros."""
    out = np.zeros((len(rows), matrix.shape[1]), dtype=matrix.dtype)
    slots = np.flatnonzero(rows != UNKNOWN)
    starts = matrix.indptr[rows[slots]]
    lengths = matrix.indptr[rows[slots] + 1] - starts
    total = int(lengths.sum())
    if total:
        # Position of every stored entry of the selected rows, without a Python loop.
        first = np.cumsum(lengths) - lengths
        pos = np.repeat(starts - first, lengths) + np.arange(total)
        out[np.repeat(slots, lengths), matrix.indices[pos]] = matrix.data[pos]
    return out
