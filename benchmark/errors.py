"""The one error boundary of the command-line tools.

Every command (``run``, ``tune``, ``report``) runs its work inside :func:`boundary`. A user's
mistake or a damaged file raises one of the project's errors (``ConfigError``, ``DataError``)
or a library's; this module turns each of them into one ``error:`` line that names the file,
URL or key, and an exit status: 2 for an error, 130 for an interruption (Ctrl-C or SIGTERM).
A bug still shows its traceback: only the exception types mapped here are translated.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmark.config import ConfigError
from datasets.errors import DataError

ERROR = 2
INTERRUPTED = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it stops like Ctrl-C: files stay sound."""


class RunStopped(Exception):
    """A run that failed after its run folder existed (a full disk, ...): the folder is sound
    and resumable. ``cause`` is the error that stopped it."""

    def __init__(self, run_dir: Path, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.run_dir = Path(run_dir)
        self.cause = cause


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``cause``) after the run folder ``run_dir`` existed."""

    def __init__(self, run_dir: Path, cause: KeyboardInterrupt) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.cause = cause


def describe(exc: BaseException) -> str | None:
    """A one-line message naming the culprit for the exceptions users cause, else ``None``
    (a bug: let its traceback show)."""
    if isinstance(exc, (ConfigError, DataError)):
        return str(exc)
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
    arrow = _arrow_error(exc)
    if arrow is not None:
        return arrow
    return _database_error(exc)


_OS_MEANING = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EEXIST: "it exists already",
}


def describe_os_error(exc: OSError) -> str:
    """``PATH: what is wrong`` for an OS error (the path as the OS named it)."""
    meaning = _OS_MEANING.get(exc.errno) or exc.strerror or str(exc)
    where = exc.filename if exc.filename is not None else None
    return f"{where}: {meaning}" if where is not None else meaning


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _arrow_error(exc: BaseException) -> str | None:
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, pa.ArrowException):
        return f"unreadable Parquet/Arrow data: {str(exc).splitlines()[0]}"
    return None


def _database_error(exc: BaseException) -> str | None:
    try:
        import sqlalchemy.exc as sa
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, sa.NoSuchModuleError):
        return f"no database driver for this URL is installed ({exc})"
    if isinstance(exc, sa.ArgumentError):
        return f"not a database URL: {exc}"
    if isinstance(exc, sa.SQLAlchemyError):
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"database error: {first[0] if first else type(exc).__name__}"
    return None


def resume_hint(run_dir: Path) -> str:
    return f"`python run_benchmark.py --resume {run_dir}` continues it"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (like Ctrl-C's KeyboardInterrupt)."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Outcome:
    """The exit status a :func:`boundary` block ended with (0 when it did not fail)."""

    status = 0


@contextlib.contextmanager
def boundary(*, interrupted_hint: str = "") -> Iterator[Outcome]:
    """Run a command's work; print one ``error:`` line and set the exit status for what
    :func:`describe` knows, and a resume hint for a stopped run.

    ``interrupted_hint`` is said on Ctrl-C/SIGTERM outside a run folder (e.g. how a study
    resumes)."""
    outcome = Outcome()
    try:
        with sigterm_as_interrupt():
            yield outcome
    except RunStopped as e:
        outcome.status = _stopped(e)
    except RunInterrupted as e:
        what = "terminated (SIGTERM)" if isinstance(e.cause, Terminated) else "interrupted"
        print(
            f"\n{what}; finished algorithms are kept in {e.run_dir}: {resume_hint(e.run_dir)}",
            file=sys.stderr,
        )
        outcome.status = INTERRUPTED
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"\n{what}" + (f"; {interrupted_hint}" if interrupted_hint else ""), file=sys.stderr)
        outcome.status = INTERRUPTED
    except Exception as e:  # noqa: BLE001 - only what describe() knows; a bug is re-raised
        message = describe(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        outcome.status = ERROR


def _stopped(e: RunStopped) -> int:
    cause = e.cause
    message = describe(cause)
    if message is None:
        raise cause
    if disk_full(cause):
        message += f" (free space, then {resume_hint(e.run_dir)}; what finished is kept)"
    else:
        message += f" (the run folder {e.run_dir} is kept: {resume_hint(e.run_dir)})"
    print(f"error: {message}", file=sys.stderr)
    return ERROR


def writable_target(path: Path, what: str) -> None:
    """Refuse, before any work, a file path that cannot be created or written: ``what`` names
    the option (``--storage``). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path}: it is a folder, not a file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{what} {path}: the file is not writable")
        return
    _probe(_nearest_folder(path, what), path, what)


def writable_folder(path: Path, what: str) -> None:
    """Refuse, before any work, a folder that cannot be created or written in (``--out``)."""
    path = Path(path).absolute()
    _probe(_nearest_folder(path, what, include_self=True), path, what)


def _nearest_folder(path: Path, what: str, *, include_self: bool = False) -> Path:
    """The nearest existing folder at or above ``path``: where it would be created."""
    existing = path if include_self else path.parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        kind = "a file, not a folder" if existing.is_file() else "not a folder"
        raise ConfigError(f"{what} {path}: {existing} is {kind}")
    return existing


def _probe(folder: Path, path: Path, what: str) -> None:
    try:  # os.access says yes to root on read-only file systems and /proc: try for real
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        meaning = _OS_MEANING.get(e.errno) or e.strerror
        raise ConfigError(f"{what} {path}: cannot write in {folder} ({meaning})") from None
