"""The recommender contract itself (algorithms/base.py): fit options, validate(), devices and
renamed hyperparameters."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest
import torch

from algorithms.base import SessionRecommender, cpu_training, epoch_values, resolve_device
from algorithms.bpr_mf import BPRMF
from benchmark.config import ConfigError, resolve
from benchmark.registry import ALGORITHMS, get_algorithm
from benchmark.tuning.study import migrated_space


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_fit_takes_the_same_keyword_options(name):
    params = inspect.signature(get_algorithm(name).fit).parameters
    assert list(params)[:2] == ["self", "train"]
    for option in ("valid", "on_epoch", "resume_file"):
        assert params[option].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[option].default is None


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_the_same_things_have_the_same_names(name):
    names = set(get_algorithm(name).param_names())
    assert not names & {"iterations", "num_threads", "epochs", "threads", "random_state"}


def test_the_models_that_train_in_epochs_share_the_four_names():
    for name in ("bpr-mf", "gru4rec"):
        assert {"n_epochs", "n_threads", "device", "seed"} <= set(get_algorithm(name).param_names())
    assert BPRMF(n_epochs=7, n_threads=2).get_params()["n_epochs"] == 7


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto", cuda_available=False) == torch.device("cpu")
    assert resolve_device("auto", cuda_available=True) == torch.device("cuda")
    assert resolve_device("cuda:1", cuda_available=True) == torch.device("cuda:1")
    with pytest.raises(ValueError, match='device = "cuda:0": no CUDA GPU is usable here'):
        resolve_device("cuda:0", cuda_available=False)
    with pytest.raises(ValueError, match='device = "gpu": must be auto, cpu, cuda or cuda:N'):
        resolve_device("gpu", cuda_available=True)


def test_validate_is_public_and_names_the_key():
    with pytest.raises(ValueError, match="factors = 0: must be an integer >= 1"):
        BPRMF(factors=0).validate()
    BPRMF(factors=3, device="cpu").validate()  # a valid setting passes silently


def test_epoch_values_are_floats_and_none_is_nothing():
    assert epoch_values(None, None, 1) == {}
    values = epoch_values(lambda model, epoch: {"r": epoch * 2}, None, 3)
    assert values == {"r": 6.0} and type(values["r"]) is float


def test_an_old_name_in_a_config_is_refused_with_its_new_name():
    with pytest.raises(
        ConfigError,
        match=r"unknown hyperparameter\(s\) iterations, num_threads "
        r"for bpr-mf; iterations is now n_epochs; num_threads "
        r"is now n_threads; valid:",
    ):
        resolve(["bpr-mf"], {"bpr-mf": {"iterations": 5, "num_threads": 1}})


def test_records_written_before_a_rename_are_read_under_the_new_names():
    assert BPRMF.migrate_params({"iterations": 5, "factors": 8}) == {"n_epochs": 5, "factors": 8}
    old = json.dumps(
        {"fixed": {"num_threads": 1}, "params": {"iterations": {"int": [50, 400]}}}, sort_keys=True
    )
    new = json.dumps(
        {"fixed": {"n_threads": 1}, "params": {"n_epochs": {"int": [50, 400]}}}, sort_keys=True
    )
    assert migrated_space(old, "bpr-mf") == new
    assert migrated_space(old, "no-such-algorithm") == old
    assert SessionRecommender.renamed == {}


def test_cpu_training_is_on_inside_restored_after_and_a_no_op_off_the_cpu():
    torch.use_deterministic_algorithms(True, warn_only=True)  # the caller's own setting
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with cpu_training(torch.device("cpu")):
                assert torch.are_deterministic_algorithms_enabled()
                assert not torch.is_deterministic_algorithms_warn_only_enabled()
                raise RuntimeError("inside")
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # given back, warn_only too
        torch.use_deterministic_algorithms(False)
        with cpu_training(torch.device("cuda")):  # not touched off the CPU
            assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_denormals_are_flushed_on_every_torch_thread():
    # algorithms.base flushes them on import, before torch's worker threads exist; a fresh
    # process, since this one's threads were made long before
    code = (
        "import algorithms.base, torch; torch.set_num_threads(2); "
        "x = torch.full((400_000,), 1e-30) * 1e-10; print(int((x != 0).sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"  # 1e-40, a denormal, is 0 on both threads' halves
