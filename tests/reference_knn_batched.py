"""The session-kNN family's batched scorer as it was before the fast path, kept as a reference.

``ReferenceScorer(model)`` scores with ``model``'s fitted index, its session-side aggregates
(``_query``, the click history of ``_consume``) and its formula hooks (``position_weights``,
``session_similarity``, ``pair_factor``, ``entry_factor``, ``_anchor``, ``item_factor_``), but
with the plain machinery that the fast scorer of :mod:`algorithms.neighborhood` replaced:

- the candidates merged when a click brings a new item, by sorting each row's candidates with
  the item's postings (not while the pairs are formed);
- the prefix of every posting list found by one ``searchsorted`` per (slot, item);
- the matches grouped into (slot, candidate) pairs by a stable argsort (not packed keys);
- the ``k`` neighbours by a stable argsort of every row (not a partition);
- one ``np.bincount`` over every neighbour's items in the flat index (not the row blocks of
  :class:`~algorithms.neighborhood.EntryRows`), the scores of all slots in one array.

It is slow but plain; tests/test_knn_fast.py requires the fast scorer to give bit for bit the
same candidates and scores (and so the same ranks, ties included). It keeps its own state, so
both can run side by side.
"""

from __future__ import annotations

import numpy as np

from algorithms.neighborhood import Pairs, SessionKNN, ragged_arange
from datasets.sessions import UNKNOWN

_PAIR_BUDGET = 2**22


def merge_candidates(cand: np.ndarray, index, items: np.ndarray) -> np.ndarray:
    """Row-wise the M smallest distinct session numbers of ``cand[r]`` and the postings of
    ``items[r]``: both sorted into one row, repeats turned into sentinels, sorted again."""
    rows, m = cand.shape
    sentinel = index.n_sessions
    starts = index.item_offsets[items]
    counts = np.minimum(index.item_offsets[items + 1] - starts, m)
    for r in np.flatnonzero(cand[:, -1] < sentinel).tolist():  # full rows: up to the largest
        a = int(starts[r])
        counts[r] = np.searchsorted(index.item_sessions[a : a + counts[r]], cand[r, -1], "right")
    busy = np.flatnonzero(counts > 0)
    if not len(busy):
        return cand
    add = np.full((len(busy), int(counts[busy].max())), sentinel, dtype=np.int32)
    for row, r in enumerate(busy.tolist()):
        a = int(starts[r])
        add[row, : counts[r]] = index.item_sessions[a : a + counts[r]]
    both = np.concatenate([cand[busy], add], axis=1)
    both.sort(axis=1)
    tail = both[:, 1:]
    tail[tail == both[:, :-1]] = sentinel
    both.sort(axis=1)
    out = cand.copy()
    out[busy] = both[:, :m]
    return out


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the ``k`` largest positive values, ties to the leftmost: the first ``k`` of a
    stable argsort by decreasing value, less those not above 0."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask & (values > 0)


class ReferenceScorer:
    """``init_state`` / ``step`` / ``select_state`` of the plain batched scorer for the fitted
    ``model``."""

    def __init__(self, model: SessionKNN) -> None:
        self.model = model
        self.index = model.index_

    def init_state(self, n_slots: int) -> dict[str, np.ndarray]:
        return self.model.init_state(n_slots)

    def select_state(self, state: dict[str, np.ndarray], keep: np.ndarray) -> dict:
        return {k: v[keep] for k, v in state.items()}

    def step(self, state: dict[str, np.ndarray], items: np.ndarray, reset: np.ndarray):
        items, reset = np.asarray(items, dtype=np.int64), np.asarray(reset, dtype=bool)
        # An item is new to its slot after a reset or when not clicked before: only new items
        # bring candidates.
        known = np.flatnonzero(items != UNKNOWN)
        new = known[reset[known] | (state["pos"][known, items[known]] == 0)]
        self.model._consume(state, items, reset)  # the click history (and reset candidates)
        if len(new):
            state["cand"][new] = merge_candidates(state["cand"][new], self.index, items[new])
        n = len(items)
        chunk = max(1, _PAIR_BUDGET // state["cand"].shape[1])
        parts = [self._score(state, slice(a, min(n, a + chunk))) for a in range(0, n, chunk)]
        scores = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if self.model.remove_session_items:
            scores[state["pos"] > 0] = 0.0
        return scores

    def _score(self, state, rows: slice) -> np.ndarray:
        model = self.model
        index, n_items = self.index, model.n_items_
        cand = state["cand"][rows]
        n_rows = len(cand)
        valid = cand < index.n_sessions
        sess = cand[valid]  # row-major: by slot, each slot's candidates in sampling order
        if not len(sess):
            return np.zeros((n_rows, n_items), dtype=np.float64)
        n_cand = valid.sum(axis=1)
        pair_slot = np.repeat(np.arange(n_rows), n_cand)
        length, n_distinct, _, w_sq, d_slot, d_item, d_q = model._query(state, rows)
        # The candidates holding item i are i's postings up to the slot's largest candidate.
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
        # Group the matches by (slot, session); a stable sort keeps each pair's by position in s.
        order = np.argsort(
            m_slot * (index.n_sessions + 1) + index.item_sessions[flat], kind="stable"
        )
        flat, m_slot = flat[order], m_slot[order]
        q_m = np.repeat(d_q, prefix)[order].astype(np.int64)
        npos_m = index.item_positions[flat].astype(np.int64)
        m_sess = index.item_sessions[flat]
        new_run = np.ones(len(flat), dtype=bool)
        new_run[1:] = (m_sess[1:] != m_sess[:-1]) | (m_slot[1:] != m_slot[:-1])
        m_seg = np.flatnonzero(new_run)
        assert len(m_seg) == len(sess)
        w = model.position_weights(q_m, length[m_slot])
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
        sims = np.asarray(model.session_similarity(pairs), dtype=np.float64)
        dense = np.zeros(cand.shape, dtype=np.float64)
        dense[valid] = sims
        chosen = np.flatnonzero(top_k(dense, model.k)[valid])
        contrib = sims[chosen]
        factor = model.pair_factor(pairs)
        if factor is not None:
            contrib = contrib * factor[chosen]
        # Every neighbour's items, from the flat index.
        c_sess = sess[chosen]
        c_counts = index.n_distinct[c_sess].astype(np.int64)
        c_flat = ragged_arange(index.offsets[c_sess], c_counts)
        values = np.repeat(contrib, c_counts)
        factor = model.entry_factor(
            index.positions[c_flat].astype(np.int64),
            np.repeat(model._anchor(pairs)[chosen], c_counts),
        )
        if factor is not None:
            values = values * factor
        target = np.repeat(pair_slot[chosen].astype(np.int64), c_counts) * n_items
        target += index.items[c_flat]
        out = np.bincount(target, weights=values, minlength=n_rows * n_items)
        out = out.reshape(n_rows, n_items)
        if model.item_factor_ is not None:
            out *= model.item_factor_
        return out
