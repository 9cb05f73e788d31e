"""What a delimited text input really is, found from its content rather than its name.

- gzip is recognised by its magic bytes, so ``clicks.dat`` that is really gzip is read like
  ``clicks.dat.gz`` (:func:`open_binary`, :func:`arrow_input`);
- a binary file (NUL or other control bytes at the start) is refused with a message that says
  so instead of echoing its bytes (:func:`check_text`);
- a line longer than the parser's block (:data:`BLOCK_BYTES`) is reported by its number and
  length (:func:`long_line_error`), not with the parser's own words;
- a gzip file that is truncated or corrupt past its first block (the parser's bare ``OSError``)
  is reported as damaged, with the line and the amount of text read before the damage
  (:func:`read_error`).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from datasets.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 16 << 20
"""Bytes pyarrow parses at once; no line may be longer."""
_SNIFF_BYTES = 1 << 16
_TEXT_CONTROLS = {9, 10, 12, 13}  # tab, newline, form feed, carriage return


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes, decompressed if its content is gzip."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def arrow_input(path: Path) -> pa.NativeFile:
    """A pyarrow input stream of ``path``'s text, decompressed if its content is gzip."""
    return pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)


def check_text(path: Path, what: str) -> None:
    """DataError unless the start of ``path`` (decompressed) looks like text."""
    try:
        with open_binary(path) as f:
            head = f.read(_SNIFF_BYTES)
    except (OSError, EOFError) as e:  # a truncated or corrupt gzip stream
        raise read_error(path, e, what) from None
    controls = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS)
    if b"\0" in head or controls > len(head) // 100:
        raise DataError(f"{path}: a binary file, not text; expected {what}")


def long_line(path: Path, limit: int = BLOCK_BYTES) -> tuple[int, int] | None:
    """(1-based number, length in bytes) of the first line longer than ``limit``, or None."""
    line_no, length = 1, 0
    with open_binary(path) as f:
        while block := f.read(1 << 22):
            start = 0
            while True:
                end = block.find(b"\n", start)
                length += (len(block) if end < 0 else end) - start
                if length > limit:
                    return line_no, _rest_of_line(f, block, start, length)
                if end < 0:
                    break
                line_no, length, start = line_no + 1, 0, end + 1
    return None


def _rest_of_line(f: BinaryIO, block: bytes, start: int, length: int) -> int:
    """The full length of a long line (reads on to its end)."""
    rest = block[start:]
    length = length - (len(block) - start) + len(rest)
    end = rest.find(b"\n")
    if end >= 0:
        return length - len(rest) + end
    while chunk := f.read(1 << 22):
        end = chunk.find(b"\n")
        if end >= 0:
            return length + end
        length += len(chunk)
    return length


def long_line_error(path: Path, what: str) -> DataError | None:
    """The project's message for a line too long to parse, if ``path`` has one."""
    found = long_line(path)
    if found is None:
        return None
    line, length = found
    return DataError(
        f"{path}, line {line}: a line of {length / 2**20:.1f} MiB, longer than the "
        f"{BLOCK_BYTES >> 20} MiB any line may have; expected {what}"
    )


def read_error(path: Path, error: OSError, what: str) -> DataError:
    """The project's message for an ``OSError`` the parser raised while reading ``path``: for a
    gzip file, where its damage starts (found by decompressing it again up to the failure)."""
    if not is_gzip(path):
        return DataError(f"{path}: cannot be read ({error}); expected {what}")
    lines, text_bytes = 0, 0
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(1 << 22):
                lines += block.count(b"\n")
                text_bytes += len(block)
        # the gzip module read it whole: only the parser saw the damage, at an unknown place
        where = f"somewhere in its {lines} lines"
    except (OSError, EOFError, zlib.error) as e:
        error = e if str(e) else error
        where = f"after line {lines} ({text_bytes / 2**20:.1f} MiB of text)"
    return DataError(
        f"{path}: damaged gzip file, unreadable {where}: {error}; it was truncated or "
        f"corrupted (download or compress it again); expected {what}"
    )
