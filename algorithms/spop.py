"""S-POP: items clicked most often in the current session, training popularity breaking ties."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from algorithms.base import EpochCallback, SessionRecommender
from algorithms.pop import item_support
from datasets.sessions import UNKNOWN, Sessions


class SPop(SessionRecommender):
    """score(j) = count of j in the session so far + support(j) / (max support + 1).

    The popularity term lies in [0, 1), so it only orders items with equal in-session counts;
    items never clicked in the session are ordered by training popularity (as POP).

    Attributes:
        pop_term_: the popularity tie-breaker in [0, 1), float64 of length n_items.
    """

    name = "spop"

    def __init__(self) -> None:
        pass

    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> SPop:
        support = item_support(train)
        self.pop_term_ = support / (support.max(initial=0.0) + 1.0)
        return self

    def init_state(self, n_slots: int) -> np.ndarray:
        """Per-slot click counts of every item, shape (n_slots, n_items)."""
        return np.zeros((n_slots, len(self.pop_term_)), dtype=np.float64)

    def step(self, state: np.ndarray, items: np.ndarray, reset: np.ndarray) -> np.ndarray:
        state[reset] = 0.0
        known = np.flatnonzero(items != UNKNOWN)
        state[known, items[known]] += 1.0
        return state + self.pop_term_
