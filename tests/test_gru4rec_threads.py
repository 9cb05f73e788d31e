"""The CPU thread policy: probes each candidate, keeps the faster, probes again later."""

from __future__ import annotations

import pytest

from algorithms.gru4rec.threads import ThreadPolicy


class FakeMachine:
    """A clock that advances by the step time of the current thread count."""

    def __init__(self, step_seconds: dict[int, float]) -> None:
        self.now, self.step_seconds, self.threads, self.calls = 0.0, step_seconds, None, []

    def clock(self) -> float:
        return self.now

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def run(self, policy: ThreadPolicy, steps: int) -> None:
        for _ in range(steps):
            self.now += self.step_seconds[self.threads]
            policy.step_done()


def test_keeps_the_faster_count_and_reprobes_after_the_hold() -> None:
    machine = FakeMachine({1: 1.0, 2: 0.5})  # quiet: two threads twice as fast
    policy = ThreadPolicy([1, 2], probe_steps=4, probe_s=100.0, hold_s=50.0,
                          clock=machine.clock, set_threads=machine.set_threads)
    machine.run(policy, 8)  # 4 steps probing 1 thread, 4 probing 2
    assert machine.calls == [1, 2, 2] and policy.current == 2
    assert policy.history == [{1: 1.0, 2: 2.0}]  # steps per second
    machine.step_seconds = {1: 1.0, 2: 5.0}  # now the cores are busy: two threads crawl
    machine.run(policy, 100)  # 50 s of holding 2 threads, then a new round of probes
    assert policy.current == 1
    assert policy.history[-1] == {1: 1.0, 2: 0.2}


def test_a_slow_probe_ends_after_its_time_limit() -> None:
    machine = FakeMachine({1: 0.1, 2: 3.0})
    policy = ThreadPolicy([1, 2], probe_steps=64, probe_s=5.0, hold_s=20.0,
                          clock=machine.clock, set_threads=machine.set_threads)
    machine.run(policy, 64 + 2)  # 64 fast steps, then two 3-second steps end the second probe
    assert policy.current == 1 and policy.history == [{1: pytest.approx(10.0),
                                                       2: pytest.approx(1 / 3)}]


def test_a_fixed_count_is_set_once_and_never_probed() -> None:
    machine = FakeMachine({3: 1.0})
    policy = ThreadPolicy([3], clock=machine.clock, set_threads=machine.set_threads)
    machine.run(policy, 1000)
    assert machine.calls == [3] and policy.history == []


def test_rejects_bad_candidates() -> None:
    with pytest.raises(ValueError, match="thread candidates"):
        ThreadPolicy([0, 2])
