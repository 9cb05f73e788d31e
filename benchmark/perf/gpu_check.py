"""The one-command GPU check: what a GPU changes, measured once, into one JSON (under 8 minutes).

    python -m benchmark.perf.gpu_check [--data-dir ../shared/data] [--out FILE]
    python -m benchmark.perf.gpu_check --device cpu --smoke --data-dir ../shared/data  # no GPU

On ``--device cuda`` (the default), on rsc15-64:

1. ``cuda_tests``: the tests marked ``cuda`` (``pytest -m cuda`` over the test files that have
   them), their counts and summary line;
2. ``gru4rec``: one epoch of GRU4Rec in both settings of ``side_by_side`` (``paramfile``:
   ``rsc15-best-paramfile``, ``readme``: ``rsc15-best``) at batch 32 and 512: events/s
   (training events / the epoch loop's wall clock), loss, peak GPU memory; the goal is
   150,000 events/s at batch 32;
3. ``evaluation``: the evaluator over the test set with the ``readme`` batch-32 model:
   predictions/s, Recall@20, MRR@20;
4. ``agreement``: the CPU (``"unique"`` rows) and the device (``"static"`` rows) trainer from
   the same initial parameters, fed the same negative samples and dropout masks, after the same
   100 training steps: the largest absolute difference of every parameter tensor, and of all
   after steps 1, 2, 5, ... 100; beside it the same figures for the CPU's two row layouts,
   whose difference is rounding only: training amplifies rounding (on rsc15-64 a change of
   one part in 10^7 of the starting parameters grows to 0.1-2 by step 100), so a real
   disagreement is told from rounding by that floor, and by the first steps;
5. ``neural``: one epoch of NARM, STAMP, SR-GNN and SASRec with their ``authors`` presets
   (``epoch_timing.time_one_epoch``, as ``neural_speed``);
6. ``memory``: the peak GPU memory over the whole check (and the process's peak RSS).

Without a GPU it says so in one line and exits 2, unless ``--device cpu --smoke``: then every
part runs on the CPU on a slice (``--max-sessions``, default 200 training and test sessions;
the CUDA tests skip, the agreement compares the CPU's two row layouts), which is what CI runs.
The JSON is rewritten after every part (``complete`` is false until the end), so a check cut
short keeps what it measured; a part that fails records its error and the others still run
(exit status 1). Default output: ``results/perf/gpu_check_<device>.json``.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import logging
import os
import re
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from algorithms.gru4rec import GRU4Rec
from algorithms.gru4rec.batching import plan_epoch
from algorithms.gru4rec.model import init_params
from algorithms.gru4rec.trainer import Trainer
from benchmark.cli_options import add_data_options
from benchmark.config import PROJECT_ROOT, load_preset
from benchmark.evaluator import evaluate
from benchmark.metrics import mrr_at, recall_at
from benchmark.perf.epoch_timing import machine, time_one_epoch
from benchmark.perf.gru4rec_speed import fit_timed
from benchmark.perf.neural_speed import MODELS
from benchmark.perf.side_by_side import SETTINGS, our_commit
from datasets import load_dataset
from datasets.sessions import Sessions

RESULTS = PROJECT_ROOT / "results" / "perf"
GOAL_EVENTS_PER_S = 150_000
"""GRU4Rec training events/s wanted on one GPU at batch 32."""
AGREEMENT_TOLERANCE = 1e-4
"""Agreement: a parameter difference between CPU and device this small is always fine."""
FIRST_STEP_TOLERANCE = 1e-5
"""Agreement: the largest parameter difference allowed after the first step."""
NOISE_FACTOR = 10.0
"""Agreement: later, the difference may be this many times what rounding alone causes."""
CHECKPOINTS = (1, 2, 5, 10, 20, 50, 100)
SMOKE_SESSIONS = 200
_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?)\b")


def device_problem(device: str, smoke: bool) -> str | None:
    """Why the check cannot run on ``device`` (one line), or None."""
    if device == "cpu":
        return (
            None if smoke else "--device cpu runs only with --smoke (the full check is for a GPU)"
        )
    if not re.fullmatch(r"cuda(:\d+)?", device):
        return f"--device {device}: must be cuda, cuda:N or cpu"
    if not torch.cuda.is_available():
        return (
            f"no CUDA GPU is available here (torch {torch.__version__}): nothing to check; "
            "without a GPU run --device cpu --smoke"
        )
    return None


# ----------------------------------------------------------------------------- parts
def cuda_test_files(tests: Path = PROJECT_ROOT / "tests") -> list[Path]:
    """The test files with tests marked ``cuda`` (this check's own tests left out)."""
    return sorted(
        path
        for path in tests.glob("test_*.py")
        if path.name != "test_gpu_check.py" and "mark.cuda" in path.read_text(errors="replace")
    )


def parse_pytest_summary(text: str) -> dict:
    """Counts from pytest's closing line (``3 passed, 2 skipped, 40 deselected in 9.1s``)."""
    lines = [line for line in text.strip().splitlines() if _SUMMARY.search(line)]
    last = lines[-1].strip(" =") if lines else ""
    counts = {kind: 0 for kind in ("passed", "failed", "skipped", "deselected", "errors")}
    for n, kind in _SUMMARY.findall(last):
        counts["errors" if kind.startswith("error") else kind] = int(n)
    return {"summary": last, **counts}


def run_cuda_tests(timeout: float = 300.0) -> dict:
    files = cuda_test_files()
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"]
    command += [str(path.relative_to(PROJECT_ROOT)) for path in files]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    result = {
        "command": " ".join(command[1:]),
        "returncode": done.returncode,
        "seconds": time.perf_counter() - start,
        **parse_pytest_summary(done.stdout),
    }
    if done.returncode != 0:
        result["output_tail"] = (done.stdout + done.stderr).strip().splitlines()[-30:]
    return result


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: str) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None


def gru4rec_params(preset: str, device: str, batch_size: int, seed: int) -> dict:
    params = load_preset("gru4rec", preset)
    params.update(n_epochs=1, device=device, seed=seed, batch_size=batch_size)
    return params


def gru4rec_runs(
    train: Sessions, device: str, batch_sizes: list[int], settings: list[str], seed: int
) -> tuple[list[dict], GRU4Rec | None]:
    """One epoch per (setting, batch size); the runs and the ``readme`` batch-32 model (or the
    first one trained) for the evaluation."""
    rows, kept = [], None
    for setting in settings:
        preset = SETTINGS[setting][0]
        for batch_size in batch_sizes:
            _reset_peak(device)
            model, timing = fit_timed(train, gru4rec_params(preset, device, batch_size, seed))
            row = {
                "setting": setting,
                "preset": preset,
                "batch_size": batch_size,
                "events": timing["events"],
                "events_per_s": timing["events_per_s"][0],
                "loss": timing["loss"][0],
                "threads": timing["threads"][0],
                "fit_seconds": timing["fit_seconds"],
                "peak_gpu_memory_bytes": _peak(device),
                "loadavg_before": timing["loadavg_before"],
                "loadavg_after": timing["loadavg_after"],
            }
            if batch_size == 32:
                row["goal_events_per_s"] = GOAL_EVENTS_PER_S
                row["goal_met"] = row["events_per_s"] >= GOAL_EVENTS_PER_S
            rows.append(row)
            goal = ""
            if batch_size == 32:
                met = "met" if row["goal_met"] else "not met"
                goal = f" (goal >= {GOAL_EVENTS_PER_S:,}: {met})"
            print(
                f"gru4rec {setting} ({preset}) batch {batch_size}: "
                f"{row['events_per_s']:,.0f} events/s{goal}",
                flush=True,
            )
            if kept is None or (setting == "readme" and batch_size == 32):
                kept = model
            del model
    return rows, kept


def evaluation(model: GRU4Rec, test: Sessions, device: str, batch_size: int) -> dict:
    _reset_peak(device)
    start = time.perf_counter()
    preds = evaluate(model, test, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    result = {
        "model": "gru4rec",
        "params": model.get_params(),
        "eval_batch_size": batch_size,
        "predictions": len(preds),
        "seconds": seconds,
        "predictions_per_s": len(preds) / max(seconds, 1e-9),
        "recall20": recall_at(preds.rank, 20),
        "mrr20": mrr_at(preds.rank, 20),
        "peak_gpu_memory_bytes": _peak(device),
    }
    print(f"evaluation: {result['predictions_per_s']:,.0f} predictions/s", flush=True)
    return result


def agreement(train: Sessions, preset: str, device: str, steps: int, seed: int) -> dict:
    """The CPU trainer (``"unique"`` rows) against the ``device`` trainer (``"static"`` rows)
    from the same initial parameters, the device fed the CPU's negative samples and dropout
    masks: the largest absolute difference of every parameter tensor after ``steps`` steps,
    and of all of them after steps 1, 2, 5, 10, 20, 50, 100.

    Training amplifies rounding (Adagrad's first updates divide near-zero gradients by their
    own size; with the parameter file's learning rate 0.2 a difference grows about twofold per
    step), so the figures are set beside the ``noise_floor``: the same figures for a third
    trainer, on the CPU with the device's ``"static"`` rows, whose difference from the
    ``"unique"`` one is rounding only (the two are held equal by the tests). The device agrees
    (``ok``) if it is within ``FIRST_STEP_TOLERANCE`` after the first step and, at every step
    recorded, within ``AGREEMENT_TOLERANCE`` or ``NOISE_FACTOR`` times the noise floor. (On the
    CPU smoke run the checked trainer is that third one: it only exercises the code.)"""
    params = gru4rec_params(preset, "cpu", 32, seed)
    model = GRU4Rec(**params)
    model.validate()
    config = model._train_config()  # the trainer's settings, exactly as fit builds them
    cpu, dev = torch.device("cpu"), torch.device(device)
    support = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
    plan = plan_epoch(train, model.batch_size)
    start = init_params(
        train.n_items,
        model._layer_sizes(),
        model.embedding,
        torch.Generator().manual_seed(seed),
        cpu,
        cell=model.cell,
    )

    # The tensor-op step on both sides (where the trainer has other implementations, e.g.
    # compiled CPU loops): the two differ only in the device and the row layout.
    impl = {"impl": "torch"} if "impl" in inspect.signature(Trainer).parameters else {}

    def trainer(params: dict, on: torch.device, layout: str) -> Trainer:
        generator = torch.Generator(device=on).manual_seed(seed + 1)
        return Trainer(
            params, model.embedding, config, support, plan, on, generator, layout=layout, **impl
        )

    reference = trainer({k: v.clone() for k, v in start.items()}, cpu, "unique")
    checked = trainer({k: v.to(dev) for k, v in start.items()}, dev, "static")
    cpu_static = trainer({k: v.clone() for k, v in start.items()}, cpu, "static")
    _share_draws(reference, [checked, cpu_static])
    n_steps = min(steps, plan.n_steps)
    marks = sorted({s for s in CHECKPOINTS if s < n_steps} | {n_steps})
    by_step, floor_by_step = {}, {}
    for trained in (reference, checked, cpu_static):
        trained.reset_hidden()
    for t in range(n_steps):
        for trained in (reference, checked, cpu_static):
            trained.train_step(t)
        if t + 1 in marks:
            diffs, floor = _differences(reference, checked), _differences(reference, cpu_static)
            by_step[t + 1], floor_by_step[t + 1] = max(diffs.values()), max(floor.values())
    ok = by_step[marks[0]] <= FIRST_STEP_TOLERANCE and all(
        by_step[s] <= max(AGREEMENT_TOLERANCE, NOISE_FACTOR * floor_by_step[s]) for s in marks
    )
    print(
        f"agreement {preset}: max |cpu - {device}| {by_step[marks[0]]:.1e} after step "
        f"{marks[0]}, {by_step[n_steps]:.1e} after {n_steps} (cpu rows unique - static: "
        f"{floor_by_step[n_steps]:.1e}): {'ok' if ok else 'DIFFERENT'}",
        flush=True,
    )
    return {
        "preset": preset,
        "steps": n_steps,
        "reference": {"device": "cpu", "layout": reference.layout, **impl},
        "checked": {"device": device, "layout": checked.layout, **impl},
        "max_abs_diff": diffs,
        "max_abs_diff_all": by_step[n_steps],
        "max_abs_diff_by_step": by_step,
        "noise_floor_max_abs_diff": floor,
        "noise_floor_by_step": floor_by_step,
        "noise_floor_from": {"device": "cpu", "layout": cpu_static.layout, **impl},
        "first_step_tolerance": FIRST_STEP_TOLERANCE,
        "tolerance": AGREEMENT_TOLERANCE,
        "noise_factor": NOISE_FACTOR,
        "ok": ok,
    }


def _differences(a: Trainer, b: Trainer) -> dict[str, float]:
    """The largest absolute difference of every parameter tensor of two trainers."""
    if b.device.type == "cuda":
        torch.cuda.synchronize(b.device)
    ours, theirs = a.export_params(), b.export_params()
    return {name: float((ours[name] - theirs[name].cpu()).abs().max()) for name in ours}


def _share_draws(source: Trainer, targets: list[Trainer]) -> None:
    """Make every target use the negative samples and dropout masks ``source`` draws, in the
    order drawn (all step in lockstep, so each draw is used before the next)."""
    masks = [collections.deque() for _ in targets]
    samples = [collections.deque() for _ in targets]
    draw_mask = source._dropout_mask

    def recorded_mask(n: int, width: int, p: float) -> torch.Tensor:
        mask = draw_mask(n, width, p)
        for queue in masks:
            queue.append(mask)
        return mask

    source._dropout_mask = recorded_mask
    for target, queue in zip(targets, masks):
        target._dropout_mask = lambda n, width, p, q=queue, t=target: q.popleft().to(t.device)
    if source.samples is None:
        return
    draw_sample = source.samples.next

    def recorded_sample() -> tuple[torch.Tensor, torch.Tensor]:
        drawn = draw_sample()
        for queue in samples:
            queue.append(drawn)
        return drawn

    source.samples.next = recorded_sample
    for target, queue in zip(targets, samples):
        target.samples.next = lambda q=queue, t=target: tuple(
            None if x is None else x.to(t.device) for x in q.popleft()
        )


def neural_runs(
    train: Sessions, device: str, models: list[str], preset: str, seed: int
) -> list[dict]:
    rows = []
    for name in models:
        _reset_peak(device)
        row = {"model": name, **time_one_epoch(name, train, preset or None, device, seed)}
        row["peak_gpu_memory_bytes"] = _peak(device)
        print(f"{name}: {row['events_per_s']:,.0f} events/s", flush=True)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the check
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="rsc15-64")
    add_data_options(p, clicks=False, cache_dir=False, events=False)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --smoke)")
    p.add_argument("--smoke", action="store_true", help="every part on a small slice")
    p.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help=f"the first N training and test sessions (--smoke: {SMOKE_SESSIONS})",
    )
    p.add_argument("--batch-sizes", default="32,512")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--neural-preset", default="authors")
    p.add_argument("--agreement-steps", type=int, default=100)
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--no-tests", action="store_true", help="leave out the CUDA tests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.settings = [s for s in args.settings.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    if any(s not in SETTINGS for s in args.settings):
        p.error(f"--settings: each of {', '.join(SETTINGS)}")
    if args.smoke and args.max_sessions is None:
        args.max_sessions = SMOKE_SESSIONS
    return args


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def default_out(info: dict) -> Path:
    name = "cpu" if info["device"] == "cpu" else _slug(info["device_name"])
    return RESULTS / f"gpu_check_{name}.json"


def run_check(args: argparse.Namespace) -> tuple[dict, Path]:
    """Every part in turn; returns the result and where it was written."""
    device = args.device
    info = machine(device)
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(cuda=torch.version.cuda, gpu_memory_total_bytes=int(props.total_memory))
    out = args.out or default_out(info)
    result: dict = {
        "check": "gpu_check",
        "smoke": args.smoke,
        "dataset": args.dataset,
        "code": our_commit(),
        "machine": info,
        "complete": False,
        "errors": [],
    }

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    def part(name: str, work: Callable[[], object]) -> object:
        start = time.perf_counter()
        try:
            value = work()
        except Exception as e:  # noqa: BLE001 - one failing part must not lose the others
            result[name] = {"error": f"{type(e).__name__}: {e}"}
            result["errors"].append(name)
            traceback.print_exc()
            print(f"{name}: FAILED ({type(e).__name__}: {e})", flush=True)
            value = None
        else:
            result[name] = value
        result.setdefault("seconds", {})[name] = time.perf_counter() - start
        save()
        return value

    begin = time.perf_counter()
    if args.no_tests:
        result["cuda_tests"] = {"skipped": "--no-tests"}
    else:
        tests = part("cuda_tests", run_cuda_tests)
        if tests is not None and tests["returncode"] != 0:
            result["errors"].append("cuda_tests")
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train, test = data.train, data.test
    if args.max_sessions is not None:
        train = train.subset(np.arange(min(args.max_sessions, train.n_sessions)))
        test = test.subset(np.arange(min(args.max_sessions, test.n_sessions)))
    result.update(
        train_sessions=train.n_sessions,
        train_events=train.n_predictions,
        test_sessions=test.n_sessions,
        test_predictions=test.n_predictions,
    )
    if device.startswith("cuda"):  # CUDA context, cuBLAS and kernels, before any timing
        warm = train.subset(np.arange(min(500, train.n_sessions)))
        fit_timed(warm, gru4rec_params(SETTINGS["readme"][0], device, 32, args.seed))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    kept: dict[str, GRU4Rec] = {}

    def train_gru4rec() -> list[dict]:
        rows, kept["model"] = gru4rec_runs(
            train, device, args.batch_sizes, args.settings, args.seed
        )
        return rows

    part("gru4rec", train_gru4rec)
    model = kept.pop("model", None)
    if model is not None:
        part("evaluation", lambda: evaluation(model, test, device, args.eval_batch_size))
    else:
        result["evaluation"] = {"error": "no GRU4Rec model was trained"}
        result["errors"].append("evaluation")
    model = None  # free it before the neural models
    part(
        "agreement",
        lambda: [
            agreement(train, SETTINGS[s][0], device, args.agreement_steps, args.seed)
            for s in args.settings
        ],
    )
    part("neural", lambda: neural_runs(train, device, args.models, args.neural_preset, args.seed))
    result["memory"] = {
        "peak_gpu_memory_bytes": int(torch.cuda.max_memory_allocated(device))
        if device.startswith("cuda")
        else None,  # fmt: skip
        "peak_gpu_memory_per_part": {
            name: max((r.get("peak_gpu_memory_bytes") or 0) for r in rows) or None
            for name, rows in (
                ("gru4rec", result.get("gru4rec")),
                ("evaluation", [result.get("evaluation")]),
                ("neural", result.get("neural")),
            )
            if isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
        },
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    result["total_seconds"] = time.perf_counter() - begin
    result["complete"] = True
    save()
    return result, out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    problem = device_problem(args.device, args.smoke)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result, out = run_check(args)
    print(f"written: {out} ({result['total_seconds']:.0f} s)")
    if result["errors"]:
        print(f"failed parts: {', '.join(result['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
