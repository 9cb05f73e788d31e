"""What the session-kNN family (SKNN, V-SKNN, STAN, VSTAN) shares.

- :class:`SessionIndex`: the training sessions as contiguous arrays (distinct items with the
  1-based position of their last click), renumbered in *sampling order* (0 = the most recent
  session by its last click, or a seeded random order), and the inverted index item -> training
  sessions, each list ascending in that order. "The M most recent candidates" is then "the M
  smallest session numbers in the union of the slot's posting lists", which only needs the first
  M entries of every list and is brought up to date while a step forms its pairs.
  :class:`EntryRows` holds the same sessions' items in rows of a fixed width, so that numpy
  gathers the items of thousands of neighbours with one ``np.take`` (where numba is missing).
- The recency weighting and decay families of V-SKNN (:data:`WEIGHTINGS`, :data:`DECAYS`).
- :class:`SessionKNN`: the batched scorer. Per slot the state is the session so far (a dense
  row of last positions, the click history, the length) plus its sorted candidate list; a step
  scores every slot at once, in chunks of slots (:data:`_PAIR_BUDGET`) whose temporaries stay in
  the cache. Because the candidates are the M smallest numbers of the union of the postings of
  s's items, the candidates holding item i are exactly the prefix of i's list up to the slot's
  largest candidate; the matches (slot, candidate, item) are these prefixes, put in (slot,
  candidate, position in s) order by one sort of packed int64 keys, and reduced per pair into
  the aggregates of :class:`Pairs` that the model reads (``pair_fields``). The subclass turns
  them into similarities, the ``k`` most similar candidates per slot are kept
  (:func:`top_k_mask`), and their items' contributions are added up per chunk by one compiled
  pass over the index (numba; :data:`COMPILED`), else by one ``np.bincount``. ``step_ranked``
  hands each chunk's scores to the evaluator's ranking while they are in the cache (no
  (n_slots, n_items) array); the chunks run on two threads where a second core is free
  (:data:`THREADS`).
- Scores are bit for bit those of the plain formulation (same operations in the same order: see
  :class:`SessionKNN`); tests/reference_knn_batched.py keeps the previous, plainer batched
  scorer and tests/test_knn_fast.py holds this one to it exactly. The slow twin, the same
  equations for one session in plain Python loops over the training sessions, is
  ``tests/reference_knn.py``; the tests hold the batched scorer to it too.

Unknown clicks (``UNKNOWN``) take a position in the session (they count in its length L) but
are not items of it: they match no training session. A session whose clicks are all unknown has
no candidates and scores every item 0. Items without neighbour support score 0; the evaluator's
conservative ties give them no free hits (session-rec's evaluator orders zero scores
arbitrarily, which can only help its figures).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithms.base import EpochCallback, SessionRecommender
from algorithms.params import Bool, Choice, Int
from datasets.sessions import UNKNOWN, Sessions

SAMPLINGS = ("recent", "random")

WEIGHTINGS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "div": lambda p, n: p / n,
    "quadratic": lambda p, n: (p / n) ** 2,
    "log": lambda p, n: 1.0 / np.log10(n - p + 1.7),
    "same": lambda p, n: np.ones(np.broadcast(p, n).shape),
    "linear": lambda p, n: np.maximum(0.0, 1.0 - 0.1 * (n - p)),
    "linear-reference": lambda p, n: np.where(p <= 10, 1.0 - 0.1 * (n - p), 0.0),
}
"""Weight w(p, L) of the click at 1-based position p of a session of L clicks (V-SKNN).

``linear`` is the evident intent (1 - 0.1 (L - p), 0 from 10 clicks back on);
``linear-reference`` is session-rec's formula (1 - 0.1 (L - p) for p <= 10, else 0: in sessions
longer than 10 clicks the most recent clicks get 0 and old ones go negative)."""

DECAYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "div": lambda x: 1.0 / x,
    "quadratic": lambda x: 1.0 / x**2,
    "log": lambda x: 1.0 / np.log10(x + 1.7),
    "same": lambda x: np.ones(np.shape(x)),
    "linear": lambda x: np.maximum(0.0, 1.0 - 0.1 * x),
    "linear-reference": lambda x: np.where(x <= 100, 1.0 - 0.1 * x, 0.0),
}
"""Decay d(x) of a neighbour's contribution, x = 1 + clicks between the end of the session and
its most recent click on an item of the neighbour (V-SKNN). ``linear`` is clipped at 0;
``linear-reference`` is session-rec's (negative for 10 < x <= 100)."""

_KEY_BITS = 63
"""Bits of the packed match keys (slot, session, item row, position in the session): a
non-negative int64. Wider keys take the plain formulation's stable argsort instead."""

_MIN_THREAD_SLOTS = 16
"""A step is shared between two threads only when each gets at least this many slots."""

_PAIR_BUDGET = 2**17
"""(slot, candidate) pairs scored at once (at most; at least one slot): a chunk of slots whose
temporaries (some tens of MB) stay in the processor's cache, which measured faster on rsc15-64
than scoring all slots at once (2**16 to 2**18 were alike)."""


@dataclass(frozen=True, eq=False)
class SessionIndex:
    """Training sessions in sampling order, and the inverted index item -> sessions.

    Attributes:
        offsets: int64 (n_sessions + 1,); session r's distinct items are
            ``items[offsets[r]:offsets[r+1]]``.
        items: int32 distinct items of each session, ascending.
        positions: int32 1-based position of the item's last click in its session.
        n_distinct: int32 |set(n)| per session.
        n_clicks: int32 |n| per session (repeats included, unknown clicks included).
        original: int64 training session number of each renumbered session.
        item_offsets: int64 (n_items + 1,): item i's sessions are
            ``item_sessions[item_offsets[i]:item_offsets[i+1]]``.
        item_sessions: int32 session numbers (sampling order), ascending within each item.
        item_positions: int32 position of the item's last click in each of those sessions.
    """

    offsets: np.ndarray
    items: np.ndarray
    positions: np.ndarray
    n_distinct: np.ndarray
    n_clicks: np.ndarray
    original: np.ndarray
    item_offsets: np.ndarray
    item_sessions: np.ndarray
    item_positions: np.ndarray

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1


def sampling_order(train: Sessions, sampling: str, seed: int) -> np.ndarray:
    """Training session numbers in sampling order (first = kept first when sampling).

    ``recent``: by the time of the last click, latest first (file order when there are no
    timestamps: a later session is more recent; equal times: the later session first).
    ``random``: a seeded random permutation; keeping the first M of the candidates in it is a
    uniform random sample of M of them (a bottom-M sample, consistent along the session).
    """
    n = train.n_sessions
    if sampling == "random":
        return np.random.default_rng(seed).permutation(n).astype(np.int64)
    index = np.arange(n, dtype=np.int64)
    if train.times is None:
        return index[::-1].copy()
    last = last_click_times(train)
    return np.lexsort((-index, -last)).astype(np.int64)


def last_click_times(train: Sessions) -> np.ndarray:
    """Time of each session's last click (seconds); session order if there are no timestamps.

    An empty session gets the time of the session before it (or 0).
    """
    n = train.n_sessions
    if train.times is None:
        return np.arange(n, dtype=np.float64)
    lengths = train.lengths
    out = np.zeros(n, dtype=np.float64)
    nonempty = lengths > 0
    out[nonempty] = train.times[train.offsets[1:][nonempty] - 1]
    out[~nonempty] = np.maximum.accumulate(np.where(nonempty, out, -np.inf))[~nonempty]
    return np.where(np.isfinite(out), out, 0.0)


def build_index(train: Sessions, order: np.ndarray) -> SessionIndex:
    """The :class:`SessionIndex` of ``train`` with sessions renumbered so that ``order[r]`` -> r."""
    n_items, n_sessions = train.n_items, train.n_sessions
    renumber = np.empty(n_sessions, dtype=np.int64)
    renumber[order] = np.arange(n_sessions, dtype=np.int64)
    lengths = train.lengths
    click_session = renumber[np.repeat(np.arange(n_sessions), lengths)]
    starts = np.repeat(train.offsets[:-1], lengths)
    click_pos = np.arange(train.n_events, dtype=np.int64) - starts + 1
    known = train.items != UNKNOWN
    keys = click_session[known] * n_items + train.items[known]
    pos = click_pos[known]
    # The last click of each (session, item): unique over the reversed clicks keeps the first.
    uniq, first = np.unique(keys[::-1], return_index=True)
    positions = pos[::-1][first].astype(np.int32)
    sess = uniq // n_items
    items = (uniq % n_items).astype(np.int32)
    n_distinct = np.bincount(sess, minlength=n_sessions).astype(np.int32)
    offsets = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(n_distinct, out=offsets[1:])
    by_item = np.argsort(items, kind="stable")  # keeps sessions ascending within an item
    item_offsets = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(items, minlength=n_items), out=item_offsets[1:])
    return SessionIndex(
        offsets=offsets,
        items=items,
        positions=positions,
        n_distinct=n_distinct,
        n_clicks=lengths[order].astype(np.int32),
        original=np.asarray(order, dtype=np.int64),
        item_offsets=item_offsets,
        item_sessions=sess[by_item].astype(np.int32),
        item_positions=positions[by_item],
    )


def ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without a loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, dtype=np.int64) - first, counts) + np.arange(total)


def count_at_most(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """Per k, how many of ``values[starts[k] : starts[k] + counts[k]]`` (ascending) are at most
    ``bounds[k]``: one binary search per k, all of them a step at a time (no Python loop over k)."""
    lo = np.zeros(len(starts), dtype=np.int64)
    hi = np.asarray(counts, dtype=np.int64).copy()
    starts = np.asarray(starts, dtype=np.int64)
    active = np.flatnonzero(lo < hi)
    while len(active):
        a, b = lo[active], hi[active]
        mid = (a + b) >> 1
        right = values[starts[active] + mid] <= bounds[active]
        lo[active] = np.where(right, mid + 1, a)
        hi[active] = np.where(right, b, mid)
        active = active[lo[active] < hi[active]]
    return lo


def top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, True for the ``k`` largest positive values; ties at the cut-off: leftmost first.

    Columns are candidates in sampling order, so among equal similarities the more recent
    session wins (as a stable sort by similarity would decide).
    """
    positive = values > 0
    full = np.flatnonzero(positive.sum(axis=1) > k)  # only these rows need a cut
    if not len(full):
        return positive
    sub = values[full]
    width = sub.shape[1]
    kth = np.partition(sub, width - k, axis=1)[:, width - k : width - k + 1]  # k-th largest
    greater = sub > kth
    tied = sub == kth
    room = k - greater.sum(axis=1, keepdims=True)
    positive[full] &= greater | (tied & (np.cumsum(tied, axis=1) <= room))
    return positive


@dataclass(frozen=True, eq=False)
class EntryRows:
    """Every training session's distinct items (and their positions) in rows of ``width``, for
    gathering the items of many neighbours at once without a ragged index.

    Session r (sampling order) fills the ``n_rows[r]`` rows from ``first[r]`` on, its items in
    the order of :class:`SessionIndex` (ascending), the last row padded.

    Attributes:
        items: int32 (n_rows, width); padding 0.
        shifted: int32 (n_rows, width): position + max_position - 1, so that ``shifted - anchor``
            indexes a table of the signed distance pos - anchor shifted by max_position - 1;
            padding 3 * max_position (past the distances, where such a table holds zeros).
        pad: bool (n_rows, width), True for padding.
    """

    width: int
    max_position: int
    first: np.ndarray
    n_rows: np.ndarray
    items: np.ndarray
    shifted: np.ndarray
    pad: np.ndarray


def build_entry_rows(index: SessionIndex, width: int | None = None) -> EntryRows:
    """The :class:`EntryRows` of ``index``; ``width`` by default the one of least work (entries
    plus a row's overhead, over all sessions)."""
    n_distinct = index.n_distinct.astype(np.int64)
    if width is None:
        costs = {w: int((-(-n_distinct // w) * (w + 4)).sum()) for w in range(1, 9)}
        width = min(costs, key=costs.__getitem__)
    n_rows = -(-n_distinct // width)
    first = np.zeros(index.n_sessions + 1, dtype=np.int64)
    np.cumsum(n_rows, out=first[1:])
    rank = np.arange(len(index.items), dtype=np.int64) - np.repeat(index.offsets[:-1], n_distinct)
    row = np.repeat(first[:-1], n_distinct) + rank // width
    col = rank % width
    max_position = int(index.positions.max(initial=1))
    total = int(first[-1])
    items = np.zeros((total, width), dtype=np.int32)
    items[row, col] = index.items
    shifted = np.full((total, width), 3 * max_position, dtype=np.int32)
    shifted[row, col] = index.positions + (max_position - 1)
    pad = np.ones((total, width), dtype=bool)
    pad[row, col] = False
    return EntryRows(width, max_position, first, n_rows, items, shifted, pad)


def _runs(key: np.ndarray) -> np.ndarray:
    """Start of every run of equal values of the sorted ``key``."""
    new_run = np.empty(len(key), dtype=bool)
    new_run[:1] = True
    np.not_equal(key[1:], key[:-1], out=new_run[1:])
    return np.flatnonzero(new_run)


def _bits(n: int) -> int:
    """Bits of the non-negative integers below ``n``."""
    return max(int(n - 1).bit_length(), 1)


@dataclass
class Pairs:
    """Aggregates of every (slot, candidate session) pair, one entry per pair.

    Attributes:
        slot: the slot (row of the chunk being scored).
        session: the candidate's session number (sampling order).
        overlap: |set(s) ∩ set(n)|.
        weight_sum: sum over i in set(s) ∩ set(n) of w(p_i, L), w the model's position weight.
        last_match: p*, the last position in s whose item occurs in n.
        anchor_paper: position in n of the item at p* (STAN's i*, the paper's reading).
        anchor_code: the last position in n holding any item of s (session-rec's STAN).
        length, n_distinct, weight_sq_sum: the slot's L, |set(s)| and sum over set(s) of w^2.

    The batched scorer leaves None the fields that the model's ``pair_fields`` does not name.
    """

    slot: np.ndarray
    session: np.ndarray
    overlap: np.ndarray | None
    weight_sum: np.ndarray | None
    last_match: np.ndarray | None
    anchor_paper: np.ndarray | None
    anchor_code: np.ndarray | None
    length: np.ndarray | None
    n_distinct: np.ndarray | None
    weight_sq_sum: np.ndarray | None

    def subset(self, index: np.ndarray) -> Pairs:
        """The pairs ``index``, each field gathered when first read (None stays None)."""
        return _PairsSubset(self, index)  # type: ignore[return-value]


class _PairsSubset:
    """A lazy :meth:`Pairs.subset`: only the fields the hooks read are gathered."""

    def __init__(self, pairs: Pairs, index: np.ndarray) -> None:
        self._pairs, self._index = pairs, index

    def __getattr__(self, name: str):
        value = getattr(self._pairs, name)
        value = None if value is None else value[self._index]
        setattr(self, name, value)
        return value


PAIR_FIELDS = (
    "overlap",
    "weight_sum",
    "last_match",
    "anchor_paper",
    "anchor_code",
    "length",
    "n_distinct",
    "weight_sq_sum",
)


class SessionKNN(SessionRecommender):
    """Base of the session-kNN methods: fit builds the index, step runs the batched scorer.

    score(j) = item_factor(j) * sum over the k neighbours n containing j of
               sim(s, n) * pair_factor(s, n) * entry_factor(pos_n(j), anchor(s, n))

    Subclasses define ``position_weights`` (w(p, L) of the session's clicks),
    ``session_similarity``, and optionally ``pair_factor``, ``entry_factor`` (with
    ``entry_factor_by_distance`` when it depends on pos_n(j) - anchor only) and
    ``item_factor_``; ``pair_fields`` names the :class:`Pairs` fields they read. Common
    hyperparameters (set by the subclass constructors): ``k``,
    ``sample_size``, ``sampling``, ``remove_session_items`` (score 0 for the items already in
    the session; off by default as in the reference) and ``seed`` (for ``sampling="random"``).

    Floating point: every score is computed with the operations, and in the order, of the plain
    formulation (tests/reference_knn_batched.py keeps it): a pair's ``weight_sum`` is
    ``np.add.reduceat`` over its matches by ascending position in s, an item's score is the sum
    from 0.0 over the neighbours in sampling order (``np.bincount``, or the compiled loop that
    adds the same terms in the same order) of ``sim * pair_factor * entry_factor``, times
    ``item_factor``. So scores, and the ranks with
    their ties, are bit for bit those of the plain formulation.

    Attributes:
        index_: the :class:`SessionIndex` of the training sessions.
        entry_rows_: the same sessions as :class:`EntryRows`.
        entry_table_: ``entry_factor`` by distance (see ``entry_factor_by_distance``), or None.
        n_items_: number of training items (the width of the scores).
        item_factor_: per-item score factor (float64, length n_items) or None.
    """

    hyperparameters = {  # the subclasses add their own
        "k": Int(low=1),
        "sample_size": Int(low=1),
        "sampling": Choice(SAMPLINGS),
        "remove_session_items": Bool(),
        "seed": Int(low=0),
    }

    k: int
    sample_size: int
    sampling: str
    remove_session_items: bool
    seed: int

    entry_factor_by_distance = False
    """True when ``entry_factor(p, a)`` depends on ``p - a`` only (and is computed from it): the
    scorer then looks it up in a table of ``entry_factor(d, 0)`` over the distances d."""

    @property
    def pair_fields(self) -> frozenset[str]:
        """The fields of :class:`Pairs` the hooks read besides ``slot`` and ``session``; the
        scorer computes only these and leaves the others None. Default: all of them."""
        return frozenset(PAIR_FIELDS)

    # -- hooks -----------------------------------------------------------------------------
    def position_weights(self, p: np.ndarray, length: np.ndarray) -> np.ndarray:
        """w(p, L) of the session click at 1-based position p; default 1."""
        return np.ones(np.broadcast(p, length).shape)

    def session_similarity(self, pairs: Pairs) -> np.ndarray:
        """sim(s, n) of every pair."""
        raise NotImplementedError

    def pair_factor(self, pairs: Pairs) -> np.ndarray | None:
        """Per-pair factor of the neighbour's contributions (decay); None means 1."""
        return None

    def entry_factor(self, positions: np.ndarray, anchors: np.ndarray) -> np.ndarray | None:
        """Per-item factor from the item's position in n and the pair's anchor; None means 1."""
        return None

    def _fit_extra(self, train: Sessions) -> None:
        """Subclass-specific learned attributes (idf, time weights)."""
        self.item_factor_ = None

    # -- the contract ----------------------------------------------------------------------
    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> SessionKNN:
        self.validate()
        self.n_items_ = train.n_items
        self.index_ = build_index(train, sampling_order(train, self.sampling, self.seed))
        self.entry_rows_ = build_entry_rows(self.index_)
        self._fit_extra(train)
        self.entry_table_ = self._entry_table()
        return self

    def init_state(self, n_slots: int) -> dict[str, np.ndarray]:
        """Per slot: last position of every item (0 = not clicked), the click history, the
        length L, and the candidate sessions (ascending, padded with the sentinel)."""
        m = min(self.sample_size, max(self.index_.n_sessions, 1))
        return {
            "pos": np.zeros((n_slots, self.n_items_), dtype=np.int32),
            "hist": np.full((n_slots, 8), UNKNOWN, dtype=np.int64),
            "length": np.zeros(n_slots, dtype=np.int64),
            "cand": np.full((n_slots, m), self.index_.n_sessions, dtype=np.int32),
        }

    def step(
        self, state: dict[str, np.ndarray], items: np.ndarray, reset: np.ndarray
    ) -> np.ndarray:
        self._consume(state, np.asarray(items, dtype=np.int64), np.asarray(reset, dtype=bool))
        n = len(items)
        if n <= self._chunk_slots(state):
            scores = self._score(state, slice(0, n))
            self._remove_session_items(state, scores, slice(0, n))
            return scores
        scores = np.empty((n, self.n_items_), dtype=np.float64)

        def work(rows: slice) -> None:
            self._score(state, rows, scores[rows])
            self._remove_session_items(state, scores[rows], rows)

        self._each_chunk(state, n, work)
        return scores

    def step_ranked(
        self,
        state: dict[str, np.ndarray],
        items: np.ndarray,
        reset: np.ndarray,
        rank: Callable[[np.ndarray, slice], np.ndarray],
    ) -> np.ndarray:
        """``step``, with the scores of each chunk of slots handed to ``rank(scores, rows)``
        (the evaluator's ranking of those rows' targets) while they are in the cache, instead of
        one (n_slots, n_items) array; the ranks of every slot. The scores are those of
        ``step``."""
        self._consume(state, np.asarray(items, dtype=np.int64), np.asarray(reset, dtype=bool))
        n = len(items)
        ranks = np.empty(n, dtype=np.float64)

        def work(rows: slice) -> None:
            scores = self._score(state, rows)
            self._remove_session_items(state, scores, rows)
            ranks[rows] = rank(scores, rows)

        self._each_chunk(state, n, work)
        return ranks

    def _chunk_slots(self, state: dict[str, np.ndarray]) -> int:
        return max(1, _PAIR_BUDGET // state["cand"].shape[1])

    def _each_chunk(self, state: dict[str, np.ndarray], n: int, work: Callable) -> None:
        """``work(rows)`` for every chunk of slots, on two threads where a second core is free
        (see :func:`scoring_threads`): the chunks are independent and numpy releases the GIL in
        the large operations, so the scores are the same either way."""
        chunk = self._chunk_slots(state)
        threads = scoring_threads() if n >= 2 * _MIN_THREAD_SLOTS else 1
        if threads > 1:  # a chunk for each thread at least (a step of one chunk would not share)
            chunk = min(chunk, -(-n // threads))
        chunks = [slice(a, min(n, a + chunk)) for a in range(0, n, chunk)]
        if len(chunks) > 1 and threads > 1:
            for _ in _workers().map(work, chunks):  # each worker takes the next chunk
                pass
        else:
            for rows in chunks:
                work(rows)

    def _remove_session_items(
        self, state: dict[str, np.ndarray], scores: np.ndarray, rows: slice
    ) -> None:
        """With ``remove_session_items``, score 0 for the known clicks of the slots ``rows``
        (``scores`` holds those rows only)."""
        if not self.remove_session_items:
            return
        hist = state["hist"][rows, : int(state["length"][rows].max(initial=1))]
        slot, col = np.nonzero(hist != UNKNOWN)
        scores[slot, hist[slot, col]] = 0.0

    # -- the machinery ---------------------------------------------------------------------
    def _consume(self, state: dict[str, np.ndarray], items: np.ndarray, reset: np.ndarray) -> None:
        """Append one click per slot to the session so far (its candidates are brought up to
        date when it is scored, by :meth:`_pairs`)."""
        pos, length, cand = state["pos"], state["length"], state["cand"]
        r = np.flatnonzero(reset)
        pos[r] = 0
        state["hist"][r] = UNKNOWN
        length[r] = 0
        cand[r] = self.index_.n_sessions
        length += 1
        hist = state["hist"]
        if length.max(initial=0) > hist.shape[1]:
            wider = np.full((len(hist), 2 * hist.shape[1]), UNKNOWN, dtype=np.int64)
            wider[:, : hist.shape[1]] = hist
            state["hist"] = hist = wider
        slots = np.arange(len(items))
        hist[slots, length - 1] = items
        known = np.flatnonzero(items != UNKNOWN)
        pos[known, items[known]] = length[known]  # the candidates follow in _pairs

    def _query(self, state: dict[str, np.ndarray], rows: slice) -> tuple[np.ndarray, ...]:
        """Per slot: L, |set(s)|, sum of w and of w^2 over the distinct items of s; and the
        distinct items of all slots as (slot, item, last position) arrays, slot-major and by
        ascending position within a slot."""
        length = state["length"][rows]
        width = int(length.max(initial=1))
        hist = state["hist"][rows, :width]
        p = np.arange(1, width + 1)
        slot = np.arange(len(hist))[:, None]
        is_last = (hist != UNKNOWN) & (state["pos"][rows][slot, np.maximum(hist, 0)] == p)
        # Positions past a slot's length are padding (masked below); clipping them to the
        # length keeps w(p, L) finite there (1 / log10(L - p + 1.7) is not for p > L + 0.7).
        w = np.where(
            is_last,
            self.position_weights(np.minimum(p[None, :], length[:, None]), length[:, None]),
            0.0,
        )
        d_slot, d_col = np.nonzero(is_last)
        return (
            length,
            is_last.sum(axis=1),
            w.sum(axis=1),
            (w * w).sum(axis=1),
            d_slot,
            hist[d_slot, d_col],
            d_col + 1,
        )

    def _pairs(self, cand: np.ndarray, query: tuple) -> Pairs:
        """Update the candidates ``cand`` (a chunk of slots, in place) with the slots' newest
        items and return the :class:`Pairs` of the candidates, in row-major order (the fields of
        ``pair_fields``; the others None).

        The candidates are the M smallest session numbers of the union of the postings of s's
        items, so the candidates holding item i are exactly i's postings up to the slot's
        largest candidate (all of them in a row that is not full): a prefix of i's list. A new
        item can only bring sessions below the largest candidate, so taking every item's
        prefix up to the largest candidate *before* the click (the first M postings in a row
        that was not full) gives the matches (slot, candidate, item of s) of all old and new
        candidates; the new candidates are the M smallest of them. The matches are generated
        per slot and item by ascending position in s; one stable sort of packed integer keys
        (slot, session, item row, position in n) orders them by pair and, within a pair, by
        position in s, as the plain formulation's stable argsort by (slot, session) did.
        """
        index = self.index_
        n_rows, m = cand.shape
        sentinel = index.n_sessions
        length, n_distinct, _, w_sq, d_slot, d_item, d_q = query
        wanted = self.pair_fields
        anchors = "anchor_paper" in wanted or "anchor_code" in wanted
        by_row = anchors or "weight_sum" in wanted or "last_match" in wanted
        starts = index.item_offsets[d_item]
        counts = np.minimum(index.item_offsets[d_item + 1] - starts, m)
        full = np.flatnonzero(cand[d_slot, m - 1] < sentinel)
        if len(full):
            counts[full] = count_at_most(
                index.item_sessions, starts[full], counts[full], cand[d_slot[full], m - 1]
            )
        flat = ragged_arange(starts, counts)
        n_d = len(d_item)
        b_sess = _bits(sentinel)
        b_row = _bits(n_d) if by_row else 0
        b_pos = _bits(self.entry_rows_.max_position + 1) if anchors else 0
        row = npos = None
        if _bits(n_rows) + b_sess + b_row + b_pos <= _KEY_BITS:
            base = d_slot.astype(np.int64) << (b_sess + b_row)
            if by_row:
                base |= np.arange(n_d)
            key = np.repeat(base << b_pos, counts)
            key |= index.item_sessions[flat].astype(np.int64) << (b_row + b_pos)
            if anchors:
                key |= index.item_positions[flat]
            key.sort(kind="stable")  # runs already ascending (one per slot and item): merges
            if anchors:
                npos = key & ((1 << b_pos) - 1)
                key >>= b_pos
            if by_row:
                row = key & ((1 << b_row) - 1)
                key >>= b_row  # slot and session
        else:  # too large to pack (no data set so far): the plain formulation's stable argsort
            key = np.repeat(d_slot.astype(np.int64) << b_sess, counts)
            key |= index.item_sessions[flat]
            order = np.argsort(key, kind="stable")  # keeps each pair's matches by row
            key = key[order]
            row = np.repeat(np.arange(n_d), counts)[order]
            npos = index.item_positions[flat[order]].astype(np.int64)
        seg = _runs(key)
        n_cand = np.bincount(key[seg] >> b_sess, minlength=n_rows)
        if n_cand.max(initial=0) > m:  # new sessions pushed some out: keep each slot's M first
            first = np.cumsum(n_cand) - n_cand
            rank = np.arange(len(seg)) - np.repeat(first, n_cand)
            keep = np.repeat(rank < m, np.diff(np.append(seg, len(key))))
            key = key[keep]
            row = None if row is None else row[keep]
            npos = None if npos is None else npos[keep]
            seg = _runs(key)
            n_cand = np.minimum(n_cand, m)
        sess = key[seg] & ((1 << b_sess) - 1)
        cand[...] = sentinel
        cand[np.arange(m) < n_cand[:, None]] = sess
        ends = np.append(seg[1:], len(key)) - 1 if by_row else None
        pair_slot = np.repeat(np.arange(n_rows), n_cand)
        pairs = Pairs(pair_slot, sess, *([None] * 8))
        if "overlap" in wanted:
            pairs.overlap = np.diff(np.append(seg, len(key)))
        if "weight_sum" in wanted:  # w as the plain formulation computed it for each match
            w = self.position_weights(d_q, length[d_slot])
            pairs.weight_sum = np.add.reduceat(w[row], seg)
        if "last_match" in wanted:
            pairs.last_match = d_q[row[ends]]
        if "anchor_paper" in wanted:
            pairs.anchor_paper = npos[ends]
        if "anchor_code" in wanted:
            pairs.anchor_code = np.maximum.reduceat(npos, seg)
        for name, per_slot in (
            ("length", length),
            ("n_distinct", n_distinct),
            ("weight_sq_sum", w_sq),
        ):
            if name in wanted:
                setattr(pairs, name, per_slot[pair_slot])
        return pairs

    def _score(
        self, state: dict[str, np.ndarray], rows: slice, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The scores of the slots ``rows``, written into ``out`` when given; updates their
        candidates."""
        n_items = self.n_items_
        cand = state["cand"][rows]  # a view: updated in place
        n_rows = len(cand)
        query = self._query(state, rows)
        if not len(query[5]):  # no known item in any slot: no candidates
            if out is None:
                return np.zeros((n_rows, n_items), dtype=np.float64)
            out[...] = 0.0
            return out
        pairs = self._pairs(cand, query)
        valid = cand < self.index_.n_sessions
        sims = np.asarray(self.session_similarity(pairs), dtype=np.float64)
        dense = np.zeros(cand.shape, dtype=np.float64)
        dense[valid] = sims
        chosen = np.flatnonzero(top_k_mask(dense, self.k)[valid])
        contrib = sims[chosen]
        pairs = pairs.subset(chosen)  # the neighbours only, from here on
        factor = self.pair_factor(pairs)  # elementwise: as for all pairs, then the neighbours'
        if factor is not None:
            contrib = contrib * factor
        # The neighbours' items, a block of rows of ``entry_rows_`` each.
        if COMPILED and self.entry_table_ is not _GENERIC:
            out = self._accumulate_compiled(n_rows, pairs, contrib, out)
        else:
            out = self._accumulate(n_rows, pairs, contrib, out)
        if self.item_factor_ is not None:
            out *= self.item_factor_
        return out

    def _accumulate(
        self, n_rows: int, pairs: Pairs, contrib: np.ndarray, out: np.ndarray | None
    ) -> np.ndarray:
        """The sums over the neighbours ``pairs`` of ``contrib * entry_factor`` per (slot,
        item), by one ``np.bincount`` over their rows of ``entry_rows_`` (into ``out`` when
        given)."""
        n_items, er = self.n_items_, self.entry_rows_
        c_sess = pairs.session
        base = pairs.slot * n_items
        first = er.first[c_sess]
        n_row = er.n_rows[c_sess]
        anchor = self._anchor(pairs) if self.entry_table_ is not None else None
        if len(n_row) and n_row.max() > 1:  # some sessions span several rows
            sel = ragged_arange(first, n_row)
            owner = np.repeat(np.arange(len(n_row)), n_row)
            base, contrib = base[owner], contrib[owner]
            anchor = None if anchor is None else anchor[owner]
        else:
            sel = first
        # np.take, not fancy indexing: many times faster for gathering rows.
        target = np.take(er.items, sel, axis=0) + base[:, None]
        values = self._entry_values(er, sel, contrib, anchor)
        sums = np.bincount(target.ravel(), weights=values.ravel(), minlength=n_rows * n_items)
        sums = sums.reshape(n_rows, n_items)
        if out is None:
            return sums
        out[...] = sums
        return out

    def _accumulate_compiled(
        self, n_rows: int, pairs: Pairs, contrib: np.ndarray, out: np.ndarray | None
    ) -> np.ndarray:
        """:meth:`_accumulate` in one compiled pass over the neighbours' items in the index
        (``index_.items`` / ``positions``, no gathered temporaries): every sum adds the same
        products from 0.0 in the same order (the neighbours', as ``np.bincount``), so the values
        are the same. It leaves out the padding of :class:`EntryRows`, whose 0.0 changes no sum:
        x + 0.0 is x for every x but -0.0, and a sum that starts at +0.0 never becomes -0.0."""
        if out is None:
            out = np.zeros((n_rows, self.n_items_), dtype=np.float64)
        else:
            out[...] = 0.0
        index, table = self.index_, self.entry_table_
        if table is None:
            table, shift = _NO_TABLE, np.zeros(len(contrib), dtype=np.int64)
        else:  # table[pos + shift] = table[shifted - anchor] = entry_factor(pos, anchor)
            shift = (self.entry_rows_.max_position - 1) - np.asarray(
                self._anchor(pairs), dtype=np.int64
            )
        _accumulate_rows(
            index.offsets,
            index.items,
            index.positions,
            np.asarray(pairs.slot, dtype=np.int64),
            np.asarray(pairs.session, dtype=np.int64),
            np.asarray(contrib, dtype=np.float64),
            shift,
            table,
            self.entry_table_ is not None,
            out,
        )
        return out

    def _entry_values(
        self, er: EntryRows, sel: np.ndarray, contrib: np.ndarray, anchor: np.ndarray | None
    ) -> np.ndarray:
        """contrib * entry_factor(pos_n(j), anchor) for the entries of rows ``sel`` (0 for the
        padding, which adds nothing: x + 0.0 is x)."""
        table = self.entry_table_
        if table is None:
            return np.where(np.take(er.pad, sel, axis=0), 0.0, contrib[:, None])
        shifted = np.take(er.shifted, sel, axis=0)
        if table is not _GENERIC:
            values = table[shifted - anchor[:, None]]
            values *= contrib[:, None]  # = contrib * entry_factor, as in the plain formulation
            return values
        positions = shifted.astype(np.int64) - (er.max_position - 1)
        factor = self.entry_factor(positions, np.broadcast_to(anchor[:, None], positions.shape))
        return np.where(np.take(er.pad, sel, axis=0), 0.0, contrib[:, None] * factor)

    def _entry_table(self) -> np.ndarray | object | None:
        """None (no entry factor), the table of ``entry_factor`` over the shifted distances of
        :class:`EntryRows` (``entry_factor_by_distance``), or ``_GENERIC``."""
        one = np.ones(1, dtype=np.int64)
        if self.entry_factor(one, one) is None:
            return None
        if not self.entry_factor_by_distance:
            return _GENERIC
        big = self.entry_rows_.max_position
        distance = np.arange(-(big - 1), big, dtype=np.int64)
        table = np.zeros(3 * big, dtype=np.float64)  # zeros from 2 * big - 1 on: the padding
        table[: 2 * big - 1] = self.entry_factor(distance, np.zeros_like(distance))
        return table

    def _anchor(self, pairs: Pairs) -> np.ndarray:
        return pairs.anchor_paper


_GENERIC = object()

_NO_TABLE = np.zeros(1, dtype=np.float64)

try:  # numba is a dependency, but the numpy path must keep working without it
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    njit = None

COMPILED = njit is not None
"""Whether the neighbours' contributions are added up by the compiled loop
(:meth:`SessionKNN._accumulate_compiled`, numba importable) or by numpy
(:meth:`SessionKNN._accumulate`); the same values either way (tests/test_knn_fast.py)."""

if njit is not None:

    @njit(cache=True, nogil=True)
    def _accumulate_rows(
        offsets, items, positions, slots, sessions, contrib, shift, table, use_table, out
    ):  # pragma: no cover - compiled
        for p in range(len(sessions)):
            c, s, v, d = sessions[p], slots[p], contrib[p], shift[p]
            for e in range(offsets[c], offsets[c + 1]):
                if use_table:
                    out[s, items[e]] += table[positions[e] + d] * v  # as numpy: factor * contrib
                else:
                    out[s, items[e]] += v


THREADS: int | None = None
"""Threads that score a step's chunks of slots: None (the default) picks 2 while the other
processes leave a second core free, looked at every few seconds (``algorithms.gru4rec.threads``'
measure, which GRU4Rec's trainer uses too), else 1; or a fixed 1 or 2."""

_pool: tuple[int, ThreadPoolExecutor] | None = None
_others = None


def scoring_threads() -> int:
    """The threads to score with now: :data:`THREADS`, or the cores the others leave (1 or 2)."""
    global _others
    if THREADS is not None:
        return max(1, min(2, THREADS))
    from algorithms.gru4rec.threads import OthersCpu, available_cores  # the trainer's measure

    cores = available_cores()
    if cores < 2:
        return 1
    if _others is None:
        _others = OthersCpu(max_cores=cores)
        _others.value = float(cores)  # not measured yet: one thread until the first look
    return 2 if cores - _others.cores() >= 1.5 else 1


def _workers() -> ThreadPoolExecutor:
    """The two scoring threads (made again in a forked child, which has none of them)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(2, thread_name_prefix="knn-scoring"))
    return _pool[1]


def idf(train: Sessions) -> np.ndarray:
    """idf(j) = ln(#training sessions / #training clicks of j); 0 for items without clicks."""
    items = train.items[train.items != UNKNOWN]
    clicks = np.bincount(items, minlength=train.n_items).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(clicks > 0, np.log(max(train.n_sessions, 1) / np.maximum(clicks, 1)), 0.0)
