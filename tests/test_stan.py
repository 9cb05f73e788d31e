"""STAN and VSTAN on the three-session example of test_sknn.py, computed on paper.

Training (no timestamps; with sessions_per_day = 1 the clock is the session order, so the ages
at the end of training are n0 2 days, n1 1 day, n2 0 days):
    n0 = [0, 1, 2]   n1 = [1, 3]   n2 = [2, 1, 4, 1]
s = [1, 2]: L = 2, w1(item 1) = exp(-1 / λ1), w1(item 2) = 1.
Item positions in n (last click): n0: 0->1, 1->2, 2->3; n1: 1->1, 3->2; n2: 2->1, 4->3, 1->4.
Anchors pos_n(i*), i* the most recent item of s in n (paper): n0 3 (item 2), n1 1 (item 1),
n2 1 (item 2); the reference code's last position in n holding any item of s: 3, 1, 4.
"""

import math

import numpy as np
import pytest

from algorithms.stan import STAN, VSTAN
from datasets.sessions import Sessions, from_lists
from tests.test_sknn import N_ITEMS, TRAIN, S, _scores, check_against_slow_twin

POS = [{0: 1, 1: 2, 2: 3}, {1: 1, 3: 2}, {2: 1, 4: 3, 1: 4}]
AGES = [2.0, 1.0, 0.0]


def _expected(sims, anchors, lam3, pair=(1.0, 1.0, 1.0), keep=(0, 1, 2)):
    out = np.zeros(N_ITEMS)
    for n in keep:
        for item, p in POS[n].items():
            out[item] += sims[n] * pair[n] * math.exp(-abs(p - anchors[n]) / lam3)
    return out


@pytest.mark.parametrize("lam1,lam2,lam3", [(1.02, 5.0, 2.05), (1.0, 2.0, 1.0), (0.5, 0.7, 4.0)])
def test_stan_paper_reading(lam1, lam2, lam3):
    w1 = math.exp(-1 / lam1)
    decay = [math.exp(-a / lam2) for a in AGES]
    # sum of shared weights / sqrt(L * |n|), |n| = clicks of n: 3, 2, 4
    sims = [
        (w1 + 1) / math.sqrt(2 * 3) * decay[0],
        w1 / math.sqrt(2 * 2) * decay[1],
        (w1 + 1) / math.sqrt(2 * 4) * decay[2],
    ]
    model = STAN(k=3, lambda_spw=lam1, lambda_snh=lam2, lambda_inh=lam3, sessions_per_day=1.0)
    got, _ = _scores(model, S)
    np.testing.assert_allclose(got, _expected(sims, [3, 1, 1], lam3))


def test_stan_reference_normalisation_and_anchor():
    lam1, lam2, lam3 = 1.0, 2.0, 1.0
    w1 = math.exp(-1 / lam1)
    decay = [math.exp(-a / lam2) for a in AGES]
    norm_s = math.sqrt(w1**2 + 1)  # over set(s); |set(n)|: 3, 2, 3
    sims = [
        (w1 + 1) / (norm_s * math.sqrt(3)) * decay[0],
        w1 / (norm_s * math.sqrt(2)) * decay[1],
        (w1 + 1) / (norm_s * math.sqrt(3)) * decay[2],
    ]
    model = STAN(
        k=3,
        lambda_spw=lam1,
        lambda_snh=lam2,
        lambda_inh=lam3,
        sessions_per_day=1.0,
        normalization="reference",
        anchor="reference",
    )
    got, _ = _scores(model, S)
    np.testing.assert_allclose(got, _expected(sims, [3, 1, 4], lam3))


def test_stan_neighbour_set():
    # λ1 = 1, λ2 = 2: sims n0 (1/e + 1)/sqrt(6)/e = 0.2060, n1 (1/e)/2/sqrt(e) = 0.1116,
    # n2 (1/e + 1)/sqrt(8) = 0.4836: k = 2 keeps n2 and n0.
    w1 = math.exp(-1)
    sims = [
        (w1 + 1) / math.sqrt(6) * math.exp(-1),
        w1 / 2 * math.exp(-0.5),
        (w1 + 1) / math.sqrt(8),
    ]
    model = STAN(k=2, lambda_spw=1.0, lambda_snh=2.0, lambda_inh=1.0, sessions_per_day=1.0)
    got, _ = _scores(model, S)
    np.testing.assert_allclose(got, _expected(sims, [3, 1, 1], 1.0, keep=(0, 2)))


def test_stan_time_decay_from_timestamps_in_days():
    base = from_lists(TRAIN, N_ITEMS)
    # last clicks: n0 at day 0, n1 at day 3, n2 at day 1 -> ages 3, 0, 2 days; recency n1, n2, n0
    day = 86_400.0
    times = np.array([0, 0, 0, 3, 3, 1, 1, 1, 1], dtype=np.float64) * day
    train = Sessions(base.items, base.offsets, N_ITEMS, times=times)
    lam1, lam2, lam3 = 1.0, 2.0, 1.0
    w1 = math.exp(-1)
    sims = [
        (w1 + 1) / math.sqrt(6) * math.exp(-3 / lam2),
        w1 / 2,
        (w1 + 1) / math.sqrt(8) * math.exp(-2 / lam2),
    ]
    model = STAN(k=3, lambda_spw=lam1, lambda_snh=lam2, lambda_inh=lam3)
    got, _ = _scores(model, S, train)
    np.testing.assert_allclose(got, _expected(sims, [3, 1, 1], lam3))
    # a session of one click on an item of n1 only
    got, _ = _scores(model, [3], train)
    np.testing.assert_allclose(got, [0, math.exp(-1) / math.sqrt(2), 0, 1 / math.sqrt(2), 0, 0])


@pytest.mark.parametrize("lam_ipw,lam_idf", [(1.02, 5.0), (2.0, 0.0), (math.inf, 2.0)])
def test_vstan(lam_ipw, lam_idf):
    lam1, lam2, lam3 = 1.0, 2.0, 1.0
    w1 = math.exp(-1 / lam1)
    decay = [math.exp(-a / lam2) for a in AGES]
    norm_s = math.sqrt(w1**2 + 1)  # VSTAN's default: session-rec's normalisation
    sims = [
        (w1 + 1) / (norm_s * math.sqrt(3)) * decay[0],
        w1 / (norm_s * math.sqrt(2)) * decay[1],
        (w1 + 1) / (norm_s * math.sqrt(3)) * decay[2],
    ]
    # exp((p* - L) / λ_ipw): the latest match is s's last click in n0 and n2, one back in n1
    ipw = (1.0, math.exp(-1 / lam_ipw), 1.0)
    idf = np.log(3 / np.array([1, 4, 2, 1, 1, 3]))
    idf[5] = 0.0
    model = VSTAN(
        k=3,
        lambda_spw=lam1,
        lambda_snh=lam2,
        lambda_inh=lam3,
        lambda_ipw=lam_ipw,
        lambda_idf=lam_idf,
        sessions_per_day=1.0,
    )
    got, _ = _scores(model, S)
    expected = _expected(sims, [3, 1, 1], lam3, pair=ipw) * (1 + lam_idf * idf)
    np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize(
    "model",
    [
        STAN(k=6, sample_size=20, sessions_per_day=10.0),
        STAN(k=6, sample_size=20, normalization="reference", anchor="reference", lambda_snh=0.1),
        STAN(k=3, sample_size=9, sampling="random", lambda_spw=1e-5, lambda_inh=math.inf),
        VSTAN(k=4, sample_size=15),
        VSTAN(k=4, sample_size=15, remove_session_items=True, anchor="reference"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("timed", [False, True])
def test_batched_scores_equal_the_slow_twin(model, timed):
    check_against_slow_twin(model, timed, seed=1)
