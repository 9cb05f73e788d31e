"""Our GRU4Rec against the authors' official PyTorch code, side by side: training events/s.

    python -m benchmark.perf.side_by_side --official PATH [--dataset rsc15-64] \
        [--data-dir PATH] [--rounds 2] [--threads 1] [--max-sessions N] [--out FILE]

PATH is a checkout of the authors' hidasib/GRU4Rec_PyTorch_Official (``run.py``,
``gru4rec_pytorch.py``, ``paramfiles/``), kept outside this project. Both codes train ONE epoch
on the same training events: the dataset's training sessions (the first ``--max-sessions`` of
them for a quick check), written for theirs as the TSV their ``run.py`` reads (SessionId,
ItemId, Time; Time is the click's position in our data, so their time order of sessions is our
session order). Two settings:

* ``paramfile``: their ``paramfiles/rsc15_xe_shared_100_best.py`` (momentum 0.2, hidden
  dropout 0.4, learning rate 0.2, sample alpha 0.5), ours ``gru4rec@rsc15-best-paramfile``;
* ``readme``: the RSC15 row of their README's table of best parameters (momentum 0, embedding
  dropout 0.1, learning rate 0.1, sample alpha 0.75), ours ``gru4rec@rsc15-best``.

Both are cross-entropy with logQ, a shared embedding, 100 units, batch 32 and 2,048 extra
samples; the script checks that each preset equals their setting before it runs anything.
Each round runs ours and theirs once per setting, the order flipped every round, each run in
a fresh process (ours: ``python -m benchmark.perf.gru4rec_speed --no-eval`` on the same slice,
which must report the same number of training events); every run is timed by the code's own
epoch clock (the loop over the epoch's steps, setup excluded) and
turned into events/s over the exact number of training events (their printed ``e/s`` counts
every step as a full batch, the shrinking tail included, and is kept as ``printed_events_per_s``).
Theirs runs as a subprocess in its own folder, with ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` at ``--threads``; ours trains with ``n_threads = --threads``; the JSON
records the thread count each side trained with, the load average before and after every run,
both codes' commits and torch versions. Their ``run.py`` needs torch, joblib and the numpy and
pandas of its time, numpy < 2 and pandas < 3, in ``--official-python`` (default: this
interpreter); a virtual environment layered on this one's will do, e.g.

    python -m venv ../official-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" \
        > ../official-venv/lib/python3.11/site-packages/sessionbench.pth
    ../official-venv/bin/pip install --no-deps --ignore-installed \
        "numpy==1.26.4" "pandas==2.3.3" pytz joblib
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.cli_options import add_data_options
from benchmark.config import PROJECT_ROOT, load_preset
from datasets import load_dataset
from datasets.sessions import Sessions

RESULTS = PROJECT_ROOT / "results" / "perf"
OFFICIAL_FILES = ("run.py", "gru4rec_pytorch.py", "paramfiles")
PARAMFILE = "paramfiles/rsc15_xe_shared_100_best.py"

README_PARAMS = {
    # The RSC15 row of the official README's "Best hyperparameters" table, in their names.
    "loss": "cross-entropy",
    "constrained_embedding": True,
    "embedding": 0,
    "elu_param": 0.0,
    "layers": [100],
    "n_epochs": 10,
    "batch_size": 32,
    "dropout_p_embed": 0.1,
    "dropout_p_hidden": 0.0,
    "learning_rate": 0.1,
    "momentum": 0.0,
    "n_sample": 2048,
    "sample_alpha": 0.75,
    "bpreg": 0.0,
    "logq": 1.0,
}

SETTINGS = {
    # name: (our preset, their parameters: a parameter file under PATH, or a dict)
    "paramfile": ("rsc15-best-paramfile", PARAMFILE),
    "readme": ("rsc15-best", README_PARAMS),
}

# Their run.py, started with the thread count set and reported first (argv: threads, run.py args).
_LAUNCHER = (
    "import runpy, sys, torch; torch.set_num_threads(int(sys.argv[1])); "
    "print(f'SIDE_BY_SIDE torch_threads={torch.get_num_threads()} torch={torch.__version__}', "
    "flush=True); sys.argv = ['run.py'] + sys.argv[2:]; runpy.run_path('run.py', "
    "run_name='__main__')"
)

_EPOCH = re.compile(
    r"Epoch(\d+) --> loss: (\S+)\s+\(([\d.]+)s\)\s+\[([\d.]+) mb/s \| ([\d.]+) e/s\]"
)
_TOTAL = re.compile(r"Total training time: ([\d.]+)s")
_STORE = re.compile(r"Created sample store with (\d+) batches of samples")
_LAUNCHED = re.compile(r"SIDE_BY_SIDE torch_threads=(\d+) torch=(\S+)")


class OfficialCodeError(ValueError):
    """--official does not name a usable checkout of the authors' code (a one-line message)."""


# ----------------------------------------------------------------------------- their code
def check_official(path: Path) -> Path:
    """``path`` resolved if it holds the authors' code, else :class:`OfficialCodeError`."""
    path = Path(path)
    if not path.is_dir():
        raise OfficialCodeError(f"--official {path}: no such folder")
    missing = [name for name in (*OFFICIAL_FILES, PARAMFILE) if not (path / name).exists()]
    if missing or "class GRU4Rec" not in (path / "gru4rec_pytorch.py").read_text(errors="replace"):
        what = ", ".join(missing) if missing else "no class GRU4Rec in gru4rec_pytorch.py"
        raise OfficialCodeError(
            f"--official {path}: not a checkout of the authors' GRU4Rec_PyTorch_Official ({what})"
        )
    return path.resolve()


def official_commit(path: Path) -> str:
    """The checkout's commit (``git -C PATH rev-parse HEAD``), or 'unknown'."""
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


def read_paramfile(path: Path) -> dict:
    """The ``gru4rec_params`` of one of their parameter files, read without running it (the file
    is ``gru4rec_params = OrderedDict([(name, value), ...])`` of literals)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "gru4rec_params" for t in node.targets)
            and isinstance(node.value, ast.Call)
            and len(node.value.args) == 1
        ):
            return dict(ast.literal_eval(node.value.args[0]))
    raise OfficialCodeError(f"{path}: no gru4rec_params = OrderedDict([...]) in it")


def their_params(path: Path, setting: str) -> dict:
    """Their parameters of ``setting`` (a copy)."""
    source = SETTINGS[setting][1]
    return read_paramfile(path / source) if isinstance(source, str) else dict(source)


def as_ours(theirs: dict) -> dict:
    """Their parameters in our constructor's names (the ones that set the training)."""
    if theirs.get("constrained_embedding", True):
        embedding: int | str = "shared"
    else:
        embedding = int(theirs.get("embedding", 0))
    loss = theirs["loss"]
    elu = float(theirs.get("elu_param", 0.5))
    ours = {
        "loss": loss,
        "final_act": "softmax"
        if loss == "cross-entropy"
        else (f"elu-{elu:g}" if elu else "linear"),
        "embedding": embedding,
        "layers": [int(n) for n in theirs["layers"]],
        "batch_size": int(theirs["batch_size"]),
        "n_sample": int(theirs["n_sample"]),
        "sample_alpha": float(theirs["sample_alpha"]),
        "logq": float(theirs.get("logq", 0.0)),
        "dropout_embed": float(theirs["dropout_p_embed"]),
        "dropout_hidden": float(theirs["dropout_p_hidden"]),
        "learning_rate": float(theirs["learning_rate"]),
        "momentum": float(theirs["momentum"]),
    }
    if loss == "bpr-max":
        ours["bpreg"] = float(theirs["bpreg"])
    return ours


def preset_differences(preset: dict, theirs: dict) -> list[str]:
    """Where our preset's values differ from their parameters ('name: ours X, theirs Y')."""
    want = as_ours(theirs)
    have = dict(preset)
    if isinstance(have.get("layers"), int):
        have["layers"] = [have["layers"]]
    return [
        f"{name}: ours {have.get(name)!r}, theirs {value!r}"
        for name, value in want.items()
        if have.get(name) != value
    ]


def param_string(theirs: dict, n_epochs: int = 1) -> str:
    """Their ``run.py -ps`` string for these parameters, with ``n_epochs`` replaced."""
    parts = []
    for name, value in {**theirs, "n_epochs": n_epochs}.items():
        if isinstance(value, (list, tuple)):
            value = "/".join(str(v) for v in value)
        parts.append(f"{name}={value}")
    return ",".join(parts)


def write_official_tsv(train: Sessions, path: Path) -> int:
    """Write ``train`` as their ``run.py`` reads it (tab separated, header SessionId, ItemId,
    Time); return the training events written (every click but the first of each session).

    SessionId is our session index, ItemId our item index, Time the click's position in our
    data, so their order of sessions (by first click time) is ours. Sessions of one click, which
    neither code trains on, are left out."""
    keep = np.flatnonzero(train.lengths >= 2)
    kept = train.subset(keep)
    positions = np.repeat(train.offsets[keep], kept.lengths) + (
        np.arange(kept.n_events) - np.repeat(kept.offsets[:-1], kept.lengths)
    )
    table = np.column_stack([np.repeat(keep, kept.lengths), kept.items, positions])
    with open(path, "w") as f:
        f.write("SessionId\tItemId\tTime\n")
        np.savetxt(f, table, fmt="%d", delimiter="\t")
    return kept.n_predictions


def parse_official_output(text: str) -> dict:
    """What their ``run.py`` printed about training: every epoch line
    (``Epoch1 --> loss: 0.48 \\t(24.57s) \\t[284.68 mb/s | 22568 e/s]``), the total training
    time, the sample store and (from our launcher) the torch threads and version.

    Raises:
        ValueError: if it printed no epoch line (the run failed) or a NaN error.
    """
    if "NaN error" in text:
        raise ValueError("their training stopped with a NaN error")
    epochs = [
        {
            "epoch": int(m.group(1)),
            "loss": float(m.group(2)),
            "seconds": float(m.group(3)),
            "minibatches_per_s": float(m.group(4)),
            "printed_events_per_s": float(m.group(5)),
        }
        for m in _EPOCH.finditer(text)
    ]
    if not epochs:
        tail = " | ".join(text.strip().splitlines()[-5:])
        raise ValueError(f"their run.py printed no epoch line; its last lines: {tail}")
    total, store, launched = _TOTAL.search(text), _STORE.search(text), _LAUNCHED.search(text)
    return {
        "epochs": epochs,
        "total_training_seconds": float(total.group(1)) if total else None,
        "sample_store_batches": int(store.group(1)) if store else None,
        "torch_threads": int(launched.group(1)) if launched else None,
        "torch": launched.group(2) if launched else None,
    }


# What their run.py imports, at the versions of its time: pandas < 3 (their fit calls
# torch.tensor on a pandas Series indexed by item ids, which pandas 3 no longer reads by
# position: "could not determine the shape of object type 'Series'") and numpy < 2 (their
# initialisation multiplies float32 arrays by numpy float64 scalars, float64 under numpy 2's
# promotion rules, and torch refuses to set_ a float parameter to a double tensor).
_IMPORTS = (
    "import torch, numpy, joblib, pandas, sys; "
    "old = [f'{m.__name__} {m.__version__}' for m, top in ((numpy, 2), (pandas, 3)) "
    "if int(m.__version__.split('.')[0]) >= top]; "
    "sys.exit(f'{\" and \".join(old)}: their code needs numpy < 2 and pandas < 3' if old else 0)"
)


def check_official_python(python: str, path: Path) -> None:
    """:class:`OfficialCodeError` unless ``python`` has what their ``run.py`` needs."""
    try:
        done = subprocess.run(
            [python, "-c", _IMPORTS], cwd=path, capture_output=True, text=True, timeout=120
        )
    except OSError as e:
        raise OfficialCodeError(f"--official-python {python}: {e.strerror}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise OfficialCodeError(
            f"--official-python {python}: {last} (their run.py needs torch, joblib, numpy < 2 "
            "and pandas < 3)"
        )


def run_official(
    path: Path,
    python: str,
    train_file: Path,
    theirs: dict,
    *,
    threads: int,
    device: str,
    timeout: float,
) -> dict:
    """Train their code for one epoch on ``train_file``; its printed timings, parsed."""
    env = _thread_env(threads)
    device = "cuda:0" if device == "cuda" else device
    command = [python, "-c", _LAUNCHER, str(threads), str(train_file)]
    command += ["-ps", param_string(theirs), "-d", device]
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=path, env=env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"their run.py exited with {done.returncode}: {tail}")
    parsed = parse_official_output(done.stdout)
    return {
        **parsed,
        "process_seconds": wall,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


# ----------------------------------------------------------------------------- both
def _thread_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_ours(args: argparse.Namespace, preset: str, expected_events: int) -> dict:
    """One epoch of our GRU4Rec with ``preset``, in a fresh process as theirs is: the project's
    own speed script (``python -m benchmark.perf.gru4rec_speed --no-eval``) on the same slice."""
    command = [sys.executable, "-m", "benchmark.perf.gru4rec_speed", "--dataset", args.dataset]
    command += ["--data-dir", str(Path(args.data_dir).resolve()), "--preset", preset]
    command += ["--device", args.device, "--epochs", "1", "--threads", str(args.threads)]
    command += ["--seed", str(args.seed), "--no-eval"]
    if args.max_sessions is not None:
        command += ["--train-sessions", str(args.max_sessions)]
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=_thread_env(args.threads),
        capture_output=True,
        text=True,
        timeout=args.timeout,
    )
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"our gru4rec_speed exited with {done.returncode}: {tail}")
    speed = json.loads(done.stdout[done.stdout.index("{") :])
    if speed["train_events_per_epoch"] != expected_events:
        raise RuntimeError(
            f"our run trained {speed['train_events_per_epoch']} events, theirs got "
            f"{expected_events}: not the same training data"
        )
    events_per_s = speed["train_events_per_s"][0]
    return {
        "events": speed["train_events_per_epoch"],
        "events_per_s": events_per_s,
        "seconds": speed["train_events_per_epoch"] / events_per_s,
        "loss": speed["train_loss"][0],
        "torch_threads": speed["train_threads_at_epoch_end"][0],
        "impl": speed.get("train_impl"),  # our step's implementation, where it has several
        "fit_seconds": speed["fit_seconds"],
        "process_seconds": wall,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def summarize(ours: list[float], theirs: list[float]) -> dict:
    """Medians of each side's events/s and ours / theirs: of the medians, and per round."""
    if not ours or len(ours) != len(theirs):
        raise ValueError("need the same number (>= 1) of runs of ours and theirs")
    rounds = [a / b for a, b in zip(ours, theirs)]
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    return {
        "ours_median_events_per_s": ours_median,
        "theirs_median_events_per_s": theirs_median,
        "ratio_of_medians": ours_median / theirs_median,
        "round_ratios": rounds,
        "median_round_ratio": statistics.median(rounds),
    }


def our_commit() -> str:
    from benchmark.runner import versions

    return versions()["code"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--official", type=Path, required=True, metavar="PATH")
    p.add_argument("--dataset", default="rsc15-64")
    add_data_options(p, clicks=False, cache_dir=False, events=False)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--settings", default=",".join(SETTINGS), help="of: " + ", ".join(SETTINGS))
    p.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    p.add_argument("--max-sessions", type=int, default=None, help="the first N training sessions")
    p.add_argument("--official-python", default=sys.executable, metavar="PYTHON")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run of theirs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or not settings:
        p.error(f"--settings: unknown {', '.join(unknown) or '(none given)'}")
    if args.rounds < 1 or args.threads < 1:
        p.error("--rounds and --threads must be >= 1")
    args.settings = settings
    return args


def measure(args: argparse.Namespace) -> dict:
    official = check_official(args.official)
    check_official_python(args.official_python, official)
    theirs_by_setting = {}
    for setting in args.settings:
        preset, source = SETTINGS[setting]
        theirs = their_params(official, setting)
        diff = preset_differences(load_preset("gru4rec", preset), theirs)
        if diff:
            raise OfficialCodeError(
                f"preset {preset} is not their {setting} setting: {'; '.join(diff)}"
            )
        theirs_by_setting[setting] = theirs
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train = data.train
    if args.max_sessions is not None:
        train = train.subset(np.arange(min(args.max_sessions, train.n_sessions)))
    result: dict = {
        "dataset": args.dataset,
        "train_sessions": train.n_sessions,
        "train_events": train.n_predictions,
        "device": args.device,
        "threads": args.threads,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "ours": {"code": our_commit(), "torch": torch.__version__},
        "theirs": {
            "path": str(official),
            "code": official_commit(official),
            "python": args.official_python,
        },
        "settings": {},
    }
    with tempfile.TemporaryDirectory(prefix="side_by_side_") as tmp:
        train_file = Path(tmp) / f"{args.dataset}_train.tsv"
        written = write_official_tsv(train, train_file)
        assert written == train.n_predictions
        for setting in args.settings:
            preset = SETTINGS[setting][0]
            theirs = theirs_by_setting[setting]
            result["settings"][setting] = {
                "our_preset": preset,
                "their_source": SETTINGS[setting][1]
                if isinstance(SETTINGS[setting][1], str)
                else "README table, RSC15 row",  # fmt: skip
                "their_params": {**theirs, "n_epochs": 1},
                "ours": [],
                "theirs": [],
            }
        for round_ in range(args.rounds):
            for setting in args.settings:
                row = result["settings"][setting]
                order = ("ours", "theirs") if round_ % 2 == 0 else ("theirs", "ours")
                for side in order:
                    if side == "ours":
                        run = run_ours(args, row["our_preset"], train.n_predictions)
                    else:
                        run = run_official(
                            official,
                            args.official_python,
                            train_file,
                            theirs_by_setting[setting],
                            threads=args.threads,
                            device=args.device,
                            timeout=args.timeout,
                        )
                        epoch = run["epochs"][0]
                        run.update(
                            events=train.n_predictions,
                            seconds=epoch["seconds"],
                            events_per_s=train.n_predictions / max(epoch["seconds"], 1e-9),
                            printed_events_per_s=epoch["printed_events_per_s"],
                            loss=epoch["loss"],
                        )
                    run["round"] = round_ + 1
                    row[side].append(run)
                    print(
                        f"round {round_ + 1} {setting} {side}: {run['events_per_s']:,.0f} events/s"
                        f" ({run['torch_threads']} threads, load {run['loadavg_before'][0]:.2f}"
                        f" -> {run['loadavg_after'][0]:.2f})",
                        flush=True,
                    )
    for row in result["settings"].values():
        row["summary"] = summarize(
            [r["events_per_s"] for r in row["ours"]], [r["events_per_s"] for r in row["theirs"]]
        )
        result["theirs"].setdefault("torch", row["theirs"][0]["torch"])
    loads = [r["loadavg_before"][0] for row in result["settings"].values() for r in row["ours"]]
    loads += [r["loadavg_before"][0] for row in result["settings"].values() for r in row["theirs"]]
    result["max_loadavg_before_a_run"] = max(loads)
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        result = measure(args)
    except OfficialCodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:  # a run of theirs failed
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = args.out or RESULTS / f"side_by_side_{args.dataset}_{args.device.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for setting, row in result["settings"].items():
        s = row["summary"]
        print(
            f"{setting}: ours {s['ours_median_events_per_s']:,.0f} events/s, theirs "
            f"{s['theirs_median_events_per_s']:,.0f}: ours/theirs {s['ratio_of_medians']:.2f} "
            f"(per round {', '.join(f'{r:.2f}' for r in s['round_ratios'])})"
        )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
