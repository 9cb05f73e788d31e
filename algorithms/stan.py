"""STAN (Garg et al., SIGIR 2019) and VSTAN (Ludewig, Latifi & Jannach, UMUAI 2021).

Sequence- and time-aware session neighbours, on the machinery of :mod:`algorithms.neighborhood`.
"""

from __future__ import annotations

import math

import numpy as np

from algorithms.neighborhood import (
    Pairs,
    SessionKNN,
    idf,
    last_click_times,
)
from algorithms.params import Choice, Float
from datasets.sessions import Sessions

NORMALIZATIONS = ("paper", "reference")
ANCHORS = ("paper", "reference")
_POSITIVE = Float(low=0, low_open=True, allow_inf=True)  # a λ of inf turns its factor off
DAY = 86_400.0


class STAN(SessionKNN):
    """STAN: recency-weighted session similarity, time-decayed neighbours, position-aware items.

    With L the session's clicks (repeats and unknown clicks included), p_i the position of the
    last click on item i (1..L), and positions in a neighbour n 1-based at each item's last click::

        w1(p) = exp((p - L) / λ1)
        sim(s, n) = sum over i in set(s) ∩ set(n) of w1(p_i) / sqrt(L * |n|)
                    * exp(-(t(s) - t(n)) / λ2)                                   (paper)
                  = sum over i in set(s) ∩ set(n) of w1(p_i)
                    / (sqrt(sum over i in set(s) of w1(p_i)^2) * sqrt(|set(n)|))
                    * exp(-(t(s) - t(n)) / λ2)                                   (reference)
        score(j) = sum over neighbours n containing j of
                   sim(s, n) * exp(-|pos_n(j) - pos_n(i*)| / λ3)

    |n| counts n's clicks. i* (``anchor="paper"``) is the most recent item of s that occurs in n;
    ``anchor="reference"`` uses session-rec's reading, the last position in n holding any item
    of s. t(n) is the time of n's last click; λ2 is in days. t(s) is taken as the end of the
    training data: the factor exp(-(t(s) - t_end) / λ2) is the same for every neighbour of a
    session, so it changes neither the neighbours nor the ranking of the items, and the
    evaluator does not pass click times. Without timestamps (the SR-GNN splits) the clock is the
    session order: ``sessions_per_day`` training sessions make one day. λ = inf turns a factor
    off. Candidates: the ``sample_size`` most recent sessions sharing an item with s;
    neighbours: the ``k`` most similar (ties: the more recent first). Items without support score
    0 (no free hits under conservative ties). Reference defaults: M 5000, λ1 1.02, λ2 5 days,
    λ3 2.05; ``k`` has none (100 here, as in session-rec's docstring).

    Args:
        k: neighbours kept.
        sample_size: M, candidates kept.
        sampling: ``recent`` or ``random``.
        lambda_spw: λ1, the session-position weight (in clicks).
        lambda_snh: λ2, the neighbour-recency decay (in days).
        lambda_inh: λ3, the item-position weight within the neighbour (in clicks).
        normalization: ``paper`` or ``reference``, see above.
        anchor: ``paper`` or ``reference``, the choice of pos_n(i*) above.
        sessions_per_day: the clock of data without timestamps.
        remove_session_items: score the items already in the session 0.
        seed: seed of ``sampling="random"``.

    Attributes:
        time_weight_: exp(-(t_end - t(n)) / λ2) per session, in sampling order (float64).
        timed_: whether the training data had timestamps.
    """

    name = "stan"
    hyperparameters = {
        **SessionKNN.hyperparameters,
        "lambda_spw": _POSITIVE,
        "lambda_snh": _POSITIVE,
        "lambda_inh": _POSITIVE,
        "sessions_per_day": _POSITIVE,
        "normalization": Choice(NORMALIZATIONS),
        "anchor": Choice(ANCHORS),
    }

    def __init__(
        self,
        k: int = 100,
        sample_size: int = 5000,
        sampling: str = "recent",
        lambda_spw: float = 1.02,
        lambda_snh: float = 5.0,
        lambda_inh: float = 2.05,
        normalization: str = "paper",
        anchor: str = "paper",
        sessions_per_day: float = 40_000.0,
        remove_session_items: bool = False,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.sample_size = sample_size
        self.sampling = sampling
        self.lambda_spw = lambda_spw
        self.lambda_snh = lambda_snh
        self.lambda_inh = lambda_inh
        self.normalization = normalization
        self.anchor = anchor
        self.sessions_per_day = sessions_per_day
        self.remove_session_items = remove_session_items
        self.seed = seed

    entry_factor_by_distance = True  # exp(-|pos_n(j) - anchor| / λ3)

    @property
    def pair_fields(self) -> frozenset[str]:
        fields = {"weight_sum", "length" if self.normalization == "paper" else "weight_sq_sum"}
        if not math.isinf(self.lambda_inh):  # only the entry factor reads the anchor
            fields.add("anchor_paper" if self.anchor == "paper" else "anchor_code")
        return frozenset(fields)

    def _fit_extra(self, train: Sessions) -> None:
        self.timed_ = train.times is not None
        last = last_click_times(train)[self.index_.original]
        scale = DAY if self.timed_ else self.sessions_per_day
        age_days = (last.max(initial=0.0) - last) / scale
        self.time_weight_ = np.exp(-age_days / self.lambda_snh)
        self.item_factor_ = None

    def position_weights(self, p: np.ndarray, length: np.ndarray) -> np.ndarray:
        return np.exp((np.asarray(p, dtype=np.float64) - length) / self.lambda_spw)

    def session_similarity(self, pairs: Pairs) -> np.ndarray:
        if self.normalization == "paper":
            norm = np.sqrt(pairs.length * self.index_.n_clicks[pairs.session].astype(np.float64))
        else:
            norm = np.sqrt(pairs.weight_sq_sum * self.index_.n_distinct[pairs.session])
        return pairs.weight_sum / norm * self.time_weight_[pairs.session]

    def entry_factor(self, positions: np.ndarray, anchors: np.ndarray) -> np.ndarray | None:
        if math.isinf(self.lambda_inh):
            return None
        return np.exp(-np.abs(positions - anchors) / self.lambda_inh)

    def _anchor(self, pairs: Pairs) -> np.ndarray:
        return pairs.anchor_paper if self.anchor == "paper" else pairs.anchor_code


class VSTAN(STAN):
    """VSTAN: STAN times V-SKNN's idf factor and a weight of the neighbour's latest match.

    Everything of :class:`STAN` (similarity, λ2 time decay, λ3 item positions, sampling), and::

        score(j) = (1 + λ_idf * idf(j)) * sum over neighbours n containing j of
                   sim(s, n) * exp(-|pos_n(j) - pos_n(i*)| / λ3) * exp((p* - L) / λ_ipw)
        idf(j) = ln(#training sessions / #training clicks of j)

    with p* the last position in s whose item occurs in n. session-rec always uses the
    ``reference`` normalisation here (its ``similarity`` argument is ignored), so that is the
    default. λ_ipw = inf and λ_idf = 0 turn the two factors off. Defaults: λ_ipw 1.02, λ_idf 5,
    and STAN's.

    Args:
        lambda_ipw: λ_ipw (in clicks).
        lambda_idf: λ_idf (0 turns the idf factor off).
        (the others as :class:`STAN`)

    Attributes:
        idf_: idf(j) per item (float64).
    """

    name = "vstan"
    hyperparameters = {**STAN.hyperparameters, "lambda_ipw": _POSITIVE, "lambda_idf": Float(low=0)}

    def __init__(
        self,
        k: int = 100,
        sample_size: int = 5000,
        sampling: str = "recent",
        lambda_spw: float = 1.02,
        lambda_snh: float = 5.0,
        lambda_inh: float = 2.05,
        lambda_ipw: float = 1.02,
        lambda_idf: float = 5.0,
        normalization: str = "reference",
        anchor: str = "paper",
        sessions_per_day: float = 40_000.0,
        remove_session_items: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            k=k,
            sample_size=sample_size,
            sampling=sampling,
            lambda_spw=lambda_spw,
            lambda_snh=lambda_snh,
            lambda_inh=lambda_inh,
            normalization=normalization,
            anchor=anchor,
            sessions_per_day=sessions_per_day,
            remove_session_items=remove_session_items,
            seed=seed,
        )
        self.lambda_ipw = lambda_ipw
        self.lambda_idf = lambda_idf

    def _fit_extra(self, train: Sessions) -> None:
        super()._fit_extra(train)
        self.idf_ = idf(train)
        self.item_factor_ = 1.0 + self.lambda_idf * self.idf_ if self.lambda_idf else None

    @property
    def pair_fields(self) -> frozenset[str]:
        extra = set() if math.isinf(self.lambda_ipw) else {"last_match", "length"}
        return super().pair_fields | extra

    def pair_factor(self, pairs: Pairs) -> np.ndarray | None:
        if math.isinf(self.lambda_ipw):
            return None
        return np.exp((pairs.last_match - pairs.length) / self.lambda_ipw)
