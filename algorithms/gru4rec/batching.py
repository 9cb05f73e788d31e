"""Session-parallel mini-batches, planned for a whole epoch up front with numpy.

GRU4Rec does not cut sessions into fixed-length windows. Each of the ``batch_size`` slots holds
one session; step ``t`` feeds the current click of every slot and asks for its next click. When a
slot's session is used up it takes the next unused session (sessions in their given order, i.e.
the order of their first event) and its hidden state is reset to zero. Once no session is left,
finished slots are dropped and the batch shrinks until the last session ends.

The whole schedule depends only on the session lengths, so it is computed once per ``fit``; the
training loop then only slices rows of pre-built arrays (no Python bookkeeping per step).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from datasets.sessions import Sessions

PAD = -1
"""Item index in the padding cells of a shrinking step (never read by the training loop)."""


@dataclass(frozen=True)
class EpochPlan:
    """Every (input, target) pair of an epoch, laid out step by step.

    Attributes:
        inputs: int64 (n_steps, batch_size); ``inputs[t, :n_active[t]]`` are the clicks fed at step t.
        targets: int64 (n_steps, batch_size); the next click of each slot (the positive item).
        reset: bool (n_steps, batch_size); True where the slot starts a new session at step t.
        n_active: int64 (n_steps,); slots in use at step t (``batch_size`` until the tail).
        keep: for every step whose batch is smaller than the previous one, the rows of the previous
            step's hidden state that carry on (in order); ``None`` elsewhere.
    """

    inputs: np.ndarray
    targets: np.ndarray
    reset: np.ndarray
    n_active: np.ndarray
    keep: list[np.ndarray | None]

    @property
    def n_steps(self) -> int:
        return len(self.n_active)

    @property
    def n_events(self) -> int:
        """Number of (input, target) pairs, the unit of "training events"."""
        return int(self.n_active.sum())


def assign_slots(lengths: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot and first step of every session under session-parallel scheduling.

    A session of length L occupies its slot for L - 1 steps. The next session in order goes to the
    slot that frees up first; slots freed at the same step are filled in slot order.

    Args:
        lengths: clicks per session (each >= 2), in session order.
        batch_size: number of slots.

    Returns:
        (slot, start) int64 arrays, one entry per session.
    """
    n = len(lengths)
    slot = np.empty(n, dtype=np.int64)
    start = np.empty(n, dtype=np.int64)
    n_first = min(batch_size, n)
    slot[:n_first] = np.arange(n_first)
    start[:n_first] = 0
    free_at = [(int(lengths[s]) - 1, s) for s in range(n_first)]  # (step it frees up, slot)
    heapq.heapify(free_at)
    steps = (lengths - 1).tolist()
    for s in range(n_first, n):
        t, k = heapq.heappop(free_at)
        slot[s], start[s] = k, t
        heapq.heappush(free_at, (t + steps[s], k))
    return slot, start


def plan_epoch(sessions: Sessions, batch_size: int) -> EpochPlan:
    """Lay out all next-click pairs of ``sessions`` into session-parallel steps.

    Sessions with fewer than two clicks have no pair and are skipped. Items are used as given
    (training data has no ``UNKNOWN`` items).

    Raises:
        ValueError: if ``batch_size`` < 1 or there is no session with two clicks.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    usable = np.flatnonzero(sessions.lengths >= 2)
    if len(usable) == 0:
        raise ValueError("the training data has no session with at least two clicks")
    lengths = sessions.lengths[usable]
    slot, start = assign_slots(lengths, batch_size)
    n_pairs = lengths - 1
    end = start + n_pairs  # first step after the session
    n_steps = int(end.max())
    n_slots = min(batch_size, len(usable))

    # One row per pair: which step and slot it lands in, and which click it reads.
    pair_session = np.repeat(np.arange(len(usable)), n_pairs)
    within = np.arange(int(n_pairs.sum())) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    step = start[pair_session] + within
    col = slot[pair_session]
    click = sessions.offsets[usable][pair_session] + within

    inputs = np.full((n_steps, n_slots), PAD, dtype=np.int64)
    targets = np.full((n_steps, n_slots), PAD, dtype=np.int64)
    reset = np.zeros((n_steps, n_slots), dtype=bool)
    inputs[step, col] = sessions.items[click]
    targets[step, col] = sessions.items[click + 1]
    reset[step, col] = within == 0
    return _compact_tail(inputs, targets, reset)


def _compact_tail(inputs: np.ndarray, targets: np.ndarray, reset: np.ndarray) -> EpochPlan:
    """Move the active slots of every step to the front, recording how the batch shrinks.

    Before the queue of sessions runs dry every slot is active, so this only touches the tail.
    """
    active = inputs != PAD
    n_active = active.sum(1).astype(np.int64)
    n_slots = inputs.shape[1]
    keep: list[np.ndarray | None] = [None] * len(n_active)
    small = np.flatnonzero(n_active < n_slots)
    prev_cols = np.arange(n_slots)
    for t in small:  # a few hundred steps at most: the length of the longest tail session
        cols = np.flatnonzero(active[t])
        if len(cols) < len(prev_cols):
            keep[t] = np.searchsorted(prev_cols, cols)
        for arr in (inputs, targets, reset):
            row = arr[t, cols].copy()
            arr[t, :] = PAD if arr.dtype != bool else False
            arr[t, : len(cols)] = row
        prev_cols = cols
    return EpochPlan(inputs, targets, reset, n_active, keep)
