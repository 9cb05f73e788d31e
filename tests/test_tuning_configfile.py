"""The config written from equal-budget studies (benchmark.tuning.configfile)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from benchmark.config import CONFIG_DIR, resolve, tuning_text
from benchmark.tuning.configfile import BudgetError, config_text, main
from benchmark.tuning.study import StudyInfo, open_storage, open_study

ROOT = Path(__file__).resolve().parents[1]


PARAM = {"item-knn": "reg_lambda", "bpr-mf": "regularization"}


def _study(folder: Path, algorithm: str, results: list[tuple[float | None, float]]) -> None:
    """A study of ``algorithm`` on dataset "toy": one trial per (MRR@20 or None if pruned, value
    of one hyperparameter), every complete trial with Recall@20 0.5."""
    study = open_study(
        open_storage(str(folder / "toy" / f"{algorithm}.journal")),
        f"toy/{algorithm}",
        StudyInfo(algorithm, "toy", "mrr@20", {}),
        seed=0,
    )
    dist = {PARAM[algorithm]: FloatDistribution(0, 100)}
    for mrr, value in results:
        config = {PARAM[algorithm]: value}
        if mrr is None:
            study.add_trial(
                create_trial(
                    state=TrialState.PRUNED,
                    params=config,
                    distributions=dist,
                    intermediate_values={1: 0.0},
                    user_attrs={"config": config},
                )
            )
        else:
            study.add_trial(
                create_trial(
                    state=TrialState.COMPLETE,
                    value=mrr,
                    params=config,
                    distributions=dist,
                    user_attrs={"config": config, "mrr@20": mrr, "recall@20": 0.5},
                )
            )


@pytest.fixture()
def spaces(tmp_path: Path) -> Path:
    """A search-space folder naming item-knn and bpr-mf as the tunable algorithms."""
    folder = tmp_path / "search"
    folder.mkdir()
    for name in ("item-knn", "bpr-mf"):
        (folder / f"{name}.toml").write_text("")
    return folder


def test_each_study_gives_its_best_trial_and_the_published_rows_stay(tmp_path, spaces):
    _study(tmp_path, "item-knn", [(0.2, 10.0), (0.3, 50.0), (None, 1.0)])
    _study(tmp_path, "bpr-mf", [(0.1, 0.5), (0.1, 0.25), (0.05, 2.0)])  # tie: the earlier wins
    text = config_text(tmp_path, "toy", 3, spaces)
    config = tomllib.loads(text)
    assert list(config) == ["item-knn", "item-knn-tuned", "bpr-mf", "gru4rec@rsc15-best-paramfile"]
    assert config["item-knn"] == {
        "n_sims": 100,
        "reg_lambda": 20.0,
        "alpha": 0.5,
        "counting": "session",
        "include_self": False,
        "tuning": "published",
    }
    journal = str(tmp_path / "toy" / "item-knn.journal")
    assert config["item-knn-tuned"] == {
        "algorithm": "item-knn",
        "reg_lambda": 50.0,
        "tuning": {"trials": 3, "objective": "mrr", "study": journal},
    }
    assert config["bpr-mf"]["regularization"] == 0.5
    assert (
        "(2 complete, 1 pruned; best: trial 1, validation MRR@20 0.3000, Recall@20 0.5000)" in text
    )
    specs = resolve(list(config), config)  # the runner takes it as it is
    assert [tuning_text(s.tuning) for s in specs] == [
        "published setting",
        "tuned: 3 trials, MRR@20",
        "tuned: 3 trials, MRR@20",
        "published setting",
    ]


def test_a_study_off_the_budget_or_missing_is_refused(tmp_path, spaces, capsys):
    _study(tmp_path, "item-knn", [(0.2, 10.0), (0.3, 50.0)])
    with pytest.raises(BudgetError, match="no study in .* for bpr-mf"):
        config_text(tmp_path, "toy", 2, spaces)
    _study(tmp_path, "bpr-mf", [(0.1, 0.5), (0.1, 0.25), (0.05, 2.0)])
    with pytest.raises(
        BudgetError,
        match=r"bpr-mf.journal: study 'toy/bpr-mf' holds 3 finished "
        r"trials, not the budget of 2 \(more than",
    ):
        config_text(tmp_path, "toy", 2, spaces)
    with pytest.raises(
        BudgetError,
        match=r"holds 2 finished trials, not the budget of 3 \("
        r"python -m benchmark.tune --dataset toy --algorithm "
        r"item-knn --trials 3 completes it\)",
    ):
        config_text(tmp_path, "toy", 3, spaces)
    assert main(["--dataset", "nothing", "--trials", "3", "--folder", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no study journal (*.journal) in ")
    assert main(["--dataset", "toy", "--trials", "0", "--folder", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --trials must be >= 1, got 0\n"


@pytest.mark.parametrize("dataset, trials", [("rsc15-64", 30), ("diginetica", 20)])
def test_the_committed_config_is_what_its_committed_studies_give(
    dataset, trials, monkeypatch, capsys
):
    monkeypatch.chdir(ROOT)  # the config records journal paths relative to the project
    assert main(["--dataset", dataset, "--trials", str(trials)]) == 0
    assert capsys.readouterr().out == (CONFIG_DIR / f"{dataset}.toml").read_text()
