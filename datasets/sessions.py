"""The one in-memory type every dataset reader returns.

Sessions are stored as contiguous arrays (CSR-like): the clicks of session ``s`` are
``items[offsets[s]:offsets[s + 1]]``, in click order. Item values are *indices* into the
vocabulary built from the training data (``0 .. n_items - 1``); an item that does not occur in
training is stored as ``UNKNOWN`` (-1). Unknown items may appear in test data as inputs (every
algorithm must accept them) or as targets (the evaluator counts them as misses).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

UNKNOWN = -1
"""Item index of a click whose item is not in the training vocabulary."""


@dataclass(frozen=True, eq=False)
class Sessions:
    """A set of sessions over a fixed item vocabulary.

    Attributes:
        items: int64 item indices, all sessions concatenated; ``UNKNOWN`` for out-of-vocabulary.
        offsets: int64, length ``n_sessions + 1``; session ``s`` is ``items[offsets[s]:offsets[s+1]]``.
        n_items: size of the vocabulary (number of training items); scores have this width.
        times: optional float64 click timestamps in seconds, aligned with ``items``.
        session_ids: optional int64 original session ids, one per session.
    """

    items: np.ndarray
    offsets: np.ndarray
    n_items: int
    times: np.ndarray | None = None
    session_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        items = np.ascontiguousarray(self.items, dtype=np.int64)
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "offsets", offsets)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(items):
            raise ValueError("Sessions.offsets must start at 0 and end at len(items)")
        if len(offsets) > 1 and np.any(np.diff(offsets) < 0):
            raise ValueError("Sessions.offsets must be non-decreasing")
        if len(items) and (items.min() < UNKNOWN or items.max() >= self.n_items):
            raise ValueError(
                f"Sessions.items must lie in [{UNKNOWN}, {self.n_items - 1}], "
                f"got [{items.min()}, {items.max()}]"
            )
        if self.times is not None:
            times = np.ascontiguousarray(self.times, dtype=np.float64)
            if times.shape != items.shape:
                raise ValueError("Sessions.times must have the same length as items")
            object.__setattr__(self, "times", times)
        if self.session_ids is not None:
            ids = np.ascontiguousarray(self.session_ids, dtype=np.int64)
            if ids.shape != (self.n_sessions,):
                raise ValueError("Sessions.session_ids must have one entry per session")
            object.__setattr__(self, "session_ids", ids)

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_predictions(self) -> int:
        """Next-click targets under the protocol: every click but the first of each session."""
        return int(np.maximum(self.lengths - 1, 0).sum())

    def session(self, s: int) -> np.ndarray:
        return self.items[self.offsets[s] : self.offsets[s + 1]]

    def session_index(self) -> np.ndarray:
        """The session number of every click (length ``n_events``)."""
        return np.repeat(np.arange(self.n_sessions, dtype=np.int64), self.lengths)

    def subset(self, sessions: np.ndarray) -> Sessions:
        """The sessions with the given indices, in the given order."""
        sessions = np.asarray(sessions, dtype=np.int64)
        lengths = self.lengths[sessions]
        offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[sessions]
        # Position of every selected click in the original arrays, without a Python loop.
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return Sessions(
            items=self.items[idx],
            offsets=offsets,
            n_items=self.n_items,
            times=None if self.times is None else self.times[idx],
            session_ids=None if self.session_ids is None else self.session_ids[sessions],
        )

    def stats(self) -> dict[str, int]:
        known = self.items[self.items != UNKNOWN]
        return {
            "events": self.n_events,
            "sessions": self.n_sessions,
            "items": int(np.count_nonzero(np.bincount(known, minlength=self.n_items))),
            "predictions": self.n_predictions,
        }

    def fingerprint(self) -> str:
        """A short content hash (items, offsets, vocabulary size), for run records and caches."""
        h = hashlib.sha256()
        h.update(np.int64(self.n_items).tobytes())
        h.update(self.offsets.tobytes())
        h.update(self.items.tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Dataset:
    """The splits of one dataset, all over the vocabulary of ``train``.

    Attributes:
        name: registry name of the dataset (``rsc15``, ``rsc15-64``, ...).
        train: the training sessions.
        test: the test sessions (targets outside the vocabulary are stored as ``UNKNOWN``).
        item_ids: original item id of each item index, length ``train.n_items``.
        valid_train: training part of the validation split (``train_tr``), if defined.
        valid_test: validation sessions, if defined. Both validation parts are put over
            ``train_tr``'s own item vocabulary on construction (see :func:`own_vocabulary`), so
            validation ranks only the items its training part knows, as test ranks only the
            training items.
        policy: protocol notes recorded with every result (e.g. how unseen targets count).
        source: description of the files read (paths, sizes, hashes), for ``run.json``.
        test_targets: which clicks of ``test`` are targets (bool, aligned with ``test.items``);
            None means the protocol's default, every click but the first of its session. Set
            where a test file holds (prefix, label) pairs that are evaluated one by one.
    """

    name: str
    train: Sessions
    test: Sessions
    item_ids: np.ndarray
    valid_train: Sessions | None = None
    valid_test: Sessions | None = None
    policy: dict[str, str] = field(default_factory=dict)
    source: dict[str, object] = field(default_factory=dict)
    test_targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.valid_train is not None and self.valid_test is not None:
            train_tr, valid = own_vocabulary(self.valid_train, self.valid_test)
            object.__setattr__(self, "valid_train", train_tr)
            object.__setattr__(self, "valid_test", valid)

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def target_mask(self) -> np.ndarray:
        """True for every test click that is a next-click target."""
        return _target_mask(self.test) if self.test_targets is None else self.test_targets

    def split_counts(self) -> dict[str, dict[str, int]]:
        counts = {"train": self.train.stats(), "test": self.test.stats()}
        if self.valid_train is not None and self.valid_test is not None:
            counts["train_tr"] = self.valid_train.stats()
            counts["valid"] = self.valid_test.stats()
        mask = self.target_mask()
        counts["test"]["predictions"] = int(mask.sum())
        counts["test"]["unseen_targets"] = int(np.sum(self.test.items[mask] == UNKNOWN))
        return counts

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.train, self.test, self.valid_train, self.valid_test):
            h.update(b"-" if part is None else part.fingerprint().encode())
        return h.hexdigest()[:16]


def own_vocabulary(train: Sessions, other: Sessions) -> tuple[Sessions, Sessions]:
    """``train`` and ``other`` re-indexed over the items that occur in ``train`` (in their index
    order); items of ``other`` outside it become ``UNKNOWN``. Idempotent.

    Without this, a validation split cut from the training set would keep the full training
    vocabulary, and the items that never occur in its training part would be ranked too: a model
    never trains their rows, so they keep their random initial scores and can outrank a target.
    """
    known = train.items[train.items != UNKNOWN]
    present = np.bincount(known, minlength=train.n_items) > 0
    if present.all():
        return train, other
    new_index = np.full(train.n_items + 1, UNKNOWN, dtype=np.int64)  # last cell: UNKNOWN -> UNKNOWN
    new_index[np.flatnonzero(present)] = np.arange(int(present.sum()))
    n_items = int(present.sum())

    def remap(sessions: Sessions) -> Sessions:
        return Sessions(
            items=new_index[sessions.items],
            offsets=sessions.offsets,
            n_items=n_items,
            times=sessions.times,
            session_ids=sessions.session_ids,
        )

    return remap(train), remap(other)


def _target_mask(sessions: Sessions) -> np.ndarray:
    """True for every click that is a next-click target (all but the first of its session)."""
    mask = np.ones(sessions.n_events, dtype=bool)
    mask[sessions.offsets[:-1][sessions.lengths > 0]] = False
    return mask


def from_lists(sessions: list[list[int]], n_items: int) -> Sessions:
    """Build ``Sessions`` from Python lists of item indices (tests and small examples)."""
    lengths = np.array([len(s) for s in sessions], dtype=np.int64)
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = np.fromiter((i for s in sessions for i in s), dtype=np.int64, count=int(offsets[-1]))
    return Sessions(items=items, offsets=offsets, n_items=n_items)
