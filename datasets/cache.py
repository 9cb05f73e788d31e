"""The on-disk cache of prepared splits (parquet), so preprocessing runs once per input file.

One folder per cache key (the caller's fingerprint of input file and rules) holds:

- ``train.parquet``, ``test.parquet``, ``valid.parquet``: one row per click, ``item`` (int32
  index into the vocabulary) and ``time`` (int64 microseconds);
- ``train_sessions.parquet`` (and ``test_``/``valid_``): one row per session, ``session_id``
  and ``length``; the training one also ``in_train_tr`` (train_tr is that subset of train);
- ``items.parquet``: the original id of each item index;
- ``meta.json``: the caller's metadata and the event/session counts, written last.

The folder is written under a temporary name and renamed into place, so a reader (or a second
process preprocessing the same file) never sees a half-written cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.clicks import MICROS
from datasets.errors import DataError
from datasets.sessions import Dataset, Sessions

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_PARQUET = {"compression": "lz4", "use_dictionary": False}


def exists(directory: Path) -> bool:
    """True if ``directory`` holds a complete cache of this format."""
    meta = directory / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format_version") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


def write(
    directory: Path, dataset: Dataset, in_train_tr: np.ndarray, valid: Sessions | None, meta: dict
) -> None:
    """Cache ``dataset`` in ``directory`` atomically; a failure only logs a warning.

    ``valid`` is the validation split over the full training vocabulary, as ``read`` expects it
    (``dataset.valid_test`` is over train_tr's own vocabulary)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any output folder
    try:
        parts = {"train": dataset.train, "test": dataset.test, "valid": valid}
        for split, sessions in parts.items():
            if sessions is not None:
                _write_split(tmp, split, sessions, in_train_tr if split == "train" else None)
        pq.write_table(pa.table({"item_id": dataset.item_ids}), tmp / "items.parquet")
        counts = {k: [v.n_events, v.n_sessions] for k, v in parts.items() if v is not None}
        full_meta = meta | {"format_version": FORMAT_VERSION, "counts": counts}
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2) + "\n")
        if directory.exists() and not exists(directory):  # stale: older format or broken
            shutil.rmtree(directory)
        os.replace(tmp, directory)
        log.info("cached prepared splits in %s", directory)
    except OSError as e:
        if exists(directory):
            log.info("cache %s was written concurrently; keeping that one", directory)
        else:
            log.warning("could not write the cache %s: %s", directory, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_split(
    directory: Path, split: str, sessions: Sessions, in_train_tr: np.ndarray | None
) -> None:
    assert sessions.times is not None and sessions.session_ids is not None
    clicks = pa.table(
        {
            "item": sessions.items.astype(np.int32),
            "time": np.rint(sessions.times * MICROS).astype(np.int64),
        }
    )
    pq.write_table(clicks, directory / f"{split}.parquet", **_PARQUET)
    columns = {"session_id": sessions.session_ids, "length": sessions.lengths.astype(np.int32)}
    if in_train_tr is not None:
        columns["in_train_tr"] = in_train_tr
    pq.write_table(pa.table(columns), directory / f"{split}_sessions.parquet", **_PARQUET)


def read_meta(directory: Path) -> dict:
    """The ``meta.json`` of an entry (empty if unreadable)."""
    try:
        return json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


class DamagedCache(DataError):
    """A cache entry that cannot be read back (truncated, missing or inconsistent files)."""


def read(
    directory: Path, *, name: str, source: dict[str, object], policy: dict[str, str]
) -> Dataset:
    """The cached ``Dataset`` in ``directory``.

    Raises:
        DamagedCache: a file of the entry is missing, unreadable or inconsistent with
            ``meta.json``; the message names the file. The caller rebuilds the entry.
    """
    try:
        return _read(directory, name=name, source=source, policy=policy)
    except DamagedCache:
        raise
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as e:
        culprit = getattr(e, "filename", None) or directory
        raise DamagedCache(f"{culprit}: damaged cache entry ({type(e).__name__}: {e})") from None


def discard(directory: Path) -> None:
    """Remove a damaged entry, so that the rebuilt one can take its place."""
    shutil.rmtree(directory, ignore_errors=True)


def _read(
    directory: Path, *, name: str, source: dict[str, object], policy: dict[str, str]
) -> Dataset:
    meta = json.loads((directory / "meta.json").read_text())
    item_ids = pq.read_table(directory / "items.parquet").column("item_id").to_numpy()
    parts: dict[str, Sessions] = {}
    train_tr = None
    for split, (n_events, n_sessions) in meta["counts"].items():
        parts[split], flags = _read_split(directory, split, len(item_ids))
        if (parts[split].n_events, parts[split].n_sessions) != (n_events, n_sessions):
            raise DamagedCache(
                f"{directory / (split + '.parquet')}: cached {split} split holds "
                f"{parts[split].n_events} clicks in {parts[split].n_sessions} sessions, "
                f"meta.json says {n_events} in {n_sessions}"
            )
        if flags is not None:
            train_tr = flags
    has_valid = "valid" in parts and train_tr is not None
    return Dataset(
        name=name,
        train=parts["train"],
        test=parts["test"],
        item_ids=item_ids,
        valid_train=parts["train"].subset(np.flatnonzero(train_tr)) if has_valid else None,
        valid_test=parts.get("valid") if has_valid else None,
        policy=dict(policy),
        source=source,
    )


def _read_split(directory: Path, split: str, n_items: int) -> tuple[Sessions, np.ndarray | None]:
    clicks = pq.read_table(directory / f"{split}.parquet")
    sessions = pq.read_table(directory / f"{split}_sessions.parquet")
    offsets = np.zeros(sessions.num_rows + 1, dtype=np.int64)
    np.cumsum(sessions.column("length").to_numpy(), out=offsets[1:])
    flags = None
    if "in_train_tr" in sessions.column_names:
        flags = sessions.column("in_train_tr").to_numpy(zero_copy_only=False)
    result = Sessions(
        items=clicks.column("item").to_numpy().astype(np.int64),
        offsets=offsets,
        n_items=n_items,
        times=clicks.column("time").to_numpy() / MICROS,
        session_ids=sessions.column("session_id").to_numpy(),
    )
    return result, flags
