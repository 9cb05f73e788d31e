"""Cost curves: fit and evaluation time and peak memory of every default algorithm against the
size of the training data, on generated sessions of RSC15's shape.

    python -m benchmark.perf.scaling [--scales 1/256,1/64,1/16,1/4] [--algorithms A,B,...]
        [--threads auto|N] [--time-limit SECONDS] [--out-dir results/perf/scaling]
    python -m benchmark.perf.scaling --render-only [--out-dir DIR]

**Data.** At scale ``s`` the training set is ``s`` times full RSC15's 7,966,257 sessions, drawn
in memory by :func:`benchmark.perf.baselines_scale.generate` (the click model of
:mod:`datasets.synthetic` with RSC15's 37,483 items, sessions of at least 2 clicks, mean about
3.95): about ``s`` x 31.6M training clicks. The test set scales too: ``round(55,898 * s)``
next-click predictions (at least 1), so that fit and evaluation grow together as they would on a
real sample of the data, one power law describes the total, and at ``s = 1`` it is RSC15's test
day (55,898). Both are re-indexed over the items the training set clicks
(:func:`datasets.sessions.own_vocabulary`), as a real sample such as rsc15-64 is: a smaller
sample scores fewer items. Same ``--seed``, same data.

**Algorithms.** The default run's list (``benchmark.options.DEFAULT_ALGORITHMS``), each with
the hyperparameters a default ``run_benchmark.py --dataset rsc15`` uses (``configs/rsc15.toml``,
presets expanded; GRU4Rec's ``rsc15-best``), on the CPU. GRU4Rec trains **one epoch** (its
fit is the cost of one epoch; the record keeps its events/s and the config's epoch count);
every other fit is the default one (BPR-MF: the config's 50 iterations). ``--threads N``
fixes every thread knob (GRU4Rec's and BPR-MF's ``n_threads``, the session-kNN scoring threads,
torch and BLAS) at N; ``auto`` (the default) leaves each algorithm its default policy.

**Stages.** Per (algorithm, scale): ``fit`` and ``evaluate`` (:func:`benchmark.evaluator.evaluate`,
full ranking, conservative ties, batch 256), each with wall and CPU seconds, the peak RSS during
the stage (:func:`benchmark.resources.measure`; it includes the data the process holds, see
``rss_start_mb``) and the 1/5/15-minute load average before and after. Scales run smallest first.
A stage whose time, predicted from the two largest smaller scales measured (their log-log slope),
exceeds ``--time-limit`` is not run but recorded as skipped with its prediction; an evaluation
whose fit was skipped is skipped too. A stage needs two measured smaller scales to be predicted.

**Files** in ``--out-dir``: ``scaling.jsonl`` (one JSON object per finished stage, appended as it
finishes; a rerun skips the stages done and retries the skipped and failed ones), ``table.md``
(per algorithm and scale: fit / evaluation seconds and peak MB; the fitted log-log slope of
fit, evaluation and total time against training clicks; the extrapolated cost at full RSC15,
31,637,239 training clicks) and ``scaling.png`` (total time against training clicks, log-log,
one line per algorithm, its slope in the legend). ``--render-only`` rebuilds the last two from
the JSONL.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.config import AlgorithmSpec, ConfigError, load_tables, resolve
from benchmark.metrics import mrr_at, recall_at
from benchmark.options import DEFAULT_ALGORITHMS
from benchmark.perf.baselines_scale import RSC15_TEST_PREDICTIONS, generate, rss_mb
from benchmark.perf.preprocess_scale import REAL_RSC15
from benchmark.registry import get_algorithm
from benchmark.resources import measure
from datasets import io
from datasets.errors import DataError
from datasets.sessions import Sessions, own_vocabulary

log = logging.getLogger(__name__)

PROG = "python -m benchmark.perf.scaling"
DEFAULT_SCALES = "1/256,1/64,1/16,1/4"
DEFAULT_OUT_DIR = Path("results/perf/scaling")
CONFIG_DATASET = "rsc15"
"""Whose shipped config gives the hyperparameters: the data has full RSC15's shape."""
FULL_TRAIN_CLICKS = REAL_RSC15["train"]["events"]
STAGES = ("fit", "evaluate")
EVAL_BATCH_SIZE = 256
TIE_MODE = "conservative"
JSONL, TABLE, PLOT = "scaling.jsonl", "table.md", "scaling.png"
PER_EPOCH = ("gru4rec",)
"""Algorithms timed for one epoch of training."""


# --- arguments -------------------------------------------------------------------------------


def parse_scale(text: str) -> Fraction:
    """``1/256``, ``0.25`` or ``1``: a share of full RSC15 in (0, 1]."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction like 1/256 or 0.25") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a scale must lie in (0, 1] (1 = full RSC15)")
    return value


def parse_scales(text: str) -> list[Fraction]:
    scales = [parse_scale(part) for part in text.split(",")]
    if len(set(scales)) != len(scales):
        raise argparse.ArgumentTypeError(f"{text!r} names a scale twice")
    return sorted(scales)


def parse_algorithms(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one algorithm")
    return names


def parse_threads(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give auto or a whole number >= 1")
    return int(text)


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0")
    return value


def scale_label(scale: Fraction) -> str:
    return str(scale)


# --- fitting and predicting ------------------------------------------------------------------


def fit_power_law(x: Iterable[float], y: Iterable[float]) -> tuple[float, float]:
    """Least squares in log-log space: ``y = coefficient * x ** slope``; (slope, coefficient).
    Needs at least two distinct x."""
    lx = np.log(np.asarray(list(x), dtype=float))
    ly = np.log(np.maximum(np.asarray(list(y), dtype=float), 1e-9))  # a 0 s stage: 1 ns
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise ValueError("a slope needs at least two different sizes")
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(np.exp(intercept))


def latest(records: Iterable[dict]) -> dict[tuple[str, str, str], dict]:
    """The last stage record of every (algorithm, scale, stage)."""
    out = {}
    for r in records:
        if r.get("kind") == "stage":
            out[(r["algorithm"], r["scale"], r["stage"])] = r
    return out


def measured(records: Iterable[dict], algorithm: str, stage: str) -> list[dict]:
    """The finished records of one algorithm's stage, smallest training set first."""
    rows = [
        r
        for (a, _, s), r in latest(records).items()
        if a == algorithm and s == stage and r["status"] == "done"
    ]
    return sorted(rows, key=lambda r: r["train_clicks"])


def expected_clicks(records: Iterable[dict], fraction: float) -> float:
    """Training clicks at ``fraction``, from the clicks per unit of scale seen so far."""
    per_unit = [r["train_clicks"] / r["fraction"] for r in records if "train_clicks" in r]
    return fraction * (float(np.median(per_unit)) if per_unit else FULL_TRAIN_CLICKS)


def predict_seconds(
    records: list[dict], algorithm: str, stage: str, fraction: float
) -> dict[str, Any] | None:
    """The stage's wall time at ``fraction`` from the two largest smaller scales measured
    (their log-log slope), or None with fewer than two."""
    below = [r for r in measured(records, algorithm, stage) if r["fraction"] < fraction]
    if len(below) < 2:
        return None
    a, b = below[-2:]
    slope, _ = fit_power_law([a["train_clicks"], b["train_clicks"]], [a["seconds"], b["seconds"]])
    clicks = expected_clicks(records, fraction)
    return {
        "predicted_seconds": b["seconds"] * (clicks / b["train_clicks"]) ** slope,
        "predicted_slope": slope,
        "predicted_from": [a["scale"], b["scale"]],
    }


def over_limit(prediction: dict | None, limit: float) -> bool:
    return prediction is not None and prediction["predicted_seconds"] > limit


# --- the JSONL -------------------------------------------------------------------------------


def read_records(path: Path) -> list[dict]:
    """Every object of the JSONL file (none if it does not exist); a torn last line (a kill
    while appending) is ignored."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise DataError(f"{path}: line {number} is not JSON") from None
            log.warning("%s: ignoring the unfinished last line", path)
    return records


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def append_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=_plain) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --- measuring -------------------------------------------------------------------------------


def run_stage(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Call ``fn`` once; its value and its wall / CPU seconds, peak RSS and load around it."""
    load_before, rss_before = os.getloadavg(), rss_mb()
    cpu_start = time.process_time()
    with measure() as usage:
        value = fn()
    cpu_seconds = time.process_time() - cpu_start
    return value, {
        "seconds": round(usage.seconds, 6),
        "cpu_seconds": round(cpu_seconds, 6),
        "peak_rss_mb": round(usage.peak_rss_mb, 1),
        "rss_start_mb": round(rss_before, 1),
        "peak_is_per_stage": usage.peak_is_per_stage,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def make_data(scale: Fraction, seed: int) -> tuple[Sessions, Sessions]:
    n_test = max(1, round(RSC15_TEST_PREDICTIONS * scale))
    train, test = generate(float(scale), seed, test_predictions=n_test)
    return own_vocabulary(train, test)


def stage_params(spec: AlgorithmSpec, threads: int | str) -> dict[str, Any]:
    """The spec's hyperparameters as this script runs them: one epoch for GRU4Rec, the thread
    count where fixed."""
    params = dict(spec.params)
    names = get_algorithm(spec.algorithm).param_names()
    if spec.algorithm in PER_EPOCH:
        params["n_epochs"] = 1
    if threads != "auto" and "n_threads" in names:
        params["n_threads"] = threads
    return json.loads(json.dumps(params, default=_plain))  # as the JSONL stores them


def fix_threads(threads: int | str) -> None:
    """With a fixed count, cap torch, BLAS and the session-kNN scoring threads at it."""
    if threads == "auto":
        return
    import torch

    from algorithms import neighborhood

    torch.set_num_threads(threads)
    neighborhood.THREADS = threads
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - implicit brings it
        log.warning("threadpoolctl is missing: BLAS keeps its own thread count")
    else:
        threadpool_limits(threads)


class Runner:
    """One invocation: the plan, the data of the current scale, the JSONL."""

    def __init__(self, args: argparse.Namespace, specs: list[AlgorithmSpec]) -> None:
        self.args = args
        self.specs = specs
        self.path = args.out_dir / JSONL
        self.records = read_records(self.path)
        self.setup = {
            "seed": args.seed,
            "threads": args.threads,
            "eval_batch_size": EVAL_BATCH_SIZE,
            "tie_mode": TIE_MODE,
            "test_predictions_at_full_scale": RSC15_TEST_PREDICTIONS,
        }
        self.params = {spec.label: stage_params(spec, args.threads) for spec in specs}
        self.check_compatible()
        self.data: tuple[Sessions, Sessions] | None = None
        self.counter = 0
        self.total = len(specs) * len(args.scales) * len(STAGES)

    def check_compatible(self) -> None:
        """Refuse to add to a JSONL measured with another setup or other hyperparameters."""
        for r in self.records:
            if r.get("kind") != "stage" or r["status"] != "done":
                continue
            if r["setup"] != self.setup:
                raise ConfigError(
                    f"{self.path}: measured with {r['setup']}, not {self.setup}; pass the same "
                    "--seed and --threads, or another --out-dir"
                )
            mine = self.params.get(r["algorithm"])
            if mine is not None and r["params"] != mine:
                raise ConfigError(
                    f"{self.path}: {r['algorithm']} was measured with {r['params']}, now "
                    f"{mine}; use another --out-dir"
                )

    def add(self, record: dict) -> None:
        self.records.append(record)
        append_record(self.path, record)

    def base(self, spec: AlgorithmSpec, scale: Fraction, stage: str) -> dict[str, Any]:
        return {
            "kind": "stage",
            "algorithm": spec.label,
            "scale": scale_label(scale),
            "fraction": float(scale),
            "stage": stage,
            "setup": self.setup,
            "params": self.params[spec.label],
        }

    def skip(self, spec, scale, stage, prediction: dict | None, reason: str) -> None:
        key = (spec.label, scale_label(scale), stage)
        before = latest(self.records).get(key)
        self.counter += 1
        log.info(
            "[%d/%d] %s %s %s: skipped (%s)",
            self.counter,
            self.total,
            scale,
            spec.label,
            stage,
            reason,
        )
        if (
            before is not None
            and before["status"] == "skipped"
            and before["limit_seconds"] == self.args.time_limit
        ):
            return  # recorded so already
        train_clicks = round(expected_clicks(self.records, float(scale)))
        self.add(
            {
                **self.base(spec, scale, stage),
                "status": "skipped",
                "reason": reason,
                "limit_seconds": self.args.time_limit,
                "train_clicks_expected": train_clicks,
                **(prediction or {}),
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )

    def data_for(self, scale: Fraction) -> tuple[Sessions, Sessions]:
        if self.data is None:
            started = time.perf_counter()
            self.data = make_data(scale, self.args.seed)
            train, test = self.data
            log.info(
                "scale %s: %s training sessions, %s clicks, %s items; %s test predictions "
                "(generated in %.1f s)",
                scale,
                f"{train.n_sessions:,}",
                f"{train.n_events:,}",
                f"{train.n_items:,}",
                f"{test.n_predictions:,}",
                time.perf_counter() - started,
            )
        return self.data

    def measure_stage(self, spec, scale, stage, fn, record: bool) -> Any:
        """Run one stage; record it (done or failed) unless ``record`` is False. Returns the
        stage's value, or None when it failed."""
        train, test = self.data_for(scale)
        if record:
            self.counter += 1
        where = f"[{self.counter}/{self.total}] {scale} {spec.label} {stage}"
        prediction = predict_seconds(self.records, spec.label, stage, float(scale))
        if prediction is not None:
            log.info("%s: starting, about %.1f s predicted", where, prediction["predicted_seconds"])
        try:
            value, usage = run_stage(fn)
        except Exception as e:  # a stage that fails is recorded, the others go on
            log.exception("%s: failed", where)
            if record:
                self.add({**self.base(spec, scale, stage), "status": "failed", "error": repr(e)})
            return None
        if not record:
            log.info(
                "%s: refitted for the evaluation in %.2f s (not recorded)", where, usage["seconds"]
            )
            return value
        entry = {
            **self.base(spec, scale, stage),
            "status": "done",
            **usage,
            "train_clicks": train.n_events,
            "train_sessions": train.n_sessions,
            "n_items": train.n_items,
            "test_predictions": test.n_predictions,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        entry.update(stage_details(spec, stage, value, train, usage))
        if prediction is not None:
            entry.update(prediction)
        self.add(entry)
        log.info(
            "%s: %.2f s (CPU %.2f s), peak %.0f MB, load %.2f -> %.2f",
            where,
            usage["seconds"],
            usage["cpu_seconds"],
            usage["peak_rss_mb"],
            usage["loadavg_before"][0],
            usage["loadavg_after"][0],
        )
        return value

    def status(self, spec: AlgorithmSpec, scale: Fraction, stage: str) -> str | None:
        record = latest(self.records).get((spec.label, scale_label(scale), stage))
        return None if record is None else record["status"]

    def one(self, spec: AlgorithmSpec, scale: Fraction) -> None:
        """Fit and evaluate ``spec`` at ``scale``, as far as the JSONL and the limit allow."""
        todo = [stage for stage in STAGES if self.status(spec, scale, stage) != "done"]
        self.counter += len(STAGES) - len(todo)
        if not todo:
            return
        limit = self.args.time_limit
        predicted = {s: predict_seconds(self.records, spec.label, s, float(scale)) for s in STAGES}
        too_long = {s: over_limit(predicted[s], limit) for s in STAGES}
        reason = f"predicted to exceed the limit of {fmt_seconds(limit)} s"
        if "fit" in todo and too_long["fit"]:
            self.skip(spec, scale, "fit", predicted["fit"], reason)
            if "evaluate" in todo:
                self.skip(spec, scale, "evaluate", predicted["evaluate"], "its fit was skipped")
            return
        if todo == ["evaluate"] and too_long["evaluate"]:
            self.skip(spec, scale, "evaluate", predicted["evaluate"], reason)
            return
        train, test = self.data_for(scale)
        model = dataclasses.replace(spec, params=self.params[spec.label]).build(
            seed=self.args.seed, device="cpu"
        )
        fitted = self.measure_stage(spec, scale, "fit", lambda: model.fit(train), "fit" in todo)
        if "evaluate" in todo:
            if fitted is None:
                self.skip(spec, scale, "evaluate", predicted["evaluate"], "its fit failed")
            elif too_long["evaluate"]:
                self.skip(spec, scale, "evaluate", predicted["evaluate"], reason)
            else:
                self.measure_stage(
                    spec, scale, "evaluate", lambda: evaluate_model(model, test), True
                )

    def run(self) -> None:
        self.add(run_record(self.args, self.specs))
        rendered = len(self.records)
        for scale in self.args.scales:
            self.data = None
            gc.collect()
            for spec in self.specs:
                self.one(spec, scale)
                gc.collect()  # the model is gone: the next fit starts from the data alone
                if len(self.records) > rendered:  # the table follows every new record
                    render(self.args.out_dir, self.records)
                    rendered = len(self.records)
        render(self.args.out_dir, self.records)
        log.info("done: %s", self.args.out_dir / TABLE)


def evaluate_model(model, test: Sessions):
    from benchmark.evaluator import evaluate

    return evaluate(model, test, tie_mode=TIE_MODE, batch_size=EVAL_BATCH_SIZE, progress=False)


def stage_details(
    spec: AlgorithmSpec, stage: str, value: Any, train: Sessions, usage: dict
) -> dict[str, Any]:
    """What a stage adds to its record: the fitted hyperparameters (GRU4Rec: its epoch's
    events/s), or the evaluation's accuracy and speed."""
    if stage == "evaluate":
        return {
            "predictions": len(value),
            "predictions_per_s": round(len(value) / max(usage["seconds"], 1e-9), 1),
            "recall@20": round(recall_at(value.rank, 20), 4),
            "mrr@20": round(mrr_at(value.rank, 20), 4),
        }
    details: dict[str, Any] = {"hyperparameters": value.get_params()}
    if spec.algorithm in PER_EPOCH:
        epoch = value.history_[0]
        details.update(
            train_events=train.n_predictions,
            epoch_seconds=round(train.n_predictions / epoch["events_per_s"], 3),
            events_per_s=round(epoch["events_per_s"], 1),
            epoch_threads=epoch["threads"],
            epochs_in_config=spec.params.get("n_epochs"),
        )
    return details


def run_record(args: argparse.Namespace, specs: list[AlgorithmSpec]) -> dict[str, Any]:
    import torch

    return {
        "kind": "run",
        "command": " ".join([PROG, *(args.argv or [])]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scales": [scale_label(s) for s in args.scales],
        "algorithms": [s.label for s in specs],
        "time_limit": args.time_limit,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


# --- table and plot --------------------------------------------------------------------------


def summarise(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Per algorithm (in the order first measured): per-stage slopes and coefficients, the
    total's points and slope, and the extrapolations to full RSC15."""
    out: dict[str, dict[str, Any]] = {}
    for algorithm in dict.fromkeys(r["algorithm"] for r in latest(records).values()):
        entry: dict[str, Any] = {}
        by_scale: dict[str, dict[str, dict]] = {}
        for stage in STAGES:
            rows = measured(records, algorithm, stage)
            for r in rows:
                by_scale.setdefault(r["scale"], {})[stage] = r
            entry[stage] = _law([r["train_clicks"] for r in rows], [r["seconds"] for r in rows])
        totals = [
            (s["fit"]["train_clicks"], s["fit"]["seconds"] + s["evaluate"]["seconds"])
            for s in by_scale.values()
            if len(s) == 2
        ]
        totals.sort()
        entry["points"] = totals
        entry["total"] = _law([x for x, _ in totals], [y for _, y in totals])
        entry["epochs_in_config"] = next(
            (s["fit"].get("epochs_in_config") for s in by_scale.values() if "fit" in s), None
        )
        out[algorithm] = entry
    return out


def _law(x: list[float], y: list[float]) -> dict[str, float] | None:
    if len(set(x)) < 2:
        return None
    slope, coefficient = fit_power_law(x, y)
    return {"slope": slope, "full_seconds": coefficient * FULL_TRAIN_CLICKS**slope}


def fmt_seconds(seconds: float) -> str:
    if seconds < 0.1:
        return f"{seconds:.3f}"
    if seconds < 10:
        return f"{seconds:.2f}"
    if seconds < 100:
        return f"{seconds:.1f}"
    return f"{seconds:,.0f}"


def fmt_duration(seconds: float) -> str:
    text = f"{fmt_seconds(seconds)} s"
    if seconds >= 7200:
        return f"{text} ({seconds / 3600:.1f} h)"
    if seconds >= 120:
        return f"{text} ({seconds / 60:.0f} min)"
    return text


def _stage_cell(r: dict | None) -> str:
    if r is None:
        return "–"
    if r["status"] == "done":
        text = fmt_seconds(r["seconds"])
        if "events_per_s" in r:
            text += f" ({r['events_per_s']:,.0f} ev/s)"
        return text
    if r["status"] == "skipped" and "predicted_seconds" in r:
        return f"skipped (≈{fmt_seconds(r['predicted_seconds'])} predicted)"
    return r["status"]


def _cell(fit: dict | None, ev: dict | None) -> str:
    if fit is None and ev is None:
        return "–"
    text = f"{_stage_cell(fit)} / {_stage_cell(ev)}"
    peaks = [r["peak_rss_mb"] for r in (fit, ev) if r is not None and r["status"] == "done"]
    return f"{text}, {max(peaks):,.0f} MB" if peaks else text


def _load_cell(fit: dict | None, ev: dict | None) -> str:
    parts = [
        f"{r['loadavg_before'][0]:.1f}→{r['loadavg_after'][0]:.1f}"
        for r in (fit, ev)
        if r is not None and r["status"] == "done"
    ]
    return " / ".join(parts) or "–"


def _slope(law: dict | None) -> str:
    return "–" if law is None else f"{round(law['slope'], 2) + 0.0:.2f}"  # no "-0.00"


def render_table(records: list[dict]) -> str:
    """table.md: seconds and peak memory per algorithm and scale, slopes, full-scale estimate."""
    last = latest(records)
    scales = sorted({(r["fraction"], r["scale"]) for r in last.values()})
    clicks: dict[str, str] = {}
    for r in last.values():
        if r["status"] == "done":
            clicks[r["scale"]] = f"{r['train_clicks']:,}"
        elif "train_clicks_expected" in r:
            clicks.setdefault(r["scale"], f"≈{r['train_clicks_expected']:,}")
    summary = summarise(records)
    runs = [r for r in records if r.get("kind") == "run"]
    head = [
        f"{label} ({clicks[label]} clicks)" if label in clicks else label for _, label in scales
    ]
    lines = [
        "# Cost against training size (generated RSC15-shaped sessions)",
        "",
        f"Written by `{PROG}` from `{JSONL}`; the latest record of every stage. Cells: fit / "
        "evaluation wall seconds, the larger of the two stages' peak RSS (it includes the data "
        "the process holds). GRU4Rec's fit is one epoch (events/s in brackets). Slopes: "
        "least squares of log seconds on log training clicks over the scales measured; "
        f"full RSC15: that law at {FULL_TRAIN_CLICKS:,} training clicks.",
        "",
        "| algorithm | " + " | ".join(head) + " | slope fit / eval / total "
        "| full RSC15, est. (fit + eval) |",
        "| --- | " + " | ".join("---:" for _ in scales) + " | ---: | ---: |",
    ]
    notes = []
    for algorithm, entry in summary.items():
        cells = [
            _cell(last.get((algorithm, s, "fit")), last.get((algorithm, s, "evaluate")))
            for _, s in scales
        ]
        slopes = " / ".join(_slope(entry[k]) for k in ("fit", "evaluate", "total"))
        total = entry["total"]
        full = "–" if total is None else fmt_duration(total["full_seconds"])
        lines.append(f"| {algorithm} | " + " | ".join(cells) + f" | {slopes} | {full} |")
        epochs = entry["epochs_in_config"]
        if epochs and entry["fit"] is not None and entry["evaluate"] is not None:
            training = epochs * entry["fit"]["full_seconds"]
            notes.append(
                f"- {algorithm}: the estimate is one epoch; the config's {epochs} epochs would "
                f"take about {fmt_duration(training)} to train, "
                f"{fmt_duration(training + entry['evaluate']['full_seconds'])} with the evaluation."
            )
    lines += ["", *notes] if notes else []
    lines += [
        "",
        "1-minute load average before → after each stage (fit / evaluation):",
        "",
        "| algorithm | " + " | ".join(label for _, label in scales) + " |",
        "| --- | " + " | ".join("---:" for _ in scales) + " |",
    ]
    for algorithm in summary:
        cells = [
            _load_cell(last.get((algorithm, s, "fit")), last.get((algorithm, s, "evaluate")))
            for _, s in scales
        ]
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    if runs:
        lines += ["", "Runs that wrote the file:", ""]
        lines += [
            f"- {r['when']}: `{r['command']}` ({r['cpus']} CPUs, {r['platform']}, "
            f"load {r['loadavg'][0]:.2f} at the start)"
            for r in runs
        ]
    return "\n".join(lines) + "\n"


def render_plot(records: list[dict], path: Path) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    from benchmark.report.plots import DPI, WIDTH_IN, save

    summary = summarise(records)
    fig = Figure(figsize=(WIDTH_IN, 6.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab20"]
    markers = "os^vD<>ph*X"
    for i, (algorithm, entry) in enumerate(summary.items()):
        if not entry["points"]:
            continue
        x, y = zip(*entry["points"])
        law = entry["total"]
        name = algorithm if law is None else f"{algorithm} (slope {law['slope']:.2f})"
        color = cmap(i % 20)
        ax.plot(x, y, marker=markers[i % len(markers)], color=color, label=name, lw=1.4, ms=5)
        if law is not None and x[-1] < FULL_TRAIN_CLICKS:
            ax.plot([x[-1], FULL_TRAIN_CLICKS], [y[-1], law["full_seconds"]], ls=":", color=color)
    ax.axvline(FULL_TRAIN_CLICKS, color="0.5", ls="--", lw=0.8)
    ax.annotate(
        "full RSC15",
        (FULL_TRAIN_CLICKS, 1),
        xycoords=("data", "axes fraction"),
        xytext=(-4, -4),
        textcoords="offset points",
        ha="right",
        va="top",
        rotation=90,
        fontsize=8,
        color="0.4",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training clicks",
        ylabel="fit + evaluation, wall seconds",
        title="Cost against training size (dotted: the fitted law to full RSC15)",
    )
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # below the axes, so that it hides no line
        fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    save(fig, path)


def render(out_dir: Path, records: list[dict] | None = None) -> None:
    """Write table.md and scaling.png from the records (default: the JSONL in ``out_dir``)."""
    if records is None:
        path = out_dir / JSONL
        if not path.exists():
            raise DataError(f"--render-only: {path} does not exist; run the measurements first")
        records = read_records(path)
    io.write_text(out_dir / TABLE, render_table(records))
    render_plot(records, out_dir / PLOT)


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--scales", type=parse_scales, default=DEFAULT_SCALES, help=f"default {DEFAULT_SCALES}")
    add("--algorithms", type=parse_algorithms, default=",".join(DEFAULT_ALGORITHMS), help="A,B")
    add("--threads", type=parse_threads, default="auto", help="auto (default) or N: see above")
    add("--time-limit", type=parse_seconds, default=7200.0, help="per stage, s (default 7200)")
    add("--seed", type=int, default=0, help="data and model seed (default 0)")
    add("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"default {DEFAULT_OUT_DIR}")
    add("--render-only", action="store_true", help="rebuild table.md and scaling.png only")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.render_only:
            render(args.out_dir)
            return 0
        tables, sources = load_tables(CONFIG_DATASET, None)
        try:
            specs = resolve(args.algorithms, tables, " + ".join(sources))
        except ConfigError as e:
            parser.error(f"argument --algorithms: {e}")
        fix_threads(args.threads)
        Runner(args, specs).run()
    except (ConfigError, DataError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
