"""The one evaluator: the next-click protocol with full ranking and explicit tie handling.

Every click of a test session except the first is a target; the clicks before it are the input.
Sessions are processed in parallel slots (session-parallel, like GRU4Rec's training): a slot
that finishes its session takes the next one, with a reset; once no session is left, finished
slots are dropped and the batch shrinks. The target is ranked against all training items:

    rank = 1 + #items scoring higher than the target           (standard: target wins ties)
    rank = 1 + #items scoring higher or equal, target excluded (conservative: target loses ties)
    rank = 1 + #higher + #tied / 2                             (median)

Targets outside the training vocabulary get rank ``inf`` (a miss at every cutoff).
Scores are ranked where they are: numpy on the CPU, torch tensors on their own device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from algorithms.base import SessionRecommender
from datasets.progress import bars_enabled
from datasets.sessions import UNKNOWN, Sessions

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TIE_MODES = ("conservative", "standard", "median")
DEFAULT_TIE_MODE = "conservative"


@dataclass(frozen=True)
class Predictions:
    """One row per next-click prediction.

    Attributes:
        session: index of the test session (into the test ``Sessions``).
        position: index of the target click within its session (1 = the second click), which is
            also how many clicks of the session the algorithm had seen.
        target: item index of the target (``UNKNOWN`` if not in the training vocabulary).
        rank: 1-based rank of the target under the tie mode used; ``inf`` for unknown targets.
    """

    session: np.ndarray
    position: np.ndarray
    target: np.ndarray
    rank: np.ndarray

    def __len__(self) -> int:
        return len(self.rank)


def rank_targets(scores, targets: np.ndarray, tie_mode: str = DEFAULT_TIE_MODE) -> np.ndarray:
    """Rank of ``targets[k]`` within row ``k`` of ``scores`` (numpy or torch, any device).

    Raises ValueError if a target's score is NaN (the model is broken; ranking it would be noise).
    """
    if tie_mode not in TIE_MODES:
        raise ValueError(f"tie_mode must be one of {', '.join(TIE_MODES)}, got {tie_mode!r}")
    targets = np.asarray(targets, dtype=np.int64)
    known = targets != UNKNOWN
    rows = np.arange(len(targets))
    # Each tie mode counts only what it needs: conservative = #(score >= target's), target
    # included, so one pass; standard = #(score > target's) + 1; median needs both. Boolean
    # masks are summed as int32 (a count never reaches 2**31): torch's default int64 sum of a
    # mask is several times slower, and ranking is a large share of a GRU4Rec evaluation.
    if torch is not None and isinstance(scores, torch.Tensor):
        t = torch.as_tensor(np.where(known, targets, 0), device=scores.device)
        r = torch.arange(len(targets), device=scores.device)
        target_scores = scores[r, t].unsqueeze(1)
        if torch.isnan(target_scores).any():
            raise ValueError("the model returned NaN scores for some targets")

        def higher() -> np.ndarray:
            return (scores > target_scores).sum(1, dtype=torch.int32).cpu().numpy()

        def at_least() -> np.ndarray:
            return (scores >= target_scores).sum(1, dtype=torch.int32).cpu().numpy()
    else:
        scores = np.asarray(scores)
        target_scores = scores[rows, np.where(known, targets, 0)][:, None]
        if np.isnan(target_scores).any():
            raise ValueError("the model returned NaN scores for some targets")

        def higher() -> np.ndarray:
            return np.count_nonzero(scores > target_scores, axis=1)

        def at_least() -> np.ndarray:
            return np.count_nonzero(scores >= target_scores, axis=1)

    if tie_mode == "standard":
        ranks = 1.0 + higher()
    elif tie_mode == "conservative":
        ranks = at_least().astype(np.float64)  # 1 + #higher + #tied other items
    else:
        above = higher()
        ranks = 1.0 + above + (at_least() - 1 - above) / 2.0
    return np.where(known, ranks, np.inf).astype(np.float64)


def evaluate(
    model: SessionRecommender,
    test: Sessions,
    *,
    tie_mode: str = DEFAULT_TIE_MODE,
    batch_size: int = 256,
    progress: bool = True,
) -> Predictions:
    """Run the next-click protocol of ``model`` over ``test`` and return every prediction's rank."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tie_mode not in TIE_MODES:
        raise ValueError(f"tie_mode must be one of {', '.join(TIE_MODES)}, got {tie_mode!r}")
    lengths = test.lengths
    queue = np.flatnonzero(lengths >= 2)  # a session of one click has no target
    total = int((lengths[queue] - 1).sum())
    out_session = np.empty(total, dtype=np.int64)
    out_position = np.empty(total, dtype=np.int64)
    out_target = np.empty(total, dtype=np.int64)
    out_rank = np.empty(total, dtype=np.float64)

    n_slots = int(min(batch_size, len(queue)))
    slot_session = queue[:n_slots].copy()
    slot_pos = np.zeros(n_slots, dtype=np.int64)  # index of the click fed next, per slot
    reset = np.ones(n_slots, dtype=bool)
    next_in_queue = n_slots
    state = model.init_state(n_slots) if n_slots else None
    done = 0
    bar = tqdm(
        total=total,
        desc=f"evaluate {getattr(model, 'name', '')}",
        unit="pred",
        disable=not (progress and bars_enabled()),
        leave=False,
    )
    while len(slot_session):
        start = test.offsets[slot_session] + slot_pos
        items = test.items[start]
        targets = test.items[start + 1]
        scores = model.step(state, items, reset)
        n = len(slot_session)
        if tuple(scores.shape) != (n, test.n_items):
            raise ValueError(
                f"{type(model).__name__}.step returned scores of shape {tuple(scores.shape)}, "
                f"expected ({n}, {test.n_items})"
            )
        sl = slice(done, done + n)
        out_rank[sl] = rank_targets(scores, targets, tie_mode)
        out_session[sl] = slot_session
        out_position[sl] = slot_pos + 1
        out_target[sl] = targets
        done += n
        bar.update(n)

        slot_pos += 1
        reset[:] = False
        finished = np.flatnonzero(slot_pos + 1 >= lengths[slot_session])
        # Refill finished slots from the queue while sessions remain.
        n_new = min(len(finished), len(queue) - next_in_queue)
        if n_new:
            refill = finished[:n_new]
            slot_session[refill] = queue[next_in_queue : next_in_queue + n_new]
            slot_pos[refill] = 0
            reset[refill] = True
            next_in_queue += n_new
            finished = finished[n_new:]
        if len(finished):  # queue exhausted: the batch shrinks
            keep = np.setdiff1d(np.arange(len(slot_session)), finished)
            slot_session, slot_pos, reset = slot_session[keep], slot_pos[keep], reset[keep]
            if len(keep):
                state = model.select_state(state, keep)
    bar.close()
    assert done == total, (done, total)
    return Predictions(out_session, out_position, out_target, out_rank)
