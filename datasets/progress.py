"""Whether progress bars show: one rule for every bar of the project.

A bar shows only on a terminal (no bar noise in logs) and only while bars are not switched off
for the process (``run_benchmark.py --no-progress`` calls :func:`disable_bars`). Every ``tqdm``
of the project passes ``disable=not bars_enabled()`` (and-ed with its own ``progress`` flag
where it has one): tqdm reads ``TQDM_DISABLE`` only for bars that leave ``disable`` unset, so
the environment variable alone would not reach them. It is still set, for third-party bars.
"""

from __future__ import annotations

import os
import sys

_ENV = "TQDM_DISABLE"


def disable_bars() -> None:
    """Switch every progress bar of this process (and its children) off."""
    os.environ[_ENV] = "1"


def bars_enabled() -> bool:
    """True when bars are not switched off and stderr is a terminal."""
    if os.environ.get(_ENV, "").strip().lower() not in ("", "0", "false"):
        return False
    return sys.stderr.isatty()
