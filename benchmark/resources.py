"""Wall time and peak memory of one stage (a fit, an evaluation, preprocessing).

Peak memory is the process's peak resident set size *during the stage*: on Linux the kernel's
high-water mark (VmHWM) is reset at the start of the stage by writing "5" to
/proc/self/clear_refs, and read at its end. Where that is not possible the lifetime peak
(ru_maxrss) is reported instead, and ``peak_is_per_stage`` says so. GPU peak memory is read from
torch's allocator when CUDA is in use.
"""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class Usage:
    """Filled in when the ``measure()`` block ends."""

    seconds: float = float("nan")
    peak_rss_mb: float = float("nan")
    peak_gpu_mb: float | None = None
    peak_is_per_stage: bool = False


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cuda():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None


@contextmanager
def measure() -> Iterator[Usage]:
    """Measure the wall time and peak memory of the ``with`` block."""
    usage = Usage()
    usage.peak_is_per_stage = _reset_peak()
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield usage
    finally:
        cuda = _cuda()  # the stage may have initialised CUDA itself
        if cuda is not None:
            cuda.synchronize()
            usage.peak_gpu_mb = cuda.max_memory_allocated() / 2**20
        usage.seconds = time.perf_counter() - start
        usage.peak_rss_mb = _peak_rss_mb()
