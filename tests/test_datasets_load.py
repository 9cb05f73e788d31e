"""``datasets.load_dataset`` and ``available_datasets``: names, defaults, missing data."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets import DATASETS, available_datasets, load_dataset
from datasets.errors import MissingDataError


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'rsc16'; valid: rsc15, rsc15-100k"):
        load_dataset("rsc16")


def test_clicks_only_for_rsc15(tmp_path):
    with pytest.raises(ValueError, match="only applies to rsc15"):
        load_dataset("synthetic", clicks=tmp_path / "x.dat")


def test_synthetic_needs_no_data_dir(tmp_path):
    data = load_dataset("synthetic", data_dir=tmp_path / "nothing-here", seed=3)
    assert data.name == "synthetic" and data.source["seed"] == 3


def test_missing_rsc15_defaults_to_data_dir(tmp_path):
    with pytest.raises(MissingDataError, match=r"rsc15/yoochoose-clicks\.dat"):
        load_dataset("rsc15", data_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_rsc15_clicks_path_overrides_data_dir(shared_data, tmp_path):
    data = load_dataset(
        "rsc15",
        data_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        clicks=shared_data / "rsc15-sample" / "yoochoose-clicks-sample.dat",
    )
    assert data.name == "rsc15" and data.test.n_sessions == 25
    assert data.source["files"][0]["path"].endswith("yoochoose-clicks-sample.dat")


@pytest.mark.parametrize("name", ["rsc15-100k", "rsc15-64", "diginetica", "tmall", "retailrocket"])
def test_missing_folders_are_missing_data(tmp_path, name):
    with pytest.raises(MissingDataError, match=name):
        load_dataset(name, data_dir=tmp_path)


def test_available_datasets(shared_data, tmp_path):
    assert available_datasets(tmp_path) == ["synthetic"]
    assert available_datasets(shared_data) == [
        "rsc15-100k",
        "rsc15-64",
        "diginetica",
        "tmall",
        "retailrocket",
        "synthetic",
    ]
    (tmp_path / "rsc15").mkdir()
    (tmp_path / "rsc15" / "yoochoose-clicks.dat").write_text("")
    assert available_datasets(tmp_path) == ["rsc15", "synthetic"]
    assert set(available_datasets(shared_data)) <= set(DATASETS)


def test_every_dataset_has_train_test_and_records_its_source(shared_data):
    for name in ("rsc15-100k", "rsc15-64"):
        data = load_dataset(name, data_dir=shared_data)
        assert data.name == name
        assert data.train.n_items == data.test.n_items == len(data.item_ids)
        files = data.source["files"]
        assert all({"path", "size", "sha256"} <= set(f) for f in files)
        assert all(Path(f["path"]).is_file() for f in files)
