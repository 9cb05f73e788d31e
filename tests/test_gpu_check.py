"""benchmark/perf/gpu_check.py: refuses cleanly without a GPU, and its CPU smoke run (what CI
runs) fills every part of the JSON with sane values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.perf import gpu_check
from datasets import load_dataset

SLICE = 40


def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "never.json"
    assert gpu_check.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("gpu_check: no CUDA GPU is available here")
    assert "--device cpu --smoke" in err and not out.exists()
    # the CPU runs only the smoke check
    assert gpu_check.main(["--device", "cpu", "--out", str(out)]) == 2
    assert "--device cpu runs only with --smoke" in capsys.readouterr().err


def test_pytest_summary_lines_are_counted():
    text = "....\n3 passed, 2 skipped, 40 deselected in 9.12s\n"
    assert gpu_check.parse_pytest_summary(text) == {
        "summary": "3 passed, 2 skipped, 40 deselected in 9.12s",
        "passed": 3,
        "failed": 0,
        "skipped": 2,
        "deselected": 40,
        "errors": 0,
    }
    assert gpu_check.parse_pytest_summary("= 1 failed, 1 error in 2s =")["errors"] == 1
    files = {path.name for path in gpu_check.cuda_test_files()}
    assert "test_gru4rec.py" in files and "test_gpu_check.py" not in files


def _expected(shared_data):
    data = load_dataset("rsc15-64", data_dir=shared_data)
    train = data.train.subset(np.arange(SLICE))
    test = data.test.subset(np.arange(SLICE))
    return train, test


def _check_result(result: dict, train, test, device: str) -> None:
    assert result["complete"] is True and result["errors"] == []
    assert result["train_events"] == train.n_predictions > 0
    assert result["test_predictions"] == test.n_predictions > 0
    assert result["machine"]["device"].startswith(device)
    assert result["cuda_tests"]["returncode"] == 0
    assert result["cuda_tests"]["failed"] == 0 and result["cuda_tests"]["errors"] == 0
    runs = result["gru4rec"]
    assert {(r["setting"], r["batch_size"]) for r in runs} == {
        (s, b) for s in ("paramfile", "readme") for b in (32, 512)
    }
    for run in runs:
        assert run["events"] == train.n_predictions and run["events_per_s"] > 0
        assert np.isfinite(run["loss"]) and run["fit_seconds"] > 0
        if run["batch_size"] == 32:
            assert run["goal_events_per_s"] == 150_000 and isinstance(run["goal_met"], bool)
    evaluation = result["evaluation"]
    assert evaluation["predictions"] == test.n_predictions
    assert evaluation["predictions_per_s"] > 0 and 0 <= evaluation["mrr20"] <= 1
    assert evaluation["params"]["dropout_embed"] == 0.1  # the readme setting, batch 32
    assert evaluation["params"]["batch_size"] == 32
    assert [a["preset"] for a in result["agreement"]] == ["rsc15-best-paramfile", "rsc15-best"]
    for check in result["agreement"]:
        assert check["steps"] > 0 and check["ok"] is True
        assert set(check["max_abs_diff"]) >= {"output.weight", "output.bias", "layer0.w_c"}
        assert check["max_abs_diff_all"] == max(check["max_abs_diff"].values())
        assert check["max_abs_diff_by_step"]["1"] <= check["first_step_tolerance"] == 1e-5
        assert set(check["noise_floor_by_step"]) == set(check["max_abs_diff_by_step"])
    assert [n["model"] for n in result["neural"]] == ["narm", "stamp", "sr-gnn", "sasrec"]
    for row in result["neural"]:
        # every click but the first of each session (the slice's sessions are short, so
        # SASRec's window cuts nothing)
        assert row["events"] == train.n_predictions and row["events_per_s"] > 0
    assert result["memory"]["peak_rss_bytes"] > 0
    assert set(result["seconds"]) >= {"gru4rec", "evaluation", "agreement", "neural"}


def test_the_cpu_smoke_run_fills_every_part(shared_data, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    argv = ["--data-dir", str(shared_data), "--device", "cpu", "--smoke"]
    assert gpu_check.main([*argv, "--max-sessions", str(SLICE), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    train, test = _expected(shared_data)
    _check_result(result, train, test, "cpu")
    assert result["smoke"] is True and result["memory"]["peak_gpu_memory_bytes"] is None
    check = result["agreement"][0]  # the GPU's row layout against the CPU's, on the CPU
    assert check["reference"]["device"] == "cpu" and check["reference"]["layout"] == "unique"
    assert check["checked"]["device"] == "cpu" and check["checked"]["layout"] == "static"
    assert result["cuda_tests"]["passed"] == 0  # no GPU: they skip
    assert "(goal >= 150,000: not met)" in capsys.readouterr().out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_smoke_run_fills_every_part(shared_data, tmp_path):
    out = tmp_path / "gpu_check.json"
    argv = ["--data-dir", str(shared_data), "--device", "cuda", "--smoke", "--no-tests"]
    assert gpu_check.main([*argv, "--max-sessions", str(SLICE), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    result["cuda_tests"] = {"returncode": 0, "failed": 0, "errors": 0}  # left out above
    train, test = _expected(shared_data)
    _check_result(result, train, test, "cuda")
    assert result["memory"]["peak_gpu_memory_bytes"] > 0
    checked = result["agreement"][0]["checked"]
    assert checked["device"] == "cuda" and checked["layout"] == "static"
