"""Optuna studies: search spaces, known-answer searches, the study budget, dead workers, CLI."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import numpy as np
import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from algorithms.base import SessionRecommender, epoch_values
from algorithms.params import Float
from benchmark.config import ConfigError, resolve, tuning_text
from benchmark.registry import get_algorithm
from benchmark.tune import main
from benchmark.tuning.space import SEARCH_DIR, load_space, parse_space
from benchmark.tuning.study import (
    StudyInfo,
    counts,
    fail_dead_trials,
    open_storage,
    open_study,
    run_trials,
    trial_objective,
    worker_id,
)
from datasets.sessions import Dataset, from_lists

N_ITEMS = 30


class Dial(SessionRecommender):
    """Predicts the chain's next item, behind ``floor(10 |skill - 0.7|)`` decoys scored higher:
    MRR@20 is 1 exactly when 0.6 < skill < 0.8, and drops with the distance from 0.7."""

    name = "dial"
    hyperparameters = {"skill": Float(0, 1)}

    def __init__(self, skill: float = 0.0) -> None:
        self.skill = skill

    def fit(self, train, *, valid=None, on_epoch=None, resume_file=None):
        self.n_items_ = train.n_items
        for epoch in (1, 2):
            epoch_values(on_epoch, self, epoch)
        return self

    def init_state(self, n_slots):
        return None

    def step(self, state, items, reset):
        scores = np.zeros((len(items), self.n_items_))
        nxt = (items + 1) % self.n_items_
        scores[np.arange(len(items)), nxt] = 1.0
        for k in range(int(10 * abs(self.skill - 0.7))):
            scores[np.arange(len(items)), (nxt + 1 + k) % self.n_items_] = 2.0
        return scores


def _chains(n, length):
    return from_lists([[(s + k) % N_ITEMS for k in range(length)] for s in range(n)], N_ITEMS)


@pytest.fixture
def dataset() -> Dataset:
    # No train or test split: a trial that touched them would fail.
    return Dataset(
        name="toy",
        train=None,
        test=None,
        item_ids=np.arange(N_ITEMS),
        valid_train=_chains(30, 5),
        valid_test=_chains(30, 4),
    )


DIAL_SPACE = {"params": {"skill": {"float": [0.0, 1.0]}}}


def _dial_study(tmp_path, name="dial", seed=0):
    space = parse_space("dial", DIAL_SPACE, Dial.param_specs(), "dial.toml")
    storage = open_storage(str(tmp_path / "dial.journal"))
    info = StudyInfo("dial", "toy", "mrr@20", space.describe())
    return space, open_study(storage, name, info, seed=seed, prune=False)


def test_a_one_parameter_search_finds_the_known_best_value(tmp_path, dataset):
    space, study = _dial_study(tmp_path)
    run_trials(study, trial_objective(Dial, space, dataset), 20)
    assert 0.6 < study.best_params["skill"] < 0.8
    assert study.best_value == pytest.approx(1.0)
    assert len(study.trials) == 20  # nothing else was recorded


def test_opening_an_existing_study_leaves_its_journal_unchanged(tmp_path, dataset):
    space, study = _dial_study(tmp_path)
    run_trials(study, trial_objective(Dial, space, dataset), 2)
    before = (tmp_path / "dial.journal").read_bytes()
    _, again = _dial_study(tmp_path)  # what --plot-only and every later worker do
    assert len(again.trials) == 2
    assert (tmp_path / "dial.journal").read_bytes() == before


def test_trials_is_the_study_total_so_a_second_run_adds_nothing(tmp_path, dataset):
    space, study = _dial_study(tmp_path)
    objective = trial_objective(Dial, space, dataset)
    run_trials(study, objective, 3)
    run_trials(study, objective, 3)
    assert counts(study)["complete"] == 3
    _, reopened = _dial_study(tmp_path)  # resumes from the journal file
    run_trials(reopened, objective, 5)
    assert counts(reopened)["complete"] == 5


def test_a_seeded_study_is_reproducible_and_workers_draw_apart(tmp_path, dataset):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    space, a = _dial_study(a_dir, seed=3)
    _, b = _dial_study(b_dir, seed=3)
    for study in (a, b):
        run_trials(study, trial_objective(Dial, space, dataset), 4)
    drawn = [t.params["skill"] for t in a.trials]
    assert drawn == [t.params["skill"] for t in b.trials]
    assert len(set(drawn)) == 4  # the random draws differ by trial number


def _orphan(study: optuna.Study) -> optuna.Trial:
    """A RUNNING trial whose worker (a finished process of this host) is gone."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = study.ask({"skill": optuna.distributions.FloatDistribution(0.0, 1.0)})
    orphan.set_user_attr("worker", {**worker_id(), "pid": int(dead.stdout), "start": None})
    return orphan


def test_a_running_trial_of_a_dead_worker_is_failed_and_retried_once(tmp_path, dataset):
    space, study = _dial_study(tmp_path)
    _orphan(study)
    run_trials(study, trial_objective(Dial, space, dataset), 3)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 1 and study.trials[0].state == TrialState.FAIL
    assert counts(study)["complete"] == 3
    retried = [
        t for t in study.trials if t.system_attrs.get("failed_trial") == study.trials[0].number
    ]
    assert len(retried) == 1 and retried[0].params == study.trials[0].params


def test_a_dead_workers_retry_is_given_up_not_queued_a_third_time(tmp_path, caplog):
    _, study = _dial_study(tmp_path)
    retry = _orphan(study)
    study._storage.set_trial_system_attr(retry._trial_id, "retry_history", [7])
    with caplog.at_level("WARNING", logger="benchmark.tuning.study"):
        fail_dead_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # nothing queued
    assert "marked FAIL and given up (already retried 1 time(s))" in caplog.text


def test_pruning_stops_a_hopeless_trial_from_its_epoch_reports(tmp_path, dataset):
    space = parse_space("dial", DIAL_SPACE, Dial.param_specs(), "dial.toml")
    storage = open_storage(str(tmp_path / "p.journal"))
    study = open_study(storage, "p", StudyInfo("dial", "toy", "mrr@20", space.describe()), seed=0)
    for skill in (0.7, 0.71, 0.69, 0.72, 0.68, 0.0):
        study.enqueue_trial({"skill": skill})
    run_trials(study, trial_objective(Dial, space, dataset), 6)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5 + [TrialState.PRUNED]
    assert list(study.trials[-1].intermediate_values) == [1]  # stopped after its first report


def test_a_study_refuses_another_objective(tmp_path):
    space, _ = _dial_study(tmp_path)
    storage = open_storage(str(tmp_path / "dial.journal"))
    with pytest.raises(ValueError, match="objective 'mrr@20'"):
        open_study(storage, "dial", StudyInfo("dial", "toy", "recall@20", space.describe()), seed=0)


# ------------------------------------------------------------------ search space files
@pytest.mark.parametrize("path", sorted(SEARCH_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_search_spaces_fit_their_algorithms(path):
    from benchmark.registry import ALGORITHMS

    if path.stem not in ALGORITHMS:
        pytest.skip(f"{path.stem} is not registered on this branch")
    space = load_space(path.stem, get_algorithm(path.stem).param_specs(), path)
    assert space.dimensions


def test_conditional_parameters_follow_the_loss():
    space = load_space("gru4rec", get_algorithm("gru4rec").param_specs())
    common = {
        "layers": "[100]",
        "batch_size": 32,
        "learning_rate": 0.1,
        "momentum": 0.0,
        "dropout_embed": 0.0,
        "dropout_hidden": 0.0,
        "n_sample": 0,
        "sample_alpha": 0.5,
    }
    xe = space.suggest(FixedTrial({**common, "loss": "cross-entropy", "logq": 0.5}))
    assert xe["logq"] == 0.5 and "bpreg" not in xe and "final_act" not in xe
    assert xe["layers"] == [100]  # a list choice is drawn by its TOML text
    bpr = space.suggest(
        FixedTrial({**common, "loss": "bpr-max", "bpreg": 1.0, "final_act": "elu-1"})
    )
    assert bpr["logq"] == 0.0 and bpr["bpreg"] == 1.0  # `otherwise`: logq is for cross-entropy
    get_algorithm("gru4rec")(**bpr).validate()


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"alpha": {"float": [0.0, 2.0]}},
            r"alpha bound = 2\.0: must be a finite number >= 0 and <= 1",
        ),
        ({"n_sims": {"int": [0, 10]}}, r"n_sims bound = 0: must be an integer >= 1"),
        (
            {"counting": {"choice": ["session", "sessions"]}},
            r'counting = "sessions": must be one of',
        ),
        ({"alpha": {"float": [0.5, 0.1]}}, r"low < high"),
        ({"alpha": {"float": [0.1, 0.5], "logg": True}}, r"unknown key\(s\) logg"),
        ({"alpha": {"float": [0.1, 0.5], "when": {"counting": "event"}}}, r"must name earlier"),
        ({"lambda_": {"float": [0.1, 0.5]}}, r"lambda_: no such hyperparameter"),
        ({"reg_lambda": {"float": [0.0, 1.0], "log": True}}, r"log range needs low > 0"),
    ],
)
def test_a_bad_search_space_is_refused_naming_file_and_key(params, message):
    with pytest.raises(ConfigError, match=message) as exc:
        parse_space(
            "item-knn",
            {"params": params},
            get_algorithm("item-knn").param_specs(),
            "configs/search/item-knn.toml",
        )
    assert "configs/search/item-knn.toml" in str(exc.value)


# ------------------------------------------------------------------ the command line
def test_the_command_prints_a_loadable_best_table_and_draws_the_study(tmp_path, capsys):
    journal = tmp_path / "synthetic" / "item-knn.journal"
    args = [
        "--dataset",
        "synthetic",
        "--algorithm",
        "item-knn",
        "--trials",
        "2",
        "--storage",
        str(journal),
        "--set",
        'counting="event"',
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    best = tomllib.loads(out)["item-knn"]
    assert best["counting"] == "event" and set(best) == {
        "counting",
        "n_sims",
        "reg_lambda",
        "alpha",
        "include_self",
        "tuning",
    }
    assert best["tuning"] == {"trials": 2, "objective": "mrr", "study": str(journal)}
    [spec] = resolve(["item-knn"], tomllib.loads(out))  # pasted into a config, it is valid
    assert tuning_text(spec.tuning) == "tuned: 2 trials, MRR@20"
    assert "2 complete" in out and (tmp_path / "synthetic" / "item-knn.png").stat().st_size > 0
    assert main(args) == 0  # the budget is met: no new trial
    assert "2 complete, 0 pruned, 0 failed" in capsys.readouterr().out
    (tmp_path / "synthetic" / "item-knn.png").unlink()
    assert main([*args[:4], "--plot-only", *args[6:]]) == 0
    assert (tmp_path / "synthetic" / "item-knn.png").is_file()


def test_fail_running_frees_the_trials_of_workers_on_another_machine(tmp_path, capsys):
    journal = tmp_path / "synthetic" / "item-knn.journal"
    args = ["--dataset", "synthetic", "--algorithm", "item-knn", "--storage", str(journal)]
    assert main([*args, "--trials", "1"]) == 0
    study = optuna.load_study(study_name="synthetic/item-knn", storage=open_storage(str(journal)))
    away = study.ask({"alpha": optuna.distributions.FloatDistribution(0.0, 1.0)})
    away.set_user_attr("worker", {"host": "another-machine", "pid": 1, "start": None})
    assert fail_dead_trials(study) == []  # this host cannot tell whether it is alive
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.RUNNING]
    capsys.readouterr()
    assert main([*args, "--fail-running"]) == 0
    assert "# marked FAIL: 1\n" in capsys.readouterr().out
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == trials[1].params  # queued again with its setting
    assert trials[2].system_attrs["failed_trial"] == 1
    assert main([*args, "--fail-running"]) == 0
    assert "# marked FAIL: no running trial" in capsys.readouterr().out


def test_the_command_refuses_a_bad_value_before_loading_data(tmp_path, capsys):
    assert (
        main(
            [
                "--dataset",
                "rsc15",
                "--algorithm",
                "item-knn",
                "--trials",
                "3",
                "--clicks",
                str(tmp_path / "none.dat"),
                "--set",
                "n_sims=0",
                "--storage",
                str(tmp_path / "s.journal"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err == "error: n_sims = 0: must be an integer >= 1\n"
    assert not (tmp_path / "s.journal").exists()
    assert (
        main(
            [
                "--dataset",
                "rsc15",
                "--algorithm",
                "item-knn",
                "--trials",
                "3",
                "--clicks",
                str(tmp_path / "none.dat"),
                "--seed",
                "-1",
                "--storage",
                str(tmp_path / "s.journal"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err == "error: --seed must be >= 0, got -1\n"  # before the data


def test_summary_lists_every_journal_with_its_budget_and_best_trial(tmp_path, capsys):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from benchmark.tuning.summary import collect
    from benchmark.tuning.summary import main as summary_main

    journal = tmp_path / "toy" / "dial.journal"
    study = open_study(
        open_storage(str(journal)), "toy/dial", StudyInfo("dial", "toy", "mrr@20", {}), seed=0
    )
    dist = {"skill": FloatDistribution(0, 1)}
    for skill, mrr, state in (
        (0.1, 0.25, TrialState.COMPLETE),
        (0.7, 1.0, TrialState.COMPLETE),
        (0.3, 0.5, TrialState.COMPLETE),
        (0.9, None, TrialState.FAIL),
    ):
        study.add_trial(
            create_trial(
                state=state,
                value=mrr,
                params={"skill": skill},
                distributions=dist,
                user_attrs={"config": {"skill": skill}, "mrr@20": mrr, "recall@20": 1.0}
                if mrr is not None
                else {},
            )
        )
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"skill": 0.0},
            distributions=dist,
            intermediate_values={1: 0.1},
        )
    )
    [line] = collect(tmp_path)
    assert (line.dataset, line.algorithm, line.study) == ("toy", "dial", "toy/dial")
    assert (line.complete, line.pruned, line.failed, line.running) == (3, 1, 1, 0)
    assert (line.finished, line.best_trial, line.mrr) == (4, 1, 1.0)
    assert summary_main([str(tmp_path), "--budget", "toy=30"]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "toy",
        "dial",
        "4 / 30",
        "3",
        "1",
        "1",
        "0",
        "1",
        "1.0000",
        "1.0000",
    ]
    for bad in ("toy", "toy=0"):
        assert summary_main([str(tmp_path), "--budget", bad]) == 2
        assert f"--budget '{bad}': expected DATASET=N with N >= 1" in capsys.readouterr().err
