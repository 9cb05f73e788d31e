"""The runner: one run directory per run, exact prediction counts, resume after a kill."""

import numpy as np
import pandas as pd
import pytest

import benchmark.runner as runner
from benchmark.options import plan
from benchmark.runner import RunOptions, prediction_frame, run
from datasets import io
from datasets.sessions import UNKNOWN, Dataset, from_lists


def tiny_dataset(name: str = "tiny") -> Dataset:
    rng = np.random.default_rng(0)
    train = from_lists(
        [[int(a), int((a + 1) % 9), int((a + 2) % 9)] for a in rng.integers(0, 9, 80)], n_items=9
    )
    test = from_lists([[1, 2, 3, 4], [5, UNKNOWN, 7], [8, 0], [3, UNKNOWN]], n_items=9)
    return Dataset(
        name=name,
        train=train,
        test=test,
        item_ids=np.arange(100, 109),
        policy={"unseen_targets": "misses"},
    )


@pytest.fixture
def tiny(monkeypatch):
    data = tiny_dataset()
    monkeypatch.setattr(runner, "load_dataset", lambda name, **kw: data)
    return data


def options(tmp_path, algorithms=("pop", "spop", "item-knn")) -> RunOptions:
    return RunOptions(
        dataset="tiny",
        algorithms=list(algorithms),
        out=tmp_path / "out",
        progress=False,
        cutoffs=[1, 2, 5],
    )


def test_prediction_frame_lists_every_target_once(tiny):
    frame = prediction_frame(tiny)
    assert len(frame) == 3 + 2 + 1 + 1  # Σ(len − 1)
    assert frame["position"].min() == 1
    assert frame["target"].tolist() == [2, 3, 4, UNKNOWN, 7, 0, UNKNOWN]
    assert frame["target_support"].iloc[3] == 0


def test_run_writes_a_complete_run_directory(tiny, tmp_path):
    run_dir = run(plan(options(tmp_path)), command="test")
    assert run_dir.parent == tmp_path / "out" / "tiny"
    for name in (
        "run.json",
        "metrics.csv",
        "timings.csv",
        "predictions.parquet",
        "table.md",
        "ranks/pop.parquet",
        "ranks/spop.parquet",
        "ranks/item-knn.parquet",
    ):
        assert (run_dir / name).is_file(), name
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert set(metrics["algorithm"]) == {"pop", "spop", "item-knn"}
    assert (metrics["n_predictions"] == 7).all()
    record = io.read_json(run_dir / "run.json")
    assert record["protocol"]["tie_mode"] == "conservative"
    assert record["data"]["counts"]["test"]["unseen_targets"] == 2
    assert record["config"]["item-knn"]["params"]["n_sims"] > 0
    [load] = record["data_load"]
    assert load["seconds"] >= 0 and load["peak_rss_mb"] > 0
    timings = pd.read_csv(run_dir / "timings.csv")
    assert set(timings["stage"]) == {"fit", "evaluate"} and (timings["seconds"] >= 0).all()
    # Two unseen targets out of 7 can never be hits.
    recall20 = metrics.query("metric == 'recall' and cutoff == 5")["value"]
    assert (recall20 <= 5 / 7 + 1e-12).all()


def test_killed_run_resumes_to_the_same_metrics(tiny, tmp_path, monkeypatch):
    reference = pd.read_csv(run(plan(options(tmp_path / "a")), command="test") / "metrics.csv")

    fits = []
    real_evaluate = runner.evaluate

    def dying_evaluate(model, *args, **kwargs):
        fits.append(model.name)
        if model.name == "spop":
            raise KeyboardInterrupt  # a kill in the middle of the second algorithm
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        run(plan(options(tmp_path / "b")), command="test")
    (run_dir,) = (tmp_path / "b" / "out" / "tiny").iterdir()
    assert (run_dir / "done" / "pop.json").is_file()
    assert not (run_dir / "done" / "spop.json").exists()
    assert not (run_dir / "metrics.csv").exists()

    fits.clear()
    monkeypatch.setattr(
        runner, "evaluate", lambda m, *a, **k: (fits.append(m.name), real_evaluate(m, *a, **k))[1]
    )
    run(plan(RunOptions(dataset=""), resume=run_dir), command="test --resume")
    assert fits == ["spop", "item-knn"]  # pop was reused, not redone
    [resumed_by] = io.read_json(run_dir / "run.json")["resumed"]
    assert resumed_by["command"] == "test --resume" and resumed_by["at"] and resumed_by["code"]
    resumed = pd.read_csv(run_dir / "metrics.csv")
    pd.testing.assert_frame_equal(resumed[reference.columns], reference)


def test_a_run_killed_inside_a_gru4rec_fit_resumes_after_its_last_epoch(
    tiny, tmp_path, monkeypatch
):
    from algorithms.gru4rec import recommender

    config = tmp_path / "small.toml"
    config.write_text(
        "[gru4rec]\nlayers = 8\nn_sample = 4\nsample_cache_size = 64\n"
        "batch_size = 4\nn_epochs = 4\nn_threads = 1\n"
    )

    def gru_options(sub: str) -> RunOptions:
        return RunOptions(
            dataset="tiny",
            algorithms=["gru4rec"],
            out=tmp_path / sub,
            progress=False,
            cutoffs=[1, 2, 5],
            config=config,
        )

    reference = pd.read_csv(run(plan(gru_options("a")), command="test") / "metrics.csv")
    real_epoch_values = recommender.epoch_values
    epochs = []

    def dying_epoch_values(on_epoch, model, epoch):
        epochs.append(epoch)
        if epoch == 3:
            raise KeyboardInterrupt  # a kill after epoch 3's training: epoch 2 is on disk
        return real_epoch_values(on_epoch, model, epoch)

    monkeypatch.setattr(recommender, "epoch_values", dying_epoch_values)
    with pytest.raises(KeyboardInterrupt):
        run(plan(gru_options("b")), command="test")
    (run_dir,) = (tmp_path / "b" / "tiny").iterdir()
    assert [p.name for p in (run_dir / "training").iterdir()] == ["gru4rec.seed0.pt"]

    epochs.clear()
    monkeypatch.setattr(
        recommender,
        "epoch_values",
        lambda on_epoch, model, epoch: (
            epochs.append(epoch),
            real_epoch_values(on_epoch, model, epoch),
        )[1],
    )
    run(plan(RunOptions(dataset=""), resume=run_dir), command="test --resume")
    assert epochs == [3, 4]  # epochs 1 and 2 came from the training state
    assert not (run_dir / "training").exists()  # removed once the algorithm was done
    resumed = pd.read_csv(run_dir / "metrics.csv")
    pd.testing.assert_frame_equal(resumed[reference.columns], reference)
    history = pd.read_csv(run_dir / "history" / "gru4rec.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]


def test_resume_refuses_changed_data(tiny, tmp_path, monkeypatch):
    run_dir = run(plan(options(tmp_path, ["pop"])), command="test")
    other = tiny_dataset()
    other = Dataset(
        name="tiny",
        train=other.train.subset(np.arange(40)),
        test=other.test,
        item_ids=other.item_ids,
    )
    monkeypatch.setattr(runner, "load_dataset", lambda name, **kw: other)
    with pytest.raises(runner.ConfigError, match="data changed"):
        run(plan(RunOptions(dataset=""), resume=run_dir))


def test_seeds_repeat_only_stochastic_algorithms(tiny, tmp_path):
    opts = options(tmp_path, ["pop", "bpr-mf"])
    opts.seeds = 2
    run_dir = run(plan(opts), command="test")
    seeds = pd.read_csv(run_dir / "seeds.csv")
    assert sorted(seeds.query("algorithm == 'bpr-mf'")["seed"].unique()) == [0, 1]
    assert seeds.query("algorithm == 'pop'")["seed"].unique().tolist() == [0]


def test_bootstrap_intervals_do_not_depend_on_test_session_order(tmp_path, monkeypatch):
    """Regression: intervals resampled sessions in file order, so reordering the test file
    changed them. Sessions are now resampled in a canonical (content) order."""
    base = tiny_dataset()
    rng = np.random.default_rng(1)
    test = from_lists(
        [[int(a), int(b), int(c)] for a, b, c in rng.integers(0, 9, (30, 3))], n_items=9
    )
    cis = []
    for order in (np.arange(30), rng.permutation(30)):
        data = Dataset(
            name="tiny", train=base.train, test=test.subset(order), item_ids=base.item_ids
        )
        monkeypatch.setattr(runner, "load_dataset", lambda name, data=data, **kw: data)
        run_dir = run(plan(options(tmp_path / str(len(cis)), ["pop", "spop"])), command="test")
        metrics = pd.read_csv(run_dir / "metrics.csv")
        cis.append(metrics[["ci_low", "ci_high"]].to_numpy())
    np.testing.assert_allclose(cis[0], cis[1], rtol=1e-12)
    assert not np.allclose(cis[0][:, 0], cis[0][:, 1])  # real intervals, not points


def test_cutoff_curves_stay_at_k_1_to_20_for_a_large_cutoff(tmp_path, monkeypatch):
    """Regression: --cutoffs 100000 drew a curve over 100,000 K values (11 minutes, an
    unreadable plot). Cutoffs are capped at the number of items and the curves stay at 1..20."""
    rng = np.random.default_rng(0)
    train = from_lists([[int(a), int(b)] for a, b in rng.integers(0, 40, (200, 2))], n_items=40)
    test = from_lists(
        [[int(a), int(b), int(c)] for a, b, c in rng.integers(0, 40, (20, 3))], n_items=40
    )
    data = Dataset(name="tiny", train=train, test=test, item_ids=np.arange(40))
    monkeypatch.setattr(runner, "load_dataset", lambda name, **kw: data)
    opts = options(tmp_path, ["pop"])
    opts.cutoffs = [5, 40]
    run_dir = run(plan(opts), command="test")
    curves = pd.read_csv(run_dir / "curves.csv")
    assert sorted(curves["cutoff"].unique()) == list(range(1, 21))
    recall40 = pd.read_csv(run_dir / "metrics.csv").query("metric == 'recall' and cutoff == 40")
    assert recall40["value"].item() == 1.0  # every item is within the top 40 of 40 items
    opts.cutoffs = [5, 41]
    with pytest.raises(
        runner.ConfigError,
        match=r"--cutoffs 41: larger than the number of "
        r"training items \(40\)",
    ):
        run(plan(opts), command="test")


def test_the_recorded_command_is_shell_quoted(monkeypatch):
    """A path with spaces or quotes in the command of run.json / table.md could not be re-run."""
    import shlex
    import sys

    argv = ["run_benchmark.py", "--dataset", "my data/it's here", "--algorithms", "pop"]
    monkeypatch.setattr(sys, "argv", argv)
    assert shlex.split(runner.command_line())[1:] == argv
