"""GRU4Rec-format TSV splits: ``SessionId<TAB>ItemId<TAB>Time`` with a header line.

This is the format of the official GRU4Rec preprocessing output (``Time`` in float seconds)
and of ``rsc15-100k``. The files are taken as already preprocessed: nothing is filtered. The
vocabulary is the set of items of the training file; items of the other files that are not in
it are stored as ``UNKNOWN`` (as targets they count as misses).

Use :func:`load_tsv` for your own data: a training and a test file, optionally a
train_tr / valid pair for hyperparameter search.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from datasets.clicks import (
    MICROS,
    Clicks,
    file_record,
    locate_bad_line,
    require_file,
    row_to_line,
    sort_clicks,
    to_sessions,
    vocabulary,
)
from datasets.errors import DataError, MissingDataError
from datasets.sessions import Dataset
from datasets.textfile import (
    BLOCK_BYTES,
    arrow_input,
    check_text,
    long_line_error,
    open_binary,
    read_error,
)

log = logging.getLogger(__name__)

COLUMNS = ("SessionId", "ItemId", "Time")
_TYPES = {"SessionId": pa.int64(), "ItemId": pa.int64(), "Time": pa.float64()}

RSC15_100K_FILES = {
    "train": "yoochoose-clicks-100k_train_full.txt",
    "test": "yoochoose-clicks-100k_test.txt",
    "train_tr": "yoochoose-clicks-100k_train_tr.txt",
    "valid": "yoochoose-clicks-100k_train_valid.txt",
}

POLICY = {
    "preprocessing": "none here: the TSV files are taken as already preprocessed",
    "unseen_targets": "counted as misses (rank inf)",
}


def read_header(path: Path) -> list[str]:
    """The column names of a TSV file; DataError unless SessionId, ItemId and Time are there."""
    with open_binary(path) as f:
        first = f.readline(4096).decode("utf-8", errors="replace").rstrip("\r\n")
    names = first.split("\t")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{path}, line 1: header {first!r} lacks column(s) {', '.join(missing)}; "
            f"expected a tab-separated header with {', '.join(COLUMNS)}"
        )
    if len(set(names)) != len(names):
        raise DataError(f"{path}, line 1: duplicate column names in header {first!r}")
    return names


def _options(names: list[str]) -> tuple[pacsv.ParseOptions, pacsv.ConvertOptions]:
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
    convert = pacsv.ConvertOptions(
        column_types={c: _TYPES[c] for c in COLUMNS},
        include_columns=list(COLUMNS),
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return parse, convert


def read_tsv(path: Path) -> Clicks:
    """Read one GRU4Rec-format TSV file, in file order.

    Raises:
        MissingDataError: the file does not exist.
        DataError: empty file, bad header, or a bad row (message names the file and line).
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"TSV file not found: {path}")
    require_file(path, _WHAT)
    check_text(path, _WHAT)
    names = read_header(path)
    parse, convert = _options(names)
    try:
        table = pacsv.read_csv(
            arrow_input(path),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_BYTES),
            parse_options=parse,
            convert_options=convert,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise _bad_row_error(path, names, e) from None
    except OSError as e:  # a gzip stream damaged past the first block, a failing disk
        raise read_error(path, e, _WHAT) from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows after the header")
    return _to_clicks(path, table)


def _to_clicks(path: Path, table: pa.Table) -> Clicks:
    seconds = table.column("Time").to_numpy()
    bad = np.flatnonzero(~np.isfinite(seconds))
    if len(bad):
        line = row_to_line(path, int(bad[0]), skip_lines=1)
        raise DataError(f"{path}, line {line}: Time is not a finite number ({seconds[bad[0]]})")
    return Clicks(
        session_id=table.column("SessionId").to_numpy(),
        time=np.rint(seconds * MICROS).astype(np.int64),
        item_id=table.column("ItemId").to_numpy(),
    )


_WHAT = "a header line 'SessionId<TAB>ItemId<TAB>Time' and data rows"


def _bad_row_error(path: Path, names: list[str], error: Exception) -> DataError:
    long = long_line_error(path, _WHAT)  # pyarrow's own words for it would be obscure
    if long is not None:
        return long
    parse, convert = _options(names)

    def parse_block(data: bytes) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=parse,
            convert_options=convert,
        )

    found = locate_bad_line(path, parse_block, skip_lines=1)
    if found is None:
        return DataError(f"{path}: {error}")
    return DataError(f"{path}, line {found[0]}: {found[1]}")


def load_tsv(
    train: Path,
    test: Path,
    train_tr: Path | None = None,
    valid: Path | None = None,
    *,
    name: str = "tsv",
) -> Dataset:
    """A ``Dataset`` from GRU4Rec-format TSV files (your own data, or rsc15-100k).

    Args:
        train: the full training file; its items form the vocabulary.
        test: the test file.
        train_tr: optional training part of the validation split.
        valid: optional validation file (given together with ``train_tr``).
        name: the dataset name recorded with results.

    Raises:
        ValueError: only one of ``train_tr`` and ``valid`` is given.
        MissingDataError, DataError: as :func:`read_tsv`; also when train or test is empty.
    """
    if (train_tr is None) != (valid is None):
        raise ValueError("give both train_tr and valid, or neither")
    paths = {"train": train, "test": test, "train_tr": train_tr, "valid": valid}
    paths = {k: Path(v) for k, v in paths.items() if v is not None}
    clicks = {split: sort_clicks(read_tsv(path)) for split, path in paths.items()}
    vocab = vocabulary(clicks["train"].item_id)
    sessions = {split: to_sessions(c, vocab) for split, c in clicks.items()}
    log.info("read %s: %s", name, {k: len(v) for k, v in clicks.items()})
    return Dataset(
        name=name,
        train=sessions["train"],
        test=sessions["test"],
        item_ids=vocab,
        valid_train=sessions.get("train_tr"),
        valid_test=sessions.get("valid"),
        policy=dict(POLICY),
        source={"files": [file_record(p) | {"split": k} for k, p in paths.items()]},
    )


def load_rsc15_100k(directory: Path) -> Dataset:
    """``rsc15-100k``: the four TSV files in ``directory`` (``<data-dir>/rsc15-100k``)."""
    directory = Path(directory)
    paths = {split: directory / file for split, file in RSC15_100K_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise MissingDataError(
            f"rsc15-100k files not found: {', '.join(missing)}\n"
            "They are rn5l/session-rec data/rsc15/prepared/yoochoose-clicks-100k_*.txt; put them "
            "in <data-dir>/rsc15-100k/ (see docs/data.md)."
        )
    return load_tsv(**paths, name="rsc15-100k")
