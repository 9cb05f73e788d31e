"""The ``sessionbench`` console script, the shared data options of every entry point, and the
dataset registry they list."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.cli_options import DATA_DIR_HELP
from datasets import DATASETS, DEFAULT_DATA_DIR, available_datasets, survey_datasets
from datasets.registry import DATASET_REGISTRY, DatasetEntry

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "tune", "report", "perf")


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command} " in out, out
    for name in cli.perf_scripts():
        assert name in out


def test_console_script_help():
    script = Path(sys.executable).parent / "sessionbench"
    if not script.exists():
        pytest.skip(f"{script} not installed (pip install -e .)")
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for command in COMMANDS:
        assert command in res.stdout


def test_perf_bad_name_exits_2_naming_the_scripts(capsys):
    assert cli.main(["perf", "nope"]) == 2
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "error:" in line)
    assert "'nope'" in line
    names = cli.perf_scripts()
    assert {"gru4rec_speed", "session_baselines", "preprocess_scale"} <= set(names)
    for name in names:
        assert name in line
    assert cli.main(["perf"]) == 2


def test_bad_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_run_is_run_benchmark(monkeypatch, tmp_path, capsys):
    from benchmark import run_cli

    calls = []
    monkeypatch.setattr(run_cli, "main", lambda argv, prog=None: calls.append((argv, prog)) or 0)
    assert cli.main(["run", "--dataset", "synthetic"]) == 0
    assert calls == [(["--dataset", "synthetic"], "sessionbench run")]


def test_perf_runs_the_scripts_main(monkeypatch):
    import benchmark.perf.gru4rec_speed as speed

    seen = []
    monkeypatch.setattr(speed, "main", lambda argv: seen.append(argv))
    assert cli.main(["perf", "gru4rec_speed", "--epochs", "2"]) == 0
    assert seen == [["--epochs", "2"]]


def _data_parsers():
    from benchmark import run_cli
    from benchmark.perf import gru4rec_contention, session_baselines
    from benchmark.tuning import cli as tune_cli

    return {
        "run_benchmark.py": run_cli.parser(),
        "benchmark.tune": tune_cli._parser(),
        "perf.session_baselines": session_baselines._parser(),
        "perf.gru4rec_contention": gru4rec_contention._parser(),
    }


def _action(parser, option):
    return next(a for a in parser._actions if option in a.option_strings)


def test_every_entry_point_has_the_same_data_dir_default():
    assert DEFAULT_DATA_DIR == Path("data")
    for name, parser in _data_parsers().items():
        action = _action(parser, "--data-dir")
        assert action.default == Path("data"), name
        assert action.help == DATA_DIR_HELP, name
    from benchmark.perf import gru4rec_speed

    assert gru4rec_speed.parse_args([]).data_dir == Path("data")


def test_cache_dir_and_clicks_defaults_agree():
    for name, parser in _data_parsers().items():
        for option, default in (("--cache-dir", Path("cache")), ("--clicks", None)):
            if any(option in a.option_strings for a in parser._actions):
                assert _action(parser, option).default == default, (name, option)


def _python_files():
    yield REPO_ROOT / "run_benchmark.py"
    for folder in ("benchmark", "datasets"):
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def _strings(node):
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def test_no_default_or_help_mentions_shared():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            texts: list[str] = []
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                texts += _strings(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for default in [*node.args.defaults, *node.args.kw_defaults]:
                    if default is not None:
                        texts += _strings(default)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and "DIR" in ast.unparse(node):
                texts += _strings(node.value) if node.value is not None else []
            offenders += [
                f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {t!r}"
                for t in texts
                if "shared/" in t
            ]
    assert not offenders, "\n".join(offenders)


def test_registry_entries():
    assert (
        DATASETS
        == tuple(DATASET_REGISTRY)
        == ("rsc15", "rsc15-100k", "rsc15-64", "diginetica", "tmall", "retailrocket", "synthetic")
    )
    expected = {
        "rsc15": ("rsc15/yoochoose-clicks.dat",),
        "rsc15-100k": tuple(
            f"rsc15-100k/yoochoose-clicks-100k_{p}.txt"
            for p in ("train_full", "test", "train_tr", "train_valid")
        ),
        "rsc15-64": ("rsc15-64/all_train_seq.txt", "rsc15-64/test.txt"),
        "diginetica": ("diginetica/all_train_seq.txt", "diginetica/test.txt"),
        "tmall": ("tmall/all_train_seq.txt", "tmall/test.txt"),
        "retailrocket": ("retailrocket/all_train_seq.txt", "retailrocket/test.txt"),
        "synthetic": (),
    }
    for name, entry in DATASET_REGISTRY.items():
        assert isinstance(entry, DatasetEntry) and entry.name == name
        assert entry.required_files == expected[name]
        assert entry.description and callable(entry.loader)
        with pytest.raises(AttributeError):
            entry.name = "x"  # frozen


def test_run_help_lists_the_registry(capsys):
    from benchmark import run_cli

    text = "".join(run_cli.parser().format_help().split())  # wrapping may split any word
    for entry in DATASET_REGISTRY.values():
        assert "".join(f"{entry.name} ({entry.description})".split()) in text


def test_survey_finds_a_fake_rsc15_64(tmp_path):
    for name in ("all_train_seq.txt", "test.txt"):
        (tmp_path / "rsc15-64").mkdir(exist_ok=True)
        (tmp_path / "rsc15-64" / name).write_bytes(b"")
    (tmp_path / "diginetica").mkdir()
    (tmp_path / "diginetica" / "test.txt").write_bytes(b"")
    found, skipped = survey_datasets(tmp_path)
    assert found == ["rsc15-64", "synthetic"]
    assert skipped["diginetica"] == "missing diginetica/all_train_seq.txt"
    assert skipped["rsc15"] == "no folder"
    assert available_datasets(tmp_path) == found


def test_synthetic_loads_through_the_registry():
    from datasets import load_dataset

    data = load_dataset("synthetic", seed=3)
    assert data.train.n_sessions > 0


def test_the_data_page_has_a_section_and_the_folder_of_every_registered_dataset():
    page = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    for entry in DATASET_REGISTRY.values():
        assert any(h == f"## {entry.name}" or h.startswith(f"## {entry.name}:") for h in headings)
        folders = {str(Path(f).parent) for f in entry.required_files}
        for folder in folders:  # where its files go under the one --data-dir default
            assert f"data/{folder}/" in page, (entry.name, folder)
