"""GRU4Rec-format TSV files: rsc15-100k counts, users' own files, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets import tsv
from datasets.errors import DataError, MissingDataError
from datasets.sessions import UNKNOWN

HEADER = "SessionId\tItemId\tTime"


def write_tsv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("".join(line + "\n" for line in [header, *rows]))
    return path


def test_rsc15_100k_counts(shared_data):
    data = tsv.load_rsc15_100k(shared_data / "rsc15-100k")
    counts = data.split_counts()
    assert (counts["train"]["events"], counts["train"]["sessions"], counts["train"]["items"]) == (
        70_278,
        17_794,
        2_933,
    )
    assert (counts["test"]["events"], counts["test"]["sessions"]) == (13_568, 3_416)
    assert counts["test"]["predictions"] == 10_152
    assert data.valid_train is not None and data.valid_test is not None
    # validation is over train_tr's own items (2,873 of the 2,933 training items occur there)
    assert data.valid_train.n_items == data.valid_test.n_items == 2_873
    assert data.valid_train.stats()["items"] == 2_873
    assert len(data.source["files"]) == 4


def test_own_files_vocabulary_from_train_unknowns_elsewhere(tmp_path):
    train = write_tsv(
        tmp_path / "train.tsv", ["1\t100\t10.0", "1\t200\t11.5", "2\t100\t12.0", "2\t300\t13.0"]
    )
    test = write_tsv(tmp_path / "test.tsv", ["5\t200\t20.0", "5\t999\t21.0", "5\t300\t22.0"])
    data = tsv.load_tsv(train, test, name="mine")
    assert data.name == "mine"
    assert data.item_ids.tolist() == [100, 200, 300]
    assert data.train.items.tolist() == [0, 1, 0, 2]
    assert data.test.items.tolist() == [1, UNKNOWN, 2]
    assert data.test.n_predictions == 2
    assert data.valid_train is None and data.valid_test is None
    np.testing.assert_allclose(data.test.times, [20.0, 21.0, 22.0])


def test_sessions_ordered_by_first_click_and_columns_by_name(tmp_path):
    # columns: session, time, item. Session 20 starts at 0.5, session 10 at 1.0.
    rows = ["20\t1.5\t7", "10\t3.0\t8", "10\t1.0\t9", "20\t0.5\t9", "30\t1.0\t8", "30\t2\t7"]
    train = write_tsv(tmp_path / "t.tsv", rows, header="SessionId\tTime\tItemId")
    data = tsv.load_tsv(train, train)
    assert data.train.session_ids.tolist() == [20, 10, 30]  # 10 and 30 tie at 1.0: by id
    assert data.item_ids[data.train.items].tolist() == [9, 7, 9, 8, 8, 7]


def test_validation_pair_uses_the_train_tr_vocabulary(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", ["1\t5\t1", "1\t6\t2", "2\t7\t3", "2\t5\t4"])
    tr = write_tsv(tmp_path / "tr.tsv", ["1\t5\t1", "1\t6\t2"])
    valid = write_tsv(tmp_path / "valid.tsv", ["2\t7\t3", "2\t5\t4"])
    data = tsv.load_tsv(train, train, tr, valid)
    assert data.valid_train.items.tolist() == [0, 1]
    assert data.valid_test.items.tolist() == [UNKNOWN, 0]  # item 7 is not in train_tr
    assert data.valid_test.n_items == 2


def test_validation_files_come_in_pairs(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", ["1\t5\t1", "1\t6\t2"])
    with pytest.raises(ValueError, match="both train_tr and valid"):
        tsv.load_tsv(train, train, train_tr=train)


def test_missing_file(tmp_path):
    with pytest.raises(MissingDataError, match=r"nope\.tsv"):
        tsv.read_tsv(tmp_path / "nope.tsv")
    with pytest.raises(MissingDataError, match=r"(?s)rsc15-100k.*train_full\.txt"):
        tsv.load_rsc15_100k(tmp_path)


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.tsv: empty file"):
        tsv.read_tsv(empty)
    with pytest.raises(DataError, match=r"head\.tsv: no data rows"):
        tsv.read_tsv(write_tsv(tmp_path / "head.tsv", []))


def test_bad_header_names_line_1(tmp_path):
    path = write_tsv(tmp_path / "h.tsv", ["1\t2\t3"], header="session\titem\ttime")
    with pytest.raises(
        DataError, match=r"h\.tsv, line 1: .*lacks column\(s\) SessionId, ItemId, Time"
    ):
        tsv.read_tsv(path)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("3\t7", "Expected 3 columns, got 2"),
        ("3\tseven\t1.0", "invalid value 'seven'"),
        ("3\t7\tnoon", "invalid value 'noon'"),
        ("3,7,1.0", "Expected 3 columns, got 1"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path, bad, what):
    path = write_tsv(tmp_path / "bad.tsv", ["1\t5\t1.0", "", "1\t6\t2.0", bad])
    with pytest.raises(DataError) as err:
        tsv.read_tsv(path)
    assert f"{path}, line 5:" in str(err.value)
    assert what in str(err.value)


def test_non_finite_time_names_the_line(tmp_path):
    path = write_tsv(tmp_path / "nan.tsv", ["1\t5\t1.0", "", "1\t6\tnan"])
    with pytest.raises(DataError, match=r"nan\.tsv, line 4: Time is not a finite number"):
        tsv.read_tsv(path)
