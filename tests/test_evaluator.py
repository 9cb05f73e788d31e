"""The evaluator: hand-computed ranks in every tie mode, and the session-parallel protocol."""

import numpy as np
import pytest
import torch

from algorithms.base import SessionRecommender
from algorithms.pop import Pop
from benchmark.evaluator import evaluate, rank_targets
from benchmark.metrics import recall_at
from datasets.sessions import UNKNOWN, from_lists

# Row 0: target 0 (0.5) has 1 item above (0.9) and 2 other items tied at 0.5.
# Row 1: target 1 (0.9) is alone at the top.  Row 2: target 3 (0.1) is last, no ties.
SCORES = np.array(
    [
        [0.5, 0.9, 0.5, 0.1, 0.5],
        [0.5, 0.9, 0.5, 0.1, 0.5],
        [0.5, 0.9, 0.5, 0.1, 0.5],
    ]
)
TARGETS = np.array([0, 1, 3])
EXPECTED = {
    "standard": [2.0, 1.0, 5.0],  # 1 + #higher
    "conservative": [4.0, 1.0, 5.0],  # 1 + #higher + #tied others
    "median": [3.0, 1.0, 5.0],  # 1 + #higher + #tied others / 2
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_hand_computed_ranks_numpy(mode):
    np.testing.assert_array_equal(rank_targets(SCORES, TARGETS, mode), EXPECTED[mode])


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_hand_computed_ranks_torch(mode):
    scores = torch.tensor(SCORES, dtype=torch.float32)
    np.testing.assert_array_equal(rank_targets(scores, TARGETS, mode), EXPECTED[mode])


def _slow_rank(row: np.ndarray, target: int, mode: str) -> float:
    """The definition, item by item: NaN scores of other items are neither higher nor tied."""
    higher = sum(row[j] > row[target] for j in range(len(row)) if j != target)
    tied = sum(row[j] == row[target] for j in range(len(row)) if j != target)
    return {
        "standard": 1.0 + higher,
        "conservative": 1.0 + higher + tied,
        "median": 1.0 + higher + tied / 2,
    }[mode]


@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("as_torch", [False, True])
def test_ranks_equal_the_definition_on_many_ties_and_nans(mode, as_torch):
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, (40, 30)).astype(np.float32)  # 6 values: ties everywhere
    scores[rng.random(scores.shape) < 0.05] = np.nan
    targets = rng.integers(0, 30, 40)
    scores[np.arange(40), targets] = rng.integers(0, 6, 40)  # the targets' own scores are numbers
    expected = [_slow_rank(scores[k], targets[k], mode) for k in range(40)]
    given = torch.from_numpy(scores) if as_torch else scores
    np.testing.assert_array_equal(rank_targets(given, targets, mode), expected)


def test_all_zero_scores_get_no_free_hits_under_conservative_ties():
    scores = np.zeros((1, 1000))
    assert rank_targets(scores, np.array([7]), "conservative")[0] == 1000
    assert rank_targets(scores, np.array([7]), "standard")[0] == 1


def test_unknown_target_is_infinite_rank():
    ranks = rank_targets(SCORES[:2], np.array([UNKNOWN, 1]))
    assert np.isinf(ranks[0]) and ranks[1] == 1


def test_nan_target_score_is_an_error():
    scores = SCORES.copy()
    scores[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(scores, TARGETS)


def test_bad_tie_mode_is_named():
    with pytest.raises(ValueError, match="tie_mode"):
        rank_targets(SCORES, TARGETS, "optimistic")


class PrefixSumOracle(SessionRecommender):
    """Puts item (sum of the session's clicks so far) mod n first. It can only score rank 1
    every time if the evaluator feeds exactly each session's prefix, with resets at session
    starts, and keeps slots aligned when the batch shrinks."""

    name = "prefix-sum-oracle"

    def __init__(self, n_items: int = 7) -> None:
        self.n_items = n_items

    def fit(self, train):
        return self

    def init_state(self, n_slots):
        return np.zeros(n_slots, dtype=np.int64)

    def step(self, state, items, reset):
        state[reset] = 0
        state += np.where(items == UNKNOWN, 0, items)
        scores = np.zeros((len(items), self.n_items))
        scores[np.arange(len(items)), state % self.n_items] = 1.0
        return scores


def prefix_sum_sessions(lengths, n_items=7, seed=0):
    rng = np.random.default_rng(seed)
    sessions = []
    for length in lengths:
        s = [int(rng.integers(n_items))]
        while len(s) < length:
            s.append(sum(s) % n_items)
        sessions.append(s)
    return from_lists(sessions, n_items)


LENGTHS = [2, 5, 1, 3, 9, 2, 2, 4, 1, 7, 3, 2]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 100])
def test_evaluator_feeds_exact_prefixes(batch_size):
    test = prefix_sum_sessions(LENGTHS)
    preds = evaluate(PrefixSumOracle(), test, batch_size=batch_size, progress=False)
    assert len(preds) == sum(n - 1 for n in LENGTHS)  # Σ(len − 1); length-1 sessions add none
    assert recall_at(preds.rank, 1) == 1.0


def test_first_click_is_never_a_target():
    test = prefix_sum_sessions(LENGTHS)
    preds = evaluate(PrefixSumOracle(), test, batch_size=3, progress=False)
    assert preds.position.min() == 1
    pairs = sorted(zip(preds.session.tolist(), preds.position.tolist()))
    expected = [(s, p) for s, n in enumerate(LENGTHS) for p in range(1, n)]
    assert pairs == expected
    np.testing.assert_array_equal(
        preds.target, test.items[test.offsets[preds.session] + preds.position]
    )


def test_wrong_state_handling_is_detected():
    """A model that never resets its state fails the prefix check: the test can fail."""

    class NoReset(PrefixSumOracle):
        def step(self, state, items, reset):
            return super().step(state, items, np.zeros_like(reset))

    preds = evaluate(NoReset(), prefix_sum_sessions(LENGTHS), batch_size=2, progress=False)
    assert recall_at(preds.rank, 1) < 1.0


def test_pop_ranks_by_hand():
    train = from_lists([[0, 1, 1], [1, 2], [1, 0]], n_items=4)  # support: 0→2, 1→4, 2→1, 3→0
    test = from_lists([[3, 1, 0, 2, 3]], n_items=4)
    preds = evaluate(Pop().fit(train), test, progress=False)
    # targets 1, 0, 2, 3 -> ranks 1, 2, 3, 4 (item 3 has support 0, alone at the bottom)
    np.testing.assert_array_equal(preds.rank, [1, 2, 3, 4])


def test_wrong_score_shape_is_reported():
    class Narrow(PrefixSumOracle):
        def step(self, state, items, reset):
            return super().step(state, items, reset)[:, :3]

    with pytest.raises(ValueError, match="shape"):
        evaluate(Narrow(), prefix_sum_sessions([3, 3]), progress=False)
