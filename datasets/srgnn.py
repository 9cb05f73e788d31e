"""The SR-GNN pickle splits (``rsc15-64``, ``diginetica``, ``tmall``, ``retailrocket``), loaded
without trusting the pickles.

Each dataset folder holds two Python pickles:

- ``all_train_seq.txt``: a list of training sessions, each a list of item ids (ints);
- ``test.txt``: a pair ``(prefixes, labels)``: for each test session ``s`` the split emitted
  ``(s[:-1] -> s[-1]), (s[:-2] -> s[-2]), ..., (s[:1] -> s[1])`` consecutively, longest
  prefix first. The pairs are reassembled here into whole sessions (and the structure is
  verified), so the evaluator's next-click protocol produces exactly those pairs again.
  Known variants: ``(session ids, prefixes, labels, times)`` or ``(prefixes, labels, times)``
  tuples (the extra lists are ignored), and splits that leave out the shortest prefixes, whose
  pairs do not reassemble into whole sessions: then every (prefix, label) pair is evaluated on
  its own (the prefix is fed, only the label is ranked), and the policy says so.

Pickles from the internet can run arbitrary code when loaded. :class:`RestrictedUnpickler`
refuses to import anything (so no callable can be reached), and the loaded object is then
checked to contain only lists, tuples and ints.

The vocabulary is the set of items of the training sessions. Test items not in it are
``UNKNOWN``; as targets they count as misses, which is how the published tables on these
splits (NARM, STAMP, SR-GNN) were computed. There are no timestamps: the validation split is
the last 10% of the training sessions in file order (valid_test) after the first 90%
(valid_train), over the same vocabulary.
"""

from __future__ import annotations

import io
import logging
import pickle
from itertools import chain
from pathlib import Path

import numpy as np

from datasets.clicks import file_record, item_index, vocabulary
from datasets.errors import DataError, MissingDataError
from datasets.sessions import Dataset, Sessions

log = logging.getLogger(__name__)

TRAIN_FILE = "all_train_seq.txt"
TEST_FILE = "test.txt"
VALID_FRACTION = 0.1

POLICY = {
    "unseen_targets": "counted as misses (rank inf), as in the NARM/SR-GNN papers",
    "validation": "last 10% of training sessions in file order (no timestamps in this split)",
    "time": "no timestamps: the session order in the file is the time order (recency sampling "
    "of the session-kNN methods, and STAN/VSTAN's time decay with sessions_per_day "
    "sessions to a day, use it)",
}

SOURCES = {
    "rsc15-64": "YuhanZhen/WSDM23-DGNNs datasets/yoochoose1_64/",
    "diginetica": "CCIIPLab/GCE-GNN datasets/diginetica/",
    "tmall": "CCIIPLab/GCE-GNN datasets/Tmall/",
    "retailrocket": "MSJeinlong/CGENet datasets/retailrocket/",
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing: lists, tuples, ints (and other builtin literals) only."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def load_pickle(path: Path) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; DataError naming the file if refused."""
    if Path(path).is_dir():
        raise DataError(f"{path}: is a directory; expected a pickle file")
    data = Path(path).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # any failure of untrusted input is a data error, never a crash
        if b"\0" not in data[:4096] and not data.startswith(b"\x80"):  # no pickle header
            raise DataError(
                f"{path}: a text file, not a pickle; SR-GNN splits are Python "
                "pickles of lists of item ids"
            ) from None
        raise DataError(f"{path}: not a plain pickle of lists/tuples/ints ({e})") from None


_INT64 = (-(2**63), 2**63 - 1)


def _check_int_list(value: object, path: Path, where: str) -> list[int]:
    if type(value) is not list or not set(map(type, value)) <= {int}:
        raise DataError(f"{path}: {where} must be a list of ints, got {_describe(value)}")
    if value and (min(value) < _INT64[0] or max(value) > _INT64[1]):
        big = next(v for v in value if not _INT64[0] <= v <= _INT64[1])
        raise DataError(
            f"{path}: {where} holds the item id {big}, outside the 64-bit "
            "integer range item ids must lie in"
        )
    return value


def _describe(value: object) -> str:
    if isinstance(value, list):
        bad = next((v for v in value if type(v) is not int), None)
        kind = f"a list of length {len(value)}"
        return f"{kind} holding a {type(bad).__name__}" if bad is not None else kind
    if isinstance(value, tuple):
        return (
            f"a tuple of length {len(value)} ("
            + ", ".join(type(v).__name__ for v in value[:6])
            + ")"
        )
    return type(value).__name__


def read_train(path: Path) -> list[list[int]]:
    """The training sessions of ``all_train_seq.txt`` (a list of lists of ints)."""
    obj = load_pickle(path)
    if type(obj) is not list:
        raise DataError(f"{path}: expected a list of sessions, got {_describe(obj)}")
    for k, session in enumerate(obj):
        _check_int_list(session, path, f"session {k}")
    return obj


def read_test(path: Path) -> tuple[list[list[int]], list[int]]:
    """The (prefixes, labels) pairs of ``test.txt`` (extra id/time lists are ignored)."""
    obj = load_pickle(path)
    expected = (
        "expected (prefixes, labels), (prefixes, labels, times) or "
        "(session ids, prefixes, labels, times)"
    )
    if type(obj) not in (tuple, list) or not 2 <= len(obj) <= 4:
        raise DataError(f"{path}: {expected}; found {_describe(obj)}")
    # The prefixes are the first element that is a list of lists; the labels follow them.
    at = next(
        (
            k
            for k, part in enumerate(obj[:-1])
            if type(part) is list and (not part or type(part[0]) is list)
        ),
        None,
    )
    if at is None:
        raise DataError(
            f"{path}: {expected}; found {_describe(obj)}, none of whose elements "
            "is a list of prefixes (lists)"
        )
    prefixes, labels = obj[at], obj[at + 1]
    if len(obj) == 4 and at == 1:  # (session ids, prefixes, labels, times): one entry per pair
        lengths = [len(part) if type(part) in (list, tuple) else None for part in obj]
        if len(set(lengths)) != 1:
            raise DataError(
                f"{path}: a (session ids, prefixes, labels, times) tuple whose parts differ in "
                f"length ({', '.join(map(str, lengths))}); each must hold one entry per pair"
            )
    for k, prefix in enumerate(prefixes):
        _check_int_list(prefix, path, f"prefix {k}")
    _check_int_list(labels, path, "labels")
    if len(prefixes) != len(labels):
        raise DataError(f"{path}: {len(prefixes)} prefixes but {len(labels)} labels")
    return prefixes, labels


def reassemble(prefixes: list[list[int]], labels: list[int], path: Path) -> list[list[int]]:
    """Whole test sessions from consecutive (prefix, label) pairs, longest prefix first.

    Raises:
        DataError: the pairs do not have that structure (the message names the pair index).
    """
    sessions: list[list[int]] = []
    current: list[int] = []
    expected = 0  # length of the prefix the next pair of the current session must have
    for k, (prefix, label) in enumerate(zip(prefixes, labels)):
        if not current:  # the first (longest) pair of a new session
            if not prefix:
                raise DataError(f"{path}: test pair {k} has an empty prefix")
            current = prefix + [label]
        elif len(prefix) != expected or prefix != current[:expected] or label != current[expected]:
            raise DataError(
                f"{path}: test pair {k} does not continue the session of pairs before it "
                f"(expected the prefix of length {expected} of {current} -> {current[expected]})"
            )
        expected = len(prefix) - 1
        if expected == 0:
            sessions.append(current)
            current = []
    if current:
        raise DataError(f"{path}: the last test session is incomplete after pair {len(labels) - 1}")
    return sessions


def _flatten(sessions: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(item ids of all clicks, session offsets)."""
    lengths = np.fromiter(map(len, sessions), dtype=np.int64, count=len(sessions))
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter(chain.from_iterable(sessions), dtype=np.int64, count=int(offsets[-1]))
    return ids, offsets


def _to_sessions(sessions: list[list[int]], vocab: np.ndarray) -> Sessions:
    ids, offsets = _flatten(sessions)
    return Sessions(items=item_index(ids, vocab), offsets=offsets, n_items=len(vocab))


def load_srgnn(directory: Path, *, name: str) -> Dataset:
    """The SR-GNN split in ``directory`` (``all_train_seq.txt`` and ``test.txt``).

    Raises:
        MissingDataError: a file is missing.
        DataError: a file is not a plain pickle of the expected shape.
    """
    directory = Path(directory)
    train_path, test_path = directory / TRAIN_FILE, directory / TEST_FILE
    _require(train_path, name)
    _require(test_path, name)
    train = read_train(train_path)
    prefixes, labels = read_test(test_path)
    if not any(train):
        raise DataError(f"{train_path}: no clicks: all {len(train)} training sessions are empty")
    policy = dict(POLICY)
    test_targets = None
    try:
        test = reassemble(prefixes, labels, test_path)
    except DataError as e:  # e.g. the shortest prefixes were left out of the split
        test, test_targets, dropped = _pairs_as_sessions(prefixes, labels)
        log.warning("%s; evaluating each (prefix, label) pair on its own", e)
        policy["test_pairs"] = (
            f"the (prefix, label) pairs of {TEST_FILE} do not reassemble into whole sessions, "
            "so each pair is evaluated on its own: its prefix is fed and only its label is "
            "ranked" + (f" ({dropped} pairs with an empty prefix skipped)" if dropped else "")
        )
    if not train or not test:
        raise DataError(f"{directory}: empty {'training' if not train else 'test'} split")
    vocab = vocabulary(_flatten(train)[0])
    n_valid = int(round(len(train) * VALID_FRACTION))
    log.info("%s: %d training sessions, %d test sessions", name, len(train), len(test))
    return Dataset(
        name=name,
        train=_to_sessions(train, vocab),
        test=_to_sessions(test, vocab),
        item_ids=vocab,
        valid_train=_to_sessions(train[: len(train) - n_valid], vocab),
        valid_test=_to_sessions(train[len(train) - n_valid :], vocab),
        policy=policy,
        source={"files": [file_record(train_path), file_record(test_path)]},
        test_targets=test_targets,
    )


def _pairs_as_sessions(
    prefixes: list[list[int]], labels: list[int]
) -> tuple[list[list[int]], np.ndarray, int]:
    """One session ``prefix + [label]`` per pair, a mask marking only the labels as targets,
    and the number of pairs skipped for an empty prefix (nothing to feed)."""
    sessions = [prefix + [label] for prefix, label in zip(prefixes, labels) if prefix]
    lengths = np.fromiter(map(len, sessions), dtype=np.int64, count=len(sessions))
    mask = np.zeros(int(lengths.sum()), dtype=bool)
    mask[np.cumsum(lengths) - 1] = True
    return sessions, mask, len(prefixes) - len(sessions)


def _require(path: Path, name: str) -> None:
    if not path.exists():
        origin = SOURCES.get(name, "the SR-GNN preprocessing")
        raise MissingDataError(
            f"{name}: file not found: {path}\n"
            f"It is the SR-GNN split from {origin}; put {TRAIN_FILE} and {TEST_FILE} in "
            f"<data-dir>/{name}/ (see docs/data.md)."
        )
