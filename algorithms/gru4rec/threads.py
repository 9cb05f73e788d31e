"""How many CPU threads GRU4Rec trains with: fixed, or as many as the other processes leave free.

A training step is ~80 small tensor ops (32 x 100 matrices), so a second thread only pays off
while it has a core of its own: on a quiet 2-core machine two threads train faster than one, but
once other processes keep the cores busy, torch's worker threads wait for each other at every
op and two threads train several times slower than one (measured: two busy-loop processes beside
training cut two threads to 14% of their quiet speed, one thread to 54%). So by default the
trainer looks at how busy the machine is: every ``hold_s`` seconds it reads how much CPU time the
*other* processes used since the last look (``/proc/stat`` minus this process's own time) and
trains with the cores they leave free, at least one. Where ``/proc`` is missing (not Linux) the
1-minute load average stands in for the others' use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OthersCpu:
    """Cores used by other processes since the previous call (Linux ``/proc``; load average
    elsewhere). ``read`` returns (busy seconds of all cores, this process's CPU seconds,
    wall seconds) and is injectable for tests."""

    MIN_WALL_S = 0.5
    """Shorter spans are not measured: /proc counts in clock ticks (10 ms), so over a few
    milliseconds one tick more or less reads as dozens of cores."""

    def __init__(
        self,
        read: Callable[[], tuple[float, float, float]] | None = None,
        max_cores: float | None = None,
    ) -> None:
        self.read = read or _read_proc
        self.max_cores = float(max_cores or os.cpu_count() or 1)
        self.last = self.read()
        self.value = 0.0

    def cores(self) -> float:
        """Cores busy with other processes since the previous measured call, in [0, max_cores];
        within ``MIN_WALL_S`` of it, the previous answer."""
        now = self.read()
        busy, mine, wall = (b - a for a, b in zip(self.last, now))
        if wall < self.MIN_WALL_S:
            return self.value
        self.last = now
        self.value = min(self.max_cores, max(0.0, (busy - mine) / wall))
        return self.value


def _read_proc() -> tuple[float, float, float]:
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:  # no /proc: the load average (a lagging stand-in, counting this process)
        wall = time.monotonic()
        return os.getloadavg()[0] * wall, 0.0, wall
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
    # (steal too: time the host gave to someone else is not ours to use).
    busy = sum(fields[:3]) + sum(fields[5:8])
    times = os.times()
    return busy / tick, times.user + times.system, time.monotonic()


class ThreadPolicy:
    """Sets torch's CPU thread count between training steps.

    Args:
        max_threads: the most threads to use.
        adaptive: False: always ``max_threads``. True: the cores the other processes leave free
            (between 1 and ``max_threads``), looked at every ``hold_s`` seconds.
        hold_s: seconds between looks.
        others: the measurement of the other processes' CPU use (injectable for tests).
        clock, set_threads: injectable for tests.

    Attributes:
        current: the thread count in force.
        history: (others' cores, chosen threads) of every look.
    """

    def __init__(
        self,
        max_threads: int,
        adaptive: bool = False,
        hold_s: float = 10.0,
        others: OthersCpu | None = None,
        clock: Callable[[], float] = time.monotonic,
        set_threads: Callable[[int], None] = torch.set_num_threads,
        cores: int | None = None,
    ) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        self.max_threads, self.adaptive, self.hold_s = max_threads, adaptive, hold_s
        self.clock, self._set = clock, set_threads
        self.cores = cores or available_cores()
        self.history: list[tuple[float, int]] = []
        self.current = 0
        self.others = None
        if adaptive and max_threads > 1:
            self.others = others or OthersCpu()
            if others is None:
                time.sleep(0.2)  # a first look needs an interval to measure
            self._decide()
        else:
            self._use(max_threads)

    @classmethod
    def fixed(cls, n: int) -> ThreadPolicy:
        return cls(n)

    @classmethod
    def adaptive_default(cls) -> ThreadPolicy:
        """Up to torch's current default (all cores), as many as the other processes leave."""
        return cls(torch.get_num_threads(), adaptive=True)

    def _use(self, n: int) -> None:
        if n != self.current:
            self._set(n)
            self.current = n
        self._last = self.clock()

    def _decide(self) -> None:
        busy = self.others.cores()
        free = int(self.cores - busy + 0.5)
        n = max(1, min(self.max_threads, free))
        self.history.append((busy, n))
        self._use(n)

    def begin_epoch(self) -> None:
        """Call before every epoch: sets the count in force again, since the caller may have
        changed torch's thread count in between (the recommender restores its own after each
        epoch, so that evaluation keeps the process's setting)."""
        self._set(self.current)
        self._last = self.clock()

    def step_done(self) -> None:
        """Call after every training step."""
        if self.others is not None and self.clock() - self._last >= self.hold_s:
            self._decide()
