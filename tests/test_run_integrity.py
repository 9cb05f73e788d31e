"""Nothing half-written is trusted: kills during the report, --resume from anywhere and with
contradicting options, two runs at once, the run lock, file permissions, the protocol page.

The kill and concurrency cases start real processes on the small synthetic dataset with POP
and S-POP only.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchmark.run_cli as run_benchmark
from benchmark.runner import run_lock
from datasets import io
from tests.conftest import REPO_ROOT

REPORT_FILES = (
    "metrics.csv",
    "significance.csv",
    "curves.csv",
    "breakdown.csv",
    "report.json",
    "table.md",
    "table.csv",
    "plots/headline.png",
    "plots/cutoffs.png",
)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "run_benchmark.py"), "--no-progress", "-q", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def only_run_dir(out: Path, dataset: str = "synthetic") -> Path:
    (run_dir,) = (out / dataset).iterdir()
    return run_dir


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """True once ``path`` exists; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            return path.exists()
        time.sleep(0.005)
    raise TimeoutError(path)


@pytest.mark.parametrize("trigger", ["metrics.csv"])  # every other moment: the test below
def test_kill_during_the_report_then_resume_completes(tmp_path, trigger, capsys):
    out = tmp_path / "out"
    proc = start(
        "--dataset", "synthetic", "--algorithms", "pop,spop", "--out", str(out), cwd=tmp_path
    )
    deadline = time.monotonic() + 120
    while not (out / "synthetic").is_dir() or not any((out / "synthetic").iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    run_dir = only_run_dir(out)
    wait_for(run_dir / trigger, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = io.read_json(run_dir / "run.json")
    if trigger == "metrics.csv":  # the first file of the report: the rest takes seconds
        assert "finished" not in record
    if "finished" in record:  # the kill came too late: then everything must be there
        assert all((run_dir / f).is_file() for f in REPORT_FILES)
    # A write the kill interrupted leaves a temporary file; --resume removes it.
    leftover = run_dir / ".table.md.abc123.tmp"
    leftover.write_text("half")
    assert run_benchmark.main(["--resume", str(run_dir), "-q", "--no-progress"]) == 0
    capsys.readouterr()
    record = io.read_json(run_dir / "run.json")
    assert "finished" in record
    assert all((run_dir / f).is_file() for f in REPORT_FILES)
    assert not list(run_dir.rglob("*.tmp"))
    assert sorted(p.name for p in (run_dir / "done").iterdir()) == ["pop.json", "spop.json"]


def test_resume_works_from_any_folder_and_refuses_contradictions(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        run_benchmark.main(
            [
                "--dataset",
                "synthetic",
                "--algorithms",
                "pop",
                "--out",
                "rel",
                "--cutoffs",
                "1",
                "5",
                "-q",
                "--no-progress",
            ]
        )
        == 0
    )
    run_dir = only_run_dir(tmp_path / "rel")
    options = io.read_json(run_dir / "run.json")["options"]
    assert options["out"] == str(tmp_path / "rel")  # absolute
    assert options["config"] is None and Path(options["data_dir"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert run_benchmark.main(["--resume", str(run_dir), "-q", "--no-progress"]) == 0
    assert not (elsewhere / "rel").exists()
    for args, fragment in [
        (["--seed", "3"], "--seed 3 contradicts the run, which used 0"),
        (["--cutoffs", "1", "20"], "--cutoffs 1 20 contradicts the run, which used 1 5"),
        (["--tie-mode", "standard"], "--tie-mode standard contradicts the run"),
    ]:
        capsys.readouterr()
        assert run_benchmark.main(["--resume", str(run_dir), *args]) == 2
        assert f"error: --resume {run_dir}: {fragment}" in capsys.readouterr().err
    # Repeating what the run used is not a contradiction.
    assert run_benchmark.main(["--resume", str(run_dir), "--seed", "0", "-q"]) == 0


def test_resume_with_other_data_content_is_refused(tmp_path, capsys):
    import pickle

    def folder(name: str, test_label: int) -> Path:
        root = tmp_path / name / "diginetica"
        root.mkdir(parents=True)
        (root / "all_train_seq.txt").write_bytes(pickle.dumps([[1, 2, 3], [2, 3, 4], [3, 4]] * 5))
        (root / "test.txt").write_bytes(pickle.dumps(([[1, 2], [1]], [test_label, 2])))
        return root.parent

    first, second = folder("a", 3), folder("b", 4)
    out = tmp_path / "out"
    assert (
        run_benchmark.main(
            [
                "--dataset",
                "diginetica",
                "--data-dir",
                str(first),
                "--algorithms",
                "pop",
                "--cutoffs",
                "1",
                "2",
                "--out",
                str(out),
                "-q",
                "--no-progress",
            ]
        )
        == 0
    )
    run_dir = only_run_dir(out, "diginetica")
    capsys.readouterr()
    assert run_benchmark.main(["--resume", str(run_dir), "--data-dir", str(second)]) == 2
    assert "the data changed since the run started" in capsys.readouterr().err


def test_second_resume_of_one_run_is_refused_by_the_lock(tmp_path, capsys):
    from benchmark.options import RunOptions

    run_dir = tmp_path / "out" / "synthetic" / "run1"
    run_dir.mkdir(parents=True)
    options = RunOptions(dataset="synthetic", algorithms=["pop"], out=tmp_path / "out")
    io.write_json(
        run_dir / "run.json", {"options": options.to_json(), "data": {"fingerprint": "0"}}
    )
    with run_lock(run_dir):  # as if another --resume were working on it
        proc = start("--resume", str(run_dir), cwd=tmp_path)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip() == (
        f"error: {run_dir}: another process (pid {os.getpid()}) is working "
        "on this run; wait for it to end"
    )


def test_two_runs_at_once_into_one_out_keep_apart(tmp_path):
    out = tmp_path / "out"
    args = ("--dataset", "synthetic,synthetic", "--out", str(out))
    procs = [
        start(*args, "--algorithms", "pop", cwd=tmp_path),
        start(*args, "--algorithms", "spop", cwd=tmp_path),
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len(list((out / "synthetic").iterdir())) == 4
    summaries = sorted((out / "summary").iterdir())
    assert len(summaries) == 2
    for (stdout, _), algorithm, other in zip(results, ["pop", "spop"], ["spop", "pop"]):
        printed = stdout.split("# Summary across datasets")[1]
        assert f"| {algorithm} " in printed and f"| {other} " not in printed
    for summary in summaries:
        text = (summary / "summary.md").read_text()
        assert ("| pop " in text) != ("| spop " in text)  # each holds one run's numbers only


def test_result_files_have_the_usual_permissions_and_table_cites_the_protocol_page(
    tmp_path, capsys
):
    umask = os.umask(0o022)
    os.umask(umask)
    out = tmp_path / "out"
    assert (
        run_benchmark.main(
            [
                "--dataset",
                "synthetic",
                "--algorithms",
                "pop",
                "--out",
                str(out),
                "-q",
                "--no-progress",
            ]
        )
        == 0
    )
    run_dir = only_run_dir(out)
    for name in ("run.json", "metrics.csv", "table.md", "plots/headline.png", "done/pop.json"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # not 0600
    table = (run_dir / "table.md").read_text()
    assert "`docs/PROTOCOL.md` in the sessionbench repository" in table
    assert table.count("PROTOCOL.md") == table.count("docs/PROTOCOL.md")
    assert (REPO_ROOT / "docs" / "PROTOCOL.md").is_file()


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup."""


def test_a_kill_at_every_write_of_the_report_phase_is_completed_by_resume(
    tmp_path, monkeypatch, capsys
):
    """In-process version of the kill test, deterministic: the run dies at the n-th file write
    of the report phase (leaving that write's temporary file), for every third n and the last."""
    from datasets import io as bio

    real = bio.atomic_write
    writes: list[str] = []
    monkeypatch.setattr(bio, "atomic_write", lambda p, w: (writes.append(Path(p).name), real(p, w)))
    assert (
        run_benchmark.main(
            [
                "--dataset",
                "synthetic",
                "--algorithms",
                "pop",
                "--out",
                str(tmp_path / "count"),
                "-q",
                "--no-progress",
            ]
        )
        == 0
    )
    first = writes.index("metrics.csv")  # the report phase starts with the tables
    n_report_writes = len(writes) - first
    assert n_report_writes >= 10 and writes[-1] == "run.json"

    # Every third write, and the last one (the final run.json), keeps the test short.
    for n in sorted({*range(0, n_report_writes, 3), n_report_writes - 1}):
        calls = []

        def dying(path, write, n=n, calls=calls):
            calls.append(path)
            if len(calls) == first + n + 1:
                tmp = Path(path).parent / f".{Path(path).name}.killed.tmp"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text("half")
                raise Killed
            return real(path, write)

        monkeypatch.setattr(bio, "atomic_write", dying)
        out = tmp_path / f"kill{n}"
        with pytest.raises(Killed):
            run_benchmark.main(
                [
                    "--dataset",
                    "synthetic",
                    "--algorithms",
                    "pop",
                    "--out",
                    str(out),
                    "-q",
                    "--no-progress",
                ]
            )
        run_dir = only_run_dir(out)
        assert "finished" not in io.read_json(run_dir / "run.json"), n
        monkeypatch.setattr(bio, "atomic_write", real)
        assert run_benchmark.main(["--resume", str(run_dir), "-q", "--no-progress"]) == 0
        assert "finished" in io.read_json(run_dir / "run.json")
        assert all((run_dir / f).is_file() for f in REPORT_FILES)
        assert not list(run_dir.rglob("*.tmp")), n
    capsys.readouterr()


@pytest.mark.parametrize(
    ("label", "damage", "named"),
    [
        ("spop", lambda run: (run / "done" / "spop.json").write_text("{garbage"), "done/spop.json"),
        ("spop", lambda run: (run / "done" / "spop.json").write_text(""), "done/spop.json"),
        ("pop", lambda run: (run / "done" / "pop.json").write_text("[]"), "done/pop.json"),
        ("pop", lambda run: (run / "ranks" / "pop.parquet").unlink(), "ranks/pop.parquet"),
        (
            "pop",
            lambda run: (run / "ranks" / "pop.parquet").write_bytes(
                (run / "ranks" / "pop.parquet").read_bytes()[:30]
            ),
            "ranks/pop.parquet",
        ),
    ],
    ids=["garbage-done", "empty-done", "foreign-done", "missing-ranks", "truncated-ranks"],
)
def test_resume_refits_only_a_damaged_algorithm(tmp_path, caplog, label, damage, named):
    """--resume on a damaged run folder gave a traceback; now the damaged row is named and
    fitted again, the sound ones are reused, and the results are those of the first attempt."""
    out = tmp_path / "out"
    argv = ["--dataset", "synthetic", "--algorithms", "pop,spop", "--out", str(out)]
    assert run_benchmark.main([*argv, "-q", "--no-progress"]) == 0
    run_dir = only_run_dir(out)
    first = (run_dir / "metrics.csv").read_text()
    damage(run_dir)
    with caplog.at_level(logging.INFO, logger="benchmark.runner"):
        assert run_benchmark.main(["--resume", str(run_dir), "--no-progress"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and named in warnings[0] and f"fitting {label} again" in warnings[0]
    other = {"pop": "spop", "spop": "pop"}[label]
    assert f"{other}: finished in an earlier attempt, reused" in caplog.text
    assert (run_dir / "metrics.csv").read_text() == first
