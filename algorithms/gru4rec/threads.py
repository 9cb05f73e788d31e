"""How many CPU threads GRU4Rec trains with: fixed, or chosen by measuring while it trains.

A training step is ~80 small tensor ops (32 x 100 matrices), so a second thread only pays off
while it has a core of its own: on a quiet 2-core machine two threads train 1.2-1.7x faster than
one, but once other processes keep the cores busy, torch's worker threads wait for each other at
every op and two threads can be several times slower than one. No fixed count is right on a
machine whose load changes, so by default the trainer measures: it runs a short probe with each
candidate count (1 and torch's default), keeps the faster for ``hold_s`` seconds, then probes
again. A probe is at most ``probe_steps`` steps or ``probe_s`` seconds, so a bad candidate costs
little.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


class ThreadPolicy:
    """Sets torch's CPU thread count between training steps.

    Args:
        candidates: thread counts to choose from (one entry: fixed, never probed).
        probe_steps: steps per probe of one candidate.
        probe_s: a probe also ends after this many seconds.
        hold_s: seconds the chosen count is kept before the next round of probes.
        clock, set_threads: injectable for tests.

    Attributes:
        current: the thread count in force.
        history: one ``{candidate: steps per second}`` dict per finished round of probes.
    """

    def __init__(self, candidates: list[int], probe_steps: int = 64, probe_s: float = 0.5,
                 hold_s: float = 20.0, clock: Callable[[], float] = time.perf_counter,
                 set_threads: Callable[[int], None] = torch.set_num_threads) -> None:
        if not candidates or any(c < 1 for c in candidates):
            raise ValueError(f"thread candidates must be >= 1, got {candidates}")
        self.candidates = sorted(set(candidates))
        self.probe_steps, self.probe_s, self.hold_s = probe_steps, probe_s, hold_s
        self.clock, self._set = clock, set_threads
        self.history: list[dict[int, float]] = []
        self.current = self.candidates[-1]
        self._rates: dict[int, float] = {}
        self._probing = len(self.candidates) > 1
        self._index = 0
        self._use(self.candidates[0] if self._probing else self.current)

    @classmethod
    def fixed(cls, n: int) -> "ThreadPolicy":
        return cls([n])

    @classmethod
    def adaptive(cls) -> "ThreadPolicy":
        """Probe one thread against torch's current default (all cores)."""
        return cls([1, torch.get_num_threads()])

    def _use(self, n: int) -> None:
        self.current = n
        self._set(n)
        self._start, self._steps = self.clock(), 0

    def step_done(self) -> None:
        """Call after every training step."""
        self._steps += 1
        if not self._probing and len(self.candidates) == 1:
            return
        elapsed = self.clock() - self._start
        if self._probing:
            if self._steps < self.probe_steps and elapsed < self.probe_s:
                return
            self._rates[self.current] = self._steps / max(elapsed, 1e-9)
            self._index += 1
            if self._index < len(self.candidates):
                self._use(self.candidates[self._index])
                return
            self.history.append(dict(self._rates))
            best = max(self._rates, key=self._rates.__getitem__)
            self._probing, self._rates = False, {}
            self._use(best)
        elif elapsed >= self.hold_s:
            self._probing, self._index = True, 0
            self._use(self.candidates[0])
