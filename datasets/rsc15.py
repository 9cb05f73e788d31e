"""RSC15 (YooChoose) from the raw ``yoochoose-clicks.dat``, with the GRU4Rec preprocessing.

The raw file has no header and four comma-separated columns,
``SessionId,Timestamp,ItemId,Category`` (e.g. ``832,2014-04-06T20:21:58.444Z,214717095,0``);
the category is not used. The rules are those of docs/PROTOCOL.md, one pass each, in order:

1. drop sessions of length 1;
2. drop items with fewer than 5 clicks (support counted on all remaining clicks);
3. drop sessions now shorter than 2;
4. split by session: ``tmax`` = the last click time; a session whose *last* click is at or
   after ``tmax - 86400 s`` is a test session, every other one a training session;
5. drop test clicks on items absent from training, then test sessions shorter than 2;
6. no de-duplication; rules 4-5 applied again to the training set give train_tr / valid.

In every prepared split, sessions are ordered by the time of their first click in that split
(ties by session id) and the clicks of a session by time (ties in file order), as GRU4Rec's
session-parallel batches expect. Item ids become indices into the sorted training vocabulary.

The prepared splits are cached as parquet (:mod:`datasets.cache`) under
``<cache_dir>/rsc15/<key>/``, where the key combines the sha256 of the input file and
``RULES_VERSION``; a second load reads the cache instead of the raw file.

At full scale (33M simulated clicks, 1.5 GB) a cold load took 41 s with a 3.5 GiB peak and a
cached load 11 s / 2.3 GiB, on a shared 2-core machine (load average ~4; measured with
``python -m benchmark.perf.preprocess_scale``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from datasets import cache, eventlog
from datasets.clicks import (
    MICROS,
    Clicks,
    click_support,
    encode_items,
    file_sha256,
    item_index,
    order_sessions,
    session_starts,
    sort_clicks,
    to_sessions,
    vocabulary,
)
from datasets.errors import DataError, MissingDataError
from datasets.sessions import Dataset

log = logging.getLogger(__name__)

RULES_VERSION = 3
"""Part of the cache key: bump whenever the rules or the split order change."""

CLICKS_FILE = "yoochoose-clicks.dat"
OFFICIAL_SIZE = 1_486_798_186
OFFICIAL_SHA256 = "0deaf041a4f60955928fe8430e525a1dbf38e9013c7482420973e4aa492fa762"
OFFICIAL_COUNTS = {
    "train": {"events": 31_637_239, "sessions": 7_966_257, "items": 37_483},
    "test": {"events": 71_222, "sessions": 15_324, "items": 6_751, "predictions": 55_898},
    "train_tr": {"events": 31_579_006, "sessions": 7_953_885},
    "valid": {"events": 58_233, "sessions": 12_372},
}
"""The published split of the official file (the GRU4Rec papers and code): the preprocessing of
that file must give exactly these counts, or it is not the protocol's."""
SPLIT_SECONDS = 86_400
MIN_ITEM_SUPPORT = 5
MIN_SESSION_LENGTH = 2


@dataclass(frozen=True)
class Protocol:
    """The values of the rules: RSC15's by default (``--min-item-support`` etc. change them)."""

    min_item_support: int = MIN_ITEM_SUPPORT
    min_session_length: int = MIN_SESSION_LENGTH
    test_seconds: int = SPLIT_SECONDS


RSC15_PROTOCOL = Protocol()

POLICY = {
    "preprocessing": (
        "GRU4Rec RSC15 rules (docs/PROTOCOL.md 1-6): sessions of length 1 dropped, items with < 5 "
        "clicks dropped, sessions < 2 dropped; last 86,400 s by session end = test; test clicks "
        "on items not in train dropped, then test sessions < 2; same split again on train "
        "gives train_tr/valid"
    ),
    "unseen_targets": "none: test clicks on items absent from training are dropped (rule 5)",
}


def missing_message(path: Path) -> str:
    """What to tell a user whose ``yoochoose-clicks.dat`` is not where we looked."""
    return (
        f"RSC15 click file not found: {path}\n"
        "Download the RecSys Challenge 2015 (YooChoose) dataset, the archive yoochoose-data.7z "
        "linked from the challenge page (http://2015.recsyschallenge.com/challenge.html; "
        f"mirrors exist), and extract {CLICKS_FILE} ({OFFICIAL_SIZE:,} bytes, "
        f"sha256 {OFFICIAL_SHA256}).\n"
        f"Put it at <data-dir>/rsc15/{CLICKS_FILE} or pass --clicks PATH.\n"
        "No download? `python -m datasets.generate_rsc15 FILE` writes a simulated file of the "
        "same shape, or use --dataset synthetic."
    )


# --- reading --------------------------------------------------------------------------------


def read_clicks(path: Path) -> Clicks:
    """Read a raw ``yoochoose-clicks.dat``-format file: the event-log reader with RSC15's columns
    (:data:`datasets.eventlog.RSC15_FORMAT`, Category skipped).

    Raises:
        MissingDataError: the file does not exist (the message says where to get it).
        DataError: empty file, or a bad row (message names the file and line).
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(missing_message(path))
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected the click file {CLICKS_FILE}")
    clicks, _ = eventlog.read_events(path, eventlog.RSC15_FORMAT, eventlog.RSC15_OPTIONS)
    pa.default_memory_pool().release_unused()  # hand the parsed blocks' memory back now
    return clicks


_WHAT = eventlog.RSC15_FORMAT.what


# --- preprocessing rules (on grouped clicks, see datasets.clicks.sort_clicks) ----------------


def session_lengths(clicks: Clicks) -> np.ndarray:
    """Clicks per session, one entry per session of grouped clicks."""
    return np.diff(session_starts(clicks))


def drop_short_sessions(clicks: Clicks, min_length: int) -> Clicks:
    """Rules 1 and 3: drop sessions with fewer than ``min_length`` clicks."""
    lengths = session_lengths(clicks)
    return clicks.take(np.repeat(lengths >= min_length, lengths))


def drop_rare_items(clicks: Clicks, min_support: int) -> Clicks:
    """Rule 2: drop clicks on items with fewer than ``min_support`` clicks in ``clicks``."""
    return clicks.take(click_support(clicks.item_id) >= min_support)


def in_test_window(clicks: Clicks, seconds: int = SPLIT_SECONDS) -> np.ndarray:
    """Rule 4, per session: True where the session's last click is >= tmax - ``seconds``."""
    if len(clicks) == 0:
        return np.zeros(0, dtype=bool)
    starts = session_starts(clicks)
    last = np.maximum.reduceat(clicks.time, starts[:-1])
    return last >= clicks.time.max() - seconds * MICROS


def split_by_time(clicks: Clicks, seconds: int = SPLIT_SECONDS) -> tuple[Clicks, Clicks]:
    """Rule 4: (train, test). Sessions are never cut: the rule decides per session."""
    is_test = np.repeat(in_test_window(clicks, seconds), session_lengths(clicks))
    return clicks.take(~is_test), clicks.take(is_test)


def drop_unknown_items(
    test: Clicks, known: np.ndarray, min_length: int = MIN_SESSION_LENGTH
) -> Clicks:
    """Rule 5: drop test clicks on items not in ``known`` (sorted), then test sessions shorter
    than ``min_length`` (2: a session of one click has nothing to predict)."""
    kept = test.take(item_index(test.item_id, known) >= 0)
    return drop_short_sessions(kept, max(min_length, 2))


def filter_clicks(clicks: Clicks, protocol: Protocol = RSC15_PROTOCOL) -> Clicks:
    """Rules 1-3, one pass each, in order."""
    clicks = drop_short_sessions(clicks, protocol.min_session_length)
    clicks = drop_rare_items(clicks, protocol.min_item_support)
    return drop_short_sessions(clicks, protocol.min_session_length)


def split_train_test(clicks: Clicks, protocol: Protocol = RSC15_PROTOCOL) -> tuple[Clicks, Clicks]:
    """Rules 4-5: the time split and the cleaning of its test part."""
    train, test = split_by_time(clicks, protocol.test_seconds)
    known = vocabulary(train.item_id)
    return train, drop_unknown_items(test, known, protocol.min_session_length)


def count_duplicates(clicks: Clicks) -> int:
    """Events that repeat an earlier one exactly (same session, time and item), in grouped
    clicks; only rows sharing their session and time with a neighbour are compared."""
    if len(clicks) < 2:
        return 0
    same = (clicks.session_id[1:] == clicks.session_id[:-1]) & (clicks.time[1:] == clicks.time[:-1])
    if not same.any():
        return 0
    rows = np.zeros(len(clicks), dtype=bool)
    rows[1:] |= same
    rows[:-1] |= same
    frame = pd.DataFrame(
        {"s": clicks.session_id[rows], "t": clicks.time[rows], "i": clicks.item_id[rows]}
    )
    return int(frame.duplicated().sum())


@dataclass(frozen=True, eq=False)
class Splits:
    """The prepared splits, in protocol order.

    train_tr is not stored as a copy: it is the training sessions flagged in ``in_train_tr``
    (rule 4 on the training set keeps them whole and unfiltered), which halves peak memory.

    Attributes:
        train: the training clicks.
        test: the test clicks.
        valid: the validation clicks (rules 4-5 applied to ``train``).
        in_train_tr: bool per training session: True if it belongs to train_tr.
        item_ids: original id of each item code when ``item_id`` columns hold codes
            (:func:`datasets.clicks.encode_items`); None when they hold the ids themselves.
    """

    train: Clicks
    test: Clicks
    valid: Clicks
    in_train_tr: np.ndarray
    item_ids: np.ndarray | None = None
    stats: dict | None = None
    """What each rule dropped, with the summary lines (:func:`preprocess`)."""

    @property
    def train_tr(self) -> Clicks:
        return self.train.take(np.repeat(self.in_train_tr, session_lengths(self.train)))

    def counts(self) -> dict[str, dict[str, int]]:
        """Events and sessions per split."""
        train_tr_events = int(session_lengths(self.train)[self.in_train_tr].sum())
        return {
            "train": {"events": len(self.train), "sessions": self.train.n_sessions},
            "test": {"events": len(self.test), "sessions": self.test.n_sessions},
            "train_tr": {"events": train_tr_events, "sessions": int(self.in_train_tr.sum())},
            "valid": {"events": len(self.valid), "sessions": self.valid.n_sessions},
        }


def preprocess(
    clicks: Clicks, *, source: str = "<clicks>", protocol: Protocol = RSC15_PROTOCOL
) -> Splits:
    """All the rules, on raw clicks in any order; the result is in protocol order.

    Item ids are replaced by dense codes first (``Splits.item_ids`` maps them back), which
    makes every later item lookup a table access. ``Splits.stats`` records what each rule
    dropped (and exact duplicate events, which are kept, as GRU4Rec's preprocessing keeps them).

    Raises:
        DataError: nothing left after rules 1-3, or train or test empty after the rules
            (``source`` names the input; the message says what each rule dropped).
    """
    started, n_raw = time.perf_counter(), len(clicks)
    clicks, item_ids = encode_items(clicks)
    clicks = sort_clicks(clicks)
    stats: dict = {"events": n_raw, "sessions": clicks.n_sessions}
    stats["duplicates"] = count_duplicates(clicks)
    step = drop_short_sessions(clicks, protocol.min_session_length)
    stats["short_sessions"] = (clicks.n_sessions - step.n_sessions, len(clicks) - len(step))
    rare = drop_rare_items(step, protocol.min_item_support)
    stats["rare_items"] = (
        len(np.unique(step.item_id)) - len(np.unique(rare.item_id)),
        len(step) - len(rare),
    )
    clicks = drop_short_sessions(rare, protocol.min_session_length)
    stats["short_after_items"] = (rare.n_sessions - clicks.n_sessions, len(rare) - len(clicks))
    del step, rare
    if len(clicks) == 0:
        raise DataError(
            f"{source}: nothing is left after the filters ({_dropped_text(stats, protocol)}); "
            "lower --min-item-support or --min-session-length, or give more data"
        )
    window_train, window_test = split_by_time(clicks, protocol.test_seconds)
    stats["test_window"] = (window_test.n_sessions, len(window_test))
    train, test = split_train_test(clicks, protocol)
    del clicks
    known_test = window_test.take(item_index(window_test.item_id, vocabulary(train.item_id)) >= 0)
    stats["unknown_test_clicks"] = len(window_test) - len(known_test)
    stats["short_test_sessions"] = window_test.n_sessions - test.n_sessions
    del window_train, window_test, known_test
    # Order before flagging train_tr: the flags index train's sessions in their final order.
    train, test = order_sessions(train), order_sessions(test)
    is_valid = in_test_window(train, protocol.test_seconds)  # rules 4-5 again, on the training set
    tr_click = np.repeat(~is_valid, session_lengths(train))
    valid = drop_unknown_items(
        train.take(~tr_click), vocabulary(train.item_id[tr_click]), protocol.min_session_length
    )
    del tr_click
    splits = Splits(train, test, order_sessions(valid), ~is_valid, item_ids, stats)
    _check_not_empty(splits, n_raw, source, protocol)
    stats["lines"] = _summary(splits, protocol)
    log.info("preprocessed %d raw clicks in %.1f s", n_raw, time.perf_counter() - started)
    return splits


def _dropped_text(stats: dict, protocol: Protocol) -> str:
    short, rare, again = stats["short_sessions"], stats["rare_items"], stats["short_after_items"]
    return (
        f"{stats['events']:,} events in {stats['sessions']:,} sessions; "
        f"{short[0]:,} sessions ({short[1]:,} events) shorter than "
        f"{protocol.min_session_length}, {rare[0]:,} items ({rare[1]:,} events) with fewer than "
        f"{protocol.min_item_support} events, then {again[0]:,} sessions ({again[1]:,} events) "
        "too short again"
    )


def _day(us: int) -> str:
    return pd.Timestamp(int(us), unit="us", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


def _span(clicks: Clicks) -> str:
    if len(clicks) == 0:
        return "empty"
    return f"{_day(clicks.time.min())} .. {_day(clicks.time.max())} UTC"


def _summary(splits: Splits, protocol: Protocol) -> list[str]:
    """The summary lines of a preprocessing (what each rule dropped, the splits and dates)."""
    stats = splits.stats or {}
    lines = [f"events: {stats['events']:,} in {stats['sessions']:,} sessions"]
    if stats.get("duplicates"):
        lines.append(
            f"kept {stats['duplicates']:,} exact duplicate events (same session, time and item; "
            "the GRU4Rec preprocessing does not de-duplicate)"
        )
    lines.append("dropped: " + _dropped_text(stats, protocol).split("; ", 1)[1])
    window, unknown, short = (
        stats["test_window"],
        stats["unknown_test_clicks"],
        stats["short_test_sessions"],
    )
    lines.append(
        f"test window (last {protocol.test_seconds / 86_400:g} days by session end): "
        f"{window[0]:,} sessions; dropped {unknown:,} test events on items not in train, "
        f"then {short:,} test sessions left with fewer than 2 events"
    )
    train_tr = splits.train_tr
    for name, part in (
        ("train", splits.train),
        ("test", splits.test),
        ("train_tr", train_tr),
        ("valid", splits.valid),
    ):
        items = len(np.unique(part.item_id))
        lines.append(
            f"{name}: {len(part):,} events, {part.n_sessions:,} sessions, {items:,} items, "
            f"{_span(part)}"
        )
    return lines


def _check_not_empty(splits: Splits, n_raw: int, source: str, protocol: Protocol) -> None:
    stats = splits.stats or {}
    if len(splits.train) == 0:
        raise DataError(
            f"{source}: the train split is empty after the RSC15 preprocessing "
            f"({n_raw} raw clicks; every session left ends in the last "
            f"{protocol.test_seconds} s, which form the test set). "
            "The file is too small or covers too short a time span."
        )
    if len(splits.test) == 0:
        window = stats.get("test_window", (0, 0))
        if window[1] and stats.get("unknown_test_clicks") == window[1]:
            raise DataError(
                f"{source}: the test set has no known items: none of the {window[1]:,} events "
                f"of the {window[0]:,} test sessions (those ending in the last "
                f"{protocol.test_seconds} s) is on an item of the training split"
            )
        raise DataError(
            f"{source}: the test split is empty after the RSC15 preprocessing "
            f"({n_raw} raw clicks; sessions of length 1 and items with < "
            f"{protocol.min_item_support} clicks are dropped, the last {protocol.test_seconds} s "
            "form the test set, and test sessions need 2 clicks on known items). "
            "The file is too small or covers too short a time span."
        )
    if not splits.in_train_tr.any() or len(splits.valid) == 0:
        log.warning("%s: the train_tr/valid split is empty; no validation split", source)


# --- Dataset --------------------------------------------------------------------------------


def splits_to_dataset(
    splits: Splits, *, name: str, source: dict[str, object], policy: dict[str, str] | None = None
) -> Dataset:
    """The ``Dataset`` of prepared splits, all over the vocabulary of ``splits.train``."""
    vocab = vocabulary(splits.train.item_id)
    train = to_sessions(splits.train, vocab)
    has_valid = bool(splits.in_train_tr.any()) and len(splits.valid) > 0
    return Dataset(
        name=name,
        train=train,
        test=to_sessions(splits.test, vocab),
        item_ids=vocab if splits.item_ids is None else splits.item_ids[vocab],
        valid_train=train.subset(np.flatnonzero(splits.in_train_tr)) if has_valid else None,
        valid_test=to_sessions(splits.valid, vocab) if has_valid else None,
        policy=dict(POLICY if policy is None else policy),
        source=source,
    )


def check_official_counts(
    dataset: Dataset, source: str, expected: dict[str, dict[str, int]] | None = None
) -> None:
    """Stop if the prepared splits of the official file differ from the published counts.

    Raises:
        DataError: naming every count that differs, with both values.
    """
    expected = OFFICIAL_COUNTS if expected is None else expected
    counts = dataset.split_counts()
    wrong = [
        f"{split} {key}: {counts.get(split, {}).get(key)} (published {value:,})"
        for split, values in expected.items()
        for key, value in values.items()
        if counts.get(split, {}).get(key) != value
    ]
    if wrong:
        raise DataError(
            f"{source}: this is the official RSC15 click file (its sha256 matches), but its "
            f"preprocessing does not give the published split: {'; '.join(wrong)}. The "
            "preprocessing code or its cache is wrong; results from it would not be comparable."
        )


def load_rsc15(
    clicks_path: Path, *, cache_dir: Path | None = Path("cache"), name: str = "rsc15"
) -> Dataset:
    """The prepared RSC15 dataset from a raw click file, through the cache when possible.

    Args:
        clicks_path: the raw ``yoochoose-clicks.dat`` (or a file of the same format).
        cache_dir: root of the cache; None disables caching.
        name: the dataset name recorded in the result.

    Raises:
        MissingDataError: no file at ``clicks_path``.
        DataError: the file is malformed or too small for the protocol.
    """
    clicks_path = Path(clicks_path)
    if not clicks_path.exists():
        raise MissingDataError(missing_message(clicks_path))
    return load_prepared(
        clicks_path,
        eventlog.RSC15_FORMAT,
        eventlog.RSC15_OPTIONS,
        cache_dir=cache_dir,
        name=name,
        subdir="rsc15",
        key_suffix=f"rules{RULES_VERSION}",
        read=lambda: (read_clicks(clicks_path), eventlog.ReadReport()),
    )


def load_prepared(
    path: Path,
    fmt: eventlog.TextFormat | str,
    options: eventlog.EventLogOptions,
    *,
    cache_dir: Path | None,
    name: str,
    subdir: str,
    key_suffix: str,
    read=None,
    policy: dict[str, str] | None = None,
) -> Dataset:
    """Read ``path`` as an event log, apply the rules with ``options``' values and cache the
    splits under ``<cache_dir>/<subdir>/<sha16>-<key_suffix>/``: the one path of the raw RSC15
    file and of users' own event logs. A summary of what was read and dropped is logged.

    The cache entry is written atomically (:func:`datasets.cache.write`) and only after every
    check passed: a bad input leaves no entry behind.
    """
    sha = file_sha256(path)
    key = f"{sha[:16]}-{key_suffix}"
    protocol = Protocol(options.min_item_support, options.min_session_length, options.test_seconds)
    source: dict[str, object] = {
        "files": [{"path": str(path), "size": path.stat().st_size, "sha256": sha}],
        "official_file": sha == OFFICIAL_SHA256,
        "rules_version": RULES_VERSION,
        "cache_key": key,
    }
    if subdir != "rsc15":
        source["options"] = options.to_json()
    official = sha == OFFICIAL_SHA256 and options == eventlog.RSC15_OPTIONS
    policy = POLICY if policy is None else policy
    directory = None if cache_dir is None else Path(cache_dir) / subdir / key
    if directory is not None and cache.exists(directory):
        log.info("reading prepared splits of %s from %s", path, directory)
        try:
            dataset = cache.read(
                directory, name=name, source=source | {"cache": "hit"}, policy=policy
            )
        except cache.DamagedCache as e:
            log.warning("%s; preparing the splits again and replacing the entry", e)
            cache.discard(directory)
        else:
            if official:
                check_official_counts(dataset, str(directory))
            _log_summary(path, cache.read_meta(directory).get("summary", []))
            return dataset
    if read is None:
        clicks, report = eventlog.read_events(path, fmt, options)
    else:
        clicks, report = read()
    splits = preprocess(clicks, source=str(path), protocol=protocol)
    del clicks
    summary = eventlog.summary_lines(report, splits.stats or {})
    dataset = splits_to_dataset(splits, name=name, source=source | {"cache": "miss"}, policy=policy)
    if official:
        check_official_counts(dataset, str(path))
    _log_summary(path, summary)
    if splits.stats and splits.stats.get("duplicates"):
        log.warning(
            "%s: %d exact duplicate events (same session, time and item) kept, as the "
            "GRU4Rec preprocessing keeps them",
            path,
            splits.stats["duplicates"],
        )
    if report.rows_missing:
        log.warning("%s: dropped %d rows with a missing value", path, report.rows_missing)
    if directory is not None:
        valid = None
        if dataset.valid_test is not None:
            valid = to_sessions(splits.valid, vocabulary(splits.train.item_id))
        meta = {"sha256": sha, "rules_version": RULES_VERSION, "summary": summary}
        if subdir != "rsc15":
            meta["options"] = options.to_json()
        cache.write(directory, dataset, splits.in_train_tr, valid, meta)
    return dataset


def _log_summary(path: Path, lines: list[str]) -> None:
    for line in lines:
        log.info("%s: %s", path.name, line)
