"""Item-KNN: the next click is scored by its similarity to the session's last click."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from benchmark.interface import SessionRecommender
from benchmark.params import Bool, Choice, Float, Int
from datasets.progress import bars_enabled
from datasets.sessions import UNKNOWN, Sessions

log = logging.getLogger(__name__)

COUNTING_MODES = ("session", "event")

_BLOCK_ENTRIES = 2**24
"""Co-occurrence entries processed at once; bounds the fit's working memory (~0.5 GiB)."""


class ItemKNN(SessionRecommender):
    """Item-to-item neighbourhood model of the GRU4Rec paper (regularized cosine by default).

    With ``i`` the last click of the session, item ``j`` scores::

        score(j) = sim(i, j)  if j is among the n_sims nearest neighbours of i, else 0
        sim(i, j) = cooc(i, j) / ((supp(i) + reg_lambda) ** alpha
                                  * (supp(j) + reg_lambda) ** (1 - alpha))

    Support and co-occurrence are counted on the training sessions, as set by ``counting``:

    - ``"session"``: supp(i) = number of sessions containing i; cooc(i, j) = number of sessions
      containing both i and j (the definition in the paper and docs/PROTOCOL.md).
    - ``"event"``: supp(i) = number of clicks on i; cooc(i, j) = sum over sessions of
      clicks(s, i) * clicks(s, j) (what the authors' reference code computes).

    In both modes ``cooc = X^T X`` and ``supp`` = column sums of ``X``, with ``X`` the
    session x item matrix of indicators (session mode) or click counts (event mode).
    The item itself is not its own neighbour (sim(i, i) := 0, as in the reference code) unless
    ``include_self`` is true, in which case sim(i, i) follows the same formula with
    cooc(i, i) = supp(i) (session mode) or the sum of squared click counts (event mode).
    Neighbours with zero co-occurrence are never stored; among equal similarities at the
    ``n_sims`` cut-off, lower item indices win. An ``UNKNOWN`` last click scores every item 0.

    Args:
        n_sims: neighbours kept per item.
        reg_lambda: the support regularizer lambda (>= 0).
        alpha: the asymmetry exponent in [0, 1]; 0.5 gives a regularized cosine.
        counting: ``"session"`` or ``"event"``, see above.
        include_self: whether an item may be its own neighbour (repeated clicks).

    Attributes:
        support_: supp(i) per item, float64 of length n_items.
        sims_: the kept similarities, float32 CSR of shape (n_items, n_items); row i holds the
            neighbours of i with sim(i, j) > 0, at most ``n_sims`` of them.
    """

    name = "item-knn"
    hyperparameters = {
        "n_sims": Int(low=1), "reg_lambda": Float(low=0), "alpha": Float(0, 1),
        "counting": Choice(COUNTING_MODES), "include_self": Bool(),
    }

    def __init__(
        self,
        n_sims: int = 100,
        reg_lambda: float = 20.0,
        alpha: float = 0.5,
        counting: str = "session",
        include_self: bool = False,
    ) -> None:
        self.n_sims = n_sims
        self.reg_lambda = reg_lambda
        self.alpha = alpha
        self.counting = counting
        self.include_self = include_self

    def fit(self, train: Sessions) -> "ItemKNN":
        self._check_params()
        x = session_item_matrix(train, binary=self.counting == "session")
        self.support_ = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        row_w, col_w = self._weights(self.support_)
        xt = x.T.tocsr()  # item x session
        log.info("item-knn: %d sessions, %d items, %d nonzeros", x.shape[0], x.shape[1], x.nnz)
        parts = []
        blocks = _row_blocks(x)
        bar = tqdm(blocks, desc="item-knn similarities", unit="block", leave=False,
                   disable=not bars_enabled())
        for start, stop in bar:
            parts.append(self._block_neighbours(xt, x, start, stop, row_w, col_w))
        self.sims_ = _assemble(parts, train.n_items)
        return self

    def init_state(self, n_slots: int) -> np.ndarray:
        """The last click of every slot (``UNKNOWN`` before the first click)."""
        return np.full(n_slots, UNKNOWN, dtype=np.int64)

    def step(self, state: np.ndarray, items: np.ndarray, reset: np.ndarray) -> np.ndarray:
        # Only the last click matters, so a reset needs no special handling.
        state[:] = items
        return dense_rows(self.sims_, state)

    def _block_neighbours(
        self, xt: sp.csr_matrix, x: sp.csr_matrix, start: int, stop: int,
        row_w: np.ndarray, col_w: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, float32 sims) of the kept neighbours of items ``start .. stop - 1``."""
        cooc = (xt[start:stop] @ x).tocoo()
        rows = cooc.row.astype(np.int64)
        cols = cooc.col.astype(np.int64)
        sims = (cooc.data * row_w[rows + start] * col_w[cols]).astype(np.float32)
        keep = sims > 0
        if not self.include_self:
            keep &= rows + start != cols
        rows, cols, sims = _top_k(rows[keep], cols[keep], sims[keep], self.n_sims, x.shape[1])
        return rows + start, cols, sims

    def _check_params(self) -> None:
        if isinstance(self.n_sims, bool) or not isinstance(self.n_sims, (int, np.integer)):
            raise ValueError(f"n_sims must be an integer, got {self.n_sims!r}")
        if self.n_sims < 1:
            raise ValueError(f"n_sims must be >= 1, got {self.n_sims}")
        if not self.reg_lambda >= 0:
            raise ValueError(f"reg_lambda must be >= 0, got {self.reg_lambda!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha!r}")
        if self.counting not in COUNTING_MODES:
            raise ValueError(
                f"counting must be one of {', '.join(COUNTING_MODES)}, got {self.counting!r}"
            )
        if not isinstance(self.include_self, (bool, np.bool_)):
            raise ValueError(f"include_self must be a bool, got {self.include_self!r}")

    def _weights(self, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-item factors (supp + lambda)^-alpha and (supp + lambda)^-(1 - alpha).

        Items without support co-occur with nothing; their factor is set to 0, which also
        avoids 0^-x when reg_lambda is 0.
        """
        base = support + self.reg_lambda
        with np.errstate(divide="ignore"):
            row_w = np.where(support > 0, base ** -float(self.alpha), 0.0)
            col_w = np.where(support > 0, base ** -(1.0 - float(self.alpha)), 0.0)
        return row_w, col_w


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


def _row_blocks(x: sp.csr_matrix) -> list[tuple[int, int]]:
    """Item ranges whose co-occurrence products hold about ``_BLOCK_ENTRIES`` entries each.

    The work (and the worst-case output) of item row i of ``X^T X`` is the total length of
    the sessions containing i; blocks are cut where the running total crosses the budget, and
    hold at most ``2 ** _row_bits(n_items)`` items (so that ``_top_k``'s sort keys fit).
    """
    n_items = x.shape[1]
    session_len = np.diff(x.indptr)
    work = np.bincount(x.indices, weights=np.repeat(session_len, session_len), minlength=n_items)
    block_of_row = (np.cumsum(work) - work) // _BLOCK_ENTRIES
    block_of_row += np.arange(n_items) >> _row_bits(n_items)  # a new block at every 2^bits rows
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(block_of_row)) + 1, [n_items]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _col_bits(n_items: int) -> int:
    return max(int(n_items - 1).bit_length(), 1)


def _row_bits(n_items: int) -> int:
    """Bits left for the row in a 64-bit key of (row, 32-bit similarity, column)."""
    return 32 - _col_bits(n_items)


def _top_k(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest ``sims`` per row (ties: lower column first), as (rows, cols, sims).

    ``sims`` are positive float32, whose bit patterns order like their values; one uint64 key
    per entry, (row | inverted similarity bits | column), sorts by row, then by similarity
    descending, then by column, in a single fast ``np.sort`` (no argsort, no lexsort).
    ``rows`` must be < 2 ** _row_bits(n_items).
    """
    col_bits = _col_bits(n_items)
    inverted = (~sims.astype(np.float32).view(np.uint32)).astype(np.uint64)
    keys = (rows.astype(np.uint64) << np.uint64(32 + col_bits)) | (inverted << np.uint64(col_bits))
    keys |= cols.astype(np.uint64)
    keys.sort()
    rows = (keys >> np.uint64(32 + col_bits)).astype(np.int64)
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank_in_row = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
    keys = keys[rank_in_row < k]
    cols = (keys & np.uint64((1 << col_bits) - 1)).astype(np.int64)
    bits = ((keys >> np.uint64(col_bits)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return (keys >> np.uint64(32 + col_bits)).astype(np.int64), cols, (~bits).view(np.float32)


def _assemble(parts: list, n_items: int) -> sp.csr_matrix:
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
