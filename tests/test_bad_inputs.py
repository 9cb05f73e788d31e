"""Nothing runs on a bad value: every bad config value, option or input stops the run at start-up
with exit status 2, one line naming the culprit, no traceback and no run directory.

The table runs ``run_benchmark.main`` in this process (fast); ``test_exit_status_*`` check the
same in a real process. Config and option errors must come before any data is loaded, which
the ``no_data`` fixture enforces.
"""

from __future__ import annotations

import gzip
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark.run_cli as run_benchmark
import benchmark.runner as runner
from datasets.errors import DataError
from tests.conftest import REPO_ROOT

# ------------------------------------------------------------------ config values


CONFIG_CASES = [
    ("gru4rec", 'batch_size = "32"', 'batch_size = "32": must be an integer >= 1'),
    ("gru4rec", "batch_size = 0", "batch_size = 0: must be an integer >= 1"),
    ("gru4rec", "n_epochs = -1", "n_epochs = -1: must be an integer >= 1"),
    ("gru4rec", "n_epochs = 1.5", "n_epochs = 1.5: must be an integer >= 1"),
    ("gru4rec", "n_sample = -5", "n_sample = -5: must be an integer >= 0"),
    (
        "gru4rec",
        "dropout_hidden = nan",
        "dropout_hidden = nan: must be a finite number >= 0 and < 1",
    ),
    ("gru4rec", "learning_rate = nan", "learning_rate = nan: must be a finite number > 0"),
    ("gru4rec", "learning_rate = inf", "learning_rate = inf: must be a finite number > 0"),
    (
        "gru4rec",
        "layers = [100, 0]",
        "layers = [100, 0]: must be an integer >= 1 or a non-empty list",
    ),
    (
        "gru4rec",
        'embedding = "big"',
        'embedding = "big": must be one of "shared" or an integer >= 0',
    ),
    ("gru4rec", 'loss = "mse"', 'loss = "mse": must be one of "cross-entropy"'),
    (
        "gru4rec",
        'final_act = "relu"',
        'final_act = "relu": must be softmax, linear, tanh or elu-<alpha>',
    ),
    ("gru4rec", 'device = "tpu"', 'device = "tpu": must be auto, cpu, cuda or cuda:N'),
    ("gru4rec", "n_threads = 0", "n_threads = 0: must be an integer >= 1"),
    ("gru4rec", "momentum = 1.0", "momentum = 1.0: must be a finite number >= 0 and < 1"),
    # A cross-parameter rule (the algorithm's own check, run at start-up too):
    ("gru4rec", 'loss = "bpr-max"\nfinal_act = "softmax"', "final_act 'softmax' does not fit loss"),
    ("item-knn", "n_sims = 0", "n_sims = 0: must be an integer >= 1"),
    ("item-knn", "alpha = nan", "alpha = nan: must be a finite number >= 0 and <= 1"),
    ("item-knn", 'reg_lambda = "20"', 'reg_lambda = "20": must be a finite number >= 0'),
    ("item-knn", 'counting = "clicks"', 'counting = "clicks": must be one of "session", "event"'),
    ("item-knn", "include_self = 1", "include_self = 1: must be true or false"),
    ("bpr-mf", "factors = 0", "factors = 0: must be an integer >= 1"),
    ("bpr-mf", "learning_rate = 0", "learning_rate = 0: must be a finite number > 0"),
    ("bpr-mf", "learning_rate = nan", "learning_rate = nan: must be a finite number > 0"),
    ("bpr-mf", 'regularization = "x"', 'regularization = "x": must be a finite number >= 0'),
    ("bpr-mf", "n_epochs = 2.0", "n_epochs = 2.0: must be an integer >= 0"),
    ("bpr-mf", "iterations = 200", "iterations is now n_epochs; valid:"),
]


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if any data is loaded: these errors must come before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the error was found")

    monkeypatch.setattr(runner, "load_dataset", refuse)


def main(argv: list[str], capsys) -> tuple[int, str]:
    code = run_benchmark.main(argv)
    return code, capsys.readouterr().err


def run_with_table(tmp_path, capsys, algorithm: str, toml: str):
    """Run pop and ``algorithm`` on synthetic data with ``[algorithm]`` holding ``toml``:
    (config path, out folder, exit code, stderr)."""
    config = tmp_path / "table.toml"
    config.write_text(f"[{algorithm}]\n{toml}\n")
    out = tmp_path / "out"
    argv = ["--dataset", "synthetic", "--algorithms", f"pop,{algorithm}", "--config", str(config)]
    code, err = main([*argv, "--out", str(out), "-q"], capsys)
    return config, out, code, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("algorithm", "toml", "fragment"),
    CONFIG_CASES,
    ids=[f"{a}:{t.splitlines()[-1]}" for a, t, _ in CONFIG_CASES],
)
def test_bad_config_value_stops_before_any_work(
    tmp_path, capsys, no_data, algorithm, toml, fragment
):
    config, out, code, err = run_with_table(tmp_path, capsys, algorithm, toml)
    line = error_line(err)
    assert code == 2
    assert str(config) in line and f": [{algorithm}] " in line  # the file and the table ...
    assert fragment in line  # ... the key, its value and the rule
    assert not out.exists()


def test_bad_value_in_a_preset_names_the_preset(tmp_path, capsys, no_data, monkeypatch):
    import benchmark.config as config

    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "item-knn.toml").write_text("[broken]\nn_sims = -3\n")
    monkeypatch.setattr(config, "PRESET_DIR", presets)
    code, err = main(
        [
            "--dataset",
            "synthetic",
            "--algorithms",
            "item-knn@broken",
            "--out",
            str(tmp_path / "out"),
            "-q",
        ],
        capsys,
    )
    assert code == 2
    assert f"{presets / 'item-knn.toml'} [broken]: [item-knn@broken] n_sims = -3" in error_line(err)


def test_undeclared_parameters_are_checked_against_their_defaults():
    from algorithms.base import SessionRecommender
    from algorithms.params import Anything, Bool, Float, Int, Str

    class Plain(SessionRecommender):
        def __init__(
            self, k: int = 3, w: float = 0.5, on: bool = True, mode: str = "a", extra=None
        ) -> None:
            pass

        fit = init_state = step = None

    specs = Plain.param_specs()
    assert specs == {"k": Int(), "w": Float(), "on": Bool(), "mode": Str(), "extra": Anything()}
    assert specs["k"].problem(1.5) == "must be an integer"
    assert specs["w"].problem(float("nan")) == "must be a finite number"
    assert specs["w"].problem(2) is None  # an int where a float is expected is fine


# ------------------------------------------------------------------ options


def option_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    binary_toml = tmp_path / "binary.toml"
    binary_toml.write_bytes(bytes(range(128, 256)))
    return [
        (["--cutoffs", "20", "20", "5"], "--cutoffs 20 20 5: 20 given more than once"),
        (["--cutoffs", "0", "5"], "--cutoffs 0 5: every cutoff must be an integer >= 1"),
        (["--algorithms", ""], "--algorithms '': give at least one algorithm name"),
        (["--algorithms", ",,"], "--algorithms '': give at least one algorithm name"),
        (["--eval-batch-size", "0"], "--eval-batch-size 0: must be an integer >= 1"),
        (["--seed", "-1"], "--seed -1: must be an integer >= 0"),
        (["--seeds", "0"], "--seeds 0: must be an integer >= 1"),
        (["--clicks", str(tmp_path)], "--clicks only applies to --dataset rsc15, not 'synthetic'"),
        (["--out", str(a_file)], f"--out {a_file}: {a_file} is a file, not a folder"),
        (["--out", str(a_file / "sub")], f"{a_file} is a file, not a folder"),
        (["--out", "/dev/null"], "--out /dev/null: /dev/null is not a folder"),
        (
            ["--out", "/proc/sessionbench-out"],
            "--out /proc/sessionbench-out: cannot write in /proc",
        ),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--config", str(tmp_path)], f"{tmp_path}: is a directory; expected a TOML config file"),
        (["--config", str(binary_toml)], f"{binary_toml}: invalid TOML: not UTF-8 text"),
        (
            ["--config", str(tmp_path / "none.toml")],
            f"config file not found: {tmp_path / 'none.toml'}",
        ),
        (["--dataset", ","], "--dataset ',': give a dataset name or path"),
    ]


def test_bad_options_stop_before_any_work(tmp_path, capsys, no_data):
    for args, fragment in option_cases(tmp_path):
        out = tmp_path / "out"
        argv = ["--dataset", "synthetic", "--algorithms", "pop", "--out", str(out), "-q", *args]
        code, err = main(argv, capsys)
        assert code == 2, args
        assert fragment in error_line(err), (args, err)
        assert not out.exists()


def test_device_cuda_without_a_gpu(tmp_path, capsys, no_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, err = main(
        [
            "--dataset",
            "synthetic",
            "--algorithms",
            "pop",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert code == 2 and "--device cuda: no CUDA GPU is available here" in error_line(err)
    assert not (tmp_path / "out").exists()


def test_cutoff_above_the_number_of_items(tmp_path, capsys):
    from datasets import load_dataset

    n_items = load_dataset("synthetic").n_items
    code, err = main(
        [
            "--dataset",
            "synthetic",
            "--algorithms",
            "pop",
            "--cutoffs",
            "5",
            "100000",
            "--out",
            str(tmp_path / "out"),
            "-q",
        ],
        capsys,
    )
    assert code == 2
    assert (
        f"--cutoffs 100000: larger than the number of training items ({n_items:,})"
        in error_line(err)
    )
    assert not (tmp_path / "out").exists()


def test_every_dataset_is_checked_before_the_first_runs(tmp_path, capsys, no_data):
    """A bad config for the second dataset stops the run before the first one trains."""
    config = tmp_path / "c.toml"
    config.write_text("[item-knn]\nn_sims = 0\n")
    code, err = main(
        [
            "--dataset",
            "synthetic,synthetic",
            "--algorithms",
            "item-knn",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert code == 2 and "n_sims = 0" in error_line(err)


# ------------------------------------------------------------------ inputs


def srgnn_folder(root: Path, train: object, test: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "all_train_seq.txt").write_bytes(pickle.dumps(train))
    (root / "test.txt").write_bytes(pickle.dumps(test))
    return root


def input_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    cases = []
    folder = tmp_path / "clicks-folder"
    folder.mkdir()
    cases.append(
        (["--dataset", "rsc15", "--clicks", str(folder)], f"--clicks {folder}: is a directory")
    )
    dir_pickle = tmp_path / "dir-pickle"
    (dir_pickle / "all_train_seq.txt").mkdir(parents=True)
    (dir_pickle / "test.txt").write_bytes(pickle.dumps(([[1]], [2])))
    cases.append(
        (
            ["--dataset", str(dir_pickle)],
            f"{dir_pickle / 'all_train_seq.txt'}: is a directory; expected a pickle file",
        )
    )
    big = srgnn_folder(tmp_path / "big", [[1, 2**70], [1, 2]], ([[1]], [2]))
    cases.append(
        (
            ["--dataset", str(big)],
            f"{big / 'all_train_seq.txt'}: session 0 holds the item id {2**70}, outside "
            "the 64-bit integer range",
        )
    )
    empty = srgnn_folder(tmp_path / "empty", [[], [], []], ([[1]], [2]))
    cases.append((["--dataset", str(empty)], "no clicks: all 3 training sessions are empty"))
    unseen = srgnn_folder(tmp_path / "unseen", [[1, 2], [2, 3]], ([[9, 8], [9]], [7, 8]))
    cases.append(
        (
            ["--dataset", str(unseen)],
            "unseen: none of the 2 test targets occurs in the training data",
        )
    )
    odd = srgnn_folder(tmp_path / "odd", [[1, 2]], ([1, 2], [3, 4], 5, 6, 7))
    cases.append((["--dataset", str(odd)], "found a tuple of length 5 (list, list, int, int, int)"))
    text = srgnn_folder(tmp_path / "text", [], [])
    (text / "all_train_seq.txt").write_text("1,2,3\n4,5\n")
    cases.append(
        (["--dataset", str(text)], f"{text / 'all_train_seq.txt'}: a text file, not a pickle")
    )
    binary = tmp_path / "binary.dat"
    binary.write_bytes(bytes(range(256)) * 64)
    cases.append((["--dataset", str(binary)], f"{binary}: a binary file, not text"))
    long = tmp_path / "long.dat"
    with open(long, "wb") as f:
        f.write(b"1,2014-04-07T10:51:09.277Z,214536502,0\n")
        f.write(b"7" * (50 << 20) + b"\n")
    cases.append(
        (
            ["--dataset", str(long)],
            f"{long}, line 2: a line of 50.0 MiB, longer than the 16 MiB any line may have",
        )
    )
    empty_test = srgnn_folder(tmp_path / "empty-test", [[1, 2]], ([[], []], [1, 2]))
    cases.append((["--dataset", str(empty_test)], f"{empty_test}: empty test split"))
    tsv_binary = tmp_path / "tsv-binary"
    tsv_binary.mkdir()
    (tsv_binary / "train.tsv").write_bytes(b"SessionId\tItemId\tTime\n" + bytes(range(32)) * 50)
    (tsv_binary / "test.tsv").write_text("SessionId\tItemId\tTime\n1\t2\t3.0\n")
    cases.append(
        (["--dataset", str(tsv_binary)], f"{tsv_binary / 'train.tsv'}: a binary file, not text")
    )
    tsv_long = tmp_path / "tsv-long"
    tsv_long.mkdir()
    with open(tsv_long / "train.tsv", "wb") as f:
        f.write(b"SessionId\tItemId\tTime\n1\t2\t3.0\n1\t" + b"4" * (20 << 20) + b"\t4.0\n")
    (tsv_long / "test.tsv").write_text("SessionId\tItemId\tTime\n1\t2\t3.0\n")
    cases.append(
        (
            ["--dataset", str(tsv_long)],
            f"{tsv_long / 'train.tsv'}, line 3: a line of 20.0 MiB, longer than the 16 MiB",
        )
    )
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "notes.txt").write_text("x")
    cases.append((["--dataset", str(layout)], "a folder in no known layout (it holds notes.txt)"))
    return cases


@pytest.mark.parametrize("algorithm", ["gru4rec", "bpr-mf"])
def test_device_cuda_in_a_config_table_without_a_gpu(tmp_path, capsys, no_data, algorithm):
    """A table's device is checked by validate() at start-up, not when the row's turn comes."""
    from benchmark.registry import get_algorithm

    if get_algorithm(algorithm).cuda_available():
        pytest.skip("a GPU is usable here")
    config, out, code, err = run_with_table(tmp_path, capsys, algorithm, 'device = "cuda"')
    line = error_line(err)
    assert code == 2 and str(config) in line and f"[{algorithm}]" in line
    assert 'device = "cuda": no CUDA GPU is usable here' in line
    assert not out.exists()


def test_bad_inputs_stop_before_a_run_directory(tmp_path, capsys):
    for args, fragment in input_cases(tmp_path):
        out = tmp_path / "out"
        code, err = main(
            [
                "--algorithms",
                "pop",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
                "-q",
                *args,
            ],
            capsys,
        )
        line = error_line(err)
        assert code == 2, args
        assert fragment in line, (args, line)
        assert not out.exists()
        assert len(line) < 600  # never the file's bytes


def test_resume_of_a_foreign_or_broken_run_json(tmp_path, capsys):
    for content, fragment in [
        ("{not json", "run.json is not valid JSON"),
        ('{"name": "someone else\'s"}', "run.json is not a sessionbench run record"),
        ("[1, 2]", "run.json is not a sessionbench run record"),
    ]:
        run_dir = tmp_path / "run"
        run_dir.mkdir(exist_ok=True)
        (run_dir / "run.json").write_text(content)
        code, err = main(["--resume", str(run_dir)], capsys)
        assert code == 2 and f"--resume {run_dir}: {fragment}" in error_line(err)


def test_gzip_file_not_named_gz_is_read_by_content(tmp_path, shared_data):
    from datasets.rsc15 import read_clicks

    plain = shared_data / "rsc15-sample" / "yoochoose-clicks-sample.dat"
    disguised = tmp_path / "clicks.dat"
    disguised.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_clicks(plain), read_clicks(disguised)
    assert len(b) == 1_913
    for column in ("session_id", "time", "item_id"):
        assert (getattr(a, column) == getattr(b, column)).all()


def test_exit_status_and_one_line_in_a_real_process(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[gru4rec]\nbatch_size = "32"\n')
    res = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "run_benchmark.py"),
            "--dataset",
            "synthetic",
            "--algorithms",
            "pop,gru4rec",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f'error: {config}: [gru4rec] batch_size = "32": must be an integer >= 1'
    ]
    assert not (tmp_path / "out").exists()  # stderr holds nothing else: no data, no training
    json.dumps(res.stderr)  # plain text


def _damaged_gzip(path, damage: str) -> None:
    """A gzip click file damaged past its first block (the start reads fine, so only the full
    parse meets the damage)."""
    rows = "".join(
        f"{i // 3},2014-04-0{1 + i % 7}T10:00:00.000Z,{i % 997},0\n" for i in range(3 * 10**5)
    )
    data = bytearray(gzip.compress(rows.encode(), compresslevel=1))
    middle = len(data) // 2
    if damage == "truncated":
        del data[middle:]
    else:
        data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_gzip_file_is_named_with_where_it_breaks(tmp_path, damage):
    """Damage past the first block reached the CSV reader as a bare OSError traceback."""
    from datasets.rsc15 import read_clicks

    path = tmp_path / "clicks.dat.gz"
    _damaged_gzip(path, damage)
    with pytest.raises(DataError) as caught:
        read_clicks(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: damaged gzip file, unreadable after line ")
    line = int(message.split("unreadable after line ")[1].split()[0])
    assert 1_000 < line < 300_000  # somewhere inside, not at the start
    assert "download or compress it again" in message
