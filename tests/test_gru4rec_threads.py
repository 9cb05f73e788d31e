"""The CPU thread policy: as many threads as the other processes leave cores free."""

from __future__ import annotations

import os
import time

import pytest
import torch

from algorithms.gru4rec.threads import OthersCpu, ThreadPolicy


class FakeMachine:
    """Counters of a 2-core machine: ``others`` cores busy with other work, ours with ``mine``."""

    def __init__(self) -> None:
        self.now, self.busy, self.mine, self.others, self.calls = 0.0, 0.0, 0.0, 0.0, []

    def advance(self, seconds: float, threads: int) -> None:
        mine = min(threads, 2 - self.others) if self.others < 2 else threads / (threads + 2) * 2
        self.mine += mine * seconds
        self.busy += min(2.0, self.others + mine) * seconds
        self.now += seconds

    def read(self) -> tuple[float, float, float]:
        return self.busy, self.mine, self.now


def _policy(machine: FakeMachine, calls: list[int]) -> ThreadPolicy:
    return ThreadPolicy(
        2,
        adaptive=True,
        hold_s=10.0,
        others=OthersCpu(machine.read),
        clock=lambda: machine.now,
        set_threads=calls.append,
        cores=2,
    )


def test_uses_the_cores_the_other_processes_leave_free() -> None:
    machine, calls = FakeMachine(), []
    machine.advance(0.25, 0)
    policy = _policy(machine, calls)  # nobody else busy during the first look: two threads
    assert calls == [2] and policy.current == 2
    for others, expected in [(2.0, 1), (2.0, 1), (1.0, 1), (0.0, 2)]:
        machine.others = others
        for _ in range(80):  # 10 s of 0.125 s steps, then a look at the last 10 s
            machine.advance(0.125, policy.current)
            policy.step_done()
        assert policy.current == expected, (others, policy.history)
    assert calls == [2, 1, 2]  # set only when the count changes
    # Two spinners on two cores: our two threads got one core, so the others measured 1.0; with
    # one thread we got two thirds of a core and the others 1.33: either way one core at most.
    assert [round(b, 2) for b, _ in policy.history] == [0.0, 1.0, 1.33, 1.0, 0.0]


def test_a_fixed_count_is_set_once_and_never_looked_at_again() -> None:
    calls: list[int] = []
    policy = ThreadPolicy(3, set_threads=calls.append)
    for _ in range(1000):
        policy.step_done()
    assert calls == [3] and policy.history == [] and policy.others is None


def test_every_epoch_sets_the_count_again() -> None:
    calls: list[int] = []
    policy = ThreadPolicy(1, set_threads=calls.append)
    policy.begin_epoch()
    policy.begin_epoch()
    assert calls == [1, 1, 1]


def test_the_thread_count_holds_in_every_epoch_of_a_fit(monkeypatch) -> None:
    """Regression: the recommender put the count from before the epoch back after it, and the
    policy, believing its own count still in force, never set it again: an adaptive count held
    in epoch 1 only (two tuning workers each trained epochs 2+ with two threads, four times
    slower), and a fixed count was left set for the caller after the fit."""
    from algorithms.gru4rec import GRU4Rec
    from algorithms.gru4rec.trainer import Trainer
    from datasets.sessions import from_lists

    seen: list[int] = []
    step = Trainer.train_step
    monkeypatch.setattr(
        Trainer, "train_step", lambda self, t: seen.append(torch.get_num_threads()) or step(self, t)
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        GRU4Rec(layers=[8], batch_size=2, n_epochs=3, n_sample=0, n_threads=1, device="cpu").fit(
            from_lists([[0, 1, 2, 3], [1, 2, 3], [2, 3, 0, 1]], 4)
        )
        assert torch.get_num_threads() == 2  # the caller's count is back after the fit
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}


def test_others_cpu_is_busy_time_minus_our_own_over_wall_time() -> None:
    readings = iter([(10.0, 1.0, 100.0), (25.0, 6.0, 110.0)])  # 15 s busy, 5 s ours, in 10 s
    assert OthersCpu(lambda: next(readings)).cores() == pytest.approx(1.0)


def test_a_span_too_short_to_measure_keeps_the_previous_answer() -> None:
    # /proc counts 10 ms ticks: one tick in 2 ms would read as 5 cores. Spans under half a
    # second are not measured; the counters keep running until one is long enough.
    readings = iter(
        [(0.0, 0.0, 0.0), (0.01, 0.0, 0.002), (1.0, 0.0, 1.0), (1.01, 0.0, 1.002), (2.5, 0.0, 2.0)]
    )
    others = OthersCpu(lambda: next(readings))
    assert others.cores() == 0.0  # 2 ms: the initial answer
    assert others.cores() == pytest.approx(1.0)  # 1 s, one core busy
    assert others.cores() == pytest.approx(1.0)  # 2 ms later: still the last answer
    assert others.cores() == pytest.approx(1.5)  # from 1 s to 2 s: 1.5 cores


def test_the_answer_never_exceeds_the_machine() -> None:
    readings = iter([(0.0, 0.0, 0.0), (10.0, 0.0, 1.0)])  # 10 busy core-seconds in 1 s
    assert OthersCpu(lambda: next(readings), max_cores=2).cores() == 2.0


def test_the_real_reading_is_a_number_of_cores() -> None:
    others = OthersCpu()
    assert others.cores() == 0.0  # no time has passed: nothing measured yet
    time.sleep(0.6)
    assert 0.0 <= others.cores() <= os.cpu_count()


def test_rejects_zero_threads() -> None:
    with pytest.raises(ValueError, match="max_threads"):
        ThreadPolicy(0)
