"""The validation grid search (--grid): grid parsing, selection, and that the test set is never used."""

import json

import numpy as np
import pytest

from benchmark.tune import main
from benchmark.tuning.cli import toml_table
from benchmark.tuning.grid import expand, grid_search, parse_grid
from datasets.sessions import Dataset, from_lists

N_ITEMS = 12


def _chains(starts, length=4):
    return from_lists([[(s + k) % N_ITEMS for k in range(length)] for s in starts], N_ITEMS)


@pytest.fixture
def dataset() -> Dataset:
    # No train or test split at all: tuning that touched them would fail.
    return Dataset(
        name="toy",
        train=None,
        test=None,
        item_ids=np.arange(N_ITEMS),
        valid_train=_chains(range(0, 12), length=6),
        valid_test=_chains(range(12)),
    )


def test_parse_grid_reads_toml_literals():
    grid = parse_grid("reg_lambda=0,20.5 include_self=false,true counting=session,event")
    assert grid == {
        "reg_lambda": [0, 20.5],
        "include_self": [False, True],
        "counting": ["session", "event"],
    }
    assert len(expand(grid)) == 8


@pytest.mark.parametrize("spec", ["reg_lambda", "=1", "n_sims=", "a=1 a=2"])
def test_malformed_grid_terms_are_errors(spec):
    with pytest.raises(ValueError):
        parse_grid(spec)


def test_unknown_hyperparameter_is_named(dataset):
    with pytest.raises(ValueError, match="lambda_"):
        grid_search("item-knn", dataset, {"lambda_": [1]})


def test_tune_scores_every_setting_on_validation_and_picks_the_best(dataset):
    # On chains every target ranks within 12 items (Recall@20 = 1 either way), but with
    # self-similarity the last item itself competes with the true next one: MRR@20 decides.
    result = grid_search("item-knn", dataset, {"include_self": [True, False]}, fixed={"n_sims": 5})
    assert len(result.table) == 2
    assert result.table["recall@20"].notna().all()
    by_setting = result.table.set_index("include_self")["mrr@20"]
    assert by_setting[False] > by_setting[True]
    assert result.best == {"n_sims": 5, "include_self": False}


def test_best_setting_keeps_integer_hyperparameters_integers(dataset):
    result = grid_search("item-knn", dataset, {"n_sims": [5, 10], "reg_lambda": [0.5]})
    assert type(result.best["n_sims"]) is int
    assert type(result.best["reg_lambda"]) is float


def test_toml_table_is_loadable():
    import tomllib

    text = toml_table(
        "item-knn", {"reg_lambda": 20.0, "n_sims": 100, "counting": "session", "include_self": True}
    )
    assert tomllib.loads(text) == {
        "item-knn": {"reg_lambda": 20.0, "n_sims": 100, "counting": "session", "include_self": True}
    }
    text = toml_table("gru4rec@rsc15-best-paramfile", {}, "published")
    assert text == '["gru4rec@rsc15-best-paramfile"]\ntuning = "published"'
    assert tomllib.loads(text) == {"gru4rec@rsc15-best-paramfile": {"tuning": "published"}}
    text = toml_table("knn-é", {}, "published")  # a bare TOML key is ASCII only
    assert text == '["knn-\\u00e9"]\ntuning = "published"'
    assert tomllib.loads(text) == {"knn-é": {"tuning": "published"}}
    text = toml_table("sr", {"steps": 10}, {"trials": 30, "objective": "mrr"})
    assert text == '[sr]\nsteps = 10\ntuning = { trials = 30, objective = "mrr" }'


def test_missing_clicks_file_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    missing = tmp_path / "nowhere.dat"
    assert (
        main(
            [
                "--dataset",
                "rsc15",
                "--algorithm",
                "item-knn",
                "--clicks",
                str(missing),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--trials",
                "1",
                "--storage",
                str(tmp_path / "s.journal"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "s.journal").exists()  # no study is created before the data loads
    message = capsys.readouterr().err
    assert message.startswith("error: ") and str(missing) in message


def test_epoch_curve_records_validation_recall_after_every_epoch():
    # 40 items and random validation sessions, so Recall@20 is not 1 however well the chains
    # are learned; the last epoch's validation value is the final evaluation of the same model
    # on the same split.
    chains = [[(s + k) % 40 for k in range(5)] for s in range(40)]
    noise = np.random.default_rng(0).integers(0, 40, size=(15, 5)).tolist()
    data = Dataset(
        name="toy40",
        train=None,
        test=None,
        item_ids=np.arange(40),
        valid_train=from_lists(chains, 40),
        valid_test=from_lists(noise, 40),
    )
    fixed = {
        "layers": [8],
        "n_sample": 0,
        "batch_size": 4,
        "n_epochs": 3,
        "device": "cpu",
        "logq": 0.0,
    }
    result = grid_search("gru4rec", data, {"learning_rate": [0.05]}, fixed=fixed, epoch_curve=True)
    [row] = result.table.to_dict("records")
    values = [float(v) for v in row["recall@20_by_epoch"].split()]
    assert len(values) == 3
    assert values[-1] == round(row["recall@20"], 4) < 1.0


def test_preset_values_are_the_starting_point_and_set_overrides_them(tmp_path):
    out = tmp_path / "search.json"
    main(
        [
            "--dataset",
            "synthetic",
            "--algorithm",
            "gru4rec",
            "--preset",
            "2016-top1-100",
            "--set",
            'n_epochs=1 n_sample=0 batch_size=64 device="cpu"',
            "--grid",
            "learning_rate=0.05",
            "--out",
            str(out),
        ]
    )
    [row] = json.loads(out.read_text())
    assert (row["loss"], row["layers"], row["n_epochs"], row["n_sample"]) == (
        "top1",
        [100],
        1,
        0,
    )  # the preset's loss and size, --set's epochs and samples


def test_unknown_preset_is_a_clear_error(tmp_path, capsys):
    assert (
        main(
            [
                "--dataset",
                "rsc15",
                "--algorithm",
                "gru4rec",
                "--preset",
                "no-such-preset",
                "--grid",
                "n_epochs=1",
                "--clicks",
                str(tmp_path / "x.dat"),
            ]
        )
        == 2
    )
    assert "unknown preset 'no-such-preset'" in capsys.readouterr().err


def _refuse_loading(monkeypatch):
    import benchmark.tuning.cli as cli

    def refuse(args):
        raise AssertionError("data was loaded before the option was checked")

    monkeypatch.setattr(cli, "_load", refuse)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--grid", "n_sims=5", "--out", "{tmp}/g.xlsx"], "the table is written as .csv or .json"),
        (["--grid", "n_sims=5", "--out", "{tmp}"], "is a folder"),
        (
            ["--grid", "n_sims=5", "--out", "{tmp}/file.txt/g.csv"],
            "file.txt is a file, not a folder",
        ),
        (["--grid", ""], "--grid '': give at least one term"),
        (["--grid", "n_sims"], "--grid: term 'n_sims' must look like name=v1,v2,..."),
        (["--grid", "n_sims=5", "--set", "alpha"], "--set: term 'alpha' must look like name=value"),
        (["--trials", "2", "--out", "{tmp}/s.csv"], "--out: only with --grid"),
        (["--trials", "2", "--epoch-curve"], "--epoch-curve: only with --grid"),
    ],
    ids=[
        "extension",
        "folder",
        "parent-is-a-file",
        "empty-grid",
        "grid-term",
        "set-term",
        "out-without-grid",
        "curve-without-grid",
    ],
)
def test_tune_options_are_checked_before_the_data_loads(
    tmp_path, capsys, monkeypatch, extra, fragment
):
    """--out used to fail only when the table was written, after the whole grid had trained."""
    _refuse_loading(monkeypatch)
    (tmp_path / "file.txt").write_text("x")
    argv = ["--dataset", "synthetic", "--algorithm", "item-knn"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
