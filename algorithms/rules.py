"""Rule-based session baselines: SR (sequential rules), AR (association rules), first-order Markov.

All three learn a sparse item x item rule matrix R from the training sessions and score the
next click by the rules of the session's last click: score(j) = R[last, j]. They share the
pruning (:func:`prune_rules`) and the scoring (:class:`RuleModel`). An unknown last click scores
every item 0. Items without a rule from the last click score 0, and the evaluator's
conservative ties give them no free hits; session-rec's evaluator orders such zero scores
arbitrarily, so its figures for these methods can sit above ours for that reason alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from algorithms.base import EpochCallback, SessionRecommender
from algorithms.params import AnyOf, Choice, Float, Int
from algorithms.sparse import dense_rows, row_blocks, session_item_matrix
from datasets.sessions import UNKNOWN, Sessions

STEP_WEIGHTS = {
    "div": lambda d: 1.0 / d,
    "linear": lambda d: 1.0 - 0.1 * d,
    "same": lambda d: 1.0,
    "quadratic": lambda d: 1.0 / d**2,
    "log": lambda d: 1.0 / np.log10(d + 1.7),
}
"""SR's weight w(d) of a rule from a click d steps before the rule's target."""


PRUNING = AnyOf((Int(low=0), Float(0, 1, low_open=True, high_open=True)))
"""0 (keep all rules), an integer N >= 1 (keep N per item) or a fraction in (0, 1) (drop it)."""


def prune_rules(rules: sp.csr_matrix, pruning: float) -> sp.csr_matrix:
    """Keep the strongest rules of every item (row).

    ``pruning`` N >= 1 keeps the N largest weights per row; a fraction 0 < f < 1 drops
    floor(f * n) of a row's n rules (the weakest); 0 keeps everything. Ties at the cut-off:
    the lower item index is kept. Zero weights are dropped.
    """
    coo = rules.tocoo()
    rows, cols, vals = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    nonzero = vals != 0
    rows, cols, vals = rows[nonzero], cols[nonzero], vals[nonzero]
    n = rules.shape[0]
    if pruning:
        order = np.lexsort((cols, -vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        counts = np.bincount(rows, minlength=n)
        if pruning >= 1:
            limit = np.full(n, int(pruning))
        else:
            limit = counts - np.floor(counts * float(pruning)).astype(np.int64)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < limit[rows]
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    return sp.csr_matrix((vals, (rows, cols)), shape=rules.shape)


class RuleModel(SessionRecommender):
    """score(j) = R[last click, j] for a learned rule matrix R (see the subclasses).

    Attributes:
        rules_: the pruned rules, float64 CSR (n_items, n_items).
    """

    pruning: float
    hyperparameters = {"pruning": PRUNING}

    def _rules(self, train: Sessions) -> sp.csr_matrix:
        raise NotImplementedError

    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> RuleModel:
        self.validate()
        self.rules_ = self._rules(train)
        return self

    def init_state(self, n_slots: int) -> np.ndarray:
        """The last click of every slot (``UNKNOWN`` before the first click)."""
        return np.full(n_slots, UNKNOWN, dtype=np.int64)

    def step(self, state: np.ndarray, items: np.ndarray, reset: np.ndarray) -> np.ndarray:
        state[:] = items  # only the last click matters, so a reset needs nothing else
        return dense_rows(self.rules_, state)


def sequential_rules(train: Sessions, steps: int, weight) -> sp.csr_matrix:
    """R[i, j] = sum of w(q - p) over clicks i at p, j at q > p of a session, q - p <= steps."""
    session = train.session_index()
    items = train.items
    n = train.n_items
    total = sp.csr_matrix((n, n), dtype=np.float64)
    for d in range(1, steps + 1):
        a, b = items[:-d], items[d:]
        same = (session[:-d] == session[d:]) & (a != UNKNOWN) & (b != UNKNOWN)
        if not same.any():
            break  # no session is longer than d
        data = np.full(int(same.sum()), float(weight(d)))
        total = total + sp.csr_matrix((data, (a[same], b[same])), shape=(n, n))
    return total


class SequentialRules(RuleModel):
    """SR: rules from earlier to later clicks of a session, weighted by their distance.

    For every training session and every pair of positions p < q with q - p <= ``steps``::

        R[i_p, i_q] += w(q - p),   score(j) = R[last click, j]

    w(d): div 1/d (reference), linear 1 - 0.1 d, same 1, quadratic 1/d^2, log 1/log10(d + 1.7).
    Repeated items make rules i -> i. Reference: steps 10, div, pruning 20 (tuned steps: 15 on
    Diginetica, 8 on RSC15).

    Args:
        steps: the largest distance q - p.
        weighting: the family of w(d).
        pruning: N >= 1 keeps the N strongest rules per item, 0 < f < 1 drops that share, 0 none.
    """

    name = "sr"
    hyperparameters = {
        "steps": Int(low=1),
        "weighting": Choice(tuple(STEP_WEIGHTS)),
        "pruning": PRUNING,
    }

    def __init__(self, steps: int = 10, weighting: str = "div", pruning: float = 20) -> None:
        self.steps = steps
        self.weighting = weighting
        self.pruning = pruning

    def _rules(self, train: Sessions) -> sp.csr_matrix:
        return prune_rules(
            sequential_rules(train, self.steps, STEP_WEIGHTS[self.weighting]), self.pruning
        )


class Markov(RuleModel):
    """First-order Markov chain: R[i, j] = times j directly follows i in a training session.

    Self-transitions i -> i count. score(j) = R[last click, j]. Reference pruning: 20.

    Args:
        pruning: N >= 1 keeps the N strongest rules per item, 0 < f < 1 drops that share, 0 none.
    """

    name = "markov"

    def __init__(self, pruning: float = 20) -> None:
        self.pruning = pruning

    def _rules(self, train: Sessions) -> sp.csr_matrix:
        return prune_rules(sequential_rules(train, 1, STEP_WEIGHTS["same"]), self.pruning)


class AssociationRules(RuleModel):
    """AR: co-occurrence rules, both directions, no window.

    For every training session and every ordered pair of distinct positions (p, q)::

        R[i_p, i_q] += 1,   score(j) = R[last click, j]

    i.e. R = X^T X - diag(clicks), X the session x item matrix of click counts: R[i, j] =
    sum over sessions of c(i) c(j) for i != j and c(i) (c(i) - 1) for i = j. R is symmetric
    before pruning. Reference pruning: 20.

    Args:
        pruning: N >= 1 keeps the N strongest rules per item, 0 < f < 1 drops that share, 0 none.
    """

    name = "ar"

    def __init__(self, pruning: float = 20) -> None:
        self.pruning = pruning

    def _rules(self, train: Sessions) -> sp.csr_matrix:
        x = session_item_matrix(train, binary=False).astype(np.float64)
        clicks = np.asarray(x.sum(axis=0)).ravel()
        xt = x.T.tocsr()
        parts = []
        for start, stop in row_blocks(x):  # bounds the memory of the co-occurrence blocks
            block = (xt[start:stop] @ x).tocsr()
            block = block - sp.csr_matrix(
                (clicks[start:stop], (np.arange(stop - start), np.arange(start, stop))),
                shape=block.shape,
            )
            parts.append(prune_rules(block, self.pruning))
        if not parts:
            return sp.csr_matrix((train.n_items, train.n_items), dtype=np.float64)
        return sp.vstack(parts, format="csr")
