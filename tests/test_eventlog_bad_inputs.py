"""Bad event logs and data folders: one clear ``error:`` line, exit 2, the culprit named, no
traceback and no cache entry left behind."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import benchmark.run_cli as run_cli

HEADER = "session_id,item_id,timestamp\n"
GOOD = "".join(f"{s},{i},{1396310400 + 60 * k}\n" for k, (s, i) in enumerate([(1, 5), (1, 6)]))


def run(tmp_path: Path, capsys, *args: str) -> str:
    status = run_cli.main(
        [
            *args,
            "--algorithms",
            "pop",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not list((tmp_path / "cache").rglob("meta.json"))  # no cache entry
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unknown_column(tmp_path, capsys):
    path = write(tmp_path / "log.csv", HEADER + GOOD)
    line = run(tmp_path, capsys, "--dataset", str(path), "--columns", "item=sku")
    assert str(path) in line and "no column 'sku' (--columns item=sku)" in line
    assert "'session_id', 'item_id', 'timestamp'" in line


def test_unparsable_time_names_line_and_column(tmp_path, capsys):
    path = write(tmp_path / "log.csv", HEADER + GOOD * 10 + "2,5,1396310999\n\n2,6,soon\n")
    line = run(tmp_path, capsys, "--dataset", str(path))
    assert f"{path}, line 24: column 'timestamp'" in line and "'soon'" in line


def test_unparsable_iso_time_names_line_and_column(tmp_path, capsys):
    path = write(
        tmp_path / "log.csv", HEADER + "1,5,2014-04-01T10:00:00Z\n1,6,2014-04-41T10:00:00Z\n"
    )
    line = run(tmp_path, capsys, "--dataset", str(path))
    assert f"{path}, line 3: column 'timestamp': invalid value '2014-04-41T10:00:00Z'" in line


def test_empty_after_filtering(tmp_path, capsys):
    path = write(tmp_path / "log.csv", HEADER + GOOD)
    line = run(tmp_path, capsys, "--dataset", str(path))
    assert "nothing is left after the filters" in line and "fewer than 5 events" in line


def test_a_test_set_with_no_known_items(tmp_path, capsys):
    rows = [(1, 5, 0), (1, 6, 60), (2, 7, 3 * 86_400), (2, 8, 3 * 86_400 + 60)]
    body = "".join(f"{s},{i},{1396310400 + t}\n" for s, i, t in rows)
    path = write(tmp_path / "log.csv", HEADER + body)
    line = run(tmp_path, capsys, "--dataset", str(path), "--min-item-support", "1")
    assert str(path) in line and "the test set has no known items" in line


def test_a_header_where_none_is_expected(tmp_path, capsys):
    path = write(
        tmp_path / "clicks.dat",
        "SessionId,Timestamp,ItemId,Category\n1,2014-04-01T10:00:00.000Z,5,0\n",
    )
    line = run(tmp_path, capsys, "--dataset", str(path))
    assert (
        f"{path}, line 1:" in line and "looks like a header line, but this format has none" in line
    )


def test_a_missing_header(tmp_path, capsys):
    path = write(tmp_path / "log.csv", "1,5,1396310400\n1,6,1396310460\n")
    line = run(tmp_path, capsys, "--dataset", str(path))
    assert f"{path}, line 1: expected a header line naming the columns" in line
    assert "looks like data" in line


def test_bad_columns_flag(tmp_path, capsys):
    path = write(tmp_path / "log.csv", HEADER + GOOD)
    line = run(tmp_path, capsys, "--dataset", str(path), "--columns", "sesion=a")
    assert "--columns 'sesion=a': unknown role 'sesion'" in line


def test_event_flags_with_a_named_dataset(tmp_path, capsys):
    line = run(tmp_path, capsys, "--dataset", "synthetic", "--min-item-support", "3")
    assert "--min-item-support: only apply to a click file given by path" in line


def test_a_folder_with_two_layouts_is_refused_naming_both(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "all_train_seq.txt").write_bytes(pickle.dumps([[1, 2]]))
    (folder / "test.txt").write_bytes(pickle.dumps(([[1]], [2])))
    write(folder / "yoochoose-clicks.dat", "1,2014-04-01T10:00:00.000Z,5,0\n")
    line = run(tmp_path, capsys, "--dataset", str(folder))
    assert "holds 2 layouts" in line and "SR-GNN pickles (all_train_seq.txt, test.txt)" in line
    assert "a raw RSC15 click file (yoochoose-clicks.dat)" in line


@pytest.mark.parametrize("make", [False, True], ids=["mistyped", "empty"])
def test_dataset_all_over_a_dir_without_data(tmp_path, capsys, make):
    data_dir = tmp_path / "dta"
    if make:
        data_dir.mkdir()
    line = run(tmp_path, capsys, "--dataset", "all", "--data-dir", str(data_dir))
    assert f"--data-dir {data_dir}" in line
    assert "rsc15 (no folder)" in line and "retailrocket (no folder)" in line
