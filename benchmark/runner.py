"""One benchmark run: load a dataset, fit and evaluate each algorithm, write the run directory.

Layout of ``<out>/<dataset>/<run-id>/`` (see results/README.md for every column):
    run.json             options, resolved hyperparameters, versions, hardware, data, protocol
    predictions.parquet  one row per next-click prediction: session, position, target, target_support
    ranks/<label>.parquet   the rank of each prediction (rows aligned with predictions.parquet)
    done/<label>.json    written last for each algorithm: its metrics, timings and parameters
    done/seeds/<label>.seed<N>.json   a seed added to a finished row by ``--resume RUN
                         --algorithms LABEL --seeds N``: that seed's metrics and timings
    training/<label>.seed<N>.pt   while an algorithm that trains in epochs is unfinished: its
                         training state after the last epoch done (removed with done/<label>.json);
                         training/<label>.select.seed<N>.pt likewise for the fit on the
                         validation split of a row that chooses its epoch count there
    history/selection/<label>.csv   that fit's per-epoch validation values
    metrics.csv, timings.csv, seeds.csv, history/, table.md, plots/   rendered from the above

Every file is written atomically and an algorithm counts as finished only once its
``done/<label>.json`` exists, so ``--resume RUN_DIR`` after a kill redoes exactly the
algorithms that had not finished; one that trains in epochs continues after its last full epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import hashlib
import logging
import os
import platform
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.config import PROJECT_ROOT, AlgorithmSpec, ConfigError
from benchmark.errors import RunInterrupted, RunStopped, describe
from benchmark.evaluator import Predictions, evaluate
from benchmark.metrics import compute_metrics
from benchmark.options import Plan, RunOptions, show_option
from benchmark.resources import measure
from datasets import io, load_dataset
from datasets.errors import DataError
from datasets.sessions import UNKNOWN, Dataset, Sessions

if TYPE_CHECKING:
    from algorithms.base import SessionRecommender

log = logging.getLogger(__name__)


def run(
    prepared: Plan,
    *,
    command: str = "",
) -> Path:
    """Carry out one plan, a new run or a resumed one, and return its run directory.

    Everything that needs no data was checked when the plan was made (:func:`plan`, which the
    command line calls for every dataset before the first runs); a run directory is created
    only once the data is loaded and checked too.
    """
    options, specs, record = prepared.options, prepared.specs, prepared.record
    run_dir = prepared.resume
    if run_dir is not None:
        log.info("resuming %s", run_dir)
    with run_lock(run_dir) if run_dir is not None else contextlib.nullcontext():
        with measure() as load_usage:
            data = load_dataset(
                options.dataset,
                data_dir=options.data_dir,
                clicks=options.clicks,
                cache_dir=options.cache_dir,
                seed=options.seed,
                path=options.dataset_path,
                events=options.events(),
            )
        log.info(
            "data: loaded in %.1f s, peak RSS %.0f MB", load_usage.seconds, load_usage.peak_rss_mb
        )
        if not prepared.cutoffs_given and record == {}:
            options = cap_default_cutoffs(options, data.n_items)
        check_data(data, options)
        check_requirements(specs, data, options)
        fingerprint = data.fingerprint()
        if record and record["data"]["fingerprint"] != fingerprint:
            raise ConfigError(
                f"--resume {run_dir}: the data changed since the run started "
                f"(fingerprint {record['data']['fingerprint']} then, {fingerprint} now)"
            )
        if run_dir is None:  # created only once the data and config are known to be good
            run_dir = new_run_dir(options.out, options.dataset)
            log.info("writing to %s", run_dir)
            with run_lock(run_dir), stopped_in(run_dir):
                _run_in(
                    run_dir,
                    data,
                    options,
                    specs,
                    record or run_record(options, data, prepared.config_sources, command),
                    load_usage,
                )
        else:
            record.setdefault("resumed", []).append(
                {
                    "command": command,
                    "at": _now(),
                    "code": versions()["code"],
                    **({"seeds": prepared.seeds_added} if prepared.seeds_added else {}),
                }
            )
            record["options"]["algorithms"] = list(options.algorithms)  # rows it was extended by
            record["options"]["seeds_per_label"] = dict(options.seeds_per_label)
            with stopped_in(run_dir):
                _run_in(run_dir, data, options, specs, record, load_usage, only=prepared.only)
    return run_dir


@contextlib.contextmanager
def stopped_in(run_dir: Path) -> Iterator[None]:
    """An interruption or a user-caused error (a full disk, ...) once the run folder exists
    becomes :class:`~benchmark.errors.RunStopped`, which names the folder to resume."""
    try:
        yield
    except KeyboardInterrupt as e:
        raise RunInterrupted(run_dir, e) from e
    except Exception as e:
        if describe(e) is None:  # a bug: its own traceback
            raise
        raise RunStopped(run_dir, e) from e


def _run_in(
    run_dir: Path,
    data: Dataset,
    options: RunOptions,
    specs: list[AlgorithmSpec],
    record: dict,
    load_usage: object,
    only: list[str] | None = None,
) -> None:
    io.remove_temporary_files(run_dir)  # left by a write that a kill interrupted
    # Loading includes preprocessing (or reading the cache); a resumed run adds its own attempt.
    record.setdefault("data_load", []).append(dataclasses.asdict(load_usage))
    record.pop("finished", None)
    io.write_json(run_dir / "run.json", record)
    targets = prediction_frame(data)
    if _predictions_outdated(run_dir / "predictions.parquet", targets):
        io.write_parquet(run_dir / "predictions.parquet", targets)

    pending = []  # unfinished rows this attempt leaves alone (--resume RUN --algorithms LABELS)
    for spec in specs:
        done_file = run_dir / "done" / f"{spec.label}.json"
        reusable = _reusable(run_dir, spec.label, len(targets))
        if only is not None and spec.label not in only and not reusable:
            log.info(
                "%s: not finished; left for a later --resume (this attempt fits %s)",
                spec.label,
                ", ".join(only),
            )
            pending.append(spec.label)
            continue
        if reusable:
            missing = _missing_seeds(run_dir, spec, options)
            if not missing:
                log.info("%s: finished in an earlier attempt, reused", spec.label)
                continue
            log.info(
                "%s: finished in an earlier attempt, reused; adding seeds %s",
                spec.label,
                ", ".join(map(str, missing)),
            )
            for seed in missing:  # each seed's file once it is done: a kill loses one seed
                fitted = _fit_seed(spec, seed, data, options, targets, run_dir, first=False)
                io.write_json(
                    _seed_file(run_dir, spec.label, seed),
                    {
                        "label": spec.label,
                        "seed": seed,
                        "seed_metrics": fitted["seed_metrics"],
                        "timings": fitted["timings"],
                        **(
                            {"epoch_selection": [fitted["selection"]]}
                            if fitted["selection"]
                            else {}
                        ),
                        "code": versions()["code"],
                    },
                )
                for stage in ("", "select"):
                    _training_file(run_dir, spec.label, seed, stage).unlink(missing_ok=True)
                gc.collect()
            with contextlib.suppress(OSError):
                (run_dir / "training").rmdir()
            continue
        for stale in _seed_files(run_dir, spec.label).values():  # of a damaged, refitted row
            stale.unlink()
        result = run_algorithm(spec, data, options, targets, run_dir)
        io.write_json(done_file, result)
        for seed in _seeds(spec, options):  # only now: a kill before the done file resumes
            for stage in ("", "select"):
                _training_file(run_dir, spec.label, seed, stage).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # left while another algorithm's state is in it
            (run_dir / "training").rmdir()
        gc.collect()

    specs = [s for s in specs if s.label not in pending]
    write_tables(run_dir, [s.label for s in specs])
    if pending:
        record["pending"] = pending
    else:
        record.pop("pending", None)
    record["ended"] = _now()  # the last algorithm finished; the report is not written yet
    record["config"] = {
        s.label: {
            **io.read_json(run_dir / "done" / f"{s.label}.json")["config"],
            "seeds": len(_done_seeds(run_dir, s.label)),
        }
        for s in specs
    }
    io.write_json(run_dir / "run.json", record)
    _finalize(run_dir)
    record["finished"] = _now()  # only now: every table and plot is written
    io.write_json(run_dir / "run.json", record)


def _seed_file(run_dir: Path, label: str, seed: int) -> Path:
    """The record of a seed added to the finished row ``label`` (``--resume --seeds``)."""
    return run_dir / "done" / "seeds" / f"{label}.seed{seed}.json"


def _seed_files(run_dir: Path, label: str) -> dict[int, Path]:
    """The added-seed records of ``label`` that are sound, by seed (a damaged one is left out,
    so its seed is fitted again)."""
    folder = run_dir / "done" / "seeds"
    out = {}
    if not folder.is_dir():
        return out
    prefix = f"{label}.seed"
    for path in folder.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        seed = name[len(prefix) : -len(".json")]
        if not seed.isdigit():
            continue
        try:
            rec = io.read_json(path)
        except (OSError, ValueError):
            log.warning("%s: unreadable; fitting that seed again", path)
            continue
        if isinstance(rec, dict) and rec.get("label") == label and rec.get("seed") == int(seed):
            out[int(seed)] = path
    return dict(sorted(out.items()))


def _done_seeds(run_dir: Path, label: str) -> list[int]:
    """The seeds of the finished row ``label``: those of its done record, then those added."""
    done = io.read_json(run_dir / "done" / f"{label}.json")
    seeds = list(dict.fromkeys(row["seed"] for row in done["seed_metrics"]))
    return seeds + [s for s in _seed_files(run_dir, label) if s not in seeds]


def _missing_seeds(run_dir: Path, spec: AlgorithmSpec, options: RunOptions) -> list[int]:
    """The seeds a finished row still lacks (``--resume --algorithms LABEL --seeds N``)."""
    done = set(_done_seeds(run_dir, spec.label))
    return [s for s in _seeds(spec, options) if s not in done]


def _reusable(run_dir: Path, label: str, n_predictions: int) -> bool:
    """Whether ``label`` finished in an earlier attempt and its files are sound. A damaged
    record (unreadable or foreign ``done/<label>.json``, missing or truncated
    ``ranks/<label>.parquet``) is named in a warning and removed, so the algorithm is fitted
    again instead of the run failing on it."""
    done_file = run_dir / "done" / f"{label}.json"
    if not done_file.is_file():
        return False
    problem = _damage(run_dir, label, n_predictions)
    if problem is None:
        return True
    log.warning("%s; fitting %s again", problem, label)
    done_file.unlink()
    return False


_DONE_KEYS = {"label", "config", "metrics", "seed_metrics", "timings"}


def _damage(run_dir: Path, label: str, n_predictions: int) -> str | None:
    """What is wrong with the finished record of ``label``, or None."""
    done_file = run_dir / "done" / f"{label}.json"
    try:
        record = io.read_json(done_file)
    except (OSError, ValueError) as e:
        return f"{done_file}: unreadable ({e})"
    if not isinstance(record, dict) or not _DONE_KEYS <= record.keys() or record["label"] != label:
        return f"{done_file}: not the finished record of {label}"
    ranks = run_dir / "ranks" / f"{label}.parquet"
    rows = _parquet_rows(ranks)
    if rows is None:
        return f"{ranks}: missing or unreadable"
    if rows != n_predictions:
        return f"{ranks}: {rows} ranks for {n_predictions} predictions"
    return None


def _predictions_outdated(path: Path, targets: pd.DataFrame) -> bool:
    """Whether ``predictions.parquet`` must be written: absent, damaged, or written before a
    column of :func:`prediction_frame` existed (e.g. ``repeat``). The rows are the same either
    way (the data fingerprint was checked), so the ranks stay aligned with them."""
    if _parquet_rows(path) != len(targets):
        return True
    return not set(targets.columns) <= set(pq.read_schema(path).names)


def _parquet_rows(path: Path) -> int | None:
    """The row count of a parquet file; None if it is absent or damaged."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def cap_default_cutoffs(options: RunOptions, n_items: int) -> RunOptions:
    """The options with default cutoffs above ``n_items`` left out (at least K = n_items)."""
    kept = [k for k in options.cutoffs if k <= n_items] or [n_items]
    if kept != list(options.cutoffs):
        log.warning(
            "%d training items: cutoffs %s instead of the default %s",
            n_items,
            show_option(kept),
            show_option(options.cutoffs),
        )
    return dataclasses.replace(options, cutoffs=kept)


def check_data(data: Dataset, options: RunOptions) -> None:
    """What the options need from the data: something to evaluate, cutoffs within the items."""
    targets = data.test.items[data.target_mask()]
    if len(targets) == 0:
        raise DataError(
            f"{data.name}: the test set has no next-click targets (every test "
            "session has fewer than 2 clicks)"
        )
    if not np.any(targets != UNKNOWN):
        raise DataError(
            f"{data.name}: none of the {len(targets):,} test targets occurs in "
            "the training data, so there is nothing to rank"
        )
    too_big = [k for k in options.cutoffs if k > data.n_items]
    if too_big:
        raise ConfigError(
            f"--cutoffs {show_option(too_big)}: larger than the number of "
            f"training items ({data.n_items:,}), which every list is ranked over; "
            f"give --cutoffs with values up to {data.n_items}"
        )


def check_requirements(specs: list[AlgorithmSpec], data: Dataset, options: RunOptions) -> None:
    """Every row's own needs of the data (:meth:`SessionRecommender.data_problem`), checked
    before a run folder exists: a row that cannot train stops the run before the first fit."""
    problems = []
    for spec in specs:
        problem = spec.build(seed=options.seed, device=options.device).data_problem(data.train)
        if problem is not None:
            where = ", ".join(sorted(set(spec.origins.values())))
            problems.append(f"[{spec.label}]" + (f" ({where})" if where else "") + f": {problem}")
    if problems:
        raise DataError(f"{data.name}: " + "; ".join(problems))


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/.lock`` (an OS lock, released if the process dies) for the block."""
    path = Path(run_dir) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"{run_dir}: another process (pid {holder}) is working on this "
                "run; wait for it to end"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _seeds(spec: AlgorithmSpec, options: RunOptions) -> list[int]:
    """The seeds an algorithm is fitted with: ``--seeds`` of them if it is stochastic, else one."""
    n = options.seeds_per_label.get(spec.label, options.seeds)
    return [options.seed + i for i in range(n if spec.is_stochastic() else 1)]


def _training_file(run_dir: Path, label: str, seed: int, stage: str = "") -> Path:
    """Where the fit of ``label`` with ``seed`` keeps its training state until it is done
    (``stage = "select"``: the fit on the validation split that picks its epoch count)."""
    return run_dir / "training" / f"{label}{'.' + stage if stage else ''}.seed{seed}.pt"


def select_epochs(
    spec: AlgorithmSpec, model: SessionRecommender, data: Dataset, run_dir: Path, seed: int
) -> tuple[SessionRecommender, dict]:
    """For a row that picks its epoch count on held-out data (``model.selects_epochs``): fit a
    copy on the validation split (``valid_train``, watching ``valid_test``), then return a fresh
    model set to that many epochs, to be trained on the full training set, and what was chosen.
    Without a validation split every epoch is trained and the record says so."""
    if data.valid_train is None or data.valid_test is None:
        log.warning(
            "%s: %s has no validation split to choose the epoch count on; all %d are trained",
            spec.label,
            data.name,
            model.n_epochs,
        )
        return model, {"epochs": model.n_epochs, "max_epochs": model.n_epochs, "chosen_on": None}
    log.info(
        "%s: choosing the epoch count (at most %d) on the validation split",
        spec.label,
        model.n_epochs,
    )
    with measure() as usage:
        model.fit(
            data.valid_train,
            valid=data.valid_test,
            resume_file=_training_file(run_dir, spec.label, seed, "select"),
        )
    n = model.chosen_epochs()
    log.info(
        "%s: %d epochs chosen on the validation split (%.1f s); training on the full set",
        spec.label,
        n,
        usage.seconds,
    )
    selection = {
        "epochs": n,
        "max_epochs": model.n_epochs,
        "chosen_on": "validation split",
        "trained_epochs": len(model.history_),
        "seconds": usage.seconds,
        "history": model.history_,
    }
    return model.with_epochs(n), selection


def run_algorithm(
    spec: AlgorithmSpec, data: Dataset, options: RunOptions, targets: pd.DataFrame, run_dir: Path
) -> dict:
    """Fit and evaluate one algorithm (for every seed if stochastic); return its done record."""
    timings, seed_metrics, config, selections = [], [], {}, []
    for n, seed in enumerate(_seeds(spec, options)):
        fitted = _fit_seed(spec, seed, data, options, targets, run_dir, first=n == 0)
        seed_metrics += fitted["seed_metrics"]
        timings += fitted["timings"]
        if fitted["selection"] is not None:
            selections.append(fitted["selection"])
        if n == 0:
            config, first_metrics = fitted["config"], fitted["metrics"]
    return {
        "label": spec.label,
        "config": config,
        "metrics": first_metrics,
        "seed_metrics": seed_metrics,
        "timings": timings,
        **({"epoch_selection": selections} if selections else {}),
        "code": versions()["code"],
    }  # a resumed run may finish on newer code


def _fit_seed(
    spec: AlgorithmSpec,
    seed: int,
    data: Dataset,
    options: RunOptions,
    targets: pd.DataFrame,
    run_dir: Path,
    *,
    first: bool,
) -> dict:
    """Fit and evaluate ``spec`` with one seed: its per-seed metrics, timings and epoch
    selection; for the ``first`` seed also its config, and its ranks and history are written
    (the first seed's represent the algorithm)."""
    model = spec.build(seed=seed, device=options.device)
    selection = None
    if model.selects_epochs:
        model, selection = select_epochs(spec, model, data, run_dir, seed)
    log.info("%s: fitting %r (seed %d)", spec.label, model, seed)
    with measure() as fit_usage:
        model.fit(data.train, resume_file=_training_file(run_dir, spec.label, seed))
    log.info(
        "%s: fit in %.1f s, peak RSS %.0f MB",
        spec.label,
        fit_usage.seconds,
        fit_usage.peak_rss_mb,
    )
    with measure() as eval_usage:
        preds = evaluate(
            model,
            data.test,
            tie_mode=options.tie_mode,
            batch_size=options.eval_batch_size,
            progress=options.progress,
        )
    ranks = aligned_ranks(preds, targets)
    metrics = compute_metrics(ranks, options.cutoffs)
    log.info(
        "%s: evaluated %d predictions in %.1f s; Recall@20 %s",
        spec.label,
        len(ranks),
        eval_usage.seconds,
        _value(metrics, "recall", 20),
    )
    out = {
        "metrics": metrics,
        "seed_metrics": [{"seed": seed, **row} for row in metrics],
        "timings": [
            {"seed": seed, "stage": stage, **dataclasses.asdict(usage)}
            for stage, usage in (("fit", fit_usage), ("evaluate", eval_usage))
        ],
        "selection": None
        if selection is None
        else {"seed": seed, **{k: v for k, v in selection.items() if k != "history"}},
        "config": None,
    }
    if first:  # the first seed's ranks, history and parameters represent the algorithm
        config = {
            "algorithm": spec.algorithm,
            "preset": spec.preset,
            "params": model.get_params(),
            "tuning": spec.tuning,
        }
        if selection is not None:
            config["epoch_selection"] = {k: v for k, v in selection.items() if k != "history"}
            if selection.get("history"):
                io.write_csv(
                    run_dir / "history" / "selection" / f"{spec.label}.csv",
                    pd.DataFrame(selection["history"]),
                )
        io.write_parquet(run_dir / "ranks" / f"{spec.label}.parquet", pd.DataFrame({"rank": ranks}))
        history = getattr(model, "history_", None)
        if history:
            io.write_csv(run_dir / "history" / f"{spec.label}.csv", pd.DataFrame(history))
        out["config"] = config
    del model
    gc.collect()
    return out


def prediction_frame(data: Dataset) -> pd.DataFrame:
    """One row per next-click target of the test set, sorted by (session, position)."""
    test = data.test
    session = test.session_index()
    position = np.arange(test.n_events) - test.offsets[session]
    is_target = data.target_mask()  # by default every click but the first of its session
    session, position, target = session[is_target], position[is_target], test.items[is_target]
    known = data.train.items[data.train.items != UNKNOWN]
    support = np.bincount(known, minlength=data.n_items)
    target_support = np.where(target == UNKNOWN, 0, support[np.maximum(target, 0)])
    return pd.DataFrame(
        {
            "session": session,
            "position": position,
            "target": target,
            "target_support": target_support,
            "session_key": session_keys(test)[session],
            "repeat": repeat_mask(test)[is_target],
        }
    )


def repeat_mask(sessions: Sessions) -> np.ndarray:
    """Per click: whether its item occurred earlier in the same session (a repeat, as opposed
    to a new item). An ``UNKNOWN`` item is never a repeat: which unseen item it was is lost."""
    session = sessions.session_index()
    items = sessions.items
    # the first click of each (session, item) pair; every later click of the pair repeats it
    order = np.lexsort((np.arange(len(items)), items, session))
    pair_start = np.ones(len(items), dtype=bool)
    same = (session[order][1:] == session[order][:-1]) & (items[order][1:] == items[order][:-1])
    pair_start[1:] = ~same
    repeat = np.empty(len(items), dtype=bool)
    repeat[order] = ~pair_start
    return repeat & (items != UNKNOWN)


def session_keys(test: Sessions) -> np.ndarray:
    """A 64-bit hash of each test session's clicks (item indices): sorting sessions by it gives
    an order that does not depend on the order of the sessions in the file."""
    items = test.items
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(items[a:b].tobytes(), digest_size=8).digest(), "little", signed=True
            )
            for a, b in zip(test.offsets[:-1], test.offsets[1:])
        ],
        dtype=np.int64,
    )


def aligned_ranks(preds: Predictions, targets: pd.DataFrame) -> np.ndarray:
    """The evaluator's ranks reordered to the rows of ``targets`` (checked, not assumed)."""
    order = np.lexsort((preds.position, preds.session))
    if len(order) != len(targets):  # only some clicks are targets: keep the evaluator's rows
        keys = preds.session[order] * (1 << 20) + preds.position[order]  # for those clicks
        wanted = targets["session"].to_numpy() * (1 << 20) + targets["position"].to_numpy()
        order = order[np.isin(keys, wanted)]
    if not (
        np.array_equal(preds.session[order], targets["session"].to_numpy())
        and np.array_equal(preds.position[order], targets["position"].to_numpy())
        and np.array_equal(preds.target[order], targets["target"].to_numpy())
    ):
        raise RuntimeError("evaluator predictions do not match the protocol's target list")
    return preds.rank[order]


def write_tables(run_dir: Path, labels: list[str]) -> None:
    """metrics.csv, timings.csv and seeds.csv from the done records, in the run's label order."""
    done = [io.read_json(run_dir / "done" / f"{label}.json") for label in labels]
    metrics = pd.DataFrame([{"algorithm": d["label"], **row} for d in done for row in d["metrics"]])
    io.write_csv(run_dir / "metrics.csv", metrics)
    timings = pd.DataFrame(
        [
            {
                "algorithm": d["label"],
                "stage": t["stage"],
                "seconds": t["seconds"],
                "peak_rss_mb": t["peak_rss_mb"],
                "peak_gpu_mb": t["peak_gpu_mb"],
            }
            for d in done
            for t in d["timings"]
            if t["seed"] == d["timings"][0]["seed"]
        ]
    )
    io.write_csv(run_dir / "timings.csv", timings)
    for d in done:  # seeds added to a finished row (--resume --seeds), after its own
        own = {row["seed"] for row in d["seed_metrics"]}
        for seed, path in _seed_files(run_dir, d["label"]).items():
            if seed not in own:
                d["seed_metrics"] = d["seed_metrics"] + io.read_json(path)["seed_metrics"]
    seeds = pd.DataFrame(
        [{"algorithm": d["label"], **row} for d in done for row in d["seed_metrics"]]
    )
    if seeds["seed"].nunique() > 1:
        io.write_csv(
            run_dir / "seeds.csv", seeds[["algorithm", "seed", "metric", "cutoff", "value"]]
        )


def _finalize(run_dir: Path) -> None:
    from benchmark.report import render  # imports matplotlib; only needed once results exist

    render.finalize_run(run_dir)


def new_run_dir(out: Path, dataset: str) -> Path:
    """A new, empty ``<out>/<dataset>/<run-id>``; never one that another run has taken."""
    (Path(out) / dataset).mkdir(parents=True, exist_ok=True)
    while True:
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        path = Path(out) / dataset / run_id
        try:
            path.mkdir()  # atomic: of two runs choosing the same id, one fails and retries
        except FileExistsError:
            continue
        return path


def run_record(options: RunOptions, data: Dataset, config_sources: list[str], command: str) -> dict:
    return {
        "command": command,
        "options": options.to_json(),
        "config_files": config_sources,
        "config": {},  # filled with the resolved hyperparameters when the run finishes
        "versions": versions(),
        "hardware": hardware(),
        "data": {
            "dataset": data.name,
            "fingerprint": data.fingerprint(),
            "counts": data.split_counts(),
            "policy": data.policy,
            "source": data.source,
        },
        "protocol": {
            "task": "next click: every click of a test session but the first is a target; "
            "the clicks before it are the input; only the next item is relevant",
            "ranking": f"full ranking against all {data.n_items} training items",
            "tie_mode": options.tie_mode,
            "rank": {
                "standard": "1 + #items scoring higher",
                "conservative": "1 + #items scoring higher or equal (target excluded)",
                "median": "1 + #higher + #tied/2",
            }[options.tie_mode],
            "metrics": "Recall@K = share of predictions with rank <= K; MRR@K = mean of "
            "1/rank over predictions, 0 where rank > K",
            "cutoffs": options.cutoffs,
        },
        "started": _now(),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "pandas", "torch", "implicit", "pyarrow"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is just not recorded
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            text=True,
            capture_output=True,
        ).stdout.strip()
        out["code"] = commit + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        out["code"] = "unknown (not a git checkout)"
    return out


def hardware() -> dict[str, object]:
    info: dict[str, object] = {
        "machine": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def _value(metrics: list[dict], metric: str, cutoff: int) -> str:
    for row in metrics:
        if row["metric"] == metric and row["cutoff"] == cutoff:
            return f"{row['value']:.4f}"
    return "n/a"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def command_line() -> str:
    """This process's command, shell-quoted, so that a path with spaces can be pasted back."""
    return shlex.join([Path(sys.executable).name, *sys.argv])
