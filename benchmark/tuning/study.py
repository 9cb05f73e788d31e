"""Optuna studies on the validation split: storage, sampler, objective, and the trial budget.

Every trial fits on ``Dataset.valid_train`` and is scored on ``Dataset.valid_test`` (MRR@20 by
default, Recall@20 on request); the test split is never read. Iterative models report their
validation value every ``report_every`` epochs through the model's ``on_epoch`` callback, and a
median pruner stops the hopeless ones.

The budget is the study's total: :func:`run_trials` adds trials until the study holds
``n_trials`` finished ones (COMPLETE or PRUNED), however many workers share the storage. Trials
are numbered by the storage; a worker that finds ``n_trials`` live trials numbered before its own
gives its trial up (recorded FAIL with the user attribute ``surplus``), so concurrent workers
never overshoot. A worker killed mid-trial leaves a RUNNING trial: on an RDB storage Optuna's
heartbeat fails it once it goes stale; on a journal file (one machine) a worker whose process
is gone is detected by its process id. Either way the trial becomes FAIL and its parameters are
queued again once (``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from algorithms.base import SessionRecommender
from benchmark.config import ConfigError
from benchmark.errors import describe, writable_target
from benchmark.evaluator import DEFAULT_TIE_MODE, evaluate
from benchmark.metrics import mrr_at, recall_at
from benchmark.registry import ALGORITHMS, get_algorithm
from benchmark.tuning.space import SearchSpace
from datasets.sessions import Dataset, Sessions

log = logging.getLogger(__name__)

CUTOFF = 20
OBJECTIVES = {"mrr": f"mrr@{CUTOFF}", "recall": f"recall@{CUTOFF}"}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_RETRY = 1
"""A trial whose worker died is run once more with the same parameters, then given up."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning: heartbeats and retries are what this module is for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _retry() -> RetryHeartbeatStaleTrialCallback:
    with _quiet():
        return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


class SurplusTrial(Exception):
    """The study already had its budget of live trials when this one was created."""


def is_url(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str, heartbeat: int = 60) -> optuna.storages.BaseStorage:
    """An RDB storage for a URL (heartbeat every ``heartbeat`` s, stale after twice that),
    else a journal file at that path (created with its folder).

    Checked first (:func:`check_storage`), so a bad URL or path is a :class:`ConfigError`
    naming it, and a journal that cannot be read is never written to."""
    check_storage(storage)
    if is_url(storage):
        try:
            with _quiet():
                return RDBStorage(
                    storage, heartbeat_interval=heartbeat, heartbeat_stale_trial_callback=_retry()
                )
        except ImportError as e:  # Optuna wraps the driver's ModuleNotFoundError
            driver = getattr(e.__cause__ or e.__context__ or e, "name", None) or "its driver"
            raise ConfigError(
                f"--storage {shown_url(storage)}: the database driver for this URL ({driver}) "
                "is not installed here; install it or use a journal file"
            ) from None
        except Exception as e:
            message = describe(e)
            if message is None:
                raise
            raise ConfigError(f"--storage {shown_url(storage)}: {message}") from None
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


URL_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
"""Database kinds an Optuna RDB storage can use (SQLAlchemy dialects, ``kind+driver://``)."""


def shown_url(url: str) -> str:
    """The URL with its password hidden, as error messages show it."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse: show the scheme only
        return url.split("://", 1)[0] + "://..."


def check_storage(storage: str) -> None:
    """Refuse a storage that cannot work, before any data is read, creating nothing:
    an empty value, an unknown URL scheme, a missing driver, a journal path that cannot be
    created or written, a journal that exists but is damaged (never appended to)."""
    if not storage.strip():
        raise ConfigError(
            "--storage '': give a journal file path or a database URL "
            "(leave the option out for the default journal)"
        )
    if is_url(storage):
        kind = storage.split("://", 1)[0].split("+", 1)[0].lower()
        if kind not in URL_SCHEMES:
            raise ConfigError(
                f"--storage {shown_url(storage)}: unknown database kind {kind!r}; "
                f"a URL starts with {', '.join(s + '://' for s in URL_SCHEMES)}, "
                "anything else is a journal file path"
            )
        return
    path = Path(storage)
    writable_target(path, "--storage")
    if path.is_file():
        check_journal(path)


def check_journal(path: Path) -> None:
    """A journal file is one JSON object per line, each line ended: refuse one that is not."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # or a worker is writing its line right now
        time.sleep(0.5)
        data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        line = data.count(b"\n") + 1
        raise ConfigError(
            f"--storage {path}: line {line}, the last, is cut short (the file was truncated); "
            "it was left as it is: restore it (e.g. git checkout) or delete that line"
        )
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"--storage {path}: line {number} is not a journal record ({e}); the file was "
                "left as it is: restore it (e.g. git checkout) or remove that line"
            ) from None
        if not isinstance(record, dict) or "op_code" not in record:
            raise ConfigError(
                f"--storage {path}: line {number} is not an Optuna journal record; "
                "is this the right file?"
            )


class TrialSeededTPE(optuna.samplers.TPESampler):
    """TPE whose random draws in trial k come from ``(seed, k)``.

    A plain seeded sampler in every worker would draw the same random start-up settings in each
    of them; seeding by the (storage-unique) trial number keeps workers apart and still makes a
    one-worker study reproducible from its seed.
    """

    def __init__(self, seed: int, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = int(np.random.SeedSequence([self._base_seed, trial.number]).generate_state(1)[0])
        # Optuna keeps no public way to reseed with a given value; these are its two streams.
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)
        super().before_trial(study, trial)


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    # constant_liar: running trials count as bad, so parallel workers spread out.
    with _quiet():  # multivariate and group: conditional parameters are sampled jointly
        return TrialSeededTPE(
            seed, n_startup_trials=10, constant_liar=True, multivariate=True, group=True
        )


def make_pruner(enabled: bool) -> optuna.pruners.BasePruner:
    if not enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


@dataclass(frozen=True)
class StudyInfo:
    """What a study is about, stored in it and checked on every resume."""

    algorithm: str
    dataset: str
    objective: str
    space: dict[str, Any]

    def attrs(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "dataset": self.dataset,
            "objective": self.objective,
            "space": json.dumps(self.space, sort_keys=True),
        }


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    info: StudyInfo,
    *,
    seed: int,
    prune: bool = True,
) -> optuna.Study:
    """Create the study, or load it and refuse it if it searches something else. An existing
    study is loaded, not created again: on a journal file a create writes a record even when the
    study exists, and drawing a committed study must leave its journal as it was."""
    try:
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=make_sampler(seed), pruner=make_pruner(prune)
        )
    except KeyError:  # not there yet (another worker may create it meanwhile: load_if_exists)
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            sampler=make_sampler(seed),
            pruner=make_pruner(prune),
            load_if_exists=True,
        )
    held = study.user_attrs
    for key, value in info.attrs().items():
        if key not in held:
            study.set_user_attr(key, value)
        elif held[key] != value and not (
            key == "space" and migrated_space(held[key], info.algorithm) == value
        ):
            shown = (
                _space_difference(held[key], value) if key == "space" else f"{key} {held[key]!r}"
            )
            raise ValueError(
                f"study {name!r} holds trials for {shown}: use another --study name or --storage"
            )
    return study


def _space_difference(held: str, wanted: str) -> str:
    """Which keys of two search spaces (JSON) differ, shortly: ``x = 1 there, 2 here``."""

    def flat(space: dict[str, Any]) -> dict[str, Any]:  # {"fixed": {"x": 1}} -> {"fixed x": 1}
        return {
            f"{top} {key}": value
            for top, part in space.items()
            for key, value in (part.items() if isinstance(part, dict) else [("", part)])
        }

    a, b = flat(json.loads(held)), flat(json.loads(wanted))
    parts = [
        f"{key.strip()}: {json.dumps(a.get(key, '(none)'))} in the study, "
        f"{json.dumps(b.get(key, '(none)'))} now"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]
    return "another search space (" + "; ".join(parts) + ")"


def validation_scores(
    model: SessionRecommender, valid: Sessions, tie_mode: str = DEFAULT_TIE_MODE
) -> dict[str, float]:
    ranks = evaluate(model, valid, tie_mode=tie_mode, progress=False).rank
    return {
        OBJECTIVES["mrr"]: mrr_at(ranks, CUTOFF),
        OBJECTIVES["recall"]: recall_at(ranks, CUTOFF),
    }


def epoch_reporter(
    valid: Sessions,
    every: int,
    tie_mode: str,
    trial: optuna.Trial | None = None,
    objective: str = "mrr",
) -> Callable[[SessionRecommender, int], dict[str, float]]:
    """An ``on_epoch`` callback scoring the validation split every ``every`` epochs; with a trial,
    it reports the objective and raises ``optuna.TrialPruned`` when the pruner says so."""

    def on_epoch(model: SessionRecommender, epoch: int) -> dict[str, float]:
        if every <= 0 or epoch % every:
            return {}
        scores = validation_scores(model, valid, tie_mode)
        if trial is not None:
            trial.report(scores[OBJECTIVES[objective]], epoch)
            if trial.should_prune():
                log.info("trial %d pruned after epoch %d", trial.number, epoch)
                raise optuna.TrialPruned()
        return {f"valid_{k.replace('@', '')}": v for k, v in scores.items()}

    return on_epoch


def worker_id() -> dict[str, Any]:
    """This process: host, pid and (on Linux) its start time, which a reused pid does not share."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks


def _worker_alive(worker: dict[str, Any]) -> bool:
    if worker.get("host") != socket.gethostname():
        return True  # another machine's: only a heartbeat can tell
    try:
        os.kill(worker["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return worker.get("start") is None or _start_time(worker["pid"]) == worker["start"]


def fail_dead_trials(study: optuna.Study, *, every_running: bool = False) -> list[int]:
    """FAIL (and queue again) the RUNNING trials whose worker is gone; the numbers of the trials
    failed. With ``every_running``, every RUNNING trial is taken for dead: for a journal file
    moved to another machine (or a host renamed), whose workers this host cannot see, once the
    caller knows that no worker is left."""
    with _quiet():
        optuna.storages.fail_stale_trials(study)  # heartbeat storages only; a no-op otherwise
    storage = study._storage
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not every_running and (worker is None or _worker_alive(worker)):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        retries = len(trial.system_attrs.get("retry_history", []))
        who = (
            "its worker was declared gone"
            if worker is None or every_running
            else f"its worker (pid {worker['pid']}) is gone"
        )
        log.warning(
            "trial %d: %s; marked FAIL and %s",
            trial.number,
            who,
            "queued again"
            if retries < MAX_RETRY
            else f"given up (already retried {retries} time(s))",
        )
        _retry()(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed


def journal_studies(path: Path) -> list[optuna.Study]:
    """Every study held in the journal file ``path`` (read, never written)."""
    storage = open_storage(str(path))
    return [
        optuna.load_study(study_name=summary.study_name, storage=storage)
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    *,
    poll_s: float = 5.0,
) -> None:
    """Run trials until the study holds ``n_trials`` finished ones (all workers together).

    While the remaining budget is taken by other workers' running trials, wait: one of them may
    die, and its trial then needs a worker.
    """
    waiting_logged = False
    while True:
        fail_dead_trials(study)
        c = counts(study)
        done = c["complete"] + c["pruned"]
        if done >= n_trials:
            log.info(
                "study %r holds %d finished trials (budget %d)", study.study_name, done, n_trials
            )
            return
        if done + c["running"] >= n_trials:
            if not waiting_logged:
                log.info("%d finished, %d running elsewhere: waiting for them", done, c["running"])
                waiting_logged = True
            time.sleep(poll_s)
            continue
        waiting_logged = False

        def claimed(trial: optuna.Trial) -> float:
            trial.set_user_attr("worker", worker_id())
            earlier = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if sum(t.number < trial.number for t in earlier) >= n_trials:
                trial.set_user_attr("surplus", True)
                raise SurplusTrial(f"trial {trial.number}: the budget of {n_trials} is taken")
            return objective(trial)

        study.optimize(claimed, n_trials=1, catch=(SurplusTrial,), gc_after_trial=True)


def trial_objective(
    cls: type[SessionRecommender],
    space: SearchSpace,
    dataset: Dataset,
    *,
    objective: str = "mrr",
    tie_mode: str = DEFAULT_TIE_MODE,
    fixed: dict[str, Any] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective of one trial: draw a setting, fit on valid_train, score valid_test."""

    def run(trial: optuna.Trial) -> float:
        params = {**(fixed or {}), **space.suggest(trial)}
        trial.set_user_attr("config", params)
        log.info("trial %d: %s", trial.number, params)
        model = cls(**params)
        on_epoch = epoch_reporter(
            dataset.valid_test, space.report_every, tie_mode, trial, objective
        )
        start = time.perf_counter()
        model.fit(dataset.valid_train, valid=dataset.valid_test, on_epoch=on_epoch)
        trial.set_user_attr("fit_s", round(time.perf_counter() - start, 2))
        scores = validation_scores(model, dataset.valid_test, tie_mode)
        for metric, value in scores.items():
            trial.set_user_attr(metric, value)
        log.info("trial %d: %s", trial.number, {k: round(v, 4) for k, v in scores.items()})
        return scores[OBJECTIVES[objective]]

    return run


def best_config(study: optuna.Study) -> tuple[FrozenTrial, dict[str, Any]]:
    """The best finished trial and its full hyperparameters; ValueError if none finished."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    best = max(complete, key=lambda t: (t.value, -t.number))  # ties: the earliest
    config = dict(best.user_attrs["config"])
    algorithm = study.user_attrs.get("algorithm")
    if algorithm in ALGORITHMS:  # a trial recorded before a hyperparameter was renamed
        config = get_algorithm(algorithm).migrate_params(config)
    return best, config


def migrated_space(space_json: str, algorithm: str) -> str:
    """A study's stored search space (JSON) with the hyperparameters the algorithm has renamed
    since under their current names, so a study searched before a rename can be resumed."""
    if algorithm not in ALGORITHMS:
        return space_json
    renamed = get_algorithm(algorithm).renamed

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            return {renamed.get(k, k): rename(v) for k, v in node.items()}
        return [rename(v) for v in node] if isinstance(node, list) else node

    return json.dumps(rename(json.loads(space_json)), sort_keys=True)
