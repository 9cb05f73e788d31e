"""The slow twin of the session-kNN family's vectorised scoring (algorithms/neighborhood.py).

The same equations for one session in plain Python loops, built from the training sessions
directly; tests/test_sknn.py holds the fast scoring to it.
"""

from __future__ import annotations

import numpy as np

from algorithms.neighborhood import Pairs, SessionKNN, last_click_times
from datasets.sessions import UNKNOWN, Sessions


def reference_scores(model: SessionKNN, train: Sessions, session: list[int]) -> np.ndarray:
    """The slow twin: ``model``'s scores after ``session``, in plain Python loops.

    Builds everything from ``train`` directly (the candidate set by scanning every training
    session, the recency order by sorting on last-click times) and uses only the model's
    formula hooks and, for ``sampling="random"``, its fitted order.
    """
    L = len(session)
    last_pos = {i: p for p, i in enumerate(session, 1) if i != UNKNOWN}
    if model.sampling == "random":
        order = list(model.index_.original)
    else:
        last = last_click_times(train)
        order = sorted(range(train.n_sessions), key=lambda s: (-last[s], -s))
    rank = {s: r for r, s in enumerate(order)}
    cands = [s for s in range(train.n_sessions) if set(train.session(s).tolist()) & last_pos.keys()]
    cands = sorted(cands, key=rank.__getitem__)[: model.sample_size]
    weights = {
        i: float(model.position_weights(np.array(p), np.array(L))) for i, p in last_pos.items()
    }
    rows = []
    for s in cands:
        npos = {}
        for p, i in enumerate(train.session(s).tolist(), 1):
            if i != UNKNOWN:
                npos[i] = p
        common = last_pos.keys() & npos.keys()
        i_star = max(common, key=last_pos.__getitem__)
        rows.append(
            dict(
                slot=0,
                session=rank[s],
                overlap=len(common),
                weight_sum=sum(weights[i] for i in common),
                last_match=last_pos[i_star],
                anchor_paper=npos[i_star],
                anchor_code=max(npos[i] for i in common),
                length=L,
                n_distinct=len(last_pos),
                weight_sq_sum=sum(v * v for v in weights.values()),
                npos=npos,
            )
        )
    scores = np.zeros(train.n_items)
    if not rows:
        return scores
    pairs = Pairs(**{f: np.array([r[f] for r in rows]) for f in Pairs.__dataclass_fields__})
    sims = np.asarray(model.session_similarity(pairs), dtype=np.float64)
    factors = model.pair_factor(pairs)
    anchors = model._anchor(pairs)
    ranked = sorted(
        (k for k in range(len(rows)) if sims[k] > 0), key=lambda k: (-sims[k], rows[k]["session"])
    )
    for k in ranked[: model.k]:
        for j, pj in rows[k]["npos"].items():
            f = model.entry_factor(np.array([pj]), np.array([anchors[k]]))
            value = sims[k] * (1.0 if factors is None else factors[k])
            value *= 1.0 if f is None else f[0]
            scores[j] += value
    if model.item_factor_ is not None:
        scores *= model.item_factor_
    if model.remove_session_items:
        scores[list(last_pos)] = 0.0
    return scores
