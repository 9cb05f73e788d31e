"""The command line: clear errors with a non-zero exit and no traceback; a full run on real data."""

import subprocess
import sys

import pandas as pd

from tests.conftest import REPO_ROOT


def cli(*args, cwd=REPO_ROOT):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_benchmark.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_missing_rsc15_file_says_where_to_get_it(tmp_path):
    res = cli(
        "--dataset",
        "rsc15",
        "--data-dir",
        str(tmp_path),
        "--algorithms",
        "pop",
        "--out",
        str(tmp_path / "out"),
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "yoochoose-clicks.dat" in res.stderr and "1,486,798,186 bytes" in res.stderr
    assert str(tmp_path / "rsc15" / "yoochoose-clicks.dat") in res.stderr


def test_unknown_algorithm_and_dataset_are_named(tmp_path):
    res = cli("--dataset", "synthetic", "--algorithms", "pop,gru5rec", "--out", str(tmp_path))
    assert res.returncode == 2 and "unknown algorithm 'gru5rec'" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli("--dataset", "rsc16", "--out", str(tmp_path))
    assert res.returncode == 2 and "unknown dataset 'rsc16'" in res.stderr


def test_rsc15_64_pop_spop_reach_published_level(shared_data, tmp_path):
    res = cli(
        "--dataset",
        "rsc15-64",
        "--data-dir",
        str(shared_data),
        "--algorithms",
        "pop,spop",
        "--out",
        str(tmp_path),
        "--no-progress",
        "-q",
    )
    assert res.returncode == 0, res.stderr
    (run_dir,) = (tmp_path / "rsc15-64").iterdir()
    m = pd.read_csv(run_dir / "metrics.csv").set_index(["algorithm", "metric", "cutoff"])
    assert (m["n_predictions"] == 55_898).all()
    assert 0.06 <= m.loc[("pop", "recall", 20), "value"] <= 0.08  # published 0.0671
    assert 0.28 <= m.loc[("spop", "recall", 20), "value"] <= 0.33  # published 0.3044
    assert "| spop" in res.stdout  # the table is printed


def test_failed_run_leaves_no_empty_run_directory(tmp_path):
    res = cli("--dataset", "rsc15", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert not (tmp_path / "out").exists()
