"""SR, AR and Markov: rule weights computed on paper, scoring by the last click, pruning."""

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.rules import AssociationRules, Markov, SequentialRules, prune_rules
from datasets.sessions import UNKNOWN, from_lists


def _rules(model, sessions, n_items=5):
    return model.fit(from_lists(sessions, n_items)).rules_.toarray()


def test_sr_distance_weights():
    # [0, 1, 2]: 0->1 (d 1), 1->2 (d 1), 0->2 (d 2); [0, 2]: 0->2 (d 1)
    r = _rules(SequentialRules(steps=2, pruning=0), [[0, 1, 2], [0, 2]])
    assert r[0, 1] == 1.0 and r[1, 2] == 1.0 and r[0, 2] == 1.0 + 0.5
    assert r[1, 0] == 0.0 and r[2, 0] == 0.0  # forward only
    r = _rules(SequentialRules(steps=2, weighting="linear", pruning=0), [[0, 1, 2], [0, 2]])
    np.testing.assert_allclose(r[0, 2], 0.9 + 0.8)
    r = _rules(SequentialRules(steps=2, weighting="quadratic", pruning=0), [[0, 1, 2]])
    np.testing.assert_allclose(r[0, 2], 0.25)
    r = _rules(SequentialRules(steps=2, weighting="log", pruning=0), [[0, 1, 2]])
    np.testing.assert_allclose([r[0, 1], r[0, 2]], [1 / np.log10(2.7), 1 / np.log10(3.7)])


def test_sr_step_limit_and_session_boundaries():
    r = _rules(SequentialRules(steps=2, weighting="same", pruning=0), [[0, 1, 2, 3], [4, 0]])
    assert r[0, 2] == 1.0 and r[0, 3] == 0.0  # 3 steps apart: beyond the limit
    assert r[3, 4] == 0.0  # the last click of one session does not precede the next session
    assert r[4, 0] == 1.0
    r = _rules(SequentialRules(steps=3, weighting="same", pruning=0), [[0, 1, 2, 3]])
    assert r[0, 3] == 1.0


def test_ar_counts_every_ordered_pair_and_is_symmetric():
    # [0, 1, 1]: pairs (0,1) x2, (1,0) x2, (1,1) x2 (two clicks on 1: two ordered pairs); [1, 2]
    r = _rules(AssociationRules(pruning=0), [[0, 1, 1], [1, 2]])
    expected = np.zeros((5, 5))
    expected[0, 1] = expected[1, 0] = 2
    expected[1, 1] = 2
    expected[1, 2] = expected[2, 1] = 1
    np.testing.assert_array_equal(r, expected)
    rng = np.random.default_rng(0)
    sessions = [rng.integers(0, 5, rng.integers(1, 8)).tolist() for _ in range(50)]
    r = _rules(AssociationRules(pruning=0), sessions)
    np.testing.assert_array_equal(r, r.T)


def test_markov_transition_counts():
    r = _rules(Markov(pruning=0), [[0, 1, 0, 1], [1, 1, 2]])
    expected = np.zeros((5, 5))
    expected[0, 1] = 2
    expected[1, 0] = 1
    expected[1, 1] = 1  # self-transitions count
    expected[1, 2] = 1
    np.testing.assert_array_equal(r, expected)


def test_pruning_keeps_the_strongest_rules():
    weights = [[0, 3, 1, 2, 0], [5, 0, 0, 0, 0], [1, 1, 1, 0, 0]]
    rules = sp.csr_matrix(np.array(weights, dtype=float))
    kept = [[0, 3, 0, 2, 0], [5, 0, 0, 0, 0], [1, 1, 0, 0, 0]]  # row 2's tie: lower items first
    np.testing.assert_array_equal(prune_rules(rules, 2).toarray(), kept)
    # fraction 0.5 drops floor(0.5 n) of a row's n rules: rows keep 2, 1 and 2
    np.testing.assert_array_equal(prune_rules(rules, 0.5).toarray(), kept)
    np.testing.assert_array_equal(prune_rules(rules, 0).toarray(), rules.toarray())
    r = _rules(Markov(pruning=1), [[0, 1, 0, 2, 0, 2]])
    assert r[0, 2] == 2 and r[0, 1] == 0  # 0->2 twice beats 0->1 once


@pytest.mark.parametrize("bad", [-1, 1.5, "20", True])
def test_pruning_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="pruning"):
        Markov(pruning=bad).fit(from_lists([[0, 1]], 2))


def test_scores_are_the_rules_of_the_last_click():
    model = SequentialRules(steps=2, pruning=0).fit(from_lists([[0, 1, 2], [0, 2]], 4))
    state = model.init_state(3)
    model.step(state, np.array([1, 2, 0]), np.array([True, True, True]))
    scores = model.step(state, np.array([0, UNKNOWN, 3]), np.array([False, False, False]))
    np.testing.assert_array_equal(scores, [[0, 1, 1.5, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def _slow_rules(sessions, n_items, pairs):
    """Python loops over every ordered pair of positions (p, q) of every session."""
    r = np.zeros((n_items, n_items))
    for s in sessions:
        for p, i in enumerate(s):
            for q, j in enumerate(s):
                if p != q:
                    r[i, j] += pairs(q - p)
    return r


@pytest.mark.parametrize("weighting", ["div", "linear", "same", "quadratic", "log"])
def test_sr_and_ar_equal_their_slow_twins_on_random_sessions(weighting):
    from algorithms.rules import STEP_WEIGHTS

    rng = np.random.default_rng(5)
    sessions = [rng.integers(0, 7, rng.integers(1, 12)).tolist() for _ in range(60)]
    w = STEP_WEIGHTS[weighting]
    sr = _rules(SequentialRules(steps=4, weighting=weighting, pruning=0), sessions, 7)
    np.testing.assert_allclose(sr, _slow_rules(sessions, 7, lambda d: w(d) if 0 < d <= 4 else 0.0))
    ar = _rules(AssociationRules(pruning=0), sessions, 7)
    np.testing.assert_allclose(ar, _slow_rules(sessions, 7, lambda d: 1.0))
    markov = _rules(Markov(pruning=0), sessions, 7)
    np.testing.assert_allclose(markov, _slow_rules(sessions, 7, lambda d: 1.0 if d == 1 else 0.0))
