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

A model may also define ``step_ranked(state, items, reset, rank)``: the same step, but instead
of returning one (n_slots, n_items) array it hands its scores to ``rank(scores, rows)`` (the
ranking below, for the targets of the batch's ``rows``, a slice) and returns every slot's rank.
The ranks must be those of ``step``'s scores. The session-kNN methods score a chunk of slots
at a time and rank each chunk while it is still in the processor's cache (writing and
re-reading one large array would cost them about a third of their evaluation time); GRU4Rec
and the neural models write their scores into ``rank.buffer(n_rows, dtype, device)``, memory
the evaluator hands back at every step, instead of allocating (and faulting in) a fresh
(n_slots, n_items) matrix per step.
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
    # mask is several times slower, and ranking is a large share of a GRU4Rec evaluation. A
    # float32/float64 tensor on the CPU is ranked as the numpy array it already is (no copy):
    # the same IEEE comparisons, counted several times faster than torch counts them.
    if torch is not None and isinstance(scores, torch.Tensor) and not _numpy_view_ok(scores):
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
        if torch is not None and isinstance(scores, torch.Tensor):
            scores = scores.detach().numpy()
        scores = np.asarray(scores)
        target_scores = scores[rows, np.where(known, targets, 0)]
        if np.isnan(target_scores).any():
            raise ValueError("the model returned NaN scores for some targets")

        def higher() -> np.ndarray:
            return count_rows(scores, target_scores, strict=True)

        def at_least() -> np.ndarray:
            return count_rows(scores, target_scores, strict=False)

    if tie_mode == "standard":
        ranks = 1.0 + higher()
    elif tie_mode == "conservative":
        ranks = at_least().astype(np.float64)  # 1 + #higher + #tied other items
    else:
        above = higher()
        ranks = 1.0 + above + (at_least() - 1 - above) / 2.0
    return np.where(known, ranks, np.inf).astype(np.float64)


_COUNT_BLOCK = 2**18
"""Scores compared at once by numpy: the boolean mask of a block stays in the cache."""


def _numpy_view_ok(scores) -> bool:
    """Whether a torch tensor of scores can be ranked as a numpy array without a copy."""
    return scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64)


def count_rows(scores: np.ndarray, threshold: np.ndarray, *, strict: bool) -> np.ndarray:
    """Per row k, how many ``scores[k] > threshold[k]`` (``strict``) or ``>=`` hold (int32).

    A float32 or float64 matrix is counted in one pass by a compiled loop where numba is
    installed (:data:`COMPILED`); otherwise, and for other dtypes, by numpy a block of rows at
    a time. Both are the same IEEE comparisons (NaN compares false), so the counts are equal.
    """
    n, width = scores.shape
    threshold = np.asarray(threshold).reshape(n)
    if COMPILED and scores.dtype in (np.float32, np.float64) and threshold.dtype == scores.dtype:
        out = np.empty(n, dtype=np.int32)
        _count_compiled(scores, threshold, strict, out)
        return out
    compare = np.greater if strict else np.greater_equal
    threshold = threshold[:, None]
    block = max(1, _COUNT_BLOCK // max(width, 1))
    if n <= block:
        return compare(scores, threshold).sum(axis=1, dtype=np.int32)
    out = np.empty(n, dtype=np.int32)
    mask = np.empty((block, width), dtype=bool)
    for a in range(0, n, block):
        b = min(n, a + block)
        m = compare(scores[a:b], threshold[a:b], out=mask[: b - a])
        m.sum(axis=1, dtype=np.int32, out=out[a:b])
    return out


try:  # numba is a dependency, but ranking must keep working without it
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    njit = None

COMPILED = njit is not None
"""Whether :func:`count_rows` counts float scores with its compiled loop (numba importable);
tests set it False to check the numpy path against it."""

if njit is not None:

    @njit(cache=True, nogil=True)
    def _count_compiled(scores, threshold, strict, out):  # pragma: no cover - compiled
        n, width = scores.shape
        for k in range(n):
            t = threshold[k]
            row = scores[k]
            c = 0
            if strict:
                for j in range(width):
                    c += row[j] > t
            else:
                for j in range(width):
                    c += row[j] >= t
            out[k] = c


class _Ranker:
    """``rank(scores, rows)``: the ranks of the targets of the batch's ``rows`` (a slice, by
    default all) in ``scores``, one row per slot of ``rows``; the shape is checked.
    ``rank.buffer(n_rows, dtype, device)``: scratch space for a step's scores (see the module
    docstring), shared by all the steps of one evaluation."""

    def __init__(
        self, model, targets: np.ndarray, n_items: int, tie_mode: str, scratch: dict
    ) -> None:
        self.model, self.targets, self.n_items, self.tie_mode = model, targets, n_items, tie_mode
        self.scratch = scratch

    def __call__(self, scores, rows: slice = slice(None)) -> np.ndarray:
        want = len(range(*rows.indices(len(self.targets))))
        if tuple(scores.shape) != (want, self.n_items):
            raise ValueError(
                f"{type(self.model).__name__}.step returned scores of shape "
                f"{tuple(scores.shape)}, expected ({want}, {self.n_items})"
            )
        return rank_targets(scores, self.targets[rows], self.tie_mode)

    def buffer(self, n_rows: int, dtype, device=None):
        """An uninitialised (n_rows, n_items) array to write scores into: numpy for a numpy
        dtype, else a torch tensor of ``dtype`` on ``device``. The same memory comes back at
        every step (the batch never grows), so a step allocates and faults in no new pages;
        what it holds is valid until the next step."""
        key = (str(dtype), str(device))
        have = self.scratch.get(key)
        if have is None or len(have) < n_rows:
            if torch is not None and isinstance(dtype, torch.dtype):
                have = torch.empty((n_rows, self.n_items), dtype=dtype, device=device)
            else:
                have = np.empty((n_rows, self.n_items), dtype=dtype)
            self.scratch[key] = have
        return have[:n_rows]


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
    step_ranked = getattr(model, "step_ranked", None)
    scratch: dict = {}  # the rankers' score buffers, freed when the evaluation ends
    while len(slot_session):
        start = test.offsets[slot_session] + slot_pos
        items = test.items[start]
        targets = test.items[start + 1]
        n = len(slot_session)
        rank = _Ranker(model, targets, test.n_items, tie_mode, scratch)
        sl = slice(done, done + n)
        if step_ranked is not None:
            out_rank[sl] = step_ranked(state, items, reset, rank)
        else:
            out_rank[sl] = rank(model.step(state, items, reset))
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
