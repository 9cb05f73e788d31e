"""The data options every command line shares, declared once: ``--data-dir``, ``--clicks``,
``--cache-dir``, with one default each for every entry point (``run_benchmark.py``,
``python -m benchmark.tune``, ``python -m benchmark.perf.*``, ``sessionbench ...``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from datasets import DEFAULT_DATA_DIR

DEFAULT_CACHE_DIR = Path("cache")

DATA_DIR_HELP = "folder holding one subfolder per dataset (see docs/data.md)"
CLICKS_HELP = (
    "rsc15 only: path of yoochoose-clicks.dat (default <data-dir>/rsc15/yoochoose-clicks.dat)"
)
CACHE_DIR_HELP = "where preprocessed splits are cached"


def add_data_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    data_dir: bool = True,
    clicks: bool = True,
    cache_dir: bool = True,
    clicks_help: str = CLICKS_HELP,
) -> None:
    """Add ``--data-dir`` (default ``data``), ``--clicks`` (default none) and ``--cache-dir``
    (default ``cache``) to ``parser``; each flag turns one off for an entry point without it.
    ``clicks_help`` words ``--clicks`` for a script that uses the file differently."""
    if data_dir:
        parser.add_argument(
            "--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="PATH", help=DATA_DIR_HELP
        )
    if clicks:
        parser.add_argument("--clicks", type=Path, default=None, metavar="PATH", help=clicks_help)
    if cache_dir:
        parser.add_argument(
            "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, metavar="PATH", help=CACHE_DIR_HELP
        )
