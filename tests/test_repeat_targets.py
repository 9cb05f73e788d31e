"""Repeat and new targets (a target that occurred earlier in its session, or not), and
extending a finished run with new rows without refitting the rows it has."""

from __future__ import annotations

import numpy as np
import pandas as pd

import benchmark.run_cli as run_cli
from benchmark.report import tables
from benchmark.report.analysis import breakdown
from benchmark.runner import repeat_mask
from datasets import io
from datasets.sessions import UNKNOWN, Sessions


def test_repeat_mask_by_hand():
    # sessions [3, 5, 3, 3], [5, 7], [UNKNOWN, UNKNOWN, 7, 7]
    items = np.array([3, 5, 3, 3, 5, 7, UNKNOWN, UNKNOWN, 7, 7])
    s = Sessions(items=items, offsets=np.array([0, 4, 6, 10]), n_items=8)
    # 5 in session 2 is new there though session 1 had it; an unseen item is never a repeat
    expected = [False, False, True, True, False, False, False, False, False, True]
    assert repeat_mask(s).tolist() == expected


def test_repeat_breakdown_and_table_by_hand():
    predictions = pd.DataFrame(
        {
            "position": [1, 2, 3, 1],
            "target_support": [5, 5, 5, 5],
            "repeat": [True, False, True, False],
        }
    )
    ranks = {"a": np.array([1.0, 30.0, 4.0, 2.0])}
    rows = breakdown(predictions, ranks, 20)
    part = rows[rows["by"] == "repeat"].set_index(["bucket_label", "metric"])["value"]
    assert part[("repeat", "recall")] == 1.0 and part[("repeat", "mrr")] == (1 + 0.25) / 2
    assert part[("new", "recall")] == 0.5 and part[("new", "mrr")] == 0.5 / 2
    text = tables.repeat_markdown(rows, ["a"])
    assert "repeat 2 (50.0%), new 2 (50.0%) of 4" in text
    assert "| a           | 1.0000" in text or "| a " in text
    assert "0.6250" in text and "0.2500" in text
    assert tables.repeat_markdown(rows[rows["by"] != "repeat"], ["a"]) is None


def test_resume_with_new_algorithms_adds_rows_and_keeps_the_others(tmp_path, capsys):
    base = ["--dataset", "synthetic", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c")]
    assert run_cli.main([*base, "--algorithms", "pop", "-q"]) == 0
    (run_dir,) = (tmp_path / "synthetic").iterdir()
    pop_done = (run_dir / "done" / "pop.json").read_bytes()
    # an older run's predictions lack the repeat column: extending the run adds it
    predictions = pd.read_parquet(run_dir / "predictions.parquet").drop(columns="repeat")
    io.write_parquet(run_dir / "predictions.parquet", predictions)
    assert run_cli.main(["--resume", str(run_dir), "--algorithms", "spop,pop", "-q"]) == 0
    record = io.read_json(run_dir / "run.json")
    assert record["options"]["algorithms"] == ["pop", "spop"]
    assert record["extended"] == [["spop"]]
    assert (run_dir / "done" / "pop.json").read_bytes() == pop_done  # not refitted
    assert "repeat" in pd.read_parquet(run_dir / "predictions.parquet")
    table = (run_dir / "table.md").read_text()
    assert "| spop" in table and "## Repeat and new targets" in table


def test_resume_with_algorithms_fits_only_those_and_leaves_other_unfinished_rows(tmp_path):
    base = ["--dataset", "synthetic", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c")]
    assert run_cli.main([*base, "--algorithms", "pop,spop", "-q"]) == 0
    (run_dir,) = (tmp_path / "synthetic").iterdir()
    (run_dir / "done" / "spop.json").unlink()  # as if a kill had stopped spop's fit
    assert run_cli.main(["--resume", str(run_dir), "--algorithms", "markov", "-q"]) == 0
    record = io.read_json(run_dir / "run.json")
    assert record["options"]["algorithms"] == ["pop", "spop", "markov"]
    assert record["pending"] == ["spop"] and "finished" in record
    assert not (run_dir / "done" / "spop.json").exists()
    assert sorted(pd.read_csv(run_dir / "metrics.csv")["algorithm"].unique()) == ["markov", "pop"]
    assert sorted(record["config"]) == ["markov", "pop"]
    assert run_cli.main(["--resume", str(run_dir), "-q"]) == 0  # a plain resume fits the rest
    record = io.read_json(run_dir / "run.json")
    assert "pending" not in record and sorted(record["config"]) == ["markov", "pop", "spop"]
    assert sorted(pd.read_csv(run_dir / "metrics.csv")["algorithm"].unique()) == [
        "markov",
        "pop",
        "spop",
    ]
