"""Item-KNN: the next click is scored by its similarity to the session's last click."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from algorithms.base import EpochCallback, SessionRecommender
from algorithms.params import Bool, Choice, Float, Int
from algorithms.sparse import (
    assemble_csr,
    dense_rows,
    row_blocks,
    session_item_matrix,
    top_k_per_row,
)
from datasets.progress import bars_enabled
from datasets.sessions import UNKNOWN, Sessions

log = logging.getLogger(__name__)

COUNTING_MODES = ("session", "event")


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
        "n_sims": Int(low=1),
        "reg_lambda": Float(low=0),
        "alpha": Float(0, 1),
        "counting": Choice(COUNTING_MODES),
        "include_self": Bool(),
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

    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> ItemKNN:
        self.validate()
        x = session_item_matrix(train, binary=self.counting == "session")
        self.support_ = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        row_w, col_w = self._weights(self.support_)
        xt = x.T.tocsr()  # item x session
        log.info("item-knn: %d sessions, %d items, %d nonzeros", x.shape[0], x.shape[1], x.nnz)
        parts = []
        blocks = row_blocks(x)
        bar = tqdm(
            blocks,
            desc="item-knn similarities",
            unit="block",
            leave=False,
            disable=not bars_enabled(),
        )
        for start, stop in bar:
            parts.append(self._block_neighbours(xt, x, start, stop, row_w, col_w))
        self.sims_ = assemble_csr(parts, train.n_items)
        return self

    def init_state(self, n_slots: int) -> np.ndarray:
        """The last click of every slot (``UNKNOWN`` before the first click)."""
        return np.full(n_slots, UNKNOWN, dtype=np.int64)

    def step(self, state: np.ndarray, items: np.ndarray, reset: np.ndarray) -> np.ndarray:
        # Only the last click matters, so a reset needs no special handling.
        state[:] = items
        return dense_rows(self.sims_, state)

    def _block_neighbours(
        self,
        xt: sp.csr_matrix,
        x: sp.csr_matrix,
        start: int,
        stop: int,
        row_w: np.ndarray,
        col_w: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, float32 sims) of the kept neighbours of items ``start .. stop - 1``."""
        cooc = (xt[start:stop] @ x).tocoo()
        rows = cooc.row.astype(np.int64)
        cols = cooc.col.astype(np.int64)
        sims = (cooc.data * row_w[rows + start] * col_w[cols]).astype(np.float32)
        keep = sims > 0
        if not self.include_self:
            keep &= rows + start != cols
        rows, cols, sims = top_k_per_row(
            rows[keep], cols[keep], sims[keep], self.n_sims, x.shape[1]
        )
        return rows + start, cols, sims

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
