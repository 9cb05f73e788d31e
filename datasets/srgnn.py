"""The SR-GNN pickle splits (``rsc15-64``, ``diginetica``), loaded without trusting the pickles.

Each dataset folder holds two Python pickles:

- ``all_train_seq.txt``: a list of training sessions, each a list of item ids (ints);
- ``test.txt``: a pair ``(prefixes, labels)``: for each test session ``s`` the split emitted
  ``(s[:-1] -> s[-1]), (s[:-2] -> s[-2]), ..., (s[:1] -> s[1])`` consecutively, longest
  prefix first. The pairs are reassembled here into whole sessions (and the structure is
  verified), so the evaluator's next-click protocol produces exactly those pairs again.

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
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing: lists, tuples, ints (and other builtin literals) only."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def load_pickle(path: Path) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; DataError naming the file if refused."""
    data = Path(path).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # any failure of untrusted input is a data error, never a crash
        raise DataError(f"{path}: not a plain pickle of lists/tuples/ints ({e})") from None


def _check_int_list(value: object, path: Path, where: str) -> list[int]:
    if type(value) is not list or not set(map(type, value)) <= {int}:
        raise DataError(f"{path}: {where} must be a list of ints, got {_describe(value)}")
    return value


def _describe(value: object) -> str:
    if isinstance(value, list):
        bad = next((v for v in value if type(v) is not int), None)
        return f"a list holding a {type(bad).__name__}" if bad is not None else "a list"
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
    """The (prefixes, labels) pairs of ``test.txt``."""
    obj = load_pickle(path)
    if type(obj) not in (tuple, list) or len(obj) != 2:
        raise DataError(f"{path}: expected a pair (prefixes, labels), got {_describe(obj)}")
    prefixes, labels = obj
    if type(prefixes) is not list:
        raise DataError(f"{path}: prefixes must be a list, got {_describe(prefixes)}")
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
    test = reassemble(*read_test(test_path), test_path)
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
        policy=dict(POLICY),
        source={"files": [file_record(train_path), file_record(test_path)]},
    )


def _require(path: Path, name: str) -> None:
    if not path.exists():
        origin = SOURCES.get(name, "the SR-GNN preprocessing")
        raise MissingDataError(
            f"{name}: file not found: {path}\n"
            f"It is the SR-GNN split from {origin}; put {TRAIN_FILE} and {TEST_FILE} in "
            f"<data-dir>/{name}/ (see the README, section on data)."
        )
