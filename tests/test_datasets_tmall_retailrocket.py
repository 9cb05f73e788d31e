"""The named datasets ``tmall`` and ``retailrocket``, read in place from ../shared/data.

The expected counts were computed independently of the loader (plain restricted unpickling and
list arithmetic) and agree with ../shared/data/README.md; the helper below recomputes the ones
that need no reassembly, so a change of the files shows as a clear mismatch.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from datasets import DATASETS, load_dataset, survey_datasets


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name}")


def _unpickle(path: Path):
    with open(path, "rb") as f:
        return _NoGlobals(f).load()


def test_both_are_named_datasets_found_by_all(shared_data):
    assert {"tmall", "retailrocket"} <= set(DATASETS)
    found, _ = survey_datasets(shared_data)
    assert "tmall" in found and "retailrocket" in found


def test_tmall_counts(shared_data):
    data = load_dataset("tmall", data_dir=shared_data)
    counts = data.split_counts()
    train = _unpickle(shared_data / "tmall" / "all_train_seq.txt")
    prefixes, labels = _unpickle(shared_data / "tmall" / "test.txt")
    items = {i for s in train for i in s}
    assert (len(train), sum(map(len, train)), len(items)) == (65_286, 416_554, 40_727)
    assert counts["train"] == {
        "events": 416_554,
        "sessions": 65_286,
        "items": 40_727,
        "predictions": 416_554 - 65_286,
    }
    # the 25,898 pairs reassemble into whole sessions: one per length-1 prefix
    assert len(labels) == 25_898 and sum(len(p) == 1 for p in prefixes) == 1_027
    assert (counts["test"]["sessions"], counts["test"]["events"]) == (1_027, 25_898 + 1_027)
    assert counts["test"]["predictions"] == 25_898 and counts["test"]["unseen_targets"] == 0
    assert data.test_targets is None  # whole sessions, not pairs
    assert sum(label in p for p, label in zip(prefixes, labels)) == 11_754  # 45.4% repeats
    assert counts["valid"]["sessions"] == 6_529 and counts["train_tr"]["sessions"] == 58_757
    assert data.n_items == 40_727 and data.item_ids.tolist() == list(range(1, 40_728))


def test_retailrocket_reads_the_4_tuple_and_evaluates_pairs(shared_data):
    data = load_dataset("retailrocket", data_dir=shared_data)
    counts = data.split_counts()
    obj = _unpickle(shared_data / "retailrocket" / "test.txt")
    assert isinstance(obj, tuple) and [len(part) for part in obj] == [15_132] * 4
    _, prefixes, labels, _ = obj
    assert counts["train"]["events"] == 685_984 and counts["train"]["sessions"] == 126_168
    assert counts["train"]["items"] == 36_968 and data.n_items == 36_968
    assert min(map(len, prefixes)) == 2  # no length-1 prefixes: the pairs do not reassemble
    assert counts["test"]["sessions"] == 15_132 and counts["test"]["predictions"] == 15_132
    assert counts["test"]["events"] == sum(len(p) + 1 for p in prefixes) == 128_273
    assert counts["test"]["unseen_targets"] == 0
    assert data.test_targets is not None and int(data.test_targets.sum()) == 15_132
    assert "each pair is evaluated on its own" in data.policy["test_pairs"]
    assert sum(label in p for p, label in zip(prefixes, labels)) == 5_783  # 38.2% repeats
    assert counts["valid"]["sessions"] == 12_617


def test_a_4_tuple_whose_parts_differ_in_length_is_refused(tmp_path):
    from datasets.errors import DataError
    from datasets.srgnn import load_srgnn

    (tmp_path / "all_train_seq.txt").write_bytes(pickle.dumps([[1, 2, 3]]))
    (tmp_path / "test.txt").write_bytes(pickle.dumps(([7, 8], [[1, 2], [2, 3]], [3, 1], [5])))
    with pytest.raises(DataError, match=r"test\.txt: .*differ in length \(2, 2, 2, 1\)"):
        load_srgnn(tmp_path, name="mine")
