"""Any session dataset given by path (``--dataset PATH``), its format recognised from the files.

- a folder with ``all_train_seq.txt`` and ``test.txt``: SR-GNN-style pickles (:mod:`datasets.srgnn`);
- a folder with ``train.tsv`` and ``test.tsv`` (optionally ``train_tr.tsv`` + ``valid.tsv``), or
  ``<prefix>_train_full.txt`` and ``<prefix>_test.txt`` (optionally ``<prefix>_train_tr.txt`` +
  ``<prefix>_train_valid.txt``): GRU4Rec-format TSV files (:mod:`datasets.tsv`);
- a file ``.csv``, ``.tsv`` or ``.parquet`` (text ones optionally gzipped): your own event log
  (:mod:`datasets.eventlog`, columns by ``--columns``), preprocessed by the protocol's rules;
- any other file: raw RSC15-format clicks (``SessionId,Timestamp,ItemId,Category``), the same
  reader with RSC15's columns (:mod:`datasets.rsc15`); gzip-compressed files are read too.

A folder in more than one layout (say SR-GNN pickles beside TSV files) is refused, naming both.

The dataset is named after the folder (or the file, without its extensions). Its
``source["given_path"]`` marks it as the user's own data: no shipped config and no published
numbers are ever applied to it, whatever its name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from datasets.errors import DataError, MissingDataError
from datasets.eventlog import EventLogOptions
from datasets.sessions import Dataset

TSV_PAIRS = (("train.tsv", "test.tsv", "train_tr.tsv", "valid.tsv"),)
FORMATS_HELP = (
    "a folder with all_train_seq.txt + test.txt (SR-GNN pickles), a folder with "
    "train.tsv + test.tsv or <prefix>_train_full.txt + <prefix>_test.txt "
    "(GRU4Rec TSV), an event log FILE.csv/.tsv/.parquet, or a raw RSC15-format click file"
)


def dataset_name(path: Path) -> str:
    """The name a dataset given by path is recorded under: the folder or file name."""
    path = Path(path)
    if path.is_dir():
        return path.absolute().name
    name = path.name
    for suffix in (".gz", ".dat", ".csv", ".tsv", ".parquet", ".txt"):
        name = name.removesuffix(suffix)
    return name or path.name


def load_path(
    path: Path, *, cache_dir: Path | None = Path("cache"), events: EventLogOptions | None = None
) -> Dataset:
    """The dataset at ``path`` (see the module docstring for the recognised layouts).

    Raises:
        MissingDataError: nothing at ``path``.
        DataError: a folder in none of the layouts (the message lists what it holds), or bad files.
    """
    path = Path(path).absolute()
    if not path.exists():
        raise MissingDataError(f"--dataset {path}: no such file or folder; give {FORMATS_HELP}")
    name = dataset_name(path)
    if path.is_dir():
        data = _load_folder(path, name)
    else:
        from datasets.eventlog import load_eventlog

        data = load_eventlog(path, events, cache_dir=cache_dir, name=name)
    return dataclasses.replace(data, name=name, source={**data.source, "given_path": str(path)})


def _load_folder(path: Path, name: str) -> Dataset:
    from datasets import srgnn, tsv

    layouts = folder_layouts(path)
    if len(layouts) > 1:
        described = "; ".join(f"{what} ({', '.join(files)})" for what, files, _ in layouts)
        raise DataError(
            f"--dataset {path}: the folder holds {len(layouts)} layouts, {described}; it is not "
            "clear which one you mean: move the other files out of the folder (a click file "
            "can also be given directly, --dataset FILE)"
        )
    if not layouts:
        held = sorted(p.name for p in path.iterdir())[:10]
        raise DataError(
            f"--dataset {path}: a folder in no known layout (it holds "
            f"{', '.join(held) or 'nothing'}); expected {FORMATS_HELP}"
        )
    what, _, files = layouts[0]
    if what == "SR-GNN pickles":
        return srgnn.load_srgnn(path, name=name)
    return tsv.load_tsv(**files, name=name)


CLICK_FILES = ("yoochoose-clicks.dat", "yoochoose-clicks.dat.gz")


def folder_layouts(path: Path) -> list[tuple[str, list[str], dict]]:
    """Every layout the folder holds: (description, its files, the TSV files where TSV).

    A raw click file (``yoochoose-clicks.dat``) counts as a layout too: a folder holding it
    beside a split is ambiguous (the split may or may not be made from it)."""
    from datasets import srgnn

    found: list[tuple[str, list[str], dict]] = []
    if (path / srgnn.TRAIN_FILE).exists() and (path / srgnn.TEST_FILE).exists():
        found.append(("SR-GNN pickles", [srgnn.TRAIN_FILE, srgnn.TEST_FILE], {}))
    for files in _tsv_candidates(path):
        names = [p.name for p in files.values() if p is not None]
        found.append(("GRU4Rec TSV files", names, files))
    for click_file in CLICK_FILES:
        if (path / click_file).is_file():
            found.append(("a raw RSC15 click file", [click_file], {}))
    return found


def _tsv_files(path: Path) -> dict[str, Path] | None:
    """train/test (and train_tr/valid where both exist) of a TSV folder, or None."""
    candidates = _tsv_candidates(path)
    return candidates[0] if candidates else None


def _tsv_candidates(path: Path) -> list[dict[str, Path]]:
    """Every complete TSV pair of the folder (with train_tr/valid where both exist)."""
    candidates = [tuple(path / n for n in names) for names in TSV_PAIRS]
    for full in sorted(path.glob("*_train_full.txt")):
        prefix = full.name.removesuffix("_train_full.txt")
        candidates.append(
            (
                full,
                path / f"{prefix}_test.txt",
                path / f"{prefix}_train_tr.txt",
                path / f"{prefix}_train_valid.txt",
            )
        )
    out = []
    for train, test, train_tr, valid in candidates:
        if train.is_file() and test.is_file():
            has_valid = train_tr.is_file() and valid.is_file()
            out.append(
                {
                    "train": train,
                    "test": test,
                    "train_tr": train_tr if has_valid else None,
                    "valid": valid if has_valid else None,
                }
            )
    return out
