"""Click tables: the intermediate form every raw reader produces before ``Sessions``.

A :class:`Clicks` table holds one row per click (original session id, time, original item id).
Readers return clicks in file order; :func:`sort_clicks` puts them in the protocol's order
(sessions by the time of their first click, ties by session id; clicks of a session
contiguous, by time, ties in file order). Every later step keeps that order, so the
prepared splits come out already ordered the way GRU4Rec's session-parallel batches and the
evaluator expect.

Times are integer microseconds since the Unix epoch: integer arithmetic makes the 86,400 s
split boundary exact (a float of 1.4e9 seconds cannot hold every millisecond exactly).

The helpers at the end find the physical line of a bad row in a delimited text file by
re-parsing blocks with the same pyarrow options (bisecting the block that fails), so the line a
``DataError`` names is exactly the one the fast reader refused.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from datasets.errors import DataError
from datasets.progress import bars_enabled
from datasets.sessions import UNKNOWN, Sessions
from datasets.textfile import open_binary

log = logging.getLogger(__name__)

MICROS = 1_000_000
"""Microseconds per second (the unit of ``Clicks.time``)."""


@dataclass(frozen=True, eq=False)
class Clicks:
    """One row per click.

    Attributes:
        session_id: int64 original session id of each click.
        time: int64 click time in microseconds since the Unix epoch.
        item_id: int64 original item id of each click.
    """

    session_id: np.ndarray
    time: np.ndarray
    item_id: np.ndarray

    def __post_init__(self) -> None:
        for name in ("session_id", "time", "item_id"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), np.int64))
        if not (len(self.session_id) == len(self.time) == len(self.item_id)):
            raise ValueError("Clicks columns must have the same length")

    def __len__(self) -> int:
        return len(self.session_id)

    def take(self, index: np.ndarray) -> Clicks:
        """The rows selected by a boolean mask or an integer index, in that order."""
        return Clicks(self.session_id[index], self.time[index], self.item_id[index])

    @property
    def n_sessions(self) -> int:
        return len(session_starts(self)) - 1


# --- ordering -------------------------------------------------------------------------------


def sort_clicks(clicks: Clicks) -> Clicks:
    """Clicks in protocol order: sessions by first click time (ties by id), clicks by time.

    Sorting is stable, so clicks of a session with the same time keep their file order. Input
    that is already grouped by session with increasing times (like the real file) only costs
    linear-time checks and one gather.
    """
    if len(clicks) == 0:
        return clicks
    sid = clicks.session_id
    if np.any(sid[1:] < sid[:-1]):
        clicks = clicks.take(np.argsort(sid, kind="stable"))
    if _times_decrease_within_sessions(clicks, session_starts(clicks)):
        clicks = clicks.take(np.lexsort((clicks.time, clicks.session_id)))
    return order_sessions(clicks)


def order_sessions(clicks: Clicks) -> Clicks:
    """Grouped clicks with whole sessions reordered by first click time, ties by session id.

    Filtering can remove a session's first click, so this is applied again to every prepared
    split: the order is that of the first click *in the split* (as GRU4Rec orders its input).
    """
    starts = session_starts(clicks)
    order = np.lexsort((clicks.session_id[starts[:-1]], clicks.time[starts[:-1]]))
    if np.any(order != np.arange(len(order))):
        clicks = clicks.take(_gather_index(starts, order))
    return clicks


def _times_decrease_within_sessions(clicks: Clicks, starts: np.ndarray) -> bool:
    decreasing = clicks.time[1:] < clicks.time[:-1]
    if not decreasing.any():
        return False
    same_session = np.ones(len(clicks) - 1, dtype=bool)
    same_session[starts[1:-1] - 1] = False
    return bool(np.any(decreasing & same_session))


def _gather_index(starts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Row index that lays out the sessions ``order`` (given by their row ranges) one after another."""
    lengths = np.diff(starts)[order]
    new_starts = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_starts[1:])
    shift = np.repeat(starts[:-1][order] - new_starts[:-1], lengths)
    return shift + np.arange(new_starts[-1], dtype=np.int64)


def session_starts(clicks: Clicks) -> np.ndarray:
    """Row offsets of the sessions of grouped clicks: session ``k`` is rows ``[s[k], s[k+1])``.

    Assumes the clicks of each session are contiguous (as after :func:`sort_clicks`).
    """
    return starts_of(clicks.session_id)


def starts_of(session_id: np.ndarray) -> np.ndarray:
    """Row offsets of the runs of equal values in ``session_id`` (``[0]`` when it is empty)."""
    if len(session_id) == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(session_id[1:] != session_id[:-1]) + 1
    return np.concatenate(([0], change, [len(session_id)])).astype(np.int64)


# --- items ----------------------------------------------------------------------------------


def encode_items(clicks: Clicks) -> tuple[Clicks, np.ndarray]:
    """Replace item ids by dense codes ``0..k-1`` in increasing id order.

    Returns:
        The clicks with ``item_id`` holding codes, and the original id of each code (sorted).
        Code order equals id order, so a sorted set of codes maps to a sorted set of ids.
    """
    codes, ids = pd.factorize(clicks.item_id, sort=True)
    return Clicks(clicks.session_id, clicks.time, codes), np.asarray(ids, dtype=np.int64)


def _is_small(values: np.ndarray, n: int) -> bool:
    """True if ``values`` are non-negative ints small enough to index a table of ~``n`` rows."""
    return len(values) == 0 or (values.min() >= 0 and values.max() < 4 * n + (1 << 20))


def click_support(item_id: np.ndarray) -> np.ndarray:
    """For every click, how many clicks its item has in ``item_id``."""
    codes = item_id if _is_small(item_id, len(item_id)) else pd.factorize(item_id)[0]
    return np.bincount(codes)[codes]


def vocabulary(item_id: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``item_id``; item index ``k`` is ``vocabulary[k]``."""
    if _is_small(item_id, len(item_id)):
        return np.flatnonzero(np.bincount(item_id)).astype(np.int64)
    return np.sort(pd.unique(item_id)).astype(np.int64)


def item_index(item_id: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """Vocabulary index of each item id; ``UNKNOWN`` for ids not in ``vocab`` (sorted)."""
    if len(vocab) == 0:
        return np.full(len(item_id), UNKNOWN, dtype=np.int64)
    if _is_small(vocab, len(vocab)):  # dense ids (item codes): a lookup table
        table = np.full(int(vocab[-1]) + 1, UNKNOWN, dtype=np.int64)
        table[vocab] = np.arange(len(vocab))
        inside = (item_id >= 0) & (item_id < len(table))
        return np.where(inside, table[np.where(inside, item_id, 0)], UNKNOWN)
    pos = np.minimum(np.searchsorted(vocab, item_id), len(vocab) - 1)
    return np.where(vocab[pos] == item_id, pos, UNKNOWN).astype(np.int64)


# --- conversion to Sessions -----------------------------------------------------------------


def to_sessions(clicks: Clicks, vocab: np.ndarray) -> Sessions:
    """``Sessions`` over ``vocab`` from grouped clicks (times converted to float seconds)."""
    starts = session_starts(clicks)
    return Sessions(
        items=item_index(clicks.item_id, vocab),
        offsets=starts,
        n_items=len(vocab),
        times=clicks.time / MICROS,
        session_ids=clicks.session_id[starts[:-1]],
    )


# --- files ----------------------------------------------------------------------------------


def file_sha256(path: Path, *, progress: bool = True) -> str:
    """The sha256 of a file, streamed in 8 MiB blocks (constant memory)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"hash {path.name}",
            leave=False,
            disable=not (progress and size >= 64 << 20 and bars_enabled()),
        ) as bar,
    ):
        while block := f.read(8 << 20):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def file_record(path: Path) -> dict[str, object]:
    """What ``Dataset.source`` records about an input file: path, size and sha256."""
    return {"path": str(path), "size": path.stat().st_size, "sha256": file_sha256(path)}


def require_file(path: Path, what: str) -> None:
    """Raise ``DataError`` unless ``path`` is a non-empty regular file."""
    if not path.is_file():
        raise DataError(f"{path}: not a file ({what})")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file ({what})")


Parser = Callable[[bytes], pa.Table]
"""Parses a block of data lines (no header) with a reader's exact options; raises on bad input."""


def locate_bad_line(
    path: Path, parse: Parser, *, skip_lines: int = 0, block_lines: int = 1 << 20
) -> tuple[int, str] | None:
    """The first line of ``path`` that ``parse`` refuses, as (1-based line number, error).

    Blocks of ``block_lines`` lines are parsed in turn; a failing block is bisected down to a
    single line. Returns None if every block parses (the error was not about one line).
    """
    for first_line, lines in _line_blocks(path, skip_lines, block_lines):
        if _parse_error(parse, lines) is not None:
            return _bisect(parse, lines, first_line)
    return None


def _line_blocks(
    path: Path, skip_lines: int, block_lines: int
) -> Iterator[tuple[int, list[bytes]]]:
    with open_binary(path) as f:
        for _ in range(skip_lines):
            f.readline()
        line_no = skip_lines + 1
        while True:
            lines = f.readlines(block_lines * 48)  # size hint in bytes: ~block_lines lines
            if not lines:
                return
            yield line_no, lines
            line_no += len(lines)


def _parse_error(parse: Parser, lines: list[bytes]) -> str | None:
    data = b"".join(lines)
    if not data.strip():
        return None
    try:
        parse(data)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as e:
        return str(e)
    return None


def _bisect(parse: Parser, lines: list[bytes], first_line: int) -> tuple[int, str]:
    lo, hi = 0, len(lines)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _parse_error(parse, lines[lo:mid]) is not None:
            hi = mid
        else:
            lo = mid
    return first_line + lo, _parse_error(parse, lines[lo:hi]) or "unparsable"


def row_to_line(path: Path, row: int, *, skip_lines: int = 0) -> int:
    """Physical 1-based line of data row ``row`` (0-based), counting as pyarrow does.

    pyarrow skips empty lines, so rows and lines differ when a file has blank lines.
    """
    with open_binary(path) as f:
        for _ in range(skip_lines):
            f.readline()
        line_no, seen = skip_lines, -1
        for line in f:
            line_no += 1
            if line.strip():
                seen += 1
                if seen == row:
                    return line_no
    raise IndexError(f"{path} has no data row {row}")
