"""Every fault a user can cause, one line each: the command as typed, the message it must give.

Each case runs a command (``run`` or ``tune``) in this process on files a ``setup`` builds in
a fresh folder (``{tmp}`` in the arguments and the message), and asserts what a user who left
it running overnight would want: the exit status (2 for an error), exactly one ``error:`` line
that names the culprit (``message``, a regular expression), no traceback, no run folder under
``{tmp}/out`` and, for a check that belongs before work, no data loaded. Files listed in
``untouched`` must be byte-for-byte as ``setup`` left them (a journal we could not read is never
written to).

To add a case: one ``Case(...)`` line in ``CASES``; a new kind of damaged file is one small
setup function. Cases that need a real process (signals) are at the end.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import benchmark.run_cli as run_cli
import benchmark.runner as runner
import datasets
from benchmark.tuning import cli as tune_cli
from tests.conftest import REPO_ROOT

SYN = "--dataset synthetic --out {tmp}/out --cache-dir {tmp}/cache -q"
TUNE = "--dataset synthetic --algorithm item-knn --cache-dir {tmp}/cache"


# ------------------------------------------------------------------ setups: damaged files


def write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)

    return setup


def folder(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir(parents=True)


JOURNAL_LINE = '{"op_code":0,"worker_id":"w","study_name":"s","directions":[2]}\n'


def damaged_gzip(tmp: Path) -> None:
    rows = "".join(f"{s},2014-04-0{1 + s % 5}T10:00:00.000Z,{s % 7},0\n" for s in range(50_000))
    data = gzip.compress(rows.encode())
    (tmp / "clicks.dat.gz").write_bytes(data[: len(data) // 2])


def one_click_training(tmp: Path) -> None:
    """An own event log whose training sessions all have one click (GRU4Rec learns nothing)."""
    rows = ["session_id,item_id,timestamp"]
    for s in range(40):  # days 1-5: one click each; day 6 (the test day): two clicks each
        rows.append(f"{s},{s % 4},{1_400_000_000 + s * 10_000}")
    for s in range(40, 50):
        rows += [
            f"{s},{s % 4},{1_400_500_000 + s * 60}",
            f"{s},{(s + 1) % 4},{1_400_500_030 + s * 60}",
        ]
    (tmp / "log.csv").write_text("\n".join(rows) + "\n")


# ------------------------------------------------------------------ the table


@dataclass
class Case:
    id: str
    command: str  # "run" or "tune"
    argv: str  # shell words; {tmp} is the case's folder
    message: str  # a regex the error line must match ({tmp} substituted)
    setup: Callable[[Path], None] | None = None
    before_data: bool = True  # the check must come before any data is loaded
    untouched: tuple[str, ...] = ()
    code: int = 2


CASES = [
    # 1. damaged compressed input
    Case(
        "gzip-truncated",
        "run",
        f"{SYN} --algorithms pop --dataset {{tmp}}/clicks.dat.gz",
        r"clicks\.dat\.gz.*(damaged|truncated|ends)",
        damaged_gzip,
        before_data=False,
    ),
    # 2. data one algorithm cannot train on: found before the run folder
    Case(
        "no-two-click-session",
        "run",
        f"{SYN} --algorithms pop,gru4rec --dataset {{tmp}}/log.csv --min-session-length 1 "
        "--min-item-support 1",
        r"\[gru4rec\].*no session with at least two clicks",
        one_click_training,
        before_data=False,
    ),
    # 3. config tables checked up front, absurd sizes refused
    Case(
        "table-cuda",
        "run",
        f"{SYN} --algorithms pop,gru4rec --config {{tmp}}/c.toml",
        r"c\.toml.*\[gru4rec\] device = \"cuda\"",
        write("c.toml", '[gru4rec]\ndevice = "cuda"\n'),
    ),
    Case(
        "table-unknown-key",
        "run",
        f"{SYN} --algorithms gru4rec --config {{tmp}}/c.toml",
        r"c\.toml: \[gru4rec\] unknown hyperparameter\(s\) batchsize",
        write("c.toml", "[gru4rec]\nbatchsize = 3\n"),
    ),
    Case(
        "table-absurd-size",
        "run",
        f"{SYN} --algorithms pop,gru4rec --config {{tmp}}/c.toml",
        r"\[gru4rec\].*need about [0-9.]+ GiB of memory.*more than",
        write("c.toml", "[gru4rec]\nlayers = [100000000]\n"),
        before_data=False,
    ),
    # 4. tuning storage, checked before the data loads, never written when unreadable
    Case(
        "storage-empty", "tune", f"{TUNE} --trials 1 --storage ''", r"--storage '': give a journal"
    ),
    Case(
        "storage-scheme",
        "tune",
        f"{TUNE} --trials 1 --storage foo://db",
        r"unknown database kind 'foo'",
    ),
    Case(
        "storage-driver",
        "tune",
        f"{TUNE} --trials 1 --storage mysql://u@localhost/db",
        r"mysql://u@localhost/db: the database driver .*MySQLdb.* is not installed",
    ),
    Case(
        "storage-unreachable",
        "tune",
        f"{TUNE} --trials 1 --storage postgresql://u:pw@127.0.0.1:1/db",
        r"--storage postgresql://u:\*\*\*@127\.0\.0\.1:1/db: database error",
    ),
    Case(
        "journal-parent-is-file",
        "tune",
        f"{TUNE} --trials 1 --storage {{tmp}}/f/s.journal",
        r"{tmp}/f is a file, not a folder",
        write("f", ""),
    ),
    Case(
        "journal-under-proc",
        "tune",
        f"{TUNE} --trials 1 --storage /proc/sb/s.journal",
        r"/proc/sb/s\.journal: cannot write in /proc",
    ),
    Case(
        "journal-is-folder",
        "tune",
        f"{TUNE} --trials 1 --storage {{tmp}}/j",
        r"j: it is a folder",
        folder("j"),
    ),
    Case(
        "journal-truncated",
        "tune",
        f"{TUNE} --trials 1 --storage {{tmp}}/s.journal",
        r"s\.journal: line 2, the last, is cut short",
        write("s.journal", JOURNAL_LINE + '{"op'),
        untouched=("s.journal",),
    ),
    Case(
        "journal-garbage",
        "tune",
        f"{TUNE} --trials 1 --storage {{tmp}}/s.journal",
        r"s\.journal: line 1 is not a journal record",
        write("s.journal", "not json\n"),
        untouched=("s.journal",),
    ),
    Case(
        "journal-foreign",
        "tune",
        f"{TUNE} --trials 1 --storage {{tmp}}/s.journal",
        r"line 1 is not an Optuna journal record",
        write("s.journal", "[1, 2]\n"),
        untouched=("s.journal",),
    ),
    # 5. output paths checked before work
    Case(
        "grid-out-xlsx",
        "tune",
        f"{TUNE} --grid n_sims=50 --out {{tmp}}/g.xlsx",
        r"--out {tmp}/g\.xlsx: the table is written as \.csv or \.json",
    ),
    Case(
        "grid-out-under-file",
        "tune",
        f"{TUNE} --grid n_sims=50 --out {{tmp}}/f/g.csv",
        r"{tmp}/f is a file, not a folder",
        write("f", ""),
    ),
    Case(
        "run-out-is-file",
        "run",
        f"{SYN} --algorithms pop --out {{tmp}}/f",
        r"--out {tmp}/f: {tmp}/f is a file, not a folder",
        write("f", ""),
    ),
    # 9. the silent or misleading ones
    Case("grid-empty", "tune", f"{TUNE} --grid ''", r"--grid"),
    Case("set-bad", "tune", f"{TUNE} --trials 1 --set k", r"--set"),
    Case(
        "all-over-empty-dir",
        "run",
        f"{SYN} --algorithms pop --dataset all --data-dir {{tmp}}/d",
        r"{tmp}/d",
        folder("d"),
    ),
]


def _argv(case: Case, tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in shlex.split(case.argv)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path, capsys, monkeypatch):
    if case.setup is not None:
        case.setup(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in case.untouched}
    if case.before_data:

        def refuse(*args, **kwargs):
            raise AssertionError(f"{case.id}: data was loaded before the error was found")

        monkeypatch.setattr(runner, "load_dataset", refuse)
        monkeypatch.setattr(datasets, "load_dataset", refuse)
    main = run_cli.main if case.command == "run" else tune_cli.main
    code = main(_argv(case, tmp_path))
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert re.search(case.message.replace("{tmp}", re.escape(str(tmp_path))), lines[0]), lines[0]
    out = tmp_path / "out"
    assert not out.exists() or not any(out.rglob("run.json")), "a run folder was left behind"
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data, f"{name} was written to"


# ------------------------------------------------------------------ faults after work began


def test_disk_full_names_the_disk_and_the_resume_command(tmp_path, capsys, monkeypatch):
    """8. ENOSPC while a row's results are written: the folder is sound and --resume works."""
    real = runner.io.write_parquet

    def full(path, frame):
        if "ranks" in Path(path).parts:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, frame)

    monkeypatch.setattr(runner.io, "write_parquet", full)
    argv = _argv(Case("", "run", f"{SYN} --algorithms pop,spop", ""), tmp_path)
    assert run_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (run_dir,) = (tmp_path / "out" / "synthetic").iterdir()
    (line,) = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "pop.parquet: the disk is full" in line, line
    assert f"--resume {run_dir}` continues it" in line, line
    monkeypatch.setattr(runner.io, "write_parquet", real)
    assert run_cli.main(["--resume", str(run_dir), "-q"]) == 0
    assert (run_dir / "done" / "spop.json").is_file()


def test_invalid_value_in_a_run_record_is_not_called_a_flag(tmp_path, capsys):
    """9. A run.json value that is no longer valid is said to come from run.json."""
    argv = _argv(Case("", "run", f"{SYN} --algorithms pop", ""), tmp_path)
    assert run_cli.main(argv) == 0
    (run_dir,) = (tmp_path / "out" / "synthetic").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    record["options"]["seed"] = -3  # e.g. written by hand, or by a version that allowed it
    (run_dir / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert run_cli.main(["--resume", str(run_dir), "-q"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert line == (
        f"error: --resume {run_dir}: its run.json holds a value that is not valid "
        "(--seed -3: must be an integer >= 0); start a new run instead"
    )


def test_mismatched_set_on_a_study_names_the_key_not_a_dump(tmp_path, capsys):
    """9. A study searched with other fixed values: the differing key, shortly."""
    storage = tmp_path / "s.journal"
    base = ["--dataset", "synthetic", "--algorithm", "item-knn", "--trials", "1"]
    base += ["--cache-dir", str(tmp_path / "cache"), "--storage", str(storage)]
    assert tune_cli.main([*base, "--set", "reg_lambda=10"]) == 0
    size = storage.stat().st_size
    capsys.readouterr()
    assert tune_cli.main([*base, "--set", "reg_lambda=20"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert "fixed reg_lambda: 10 in the study, 20 now" in line, line
    assert len(line) < 400, line
    assert storage.stat().st_size == size


@pytest.mark.parametrize("quiet", [False, True], ids=["verbose", "quiet"])
def test_sigterm_stops_with_the_resume_command(tmp_path, quiet):
    """9. SIGTERM during a fit: exit 130 and the run folder to resume named, with -q too."""
    config = tmp_path / "slow.toml"
    config.write_text("[gru4rec]\nn_epochs = 50\nlayers = [64]\nn_sample = 0\n")
    argv = [sys.executable, str(REPO_ROOT / "run_benchmark.py"), "--dataset", "synthetic"]
    argv += ["--algorithms", "pop,gru4rec", "--config", str(config), "--out", str(tmp_path)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"] + (["-q"] * quiet)
    proc = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("synthetic/*/done/pop.json")):  # pop done: gru4rec is fitting
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    (run_dir,) = (tmp_path / "synthetic").iterdir()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert f"terminated (SIGTERM); finished algorithms are kept in {run_dir}" in err, err
    assert f"--resume {run_dir}" in err, err
