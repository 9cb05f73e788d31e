"""The data options every command line shares, declared once: ``--data-dir``, ``--clicks``,
``--cache-dir`` and the event-log flags (``--columns``, ``--session-gap``, ``--time-unit``,
``--min-item-support``, ``--min-session-length``, ``--test-days``), with one default each for
every entry point (``run_benchmark.py``, ``python -m benchmark.tune``,
``python -m benchmark.perf.*``, ``sessionbench ...``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.config import ConfigError
from datasets import DEFAULT_DATA_DIR
from datasets.eventlog import TIME_UNITS, EventLogOptions, parse_columns

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
    events: bool | None = None,
) -> None:
    """Add ``--data-dir`` (default ``data``), ``--clicks`` (default none) and ``--cache-dir``
    (default ``cache``) to ``parser``; each flag turns one off for an entry point without it.
    ``clicks_help`` words ``--clicks`` for a script that uses the file differently.
    ``events`` (default: with ``data_dir``) adds the flags of a click file given by
    ``--dataset FILE`` (:func:`event_log_options` reads them back)."""
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
    if data_dir if events is None else events:
        group = (
            parser.add_argument_group(
                "your own click file (--dataset FILE.csv|.tsv|.parquet, or a raw RSC15 file)"
            )
            if isinstance(parser, argparse.ArgumentParser)
            else parser
        )
        group.add_argument(
            "--columns",
            default=None,
            metavar="ROLE=COL,...",
            help="header names of the columns: session=COL (or user=COL: sessions cut by "
            "--session-gap), item=COL, time=COL; default session_id/SessionId, "
            "item_id/ItemId, timestamp/Timestamp/Time (None: these)",
        )
        group.add_argument(
            "--session-gap",
            type=float,
            default=EVENT_DEFAULTS.session_gap,
            metavar="MINUTES",
            help="with user=COL: a gap longer than this starts a new session",
        )
        group.add_argument(
            "--time-unit",
            choices=TIME_UNITS,
            default=None,
            help="epoch s, ms, us, ns, or ISO 8601 text; None: detected from the values (logged)",
        )
        group.add_argument(
            "--min-item-support",
            type=int,
            default=EVENT_DEFAULTS.min_item_support,
            metavar="N",
            help="drop items with fewer events (rule 2; RSC15: 5)",
        )
        group.add_argument(
            "--min-session-length",
            type=int,
            default=EVENT_DEFAULTS.min_session_length,
            metavar="N",
            help="drop shorter sessions (rules 1 and 3; RSC15: 2)",
        )
        group.add_argument(
            "--test-days",
            type=float,
            default=EVENT_DEFAULTS.test_days,
            metavar="DAYS",
            help="sessions ending in the last DAYS are the test set; the validation split is "
            "the same rule on the training part (RSC15: 1)",
        )


EVENT_DEFAULTS = EventLogOptions()
EVENT_FIELDS = (
    "columns",
    "session_gap",
    "time_unit",
    "min_item_support",
    "min_session_length",
    "test_days",
)
"""The event-log options, by their ``argparse`` dest (= ``RunOptions`` field) names."""


def event_log_options(args: object) -> EventLogOptions:
    """The :class:`EventLogOptions` of parsed arguments (or ``RunOptions``); defaults where a
    flag is absent.

    Raises:
        ConfigError: an invalid value, naming its flag.
    """
    values = {k: getattr(args, k, getattr(EVENT_DEFAULTS, k)) for k in EVENT_FIELDS}
    try:
        values["columns"] = (
            parse_columns(values["columns"] or None)
            if isinstance(values["columns"], str)
            else tuple(values["columns"] or ())
        )
        return EventLogOptions(**values)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def event_options_given(options: EventLogOptions) -> list[str]:
    """The flags whose values differ from the defaults, as ``--flag`` names."""
    return [
        "--" + k.replace("_", "-")
        for k in EVENT_FIELDS
        if getattr(options, k) != getattr(EVENT_DEFAULTS, k)
    ]
