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
import pyarrow as pa
import pyarrow.csv as pacsv

from datasets import cache
from datasets.clicks import (
    MICROS,
    Clicks,
    click_support,
    encode_items,
    file_sha256,
    item_index,
    locate_bad_line,
    order_sessions,
    session_starts,
    sort_clicks,
    to_sessions,
    vocabulary,
)
from datasets.errors import DataError, MissingDataError
from datasets.sessions import Dataset
from datasets.textfile import arrow_input, check_text, long_line_error, read_error

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

_COLUMNS = ["session_id", "time", "item_id", "category"]
_TYPES = {
    "session_id": pa.int64(),
    "time": pa.timestamp("us", tz="UTC"),
    "item_id": pa.int64(),
}

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


def _parse_options() -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=",", quote_char=False)


def _convert_options() -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=_TYPES,
        include_columns=["session_id", "time", "item_id"],
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _parse_block(data: bytes) -> pa.Table:
    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=_COLUMNS, use_threads=False),
        parse_options=_parse_options(),
        convert_options=_convert_options(),
    )


def read_clicks(path: Path) -> Clicks:
    """Read a raw ``yoochoose-clicks.dat``-format file (multithreaded, Category skipped).

    Raises:
        MissingDataError: the file does not exist (the message says where to get it).
        DataError: empty file, or a bad row (message names the file and line).
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(missing_message(path))
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected the click file {CLICKS_FILE}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (expected rows 'SessionId,Timestamp,ItemId,Category')")
    check_text(path, _WHAT)
    started = time.perf_counter()
    try:
        clicks = _table_to_clicks(
            pacsv.read_csv(
                arrow_input(path),
                read_options=pacsv.ReadOptions(column_names=_COLUMNS, block_size=16 << 20),
                parse_options=_parse_options(),
                convert_options=_convert_options(),
            )
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise _bad_row_error(path, e) from None
    except OSError as e:  # a gzip stream damaged past the first block, a failing disk
        raise read_error(path, e, _WHAT) from None
    pa.default_memory_pool().release_unused()  # hand the parsed table's memory back now
    if len(clicks) == 0:
        raise DataError(f"{path}: no data rows (expected 'SessionId,Timestamp,ItemId,Category')")
    log.info("read %s: %d clicks in %.1f s", path, len(clicks), time.perf_counter() - started)
    return clicks


def _table_to_clicks(table: pa.Table) -> Clicks:
    """Numpy columns of the parsed table, each Arrow column released as soon as it is copied."""
    columns = {}
    for name in ("session_id", "time", "item_id"):
        column = table.column(name)
        if name == "time":
            column = column.cast(pa.int64())
        columns[name] = column.to_numpy()
        del column
        table = table.drop_columns([name])
    return Clicks(**columns)


_WHAT = "raw RSC15 clicks, rows 'SessionId,Timestamp,ItemId,Category'"


def _bad_row_error(path: Path, error: Exception) -> DataError:
    long = long_line_error(path, _WHAT)  # pyarrow's own words for it would be obscure
    if long is not None:
        return long
    log.info("locating the bad row of %s", path)
    found = locate_bad_line(path, _parse_block)
    if found is None:
        return DataError(f"{path}: {error}")
    line, message = found
    return DataError(f"{path}, line {line}: {message}")


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


def drop_unknown_items(test: Clicks, known: np.ndarray) -> Clicks:
    """Rule 5: drop test clicks on items not in ``known`` (sorted), then test sessions < 2."""
    kept = test.take(item_index(test.item_id, known) >= 0)
    return drop_short_sessions(kept, MIN_SESSION_LENGTH)


def filter_clicks(clicks: Clicks) -> Clicks:
    """Rules 1-3, one pass each, in order."""
    clicks = drop_short_sessions(clicks, MIN_SESSION_LENGTH)
    clicks = drop_rare_items(clicks, MIN_ITEM_SUPPORT)
    return drop_short_sessions(clicks, MIN_SESSION_LENGTH)


def split_train_test(clicks: Clicks) -> tuple[Clicks, Clicks]:
    """Rules 4-5: the time split and the cleaning of its test part."""
    train, test = split_by_time(clicks)
    return train, drop_unknown_items(test, vocabulary(train.item_id))


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


def preprocess(clicks: Clicks, *, source: str = "<clicks>") -> Splits:
    """All the rules, on raw clicks in any order; the result is in protocol order.

    Item ids are replaced by dense codes first (``Splits.item_ids`` maps them back), which
    makes every later item lookup a table access.

    Raises:
        DataError: train or test is empty after the rules (``source`` names the input).
    """
    started, n_raw = time.perf_counter(), len(clicks)
    clicks, item_ids = encode_items(clicks)
    clicks = filter_clicks(sort_clicks(clicks))
    train, test = split_train_test(clicks)
    del clicks
    # Order before flagging train_tr: the flags index train's sessions in their final order.
    train, test = order_sessions(train), order_sessions(test)
    is_valid = in_test_window(train)  # rules 4-5 again, on the training set
    tr_click = np.repeat(~is_valid, session_lengths(train))
    valid = drop_unknown_items(train.take(~tr_click), vocabulary(train.item_id[tr_click]))
    del tr_click
    splits = Splits(train, test, order_sessions(valid), ~is_valid, item_ids)
    _check_not_empty(splits, n_raw, source)
    log.info("preprocessed %d raw clicks in %.1f s", n_raw, time.perf_counter() - started)
    return splits


def _check_not_empty(splits: Splits, n_raw: int, source: str) -> None:
    for name in ("train", "test"):
        if len(getattr(splits, name)) == 0:
            raise DataError(
                f"{source}: the {name} split is empty after the RSC15 preprocessing "
                f"({n_raw} raw clicks; sessions of length 1 and items with < {MIN_ITEM_SUPPORT} "
                f"clicks are dropped, the last {SPLIT_SECONDS} s form the test set). "
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
    sha = file_sha256(clicks_path)
    key = f"{sha[:16]}-rules{RULES_VERSION}"
    source: dict[str, object] = {
        "files": [{"path": str(clicks_path), "size": clicks_path.stat().st_size, "sha256": sha}],
        "official_file": sha == OFFICIAL_SHA256,
        "rules_version": RULES_VERSION,
        "cache_key": key,
    }
    directory = None if cache_dir is None else Path(cache_dir) / "rsc15" / key
    if directory is not None and cache.exists(directory):
        log.info("reading prepared RSC15 splits from %s", directory)
        try:
            dataset = cache.read(
                directory, name=name, source=source | {"cache": "hit"}, policy=POLICY
            )
        except cache.DamagedCache as e:
            log.warning("%s; preparing the splits again and replacing the entry", e)
            cache.discard(directory)
        else:
            if sha == OFFICIAL_SHA256:
                check_official_counts(dataset, str(directory))
            return dataset
    splits = preprocess(read_clicks(clicks_path), source=str(clicks_path))
    dataset = splits_to_dataset(splits, name=name, source=source | {"cache": "miss"})
    if sha == OFFICIAL_SHA256:
        check_official_counts(dataset, str(clicks_path))
    if directory is not None:
        valid = None
        if dataset.valid_test is not None:
            valid = to_sessions(splits.valid, vocabulary(splits.train.item_id))
        cache.write(
            directory,
            dataset,
            splits.in_train_tr,
            valid,
            {"sha256": sha, "rules_version": RULES_VERSION},
        )
    return dataset
