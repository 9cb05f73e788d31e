"""Two worker processes share one study; one is killed mid-trial (SIGKILL).

The study must end with exactly the budget of finished trials (not the budget per worker), the
killed trial must be FAIL (and retried once), and no trial may be recorded twice. Here on a journal
file (workers on one machine); ``test_tuning_postgres.py`` runs the same on a PostgreSQL server.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from benchmark.tuning.study import open_storage

REPO_ROOT = Path(__file__).resolve().parents[1]
BUDGET = 4
SPACE = """
[fixed]
layers = [16]
n_epochs = 15
n_sample = 0
logq = 0.0
batch_size = 16
device = "cpu"
n_threads = 1

[params]
learning_rate = { float = [0.01, 0.3], log = true }
dropout_hidden = { float = [0.0, 0.5] }

[tuning]
report_every = 0
"""


def _tiny_data(root: Path) -> Path:
    """An SR-GNN-style folder: chains over 40 items; a GRU4Rec trial on it takes 5 s or more."""
    rng = np.random.default_rng(0)
    train = [[int((a + k) % 40) for k in range(5)] for a in rng.integers(0, 40, 1200)]
    test = [[1, 2, 3], [4, 5, 6]]
    labels = [s[-1] for s in test]
    root.mkdir(parents=True)
    (root / "all_train_seq.txt").write_bytes(pickle.dumps(train))
    (root / "test.txt").write_bytes(pickle.dumps(([s[:-1] for s in test], labels)))
    return root


def kill_one_of_two_workers(
    storage: str, tmp_path: Path, heartbeat: int = 60, study_name: str = "shared"
) -> None:
    data = _tiny_data(tmp_path / "chains")
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    cmd = [
        sys.executable,
        "-m",
        "benchmark.tune",
        "--dataset",
        str(data),
        "--algorithm",
        "gru4rec",
        "--trials",
        str(BUDGET),
        "--storage",
        storage,
        "--study",
        study_name,
        "--space",
        str(space),
        "--no-prune",
        "--heartbeat",
        str(heartbeat),
    ]
    # Run from tmp_path (pictures go there), with this checkout first on the path.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    logs = [open(tmp_path / f"worker{k}.log", "w") for k in (0, 1)]
    workers = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]
    victim, survivor = workers
    try:
        study = _wait_for_study(storage, study_name)
        deadline = time.monotonic() + 120
        # Kill within a second of the start of one of the victim's trials, once its setting is
        # drawn (trials last seconds): the kill lands mid-fit, not between two trials, and the
        # retry has a setting to repeat.
        while not any(
            t.user_attrs.get("worker", {}).get("pid") == victim.pid
            and t.params
            and (datetime.now() - t.datetime_start).total_seconds() < 1.0
            for t in study.get_trials(states=(TrialState.RUNNING,))
        ):
            assert victim.poll() is None, (tmp_path / "worker0.log").read_text()
            assert time.monotonic() < deadline, "the first worker never started a trial"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert survivor.wait(timeout=240) == 0, (tmp_path / "worker1.log").read_text()
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for log in logs:
            log.close()
    trials = _wait_for_study(storage, study_name).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    log_text = (tmp_path / "worker1.log").read_text()
    assert len(finished) == BUDGET, log_text  # the study's total, not per worker
    assert not any(t.state == TrialState.RUNNING for t in trials)
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    settings = [json.dumps(t.params, sort_keys=True) for t in finished]
    assert len(set(settings)) == len(settings), settings  # no setting counted twice
    killed = [
        t
        for t in trials
        if t.user_attrs["worker"]["pid"] == victim.pid and t.state != TrialState.COMPLETE
    ]
    assert [t.state for t in killed] == [TrialState.FAIL]
    retried = [t for t in finished if t.system_attrs.get("failed_trial") == killed[0].number]
    assert [t.params for t in retried] == [killed[0].params]


def _wait_for_study(storage: str, name: str) -> optuna.Study:
    deadline = time.monotonic() + 120
    while True:
        try:
            return optuna.load_study(study_name=name, storage=open_storage(storage))
        except KeyError:  # not created yet
            assert time.monotonic() < deadline, "no worker created the study"
            time.sleep(0.2)


# Not in the default run: a worker killed while it holds the journal file's lock leaves the lock
# to expire (Optuna's 30 s grace period), and in 1 of 13 local runs the survivor then failed. The
# PostgreSQL variant (test_tuning_postgres.py, run by .ci/run) has no such lock.
@pytest.mark.slow
def test_two_workers_on_one_journal_file_share_the_budget_and_survive_a_kill(tmp_path):
    kill_one_of_two_workers(str(tmp_path / "study.journal"), tmp_path)
