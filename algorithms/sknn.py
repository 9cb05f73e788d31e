"""Session-based kNN: SKNN (Jannach & Ludewig 2017) and V-SKNN (Ludewig & Jannach 2018).

Both score items through the training sessions most similar to the session so far; the
machinery (candidates, neighbours, batched scoring) lives in :mod:`algorithms.neighborhood`.
"""

from __future__ import annotations

import numpy as np

from algorithms.neighborhood import (
    DECAYS,
    WEIGHTINGS,
    Pairs,
    SessionKNN,
    idf,
)
from algorithms.params import Choice, Float
from datasets.sessions import Sessions

SKNN_SIMILARITIES = ("cosine", "jaccard")
VSKNN_NORMALIZATIONS = ("vec", "cosine")


class SKNN(SessionKNN):
    """SKNN: the neighbours' items, weighted by the session similarity.

    Candidates are the training sessions sharing an item with the session s so far, the
    ``sample_size`` M most recent of them (``sampling="random"``: a random M); neighbours are
    the ``k`` candidates with the highest similarity > 0 (ties: the more recent first)::

        score(j) = sum over neighbours n containing j of sim(s, n)
        sim(s, n) = |set(s) ∩ set(n)| / sqrt(|set(s)| * |set(n)|)    (cosine, the paper's)
                  = |set(s) ∩ set(n)| / |set(s) ∪ set(n)|            (jaccard, session-rec's)

    Items without neighbour support score 0 (no free hits under conservative ties, unlike
    session-rec's evaluator). ``k`` has no reference default (100 here; tune it).

    Args:
        k: neighbours kept.
        sample_size: M, candidates kept.
        sampling: ``recent`` or ``random``.
        similarity: ``cosine`` or ``jaccard``.
        remove_session_items: score the items already in the session 0.
        seed: seed of ``sampling="random"``.
    """

    name = "sknn"
    hyperparameters = {**SessionKNN.hyperparameters, "similarity": Choice(SKNN_SIMILARITIES)}

    def __init__(
        self,
        k: int = 100,
        sample_size: int = 1000,
        sampling: str = "recent",
        similarity: str = "cosine",
        remove_session_items: bool = False,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.sample_size = sample_size
        self.sampling = sampling
        self.similarity = similarity
        self.remove_session_items = remove_session_items
        self.seed = seed

    pair_fields = frozenset({"overlap", "n_distinct"})

    def session_similarity(self, pairs: Pairs) -> np.ndarray:
        n_len = self.index_.n_distinct[pairs.session]
        if self.similarity == "cosine":
            return pairs.overlap / np.sqrt(pairs.n_distinct * n_len)
        return pairs.overlap / (pairs.n_distinct + n_len - pairs.overlap)


class VSKNN(SessionKNN):
    """V-SKNN: SKNN with the session's clicks weighted by recency and decayed contributions.

    With L the session's clicks (repeats and unknown clicks included), p_i the position of the
    last click on item i (1..L), w(p, L) the ``weighting``, x = 1 + L - p* where p* is the last
    position of s whose item occurs in n, and d the ``decay``::

        score(j) = (1 + idf_weight * idf(j)) * sum over neighbours n containing j of
                   sim(s, n) * d(L - p* + 1)
        sim(s, n) = sum over i in set(s) ∩ set(n) of w(p_i, L) / |set(s)|                 (vec)
                  = sum over i in set(s) ∩ set(n) of w(p_i, L) / sqrt(|set(s)| |set(n)|)  (cosine)
        idf(j) = ln(#training sessions / #training clicks of j)

    Weightings w(p, L): div p/L (reference), quadratic (p/L)^2, log 1/log10(L - p + 1.7),
    same 1, linear max(0, 1 - 0.1 (L - p)) (the evident intent), linear-reference (1 - 0.1
    (L - p) for p <= 10, else 0: session-rec's formula). Decays d(x): div 1/x (reference),
    quadratic 1/x^2, log 1/log10(x + 1.7), same 1, linear max(0, 1 - 0.1 x), linear-reference
    1 - 0.1 x for x <= 100 (unclipped, session-rec's). Reference defaults: M 1000, vec, div,
    div, idf off; ``k`` has none (100 here; tune it). Items without support score 0 (no free
    hits under conservative ties).

    Args:
        k: neighbours kept.
        sample_size: M, candidates kept (most recent).
        sampling: ``recent`` or ``random``.
        weighting: the family of w(p, L), see above.
        normalization: ``vec`` or ``cosine``.
        decay: the family of d(x), see above.
        idf_weight: λ_idf (0 turns the idf factor off).
        remove_session_items: score the items already in the session 0.
        seed: seed of ``sampling="random"``.

    Attributes:
        idf_: idf(j) per item (float64).
    """

    name = "vsknn"
    hyperparameters = {
        **SessionKNN.hyperparameters,
        "weighting": Choice(tuple(WEIGHTINGS)),
        "normalization": Choice(VSKNN_NORMALIZATIONS),
        "decay": Choice(tuple(DECAYS)),
        "idf_weight": Float(low=0),
    }

    def __init__(
        self,
        k: int = 100,
        sample_size: int = 1000,
        sampling: str = "recent",
        weighting: str = "div",
        normalization: str = "vec",
        decay: str = "div",
        idf_weight: float = 0.0,
        remove_session_items: bool = False,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.sample_size = sample_size
        self.sampling = sampling
        self.weighting = weighting
        self.normalization = normalization
        self.decay = decay
        self.idf_weight = idf_weight
        self.remove_session_items = remove_session_items
        self.seed = seed

    pair_fields = frozenset({"weight_sum", "n_distinct", "length", "last_match"})

    def _fit_extra(self, train: Sessions) -> None:
        self.idf_ = idf(train)
        self.item_factor_ = 1.0 + self.idf_weight * self.idf_ if self.idf_weight else None

    def position_weights(self, p: np.ndarray, length: np.ndarray) -> np.ndarray:
        return WEIGHTINGS[self.weighting](np.asarray(p, dtype=np.float64), length)

    def session_similarity(self, pairs: Pairs) -> np.ndarray:
        if self.normalization == "vec":
            return pairs.weight_sum / pairs.n_distinct
        return pairs.weight_sum / np.sqrt(pairs.n_distinct * self.index_.n_distinct[pairs.session])

    def pair_factor(self, pairs: Pairs) -> np.ndarray:
        return DECAYS[self.decay](pairs.length - pairs.last_match + 1.0)
