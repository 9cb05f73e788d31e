"""``--resume RUN --algorithms LABELS --seeds N``: more seeds for some rows of a finished run,
the seed it has reused, the missing ones fitted, and the whole resumable."""

import pandas as pd
import pytest
from test_runner import tiny_dataset  # tests/test_runner.py's hand-made dataset

import benchmark.run_cli as run_benchmark
import benchmark.runner as runner
from benchmark.options import plan
from benchmark.runner import RunOptions, run
from datasets import io


@pytest.fixture
def tiny(monkeypatch):
    data = tiny_dataset()
    monkeypatch.setattr(runner, "load_dataset", lambda name, **kw: data)
    return data


@pytest.fixture
def fits(monkeypatch):
    """(label, seed) of every evaluation, i.e. of every fit."""
    seen = []
    real = runner._fit_seed

    def counting(spec, seed, *args, **kwargs):
        seen.append((spec.label, seed))
        return real(spec, seed, *args, **kwargs)

    monkeypatch.setattr(runner, "_fit_seed", counting)
    return seen


def options(tmp_path, algorithms=("pop", "bpr-mf", "sknn"), seeds=1) -> RunOptions:
    return RunOptions(
        dataset="tiny",
        algorithms=list(algorithms),
        out=tmp_path / "out",
        progress=False,
        cutoffs=[1, 2, 5],
        seeds=seeds,
    )


def extend(run_dir, algorithms, seeds):
    return run(
        plan(
            RunOptions(dataset=""),
            resume=run_dir,
            overrides={"algorithms": algorithms, "seeds": seeds},
        ),
        command="test --resume",
    )


def seed_rows(run_dir, label):
    seeds = pd.read_csv(run_dir / "seeds.csv")
    return seeds[seeds["algorithm"] == label].reset_index(drop=True)


def test_more_seeds_for_one_row_reuse_its_seed_and_leave_the_others(tiny, tmp_path, fits):
    run_dir = run(plan(options(tmp_path / "a")), command="test")
    assert not (run_dir / "seeds.csv").exists()
    before = pd.read_csv(run_dir / "metrics.csv")
    done_before = (run_dir / "done" / "bpr-mf.json").read_bytes()
    ranks_before = (run_dir / "ranks" / "bpr-mf.parquet").read_bytes()
    fits.clear()

    extend(run_dir, ["bpr-mf"], 3)
    assert fits == [("bpr-mf", 1), ("bpr-mf", 2)]  # seed 0 is reused, not refitted
    assert (run_dir / "done" / "bpr-mf.json").read_bytes() == done_before
    assert (run_dir / "ranks" / "bpr-mf.parquet").read_bytes() == ranks_before
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "metrics.csv"), before)

    rows = seed_rows(run_dir, "bpr-mf")
    assert sorted(rows["seed"].unique()) == [0, 1, 2]
    first = rows[rows["seed"] == 0][["metric", "cutoff", "value"]].reset_index(drop=True)
    original = before[before["algorithm"] == "bpr-mf"][["metric", "cutoff", "value"]]
    pd.testing.assert_frame_equal(first, original.reset_index(drop=True))
    for other in ("pop", "sknn"):  # untouched: one seed
        assert seed_rows(run_dir, other)["seed"].unique().tolist() == [0]

    record = io.read_json(run_dir / "run.json")
    assert record["finished"]
    assert record["options"]["seeds_per_label"] == {"bpr-mf": 3}
    assert record["config"]["bpr-mf"]["seeds"] == 3 and record["config"]["pop"]["seeds"] == 1
    assert record["resumed"][-1]["seeds"] == {"bpr-mf": 3}
    table = (run_dir / "table.md").read_text()
    assert "(3 seeds)" in table and "mean ± std" in table

    fits.clear()  # the same command again: nothing left to do
    extend(run_dir, ["bpr-mf"], 3)
    assert fits == []


def test_the_extended_row_equals_a_fresh_run_with_those_seeds(tiny, tmp_path):
    run_dir = run(plan(options(tmp_path / "a")), command="test")
    extend(run_dir, ["bpr-mf"], 3)
    fresh = run(plan(options(tmp_path / "b", ["bpr-mf"], seeds=3)), command="test")
    pd.testing.assert_frame_equal(seed_rows(run_dir, "bpr-mf"), seed_rows(fresh, "bpr-mf"))


def test_deterministic_rows_keep_one_seed(tiny, tmp_path, fits, caplog):
    run_dir = run(plan(options(tmp_path, ["pop", "bpr-mf"])), command="test")
    fits.clear()
    with caplog.at_level("INFO"):
        extend(run_dir, ["pop", "bpr-mf"], 2)
    assert fits == [("bpr-mf", 1)]
    assert "pop is deterministic, it keeps one seed" in caplog.text
    assert seed_rows(run_dir, "pop")["seed"].unique().tolist() == [0]


def test_seeds_for_a_new_label_on_resume(tiny, tmp_path, fits):
    run_dir = run(plan(options(tmp_path, ["pop"])), command="test")
    fits.clear()
    extend(run_dir, ["bpr-mf"], 2)
    assert fits == [("bpr-mf", 0), ("bpr-mf", 1)]
    assert sorted(seed_rows(run_dir, "bpr-mf")["seed"].unique()) == [0, 1]
    assert io.read_json(run_dir / "run.json")["extended"] == [["bpr-mf"]]


def test_a_kill_during_an_added_seed_resumes_with_that_seed(tiny, tmp_path, fits, monkeypatch):
    run_dir = run(plan(options(tmp_path, ["pop", "bpr-mf"])), command="test")
    real_fit_seed = runner._fit_seed  # the counting one

    def dying(spec, seed, *args, **kwargs):
        if seed == 2:
            raise KeyboardInterrupt  # killed during the third seed
        return real_fit_seed(spec, seed, *args, **kwargs)

    monkeypatch.setattr(runner, "_fit_seed", dying)
    fits.clear()
    with pytest.raises(KeyboardInterrupt):
        extend(run_dir, ["bpr-mf"], 3)
    assert fits == [("bpr-mf", 1)]
    assert (run_dir / "done" / "seeds" / "bpr-mf.seed1.json").is_file()
    assert "finished" not in io.read_json(run_dir / "run.json")

    monkeypatch.setattr(runner, "_fit_seed", real_fit_seed)
    fits.clear()
    extend(run_dir, ["bpr-mf"], 3)
    assert fits == [("bpr-mf", 2)]  # seeds 0 and 1 reused
    assert sorted(seed_rows(run_dir, "bpr-mf")["seed"].unique()) == [0, 1, 2]
    assert io.read_json(run_dir / "run.json")["finished"]


def test_refusals(tiny, tmp_path):
    run_dir = run(plan(options(tmp_path, ["pop", "bpr-mf"])), command="test")
    resume = RunOptions(dataset="")
    with pytest.raises(runner.ConfigError, match="--seeds 3 needs --algorithms"):
        plan(resume, resume=run_dir, overrides={"seeds": 3})
    plan(resume, resume=run_dir, overrides={"seeds": 1})  # the run's own: no contradiction
    with pytest.raises(runner.ConfigError, match="--seed 4 contradicts the run"):
        plan(resume, resume=run_dir, overrides={"algorithms": ["bpr-mf"], "seeds": 3, "seed": 4})
    extend(run_dir, ["bpr-mf"], 3)
    with pytest.raises(runner.ConfigError, match="only adds seeds"):
        plan(resume, resume=run_dir, overrides={"algorithms": ["bpr-mf"], "seeds": 2})


def test_the_command_line_names_the_option(tmp_path, capsys):
    args = ["--dataset", "synthetic", "--algorithms", "pop", "--out", str(tmp_path)]
    assert run_benchmark.main([*args, "--cutoffs", "1", "5", "-q", "--no-progress"]) == 0
    [run_dir] = (tmp_path / "synthetic").iterdir()
    capsys.readouterr()
    assert run_benchmark.main(["--resume", str(run_dir), "--seeds", "5", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"error: --resume {run_dir}: --seeds 5 needs --algorithms" in err
