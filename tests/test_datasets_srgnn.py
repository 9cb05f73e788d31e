"""SR-GNN pickle splits: safe loading, reassembly of the test pairs, published counts."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from datasets import srgnn
from datasets.errors import DataError, MissingDataError
from datasets.sessions import UNKNOWN


def write_split(directory: Path, train: object, test: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / srgnn.TRAIN_FILE).write_bytes(pickle.dumps(train))
    (directory / srgnn.TEST_FILE).write_bytes(pickle.dumps(test))
    return directory


def pairs_of(sessions: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The SR-GNN test pairs of whole sessions: (s[:-1] -> s[-1]), (s[:-2] -> s[-2]), ..."""
    prefixes, labels = [], []
    for s in sessions:
        for k in range(1, len(s)):
            prefixes.append(s[:-k])
            labels.append(s[-k])
    return prefixes, labels


class Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "test.txt"
    path.write_bytes(pickle.dumps(([[1, 2]], [Exploit(marker)])))
    with pytest.raises(DataError, match=r"test\.txt: not a plain pickle.*refused to load global"):
        srgnn.load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [{"a": 1}, [[1, 2], "x"], [[1, 2.5]], [[1, True]], [[1, None]], [(1, 2)], "text", 3],
)
def test_anything_but_lists_of_ints_is_refused(tmp_path, payload):
    path = tmp_path / "all_train_seq.txt"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"all_train_seq\.txt"):
        srgnn.read_train(path)


def test_test_file_must_be_a_pair_of_matching_lists(tmp_path):
    path = tmp_path / "test.txt"
    path.write_bytes(pickle.dumps(([[1, 2]], [3, 4])))
    with pytest.raises(DataError, match=r"1 prefixes but 2 labels"):
        srgnn.read_test(path)
    path.write_bytes(pickle.dumps({"prefixes": [], "labels": []}))
    with pytest.raises(DataError, match=r"expected \(prefixes, labels\).*found dict"):
        srgnn.read_test(path)


def test_truncated_pickle_is_a_data_error(tmp_path):
    path = tmp_path / "test.txt"
    path.write_bytes(pickle.dumps(([[1, 2]], [3]))[:-3])
    with pytest.raises(DataError, match=r"test\.txt"):
        srgnn.load_pickle(path)


def test_reassemble_rebuilds_whole_sessions():
    sessions = [[1, 2, 3, 4], [5, 6], [7, 7, 8]]
    assert srgnn.reassemble(*pairs_of(sessions), Path("t")) == sessions


@pytest.mark.parametrize(
    ("mutate", "pair"),
    [
        (lambda p, labels: labels.__setitem__(1, 99), 1),  # label does not continue the session
        (lambda p, labels: p[2].__setitem__(0, 99), 2),  # prefix differs from the session
        (lambda p, labels: (p.pop(1), labels.pop(1)), 1),  # a pair missing: lengths jump
    ],
)
def test_broken_structure_names_the_pair(mutate, pair):
    prefixes, labels = pairs_of([[1, 2, 3, 4], [5, 6]])
    mutate(prefixes, labels)
    with pytest.raises(DataError, match=rf"t: test pair {pair} "):
        srgnn.reassemble(prefixes, labels, Path("t"))


def test_incomplete_last_session_is_an_error():
    prefixes, labels = pairs_of([[1, 2, 3, 4]])
    with pytest.raises(DataError, match="incomplete"):
        srgnn.reassemble(prefixes[:-1], labels[:-1], Path("t"))


def test_small_split_vocabulary_unknowns_and_validation(tmp_path):
    train = [[10, 11], [11, 12, 10], [12, 13]] * 4  # 12 sessions
    directory = write_split(tmp_path / "toy", train, pairs_of([[10, 99, 11], [13, 12]]))
    data = srgnn.load_srgnn(directory, name="toy")
    assert data.item_ids.tolist() == [10, 11, 12, 13]
    assert data.test.items.tolist() == [0, UNKNOWN, 1, 3, 2]
    assert data.test.n_predictions == 3
    assert data.split_counts()["test"]["unseen_targets"] == 1
    assert data.valid_train.n_sessions == 11 and data.valid_test.n_sessions == 1  # last 10%
    assert data.valid_test.items.tolist() == [2, 3]
    assert data.valid_train.n_items == data.n_items == 4
    assert "misses" in data.policy["unseen_targets"]


def test_validation_ranks_only_the_items_of_its_training_part(tmp_path):
    # Item 13 occurs only in the last (validation) session: in validation it is unknown, and the
    # validation vocabulary is train_tr's three items, not the full training set's four.
    train = [[10, 11], [11, 12, 10], [12, 11, 10]] * 3 + [[13, 10, 12]]
    directory = write_split(tmp_path / "toy", train, pairs_of([[10, 13]]))
    data = srgnn.load_srgnn(directory, name="toy")
    assert data.n_items == 4
    assert data.valid_train.n_sessions == 9 and data.valid_train.n_items == 3
    assert data.valid_test.items.tolist() == [UNKNOWN, 0, 2]  # 13 unknown, 10 -> 0, 12 -> 2
    assert data.valid_test.n_items == 3


def test_validation_vocabulary_of_rsc15_64_is_its_training_part(shared_data):
    data = srgnn.load_srgnn(shared_data / "rsc15-64", name="rsc15-64")
    known = np.unique(data.valid_train.items)
    assert data.valid_train.n_items == len(known) < data.n_items
    assert known.tolist() == list(range(len(known)))


def test_missing_files_say_where_they_come_from(tmp_path):
    with pytest.raises(MissingDataError, match=r"(?s)rsc15-64.*all_train_seq\.txt.*WSDM23-DGNNs"):
        srgnn.load_srgnn(tmp_path / "rsc15-64", name="rsc15-64")


def test_rsc15_64_reassembles_to_the_gru4rec_test_day(shared_data):
    data = srgnn.load_srgnn(shared_data / "rsc15-64", name="rsc15-64")
    counts = data.split_counts()
    assert counts["test"]["sessions"] == 15_324
    assert counts["test"]["events"] == 71_222
    assert counts["test"]["predictions"] == 55_898
    assert counts["test"]["unseen_targets"] == 412
    assert (counts["train"]["sessions"], counts["train"]["events"]) == (116_167, 486_026)
    assert data.n_items == 17_376
    assert data.item_ids.min() >= 1 and data.item_ids.max() <= 37_483
    n_valid = round(116_167 * 0.1)
    assert data.valid_test.n_sessions == n_valid
    assert data.valid_train.n_sessions == 116_167 - n_valid


def test_diginetica_counts(shared_data):
    data = srgnn.load_srgnn(shared_data / "diginetica", name="diginetica")
    counts = data.split_counts()
    assert (counts["train"]["sessions"], counts["train"]["events"]) == (186_670, 906_140)
    assert data.n_items == 43_097
    assert counts["test"]["predictions"] == 60_858
    assert (counts["test"]["sessions"], counts["test"]["events"]) == (15_963, 76_821)
    assert counts["test"]["unseen_targets"] == 0
    assert np.array_equal(data.item_ids, np.arange(1, 43_098))
