"""Any session dataset from the command line: ``--dataset PATH`` for each format, SR-GNN test
variants, ``--dataset all`` reporting, and ``benchmark.tune --dataset PATH``."""

from __future__ import annotations

import gzip
import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import benchmark.run_cli as run_benchmark
from benchmark import tune
from datasets import io, srgnn
from datasets.by_path import load_path
from datasets.errors import DataError, MissingDataError


def run_main(capsys, *args: str) -> Path:
    assert run_benchmark.main([*args, "-q", "--no-progress"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    (dataset_dir,) = [p for p in Path(args[args.index("--out") + 1]).iterdir()]
    (run_dir,) = dataset_dir.iterdir()
    return run_dir


def write_srgnn(root: Path, train: list, test: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "all_train_seq.txt").write_bytes(pickle.dumps(train))
    (root / "test.txt").write_bytes(pickle.dumps(test))
    return root


def pairs_of(sessions: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    prefixes, labels = [], []
    for s in sessions:
        for k in range(len(s) - 1, 0, -1):
            prefixes.append(s[:k])
            labels.append(s[k])
    return prefixes, labels


TRAIN = [[1, 1, 1, 2, 2, 3]] * 10  # POP order: 1 (30 clicks), 2 (20), 3 (10)


def metric(run_dir: Path, name: str, k: int) -> float:
    m = pd.read_csv(run_dir / "metrics.csv")
    return m.query("algorithm == 'pop' and metric == @name and cutoff == @k")["value"].item()


def test_srgnn_folder_by_path_gets_no_shipped_config_or_published_numbers(tmp_path, capsys):
    """Regression: a symlink named 'diginetica' silently took diginetica's tuned config and
    printed diginetica's published numbers next to another dataset's results."""
    data = write_srgnn(tmp_path / "mine", TRAIN, pairs_of([[1, 2, 3], [3, 1]]))
    link = tmp_path / "diginetica"
    link.symlink_to(data)
    run_dir = run_main(
        capsys,
        "--dataset",
        str(link),
        "--algorithms",
        "pop,item-knn",
        "--cutoffs",
        "1",
        "2",
        "3",
        "--out",
        str(tmp_path / "out"),
    )
    assert run_dir.parent.name == "diginetica"
    record = io.read_json(run_dir / "run.json")
    assert record["config_files"] == []  # not configs/diginetica.toml
    assert record["config"]["item-knn"]["params"]["n_sims"] == 100  # the constructor default
    assert record["data"]["source"]["given_path"] == str(link)
    assert record["options"]["dataset_path"] == str(link)
    table = (run_dir / "table.md").read_text()
    assert table.startswith("# diginetica (own data): run ")
    assert "ublished" not in table and "0.0089" not in table
    # targets 2, 3 (session 1) and 1 (session 2): POP ranks 2, 3, 1
    assert metric(run_dir, "recall", 2) == pytest.approx(2 / 3)
    assert metric(run_dir, "mrr", 3) == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)


def test_srgnn_tuple_with_ids_and_times_is_read(tmp_path):
    prefixes, labels = pairs_of([[1, 2, 3], [3, 1]])
    ids, times = list(range(len(labels))), [0.0] * len(labels)
    data = load_path(write_srgnn(tmp_path / "t4", TRAIN, (ids, prefixes, labels, times)))
    assert data.test.n_sessions == 2 and data.test_targets is None
    assert data.name == "t4"


def test_pairs_that_do_not_reassemble_are_evaluated_one_by_one(tmp_path, capsys):
    # The shortest prefix of [1, 2, 3] was left out, and [5, 3] is not a continuation.
    test = ([[1, 2], [3, 1]], [3, 2])
    with pytest.raises(DataError):
        srgnn.reassemble(*test, Path("t"))
    write_srgnn(tmp_path / "pairs", TRAIN, test)
    run_dir = run_main(
        capsys,
        "--dataset",
        str(tmp_path / "pairs"),
        "--algorithms",
        "pop",
        "--cutoffs",
        "1",
        "2",
        "3",
        "--out",
        str(tmp_path / "out"),
    )
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(predictions) == 2  # one per pair, not one per click
    assert predictions["position"].tolist() == [2, 2]
    # labels 3 and 2: POP ranks 3 and 2
    assert metric(run_dir, "recall", 2) == 0.5
    assert metric(run_dir, "mrr", 3) == pytest.approx((1 / 3 + 1 / 2) / 2)
    table = (run_dir / "table.md").read_text()
    assert (
        "each pair is evaluated on its own: its prefix is fed and only its label is ranked" in table
    )


def write_tsv(path: Path, rows: list[tuple[int, int, float]]) -> None:
    path.write_text("SessionId\tItemId\tTime\n" + "".join(f"{s}\t{i}\t{t}\n" for s, i, t in rows))


def test_tsv_folder_by_path(tmp_path, capsys):
    folder = tmp_path / "shop"
    folder.mkdir()
    write_tsv(
        folder / "train.tsv",
        [(s, item, s * 10 + k) for s in range(10) for k, item in enumerate([7, 7, 7, 8, 8, 9])],
    )
    write_tsv(folder / "test.tsv", [(100, 8, 1e4), (100, 9, 1e4 + 1), (100, 7, 1e4 + 2)])
    run_dir = run_main(
        capsys,
        "--dataset",
        str(folder),
        "--algorithms",
        "pop",
        "--cutoffs",
        "1",
        "2",
        "--out",
        str(tmp_path / "out"),
    )
    assert run_dir.parent.name == "shop"
    # targets 9 (POP rank 3) and 7 (rank 1)
    assert metric(run_dir, "recall", 1) == 0.5 and metric(run_dir, "recall", 2) == 0.5


def test_gru4rec_named_tsv_folder_by_path(shared_data, tmp_path):
    data = load_path(shared_data / "rsc15-100k")
    assert data.name == "rsc15-100k"
    assert data.test.n_events == 13_568 and data.test.n_sessions == 3_416
    assert data.valid_test is not None  # the *_train_tr / *_train_valid pair
    assert data.source["given_path"] == str(shared_data / "rsc15-100k")


def raw_clicks(path: Path) -> bytes:
    """100 training sessions on day 0 and 50 test sessions on day 2, 3 clicks each."""
    lines = []
    for s in range(150):
        day = 0 if s < 100 else 2
        for k in range(3):
            item = 214_000_000 + (s + k) % 5
            lines.append(f"{s + 1},2014-04-0{day + 1}T10:{s % 60:02d}:{k:02d}.000Z,{item},0\n")
    return "".join(lines).encode()


@pytest.mark.parametrize("compressed", [False, True])
def test_raw_click_file_by_path_is_preprocessed(tmp_path, capsys, compressed):
    path = tmp_path / "myclicks.dat"
    content = raw_clicks(path)
    path.write_bytes(gzip.compress(content) if compressed else content)
    run_dir = run_main(
        capsys,
        "--dataset",
        str(path),
        "--algorithms",
        "pop",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    )
    assert run_dir.parent.name == "myclicks"
    counts = io.read_json(run_dir / "run.json")["data"]["counts"]
    assert (counts["train"]["sessions"], counts["train"]["events"]) == (100, 300)
    assert (counts["test"]["sessions"], counts["test"]["predictions"]) == (50, 100)
    # 5 items: of the default cutoffs 1 5 10 20 only 1 and 5 apply (given ones would be errors)
    assert sorted(pd.read_csv(run_dir / "metrics.csv")["cutoff"].unique()) == [1, 5]
    assert io.read_json(run_dir / "run.json")["options"]["cutoffs"] == [1, 5]
    table = (run_dir / "table.md").read_text()
    assert table.startswith("# myclicks (own data)")


def test_dataset_all_reports_found_and_skipped(tmp_path, caplog):
    (tmp_path / "rsc15-64").mkdir()
    (tmp_path / "rsc15-64" / "all_train_seq.txt").write_bytes(pickle.dumps([[1, 2]]))
    (tmp_path / "mine").mkdir()
    # only synthetic would run: refused, naming the folder and why each dataset was skipped
    with pytest.raises(MissingDataError, match="holds none of the named datasets") as err:
        run_benchmark.dataset_specs("all", tmp_path)
    assert f"--data-dir {tmp_path}" in str(err.value)
    assert "rsc15-64 (missing rsc15-64/test.txt)" in str(err.value)
    assert "diginetica (no folder)" in str(err.value)
    (tmp_path / "rsc15-64" / "test.txt").write_bytes(pickle.dumps(([[1]], [2])))
    with caplog.at_level(logging.INFO, logger="run_benchmark"):
        specs = run_benchmark.dataset_specs("all", tmp_path)
    assert specs == [("rsc15-64", None), ("synthetic", None)]
    text = caplog.text
    assert f"--dataset all under {tmp_path}: found rsc15-64, synthetic" in text
    assert f"skipped mine (not a known dataset (run it with --dataset {tmp_path / 'mine'}))" in text
    assert "skipped diginetica (no folder)" in text


def test_tune_takes_a_dataset_path(tmp_path, capsys):
    rng = np.random.default_rng(0)
    train = [[int(a), int(a + 1), int(a + 2)] for a in rng.integers(0, 20, 200)]
    write_srgnn(tmp_path / "mine", train, pairs_of([[1, 2, 3]]))
    assert (
        tune.main(
            [
                "--dataset",
                str(tmp_path / "mine"),
                "--algorithm",
                "item-knn",
                "--grid",
                "n_sims=1,50",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "on the validation split of" in out and str(tmp_path / "mine") in out
    assert "[item-knn]" in out
    assert (
        tune.main(
            ["--dataset", str(tmp_path / "mine"), "--algorithm", "item-knn", "--grid", "n_sims=0,5"]
        )
        == 2
    )
    assert "n_sims = 0: must be an integer >= 1" in capsys.readouterr().err
