"""Datasets: one reader per format, all returning the same ``Dataset`` of ``Sessions``.

``<data-dir>`` (default ``data/``, a folder inside the repository) holds one folder per dataset
(see docs/data.md); the named datasets are those of :mod:`datasets.registry`:

================  =============================================================================
name              files under ``<data-dir>``
================  =============================================================================
``rsc15``         ``rsc15/yoochoose-clicks.dat`` (raw RecSys Challenge 2015 clicks; or ``clicks``)
``rsc15-100k``    ``rsc15-100k/yoochoose-clicks-100k_{train_full,test,train_tr,train_valid}.txt``
``rsc15-64``      ``rsc15-64/{all_train_seq.txt,test.txt}`` (SR-GNN pickles)
``diginetica``    ``diginetica/{all_train_seq.txt,test.txt}`` (SR-GNN pickles)
``tmall``         ``tmall/{all_train_seq.txt,test.txt}`` (SR-GNN pickles, GCE-GNN split)
``retailrocket``  ``retailrocket/{all_train_seq.txt,test.txt}`` (pickles; 4-tuple test file)
``synthetic``     nothing: generated from ``seed``
================  =============================================================================

Adding a named dataset is one reader plus one entry in :mod:`datasets.registry`. Any other
dataset is given by its path (``load_dataset(..., path=PATH)``, ``--dataset PATH``);
:mod:`datasets.by_path` recognises its format from the files.
"""

from __future__ import annotations

from pathlib import Path

from datasets.eventlog import EventLogOptions
from datasets.registry import DATASET_REGISTRY
from datasets.sessions import Dataset

DATASETS = tuple(DATASET_REGISTRY)
DEFAULT_DATA_DIR = Path("data")


def load_dataset(
    name: str,
    *,
    data_dir: Path | None = None,
    clicks: Path | None = None,
    cache_dir: Path = Path("cache"),
    seed: int = 0,
    path: Path | None = None,
    events: EventLogOptions | None = None,
) -> Dataset:
    """Load the dataset ``name`` with its train/test (and validation) splits.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: root with one folder per dataset (default ``data``).
        clicks: for ``rsc15``, the raw click file to use instead of
            ``<data-dir>/rsc15/yoochoose-clicks.dat``.
        cache_dir: where ``rsc15`` keeps its prepared splits.
        seed: seed of the ``synthetic`` generator (ignored by the real datasets).
        path: a dataset given by path (``--dataset PATH``, see :mod:`datasets.by_path`);
            ``name`` is then ignored.
        events: how to read and prepare a click file given by ``path`` (``--columns``,
            ``--time-unit``, ``--session-gap``, the protocol's values); None: the defaults.

    Raises:
        ValueError: unknown name, or ``clicks`` given for a dataset other than rsc15.
        MissingDataError: the dataset's files are not there (the message says where to get them).
        DataError: the files are malformed.
    """
    if path is not None:
        from datasets.by_path import load_path

        return load_path(path, cache_dir=cache_dir, events=events)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if clicks is not None and name != "rsc15":
        raise ValueError(f"clicks (--clicks) only applies to rsc15, not to {name!r}")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    return DATASET_REGISTRY[name].loader(root, clicks=clicks, cache_dir=cache_dir, seed=seed)


def available_datasets(data_dir: Path | None = None) -> list[str]:
    """The datasets whose files are all present under ``data_dir`` (``synthetic`` always)."""
    return survey_datasets(data_dir)[0]


def datasets_for_all(data_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """What ``--dataset all`` runs: :func:`survey_datasets`, refused when it finds no real one.

    Raises:
        MissingDataError: ``data_dir`` does not exist or holds none of the named datasets
            (an empty or mistyped ``--data-dir``); the message names the folder and every
            dataset looked for, with why it was skipped.
    """
    from datasets.errors import MissingDataError

    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    found, skipped = survey_datasets(root)
    if [name for name in found if DATASET_REGISTRY[name].required_files]:
        return found, skipped
    state = "does not exist" if not root.exists() else "holds none of the named datasets"
    looked = "; ".join(
        f"{name} ({why})" for name, why in skipped.items() if name in DATASET_REGISTRY
    )
    raise MissingDataError(
        f"--dataset all: --data-dir {root.absolute()} {state} (looked for: {looked}); "
        "check the folder (see docs/data.md), or run --dataset synthetic on purpose"
    )


def survey_datasets(data_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """(datasets found, {dataset or folder skipped: why}) under ``data_dir``, for ``--dataset all``.

    A known dataset is skipped when a required file is missing; any other folder is skipped
    as not a known dataset (run it with ``--dataset PATH``).
    """
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    found, skipped = [], {}
    for name, entry in DATASET_REGISTRY.items():
        missing = entry.missing_files(root)
        if not missing:
            found.append(name)
        elif (root / name).exists():
            skipped[name] = f"missing {', '.join(missing)}"
        else:
            skipped[name] = "no folder"
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in DATASETS:
                skipped[folder.name] = f"not a known dataset (run it with --dataset {folder})"
    return found, skipped
