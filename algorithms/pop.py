"""POP: the most popular training items, the same list for every session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from algorithms.base import EpochCallback, SessionRecommender
from datasets.sessions import UNKNOWN, Sessions


class Pop(SessionRecommender):
    """score(j) = number of training clicks on item j (support), whatever the session.

    Attributes:
        support_: training clicks per item, float64 of length n_items.
    """

    name = "pop"

    def __init__(self) -> None:
        pass

    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> Pop:
        self.support_ = item_support(train)
        return self

    def init_state(self, n_slots: int) -> None:
        return None

    def step(self, state: None, items: np.ndarray, reset: np.ndarray) -> np.ndarray:
        # A read-only broadcast view: every slot shares one row, nothing is copied.
        return np.broadcast_to(self.support_, (len(items), len(self.support_)))


def item_support(train: Sessions) -> np.ndarray:
    """Number of training clicks of each item (float64, length ``train.n_items``)."""
    known = train.items[train.items != UNKNOWN]
    return np.bincount(known, minlength=train.n_items).astype(np.float64)
