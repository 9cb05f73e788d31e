"""Name -> dataset: the files each named dataset needs under ``<data-dir>`` and its loader.

Shaped like :mod:`benchmark.registry` (the algorithms): adding a named dataset is one reader
module in ``datasets/`` plus one :class:`DatasetEntry` here. :mod:`datasets` (``DATASETS``,
``load_dataset``, ``survey_datasets``) and the command lines' ``--help`` read this table; there
is no second list. Readers are imported lazily, so listing the datasets imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets.sessions import Dataset

Loader = Callable[..., Dataset]
"""``loader(data_dir, *, clicks, cache_dir, seed) -> Dataset``: ``data_dir`` is the root holding
one folder per dataset; ``clicks`` is only ever set for rsc15."""


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset; ``required_files`` are relative to ``<data-dir>``."""

    name: str
    required_files: tuple[str, ...]
    description: str
    loader: Loader

    def missing_files(self, data_dir: Path) -> list[str]:
        """The required files absent under ``data_dir``, in order."""
        return [f for f in self.required_files if not (Path(data_dir) / f).is_file()]


def _load_rsc15(data_dir: Path, *, clicks: Path | None, cache_dir: Path, seed: int) -> Dataset:
    from datasets.rsc15 import CLICKS_FILE, load_rsc15

    path = Path(clicks) if clicks is not None else Path(data_dir) / "rsc15" / CLICKS_FILE
    return load_rsc15(path, cache_dir=cache_dir)


def _load_rsc15_100k(data_dir: Path, *, clicks: Path | None, cache_dir: Path, seed: int) -> Dataset:
    from datasets.tsv import load_rsc15_100k

    return load_rsc15_100k(Path(data_dir) / "rsc15-100k")


def _srgnn_loader(name: str) -> Loader:
    def load(data_dir: Path, *, clicks: Path | None, cache_dir: Path, seed: int) -> Dataset:
        from datasets.srgnn import load_srgnn

        return load_srgnn(Path(data_dir) / name, name=name)

    return load


def _load_synthetic(data_dir: Path, *, clicks: Path | None, cache_dir: Path, seed: int) -> Dataset:
    from datasets.synthetic import load_synthetic

    return load_synthetic(seed)


_ENTRIES = (
    DatasetEntry(
        "rsc15",
        ("rsc15/yoochoose-clicks.dat",),
        "the raw RecSys Challenge 2015 clicks, or --clicks PATH, preprocessed as in "
        "the GRU4Rec papers",
        _load_rsc15,
    ),
    DatasetEntry(
        "rsc15-100k",
        tuple(
            f"rsc15-100k/yoochoose-clicks-100k_{part}.txt"
            for part in ("train_full", "test", "train_tr", "train_valid")
        ),
        "a small, already preprocessed sample in GRU4Rec's TSV format",
        _load_rsc15_100k,
    ),
    DatasetEntry(
        "rsc15-64",
        ("rsc15-64/all_train_seq.txt", "rsc15-64/test.txt"),
        "YooChoose 1/64 as split by NARM / STAMP / SR-GNN, pickles",
        _srgnn_loader("rsc15-64"),
    ),
    DatasetEntry(
        "diginetica",
        ("diginetica/all_train_seq.txt", "diginetica/test.txt"),
        "Diginetica, CIKM Cup 2016, as split by SR-GNN, pickles",
        _srgnn_loader("diginetica"),
    ),
    DatasetEntry(
        "tmall",
        ("tmall/all_train_seq.txt", "tmall/test.txt"),
        "Tmall, IJCAI-15 competition, as split by GCE-GNN, pickles",
        _srgnn_loader("tmall"),
    ),
    DatasetEntry(
        "retailrocket",
        ("retailrocket/all_train_seq.txt", "retailrocket/test.txt"),
        "RetailRocket e-commerce events as split by CGENet, pickles (4-tuple test file)",
        _srgnn_loader("retailrocket"),
    ),
    DatasetEntry(
        "synthetic",
        (),
        "a seeded generator with learnable sequential structure; needs no files",
        _load_synthetic,
    ),
)

DATASET_REGISTRY: dict[str, DatasetEntry] = {e.name: e for e in _ENTRIES}


def describe_datasets(sep: str = "; ") -> str:
    """``name (description)`` of every named dataset, joined by ``sep``, for ``--help`` texts."""
    return sep.join(f"{e.name} ({e.description})" for e in _ENTRIES)
