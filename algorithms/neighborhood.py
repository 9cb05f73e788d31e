"""What the session-kNN family (SKNN, V-SKNN, STAN, VSTAN) shares.

- :class:`SessionIndex`: the training sessions as contiguous arrays (distinct items with the
  1-based position of their last click), renumbered in *sampling order* (0 = the most recent
  session by its last click, or a seeded random order), and the inverted index item -> training
  sessions, each list ascending in that order. "The M most recent candidates" is then "the M
  smallest session numbers in the union of the slot's posting lists", which only needs the first
  M entries of every list and can be kept up to date click by click (:func:`merge_candidates`).
- The recency weighting and decay families of V-SKNN (:data:`WEIGHTINGS`, :data:`DECAYS`).
- :class:`SessionKNN`: the batched scorer. Per slot the state is the session so far (a dense
  row of last positions, the click history, the length) plus its sorted candidate list; a step
  scores every slot at once. Because the candidates are the M smallest numbers of the union of
  the postings of s's items, the candidates holding item i are exactly the prefix of i's list up
  to the slot's largest candidate; the matches (slot, candidate, item) are these prefixes, sorted
  by (slot, candidate) and reduced per pair into the aggregates of :class:`Pairs`. The subclass
  turns them into similarities, the ``k`` most similar candidates per slot are kept
  (:func:`top_k_mask`), and their items' contributions are added up with one ``np.bincount``.
- The slow twin, the same equations for one session in plain Python loops over the training
  sessions, is ``tests/reference_knn.py``; the tests hold the batched scorer to it.

Unknown clicks (``UNKNOWN``) take a position in the session (they count in its length L) but
are not items of it: they match no training session. A session whose clicks are all unknown has
no candidates and scores every item 0. Items without neighbour support score 0; the evaluator's
conservative ties give them no free hits (session-rec's evaluator orders zero scores
arbitrarily, which can only help its figures).
"""

from __future__ import annotations

from collections.abc import Callable
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

_PAIR_BUDGET = 2**22
"""(slot, candidate) pairs scored at once; bounds a step's working memory (~0.5 GiB)."""


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


def merge_candidates(cand: np.ndarray, index: SessionIndex, items: np.ndarray) -> np.ndarray:
    """Row-wise the M smallest distinct session numbers of ``cand[r]`` and ``item``'s postings.

    ``cand`` is (rows, M) ascending, padded with ``index.n_sessions`` (the sentinel); the
    result has the same layout. Only the first M postings of an item can be among the M
    smallest, and in a full row only those below its largest candidate, so the lists are cut
    there before the rows are merged.
    """
    rows, m = cand.shape
    sentinel = index.n_sessions
    starts = index.item_offsets[items]
    counts = np.minimum(index.item_offsets[items + 1] - starts, m)
    for r in np.flatnonzero(cand[:, -1] < sentinel).tolist():  # full rows
        a = int(starts[r])
        counts[r] = np.searchsorted(index.item_sessions[a : a + counts[r]], cand[r, -1], "right")
    busy = np.flatnonzero(counts > 0)
    if not len(busy):
        return cand
    starts, counts = starts[busy], counts[busy]
    add = np.full((len(busy), int(counts.max())), sentinel, dtype=np.int32)
    row = np.repeat(np.arange(len(busy)), counts)
    col = ragged_arange(np.zeros(len(busy), dtype=np.int64), counts)
    add[row, col] = index.item_sessions[ragged_arange(starts, counts)]
    both = np.concatenate([cand[busy], add], axis=1)
    both.sort(axis=1)
    tail = both[:, 1:]
    tail[tail == both[:, :-1]] = sentinel  # drop repeats (sentinels stay sentinels)
    both.sort(axis=1)
    out = cand.copy()
    out[busy] = both[:, :m]
    return out


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
    kth = -np.partition(-sub, k - 1, axis=1)[:, k - 1 : k]
    greater = sub > kth
    tied = sub == kth
    room = k - greater.sum(axis=1, keepdims=True)
    positive[full] &= greater | (tied & (np.cumsum(tied, axis=1) <= room))
    return positive


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
    """

    slot: np.ndarray
    session: np.ndarray
    overlap: np.ndarray
    weight_sum: np.ndarray
    last_match: np.ndarray
    anchor_paper: np.ndarray
    anchor_code: np.ndarray
    length: np.ndarray
    n_distinct: np.ndarray
    weight_sq_sum: np.ndarray


class SessionKNN(SessionRecommender):
    """Base of the session-kNN methods: fit builds the index, step runs the batched scorer.

    score(j) = item_factor(j) * sum over the k neighbours n containing j of
               sim(s, n) * pair_factor(s, n) * entry_factor(pos_n(j), anchor(s, n))

    Subclasses define ``position_weights`` (w(p, L) of the session's clicks),
    ``session_similarity``, and optionally ``pair_factor``, ``entry_factor`` and
    ``item_factor_``. Common hyperparameters (set by the subclass constructors): ``k``,
    ``sample_size``, ``sampling``, ``remove_session_items`` (score 0 for the items already in
    the session; off by default as in the reference) and ``seed`` (for ``sampling="random"``).

    Attributes:
        index_: the :class:`SessionIndex` of the training sessions.
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
        self._fit_extra(train)
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
        chunk = max(1, _PAIR_BUDGET // state["cand"].shape[1])
        parts = [self._score(state, slice(a, min(n, a + chunk))) for a in range(0, n, chunk)]
        scores = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if self.remove_session_items:
            scores[state["pos"] > 0] = 0.0
        return scores

    # -- the machinery ---------------------------------------------------------------------
    def _consume(self, state: dict[str, np.ndarray], items: np.ndarray, reset: np.ndarray) -> None:
        """Append one click per slot to the session so far and update the candidates."""
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
        new = known[pos[known, items[known]] == 0]  # a repeated item brings no new candidates
        pos[known, items[known]] = length[known]
        if len(new):
            cand[new] = merge_candidates(cand[new], self.index_, items[new])

    def _query(self, state: dict[str, np.ndarray], rows: slice) -> tuple[np.ndarray, ...]:
        """Per slot: L, |set(s)|, sum of w and of w^2 over the distinct items of s; and the
        distinct items of all slots as (slot, item, last position) arrays, slot-major."""
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

    def _score(self, state: dict[str, np.ndarray], rows: slice) -> np.ndarray:
        index, n_items = self.index_, self.n_items_
        cand = state["cand"][rows]
        n_rows = len(cand)
        valid = cand < index.n_sessions
        sess = cand[valid]  # row-major: grouped by slot, each slot's candidates in sampling order
        if not len(sess):
            return np.zeros((n_rows, n_items), dtype=np.float64)
        n_cand = valid.sum(axis=1)
        pair_slot = np.repeat(np.arange(n_rows), n_cand)
        length, n_distinct, _, w_sq, d_slot, d_item, d_q = self._query(state, rows)
        # The candidates are the M smallest session numbers of the union of the postings of
        # s's items, so the candidates holding item i are exactly i's postings up to the
        # slot's largest candidate: a prefix of i's list, no intersection needed.
        cutoff = np.where(n_cand > 0, cand[np.arange(n_rows), np.maximum(n_cand - 1, 0)], -1)
        lo = index.item_offsets[d_item]
        hi = np.minimum(index.item_offsets[d_item + 1], lo + cand.shape[1])
        prefix = np.array(
            [
                np.searchsorted(index.item_sessions[a:b], c, side="right")
                for a, b, c in zip(lo.tolist(), hi.tolist(), cutoff[d_slot].tolist())
            ],
            dtype=np.int64,
        )
        flat = ragged_arange(lo, prefix)
        m_slot = np.repeat(d_slot, prefix)
        # Sort the matches by (slot, session): the runs are then the valid candidates in order.
        key = m_slot * (index.n_sessions + 1) + index.item_sessions[flat]
        order = np.argsort(key, kind="stable")
        flat, m_slot = flat[order], m_slot[order]
        q_m = np.repeat(d_q, prefix)[order].astype(np.int64)
        npos_m = index.item_positions[flat].astype(np.int64)
        m_sess = index.item_sessions[flat]
        new_run = np.ones(len(flat), dtype=bool)
        new_run[1:] = (m_sess[1:] != m_sess[:-1]) | (m_slot[1:] != m_slot[:-1])
        m_seg = np.flatnonzero(new_run)
        assert len(m_seg) == len(sess)
        w = self.position_weights(q_m, length[m_slot])
        big = int(npos_m.max(initial=0)) + 1
        best = np.maximum.reduceat(q_m * big + npos_m, m_seg)  # the match with the largest p_i
        pairs = Pairs(
            slot=pair_slot,
            session=sess.astype(np.int64),
            overlap=np.diff(np.append(m_seg, len(flat))),
            weight_sum=np.add.reduceat(w, m_seg),
            last_match=best // big,
            anchor_paper=best % big,
            anchor_code=np.maximum.reduceat(npos_m, m_seg),
            length=length[pair_slot],
            n_distinct=n_distinct[pair_slot],
            weight_sq_sum=w_sq[pair_slot],
        )
        sims = np.asarray(self.session_similarity(pairs), dtype=np.float64)
        dense = np.zeros(cand.shape, dtype=np.float64)
        dense[valid] = sims
        chosen = np.flatnonzero(top_k_mask(dense, self.k)[valid])
        contrib = sims[chosen]
        factor = self.pair_factor(pairs)
        if factor is not None:
            contrib = contrib * factor[chosen]
        # The neighbours' items.
        c_sess = sess[chosen]
        c_counts = index.n_distinct[c_sess].astype(np.int64)
        c_flat = ragged_arange(index.offsets[c_sess], c_counts)
        values = np.repeat(contrib, c_counts)
        factor = self.entry_factor(
            index.positions[c_flat].astype(np.int64),
            np.repeat(self._anchor(pairs)[chosen], c_counts),
        )
        if factor is not None:
            values = values * factor
        target = np.repeat(pair_slot[chosen].astype(np.int64), c_counts) * n_items
        target += index.items[c_flat]
        out = np.bincount(target, weights=values, minlength=n_rows * n_items)
        out = out.reshape(n_rows, n_items)
        if self.item_factor_ is not None:
            out *= self.item_factor_
        return out

    def _anchor(self, pairs: Pairs) -> np.ndarray:
        return pairs.anchor_paper


def idf(train: Sessions) -> np.ndarray:
    """idf(j) = ln(#training sessions / #training clicks of j); 0 for items without clicks."""
    items = train.items[train.items != UNKNOWN]
    clicks = np.bincount(items, minlength=train.n_items).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(clicks > 0, np.log(max(train.n_sessions, 1) / np.maximum(clicks, 1)), 0.0)
