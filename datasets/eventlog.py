"""Event logs: one reader for every click file, the raw RSC15 file and users' own logs alike.

A log is a table with one row per event; three of its columns matter, named by their roles:

- ``session`` (or ``user``): the session of the event; with ``user`` instead, a user's events
  are cut into sessions wherever more than ``session_gap`` minutes pass between two of them;
- ``item``: the item clicked;
- ``time``: when; epoch seconds, milliseconds, microseconds or nanoseconds, or ISO 8601 text
  (``--time-unit``; detected from the values when not given, and the detection is logged).

Formats: CSV (``.csv``), TSV (``.tsv``), each optionally gzip-compressed (recognised by content),
with a header line naming the columns; Parquet (``.parquet``). The raw RSC15 file is one more
:class:`TextFormat` of this reader (:data:`RSC15_FORMAT`: no header, four fixed column names,
missing values are errors), so the same clicks read as raw RSC15 or as a renamed CSV give the
same clicks, and the same prepared dataset.

Text is streamed in blocks of :data:`datasets.textfile.BLOCK_BYTES` (pyarrow's streaming CSV
reader), Parquet in row batches; each block is reduced to three int64 columns at once. Ids are
integers when the first block's are, else text (numbered in sorted order). Rows with a missing
value in a used column are dropped and counted (except in the raw RSC15 format, where they are
an error); a value that cannot be parsed is an error naming the file, line (row for Parquet),
column and value. Exact duplicate events are kept, as GRU4Rec's preprocessing keeps them, and
their number is reported (:func:`count_duplicates`).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time as _time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from datasets.clicks import Clicks, locate_bad_line, row_to_line
from datasets.errors import DataError, MissingDataError
from datasets.progress import bars_enabled
from datasets.sessions import Dataset
from datasets.textfile import (
    BLOCK_BYTES,
    GZIP_MAGIC,
    check_text,
    long_line_error,
    open_binary,
    read_error,
)

log = logging.getLogger(__name__)

ROLES = ("session", "user", "item", "time")
TIME_UNITS = ("s", "ms", "us", "ns", "iso")
DEFAULT_NAMES = {
    "session": ("session_id", "SessionId"),
    "item": ("item_id", "ItemId"),
    "time": ("timestamp", "Timestamp", "Time"),
}
"""Column names looked for when ``--columns`` does not name a role (own names, then RSC15's)."""
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
_MICROS_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
_INT = re.compile(r"^[+-]?\d{1,18}$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ZONE = r"(Z|z|[+-]\d\d(:?\d\d)?)$"
_SNIFF_BYTES = 1 << 20
EVENTLOG_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz", ".parquet.gz")


@dataclass(frozen=True)
class EventLogOptions:
    """How to read and prepare an event log (the ``--columns`` ... ``--test-days`` flags).

    Attributes:
        columns: (role, column name) pairs given by ``--columns``; roles not given take the
            first of :data:`DEFAULT_NAMES` present.
        session_gap: minutes of inactivity that end a session (only with a ``user`` column).
        time_unit: one of :data:`TIME_UNITS`, or None to detect it.
        min_item_support, min_session_length, test_days: the protocol's rules 1-5 with
            these values (RSC15's by default); the validation split is built the same way.
    """

    columns: tuple[tuple[str, str], ...] = ()
    session_gap: float = 30.0
    time_unit: str | None = None
    min_item_support: int = 5
    min_session_length: int = 2
    test_days: float = 1.0

    def __post_init__(self) -> None:
        check_options(self)

    def to_json(self) -> dict:
        out = asdict(self)
        out["columns"] = dict(self.columns)
        return out

    @property
    def test_seconds(self) -> int:
        return int(round(self.test_days * 86_400))


def parse_columns(text: str | None) -> tuple[tuple[str, str], ...]:
    """``session=COL,item=COL,time=COL`` (or ``user=COL``) as (role, name) pairs.

    Raises:
        ValueError: a malformed term, an unknown role, a role given twice, or session and user.
    """
    if text is None or not text.strip():
        return ()
    pairs: list[tuple[str, str]] = []
    for term in text.split(","):
        role, sep, name = term.partition("=")
        role, name = role.strip(), name.strip()
        if not sep or not name:
            raise ValueError(f"--columns {text!r}: {term.strip()!r} is not ROLE=COLUMN")
        if role not in ROLES:
            raise ValueError(
                f"--columns {text!r}: unknown role {role!r}; the roles are {', '.join(ROLES)}"
            )
        if role in dict(pairs):
            raise ValueError(f"--columns {text!r}: {role} given twice")
        pairs.append((role, name))
    if {"session", "user"} <= set(dict(pairs)):
        raise ValueError(
            f"--columns {text!r}: give session= (sessions given) or user= (sessions cut by "
            "--session-gap), not both"
        )
    return tuple(pairs)


def check_options(options: EventLogOptions) -> None:
    """ValueError naming the flag of the first invalid option."""
    parse_columns(",".join(f"{r}={c}" for r, c in options.columns) or None)
    for flag, value, low in (
        ("--min-item-support", options.min_item_support, 1),
        ("--min-session-length", options.min_session_length, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{flag} {value}: must be an integer >= {low}")
    for flag, value in (("--test-days", options.test_days), ("--session-gap", options.session_gap)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{flag} {value}: must be a number > 0")
    if options.time_unit is not None and options.time_unit not in TIME_UNITS:
        raise ValueError(f"--time-unit {options.time_unit}: must be one of {', '.join(TIME_UNITS)}")


# --- formats ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFormat:
    """A delimited text format.

    Attributes:
        delimiter: the field separator.
        names: the column names of a format without a header line; None: line 1 names them.
        quoted: whether fields may be quoted with ``"``.
        strict: missing values are errors (not dropped) and ids must be integers.
        what: what a row looks like, for messages.
    """

    delimiter: str = ","
    names: tuple[str, ...] | None = None
    quoted: bool = True
    strict: bool = False
    what: str = "a header line naming the columns, then one event per row"


CSV_FORMAT = TextFormat(",", what="CSV with a header line naming the columns")
TSV_FORMAT = TextFormat("\t", what="tab-separated text with a header line naming the columns")
RSC15_FORMAT = TextFormat(
    ",",
    names=("SessionId", "Timestamp", "ItemId", "Category"),
    quoted=False,
    strict=True,
    what="raw RSC15 clicks, rows 'SessionId,Timestamp,ItemId,Category'",
)
RSC15_OPTIONS = EventLogOptions(
    columns=(("session", "SessionId"), ("item", "ItemId"), ("time", "Timestamp")),
    time_unit="iso",
)
"""The raw RSC15 file as an event log: its columns and the protocol's defaults."""


def format_of(path: Path) -> TextFormat | str:
    """The format a file name says: a :class:`TextFormat`, ``"parquet"``, or RSC15 otherwise."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".tsv"):
        return TSV_FORMAT
    if name.endswith(".csv"):
        return CSV_FORMAT
    return RSC15_FORMAT


@dataclass
class ReadReport:
    """What reading did, for the summary the loader prints."""

    rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    rows_missing: int = 0
    time_unit: str = ""
    time_detected: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    text_ids: list[str] = field(default_factory=list)
    users: int | None = None
    sessions: int = 0


# --- reading ----------------------------------------------------------------------------------


def read_events(
    path: Path, fmt: TextFormat | str, options: EventLogOptions
) -> tuple[Clicks, ReadReport]:
    """The events of ``path`` as clicks in file order (user logs: cut into sessions).

    Raises:
        MissingDataError: no file at ``path``.
        DataError: anything wrong with the file, naming it (and line, column, value).
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a file of events")
    what = fmt.what if isinstance(fmt, TextFormat) else "a Parquet file of events"
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (expected {what})")
    started = _time.perf_counter()
    report = ReadReport()
    if fmt == "parquet":
        columns = _read_parquet(path, options, report)
    else:
        columns = _read_text(path, fmt, options, report)
    if report.rows == 0:
        raise DataError(f"{path}: no data rows (expected {what})")
    session_role = "user" if "user" in report.columns else "session"
    session = _as_int_ids(columns[session_role], report, session_role)
    item = _as_int_ids(columns["item"], report, "item")
    times = np.concatenate(columns["time"]) if columns["time"] else np.zeros(0, np.int64)
    if len(item) == 0:
        raise DataError(
            f"{path}: all {report.rows} rows have a missing value "
            f"({_missing_text(report)}); nothing is left"
        )
    if session_role == "user":
        report.users = len(np.unique(session))
        clicks = cut_sessions(session, times, item, options.session_gap)
    else:
        clicks = Clicks(session, times, item)
    report.sessions = len(pd.unique(clicks.session_id))
    log.info("read %s: %d rows in %.1f s", path, report.rows, _time.perf_counter() - started)
    return clicks, report


def _missing_text(report: ReadReport) -> str:
    return ", ".join(f"{n} in column {c!r}" for c, n in report.missing.items() if n) or "none"


def _as_int_ids(parts: list, report: ReadReport, role: str) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts).astype(np.int64, copy=False)
    values = pa.chunked_array(parts).to_numpy(zero_copy_only=False)
    codes, _ = pd.factorize(values, sort=True)
    report.text_ids.append(role)
    return codes.astype(np.int64)


def cut_sessions(
    user: np.ndarray, times: np.ndarray, item: np.ndarray, gap_minutes: float
) -> Clicks:
    """Sessions from users' events: a new one wherever the user changes or more than
    ``gap_minutes`` pass since their previous event (ties in file order). Sessions are
    numbered from 1 in order of (user, first event)."""
    order = np.lexsort((times, user))  # stable: equal times keep file order
    user, times, item = user[order], times[order], item[order]
    new = np.ones(len(user), dtype=bool)
    gap = int(round(gap_minutes * 60 * 1_000_000))
    new[1:] = (user[1:] != user[:-1]) | (times[1:] - times[:-1] > gap)
    return Clicks(np.cumsum(new), times, item)


def _resolve_columns(
    path: Path, names: list[str], options: EventLogOptions, where: str
) -> dict[str, str]:
    """role -> column name, every role checked against ``names``."""
    given = dict(options.columns)
    resolved: dict[str, str] = {}
    roles = ("user" if "user" in given else "session", "item", "time")
    for role in roles:
        if role in given:
            if given[role] not in names:
                raise DataError(
                    f"{path}: no column {given[role]!r} (--columns {role}={given[role]}) "
                    f"{where}; its columns are {', '.join(map(repr, names))}"
                )
            resolved[role] = given[role]
            continue
        found = next((n for n in DEFAULT_NAMES[role] if n in names), None)
        if found is None:
            looked = " or ".join(map(repr, DEFAULT_NAMES[role]))
            raise DataError(
                f"{path}: no {role} column: none named {looked} {where} (its columns are "
                f"{', '.join(map(repr, names))}); name it with --columns {role}=COLUMN"
            )
        resolved[role] = found
    return resolved


def _looks_like_data(fields: list[str]) -> bool:
    """True if every field of a line is a number or a time (a data row, not a header)."""
    return bool(fields) and all(
        _FLOAT.match(f.strip()) or _looks_like_time(f.strip()) for f in fields
    )


def _looks_like_time(text: str) -> bool:
    return bool(re.match(r"^\d{4}-\d\d-\d\d", text))


def _first_line(head: bytes) -> str:
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return line.decode("utf-8", errors="replace").removeprefix("\ufeff")


def _split_line(line: str, fmt: TextFormat) -> list[str]:
    if not fmt.quoted:
        return line.split(fmt.delimiter)
    return next(csv.reader([line], delimiter=fmt.delimiter), [])


def _read_head(path: Path, fmt: TextFormat) -> bytes:
    try:
        with open_binary(path) as f:
            head = f.read(_SNIFF_BYTES)
    except (OSError, EOFError) as e:
        raise read_error(path, e, fmt.what) from None
    cut = head.rfind(b"\n")
    return head[: cut + 1] if 0 <= cut < len(head) - 1 else head


def _sniff(head: bytes, names: list[str], fmt: TextFormat) -> pa.Table | None:
    """The first block's rows, every column as text; None if it does not parse."""
    try:
        return pacsv.read_csv(
            pa.BufferReader(head),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=0 if fmt.names else 1, use_threads=False
            ),
            parse_options=_parse_options(fmt),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=NULL_VALUES,
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _parse_options(fmt: TextFormat) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"' if fmt.quoted else False)


def _values(sample: pa.Table | None, column: str) -> list[str]:
    if sample is None:
        return []
    return [v for v in sample.column(column).drop_null().to_pylist()[:10_000]]


def _detect_unit(values: np.ndarray) -> tuple[str, str]:
    """(unit, why) for numeric epoch times, from their magnitude."""
    size = float(np.median(np.abs(values))) if len(values) else 0.0
    bounds = (("s", 1e11), ("ms", 1e14), ("us", 1e17))
    unit = next((u for u, bound in bounds if size < bound), "ns")
    return unit, f"numbers around {size:.3g}"


def _id_type(fmt: TextFormat, values: list[str]) -> pa.DataType:
    if fmt.strict or all(_INT.match(v) for v in values):
        return pa.int64()
    return pa.string()


def _time_plan(
    path: Path, column: str, values: list[str], unit: str | None
) -> tuple[pa.DataType, str, str]:
    """(arrow type to parse the time column as, unit, how it was chosen)."""
    if unit == "iso":
        return pa.string(), "iso", "--time-unit iso"
    # mostly numbers: epoch numbers (a stray word is then reported by its line, not detected)
    numbers = [v for v in values if _FLOAT.match(v)]
    numeric = bool(values) and len(numbers) >= 0.9 * len(values)
    integral = numeric and all(_INT.match(v) for v in numbers)
    if unit is not None:
        kind = pa.int64() if integral or (unit != "s" and not numeric) else pa.float64()
        return kind, unit, f"--time-unit {unit}"
    if not values:
        raise DataError(
            f"{path}: column {column!r} has no value in the first block to detect the time "
            "unit from; give --time-unit s|ms|us|ns|iso"
        )
    if numeric:
        unit, why = _detect_unit(np.array(numbers, dtype=np.float64))
        return (pa.int64() if integral else pa.float64()), unit, f"detected from {why}"
    return pa.string(), "iso", f"detected from text values such as {values[0]!r}"


def _read_text(
    path: Path, fmt: TextFormat, options: EventLogOptions, report: ReadReport
) -> dict[str, list]:
    check_text(path, fmt.what)
    head = _read_head(path, fmt)
    line1 = _first_line(head)
    fields = _split_line(line1, fmt)
    if fmt.names is not None:
        names = list(fmt.names)
        if fields and not any(_looks_like_data([f]) for f in fields[:3]):
            raise DataError(
                f"{path}, line 1: {line1[:80]!r} looks like a header line, but this format has "
                f"none; expected {fmt.what} from line 1 on (remove the header line, or give "
                "the file a .csv name to read it as your own event log with --columns)"
            )
        where = "in this format"
    else:
        names = [f.strip() for f in fields]
        where = "in the header (line 1)"
        wanted = dict(options.columns).values()
        missing = [c for c in wanted if c not in names]
        default_found = any(n in names for role in DEFAULT_NAMES for n in DEFAULT_NAMES[role])
        if _looks_like_data(fields) and (missing or not default_found):
            expected = ", ".join(
                dict(options.columns).get(r, DEFAULT_NAMES[r][0])
                for r in ("session", "item", "time")
            )
            raise DataError(
                f"{path}, line 1: expected a header line naming the columns (e.g. {expected}); "
                f"found {line1[:80]!r}, which looks like data: the file has no header line "
                "(add one, or name a raw RSC15 file without .csv)"
            )
    roles = _resolve_columns(path, names, options, where)
    report.columns = dict(roles)
    sample = _sniff(head, names, fmt)
    types: dict[str, pa.DataType] = {}
    for role, column in roles.items():
        if role == "time":
            kind, unit, why = _time_plan(path, column, _values(sample, column), options.time_unit)
            types[column] = kind
            report.time_unit, report.time_detected = unit, why
        else:
            types[column] = _id_type(fmt, _values(sample, column))
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=list(dict.fromkeys(roles.values())),
        null_values=[] if fmt.strict else NULL_VALUES,
        strings_can_be_null=not fmt.strict,
        quoted_strings_can_be_null=not fmt.strict,
    )
    read_options = pacsv.ReadOptions(
        column_names=names if fmt.names else None, block_size=BLOCK_BYTES
    )
    header_lines = 0 if fmt.names else 1
    out: dict[str, list] = {role: [] for role in roles}
    size = path.stat().st_size
    try:
        with (
            open(path, "rb") as raw,
            tqdm(
                total=size,
                unit="B",
                unit_scale=True,
                desc=f"read {path.name}",
                leave=False,
                disable=not (size >= 64 << 20 and bars_enabled()),
            ) as bar,
        ):
            stream = pa.PythonFile(raw, mode="r")
            if _is_gzip_file(raw):
                stream = pa.CompressedInputStream(stream, "gzip")
            reader = pacsv.open_csv(
                stream,
                read_options=read_options,
                parse_options=_parse_options(fmt),
                convert_options=convert,
            )
            for batch in reader:
                _take_batch(path, batch, roles, report, out, header_lines, fmt.strict)
                bar.update(raw.tell() - bar.n)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise _bad_row_error(path, fmt, names, convert, header_lines, e) from None
    except OSError as e:
        raise read_error(path, e, fmt.what) from None
    return out


def _is_gzip_file(raw) -> bool:
    start = raw.read(2)
    raw.seek(0)
    return start == GZIP_MAGIC


def _take_batch(
    path: Path,
    batch: pa.RecordBatch,
    roles: dict[str, str],
    report: ReadReport,
    out: dict[str, list],
    header_lines: int,
    strict: bool,
    *,
    row_word: str = "line",
) -> None:
    """Reduce one block to its used columns (int64 or text ids, int64 µs times)."""
    first_row, n = report.rows, batch.num_rows
    report.rows += n
    valid = np.ones(n, dtype=bool)
    for column in dict.fromkeys(roles.values()):
        array = batch.column(column)
        if array.null_count:
            report.missing[column] = report.missing.get(column, 0) + array.null_count
            valid &= ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
    report.rows_missing += int(n - valid.sum())
    for role, column in roles.items():
        array = batch.column(column)
        if role == "time":
            micros = _to_micros(path, array, report.time_unit, column, first_row, header_lines)
            out[role].append(micros[valid])
        elif pa.types.is_integer(array.type):
            out[role].append(array.fill_null(0).to_numpy().astype(np.int64)[valid])
        else:
            out[role].append(array.filter(pa.array(valid)))


def _to_micros(
    path: Path, array: pa.Array, unit: str, column: str, first_row: int, header_lines: int
) -> np.ndarray:
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None:
            array = array.cast(pa.timestamp(array.type.unit))
        return (
            array.cast(pa.timestamp("us", tz=array.type.tz))
            .cast(pa.int64())
            .fill_null(0)
            .to_numpy()
        )
    if pa.types.is_date(array.type):
        return array.cast(pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy()
    if unit == "iso":
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise DataError(
                f"{path}: column {column!r} holds {array.type} values, not ISO 8601 text; "
                "give --time-unit s|ms|us|ns"
            )
        return _iso_to_micros(path, array, column, first_row, header_lines)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise DataError(
            f"{path}: column {column!r} holds {array.type} values, not epoch {unit}; "
            "give --time-unit iso for ISO 8601 text"
        )
    values = array.fill_null(0).to_numpy()
    if pa.types.is_floating(array.type):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise _value_error(
                path,
                column,
                first_row + int(bad[0]),
                header_lines,
                values[bad[0]],
                "not a finite number",
            )
        factor = {"ns": 1e-3}.get(unit) or _MICROS_PER[unit]
        return np.rint(values * factor).astype(np.int64)
    values = values.astype(np.int64)
    return values // 1000 if unit == "ns" else values * _MICROS_PER[unit]


def _iso_to_micros(
    path: Path, array: pa.Array, column: str, first_row: int, header_lines: int
) -> np.ndarray:
    """ISO 8601 text as µs since the epoch: with a zone (Z, +hh:mm) as given, without as UTC."""
    out = np.zeros(len(array), dtype=np.int64)
    try:  # the usual case, one zone style for the whole block: one cast
        return pc.cast(array, pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(0).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    zoned = pc.match_substring_regex(array, _ZONE).fill_null(False).to_numpy(zero_copy_only=False)
    present = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False))
    for mask, kind in (
        (zoned, pa.timestamp("us", tz="UTC")),
        (~zoned & present, pa.timestamp("us")),
    ):
        index = np.flatnonzero(mask)
        if not len(index):
            continue
        part = array.take(pa.array(index))
        try:
            out[index] = pc.cast(part, kind).cast(pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            k = _first_bad(part, kind)
            raise _value_error(
                path,
                column,
                first_row + int(index[k]),
                header_lines,
                part[k].as_py(),
                "not an ISO 8601 time (e.g. 2014-04-06T20:21:58.444Z; epoch numbers: "
                "--time-unit s|ms|us|ns)",
            ) from None
    return out


def _first_bad(part: pa.Array, kind: pa.DataType) -> int:
    lo, hi = 0, len(part)  # invariant: part[lo:hi] holds the first bad value
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(part.slice(lo, mid - lo), kind)
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo


def _value_error(
    path: Path, column: str, row: int, header_lines: int, value: object, why: str
) -> DataError:
    if header_lines < 0:  # Parquet: rows, not lines
        return DataError(
            f"{path}, row {row + 1}: column {column!r}: invalid value {value!r}: {why}"
        )
    line = row_to_line(path, row, skip_lines=header_lines)
    return DataError(f"{path}, line {line}: column {column!r}: invalid value {value!r}: {why}")


def _bad_row_error(
    path: Path,
    fmt: TextFormat,
    names: list[str],
    convert: pacsv.ConvertOptions,
    header_lines: int,
    error: Exception,
) -> DataError:
    long = long_line_error(path, fmt.what)  # pyarrow's own words for it would be obscure
    if long is not None:
        return long

    def parse_block(data: bytes) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=_parse_options(fmt),
            convert_options=convert,
        )

    log.info("locating the bad row of %s", path)
    found = locate_bad_line(path, parse_block, skip_lines=header_lines)
    if found is None:
        return DataError(f"{path}: {_name_columns(str(error), names)}")
    line, message = found
    return DataError(f"{path}, line {line}: {_name_columns(message, names)}")


def _name_columns(message: str, names: list[str]) -> str:
    """pyarrow's ``In CSV column #k:`` with the column's name instead of its number."""

    def name(match: re.Match) -> str:
        k = int(match.group(1))
        return f"column {names[k]!r}:" if k < len(names) else match.group(0)

    return re.sub(r"In CSV column #(\d+):", name, message)


# --- Parquet ----------------------------------------------------------------------------------


def _read_parquet(path: Path, options: EventLogOptions, report: ReadReport) -> dict[str, list]:
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PAR1":
        what = "gzip data" if magic[:2] == GZIP_MAGIC else "not Parquet"
        raise DataError(
            f"{path}: {what} (no PAR1 magic at the start); expected a Parquet file of events"
        )
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    names = parquet.schema_arrow.names
    roles = _resolve_columns(path, names, options, "in the Parquet schema")
    report.columns = dict(roles)
    schema = parquet.schema_arrow
    time_type = schema.field(roles["time"]).type
    out: dict[str, list] = {role: [] for role in roles}
    for role, column in roles.items():
        kind = schema.field(column).type
        if role != "time" and not (
            pa.types.is_integer(kind)
            or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_dictionary(kind)
        ):
            raise DataError(
                f"{path}: column {column!r} holds {kind} values; {role} ids must be integers "
                "or text"
            )
    try:
        first = True
        for batch in parquet.iter_batches(
            batch_size=1 << 20, columns=list(dict.fromkeys(roles.values()))
        ):
            columns = {}
            for column in batch.schema.names:
                array = batch.column(column)
                if pa.types.is_dictionary(array.type):
                    array = array.dictionary_decode()
                columns[column] = array
            batch = pa.RecordBatch.from_pydict(columns)
            if first:
                report.time_unit, report.time_detected = _parquet_time_plan(
                    path, roles["time"], batch.column(roles["time"]), time_type, options.time_unit
                )
                first = False
            _take_batch(path, batch, roles, report, out, -1, False)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: damaged Parquet file ({e})") from None
    return out


def _parquet_time_plan(
    path: Path, column: str, array: pa.Array, kind: pa.DataType, unit: str | None
) -> tuple[str, str]:
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "native", f"a {kind} column"
    if unit is not None:
        return unit, f"--time-unit {unit}"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "iso", "detected from text values"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = array.drop_null().to_numpy()[:10_000]
        unit, why = _detect_unit(values.astype(np.float64))
        return unit, f"detected from {why}"
    raise DataError(f"{path}: column {column!r} holds {kind} values, not times")


# --- the summary --------------------------------------------------------------------------------


def summary_lines(report: ReadReport, stats: dict) -> list[str]:
    """What reading and preparing did, one line per step, for the log."""
    lines = [f"rows read: {report.rows:,}" if report.rows else "rows read: (from the cache)"]
    if report.columns:
        lines.append(
            "columns: " + ", ".join(f"{role}={column}" for role, column in report.columns.items())
        )
    if report.time_unit:
        lines.append(f"time: {report.time_unit} ({report.time_detected})")
    if report.rows_missing:
        lines.append(
            f"dropped {report.rows_missing:,} rows with a missing value ({_missing_text(report)})"
        )
    for role in report.text_ids:
        lines.append(f"{role} ids are text: numbered 0.. in sorted order")
    if report.users is not None:
        lines.append(f"{report.users:,} users cut into {report.sessions:,} sessions")
    lines.extend(stats.get("lines", []))
    return lines


def options_key(fmt: TextFormat | str, options: EventLogOptions) -> str:
    """A short hash of every option that shapes the prepared dataset (for the cache key)."""
    import hashlib

    what = {"format": fmt if isinstance(fmt, str) else asdict(fmt), "options": options.to_json()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


# --- loading ------------------------------------------------------------------------------------


def _rsc15_like(path: Path) -> bool:
    """True if line 1 of ``path`` is a raw RSC15 row (``int,ISO time,int,category``)."""
    try:
        with open_binary(path) as f:
            fields = _first_line(f.read(4096)).split(",")
    except (OSError, EOFError):
        return False
    return (
        len(fields) == 4
        and bool(_INT.match(fields[0]))
        and _looks_like_time(fields[1])
        and bool(_INT.match(fields[2]))
    )


def policy_of(options: EventLogOptions) -> dict[str, str]:
    """The dataset policy of an event log prepared with ``options``."""
    gap = (
        f"sessions cut from users' events by a gap of more than {options.session_gap:g} min; "
        if "user" in dict(options.columns)
        else ""
    )
    return {
        "preprocessing": (
            f"{gap}the GRU4Rec rules (docs/PROTOCOL.md 1-6) with --min-session-length "
            f"{options.min_session_length}, --min-item-support {options.min_item_support}, "
            f"--test-days {options.test_days:g}: sessions shorter than "
            f"{options.min_session_length} dropped, items with fewer than "
            f"{options.min_item_support} events dropped, short sessions dropped again; the last "
            f"{options.test_days:g} days by session end = test; test events on items not in "
            "train dropped, then test sessions < 2; the same split on train gives train_tr/valid"
        ),
        "unseen_targets": "none: test events on items absent from training are dropped (rule 5)",
    }


def load_eventlog(
    path: Path,
    options: EventLogOptions | None = None,
    *,
    cache_dir: Path | None = Path("cache"),
    name: str = "events",
) -> Dataset:
    """The prepared dataset of an event log (``.csv``, ``.tsv``, ``.parquet``, gzip or not; any
    other file is read as raw RSC15 clicks), preprocessed by the protocol's rules with
    ``options``' values and cached under ``<cache_dir>/events/``.

    Raises:
        MissingDataError: no file at ``path``.
        DataError: the file, a column or a row is bad, or nothing is left after the rules.
    """
    from datasets import rsc15

    path = Path(path)
    options = EventLogOptions() if options is None else options
    if not path.exists():
        raise MissingDataError(f"{path}: no such file")
    fmt = format_of(path)
    if fmt is CSV_FORMAT and not options.columns and _rsc15_like(path):
        log.info(
            "%s: no header line, and its rows look like raw RSC15 clicks "
            "(SessionId,Timestamp,ItemId,Category): read as raw RSC15",
            path,
        )
        fmt = RSC15_FORMAT
    if fmt is RSC15_FORMAT:
        if options.columns or options.time_unit not in (None, "iso"):
            raise DataError(
                f"{path}: read as raw RSC15 clicks (no header, {RSC15_FORMAT.names}); "
                "--columns and --time-unit apply to .csv, .tsv and .parquet files only"
            )
        options = EventLogOptions(
            **{**asdict(options), "columns": RSC15_OPTIONS.columns, "time_unit": "iso"}
        )
        if options == RSC15_OPTIONS:
            return rsc15.load_rsc15(path, cache_dir=cache_dir, name=name)
    key = f"{options_key(fmt, options)}-rules{rsc15.RULES_VERSION}-read{READER_VERSION}"
    return rsc15.load_prepared(
        path,
        fmt,
        options,
        cache_dir=cache_dir,
        name=name,
        subdir="events",
        key_suffix=key,
        policy=policy_of(options),
    )


READER_VERSION = 1
"""Part of the event-log cache key: bump whenever reading changes what it produces."""
