"""Checkpoints as plain dicts: hyperparameters, tensors and numbers, never pickled objects.

A fitted model (``GRU4Rec.save``; ``torch.save``'d, loadable with
``torch.load(weights_only=True)``)::

    {"format": "gru4rec/1",
     "params": {constructor argument: value},      # exactly GRU4Rec.get_params()
     "n_items": int,
     "network": {parameter name: CPU tensor},      # see model.py for the names
     "history": [{"epoch", "loss", "events_per_s", "threads", ...}, ...]}

The training state after an epoch (``GRU4Rec.fit(..., resume_file=...)``), from which ``fit`` continues::

    {"format": "gru4rec-training/1",
     "key": {"params": {...}, "data": str},        # what it was trained with (see recommender.py)
     "epoch": int,                                 # the last epoch it holds
     "history": [...],                             # history_ up to that epoch
     "trainer": epochs.trainer_state(...)}     # parameters, optimizer, generator, caches
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from datasets.io import atomic_write

FORMAT = "gru4rec/1"
TRAINING_FORMAT = "gru4rec-training/1"


def save_checkpoint(
    path: str | Path,
    params: dict[str, Any],
    n_items: int,
    network: dict[str, torch.Tensor],
    history: list[dict[str, Any]],
) -> None:
    """Write a checkpoint file (tensors are moved to the CPU first)."""
    torch.save(
        {
            "format": FORMAT,
            "params": dict(params),
            "n_items": int(n_items),
            "network": {k: v.detach().cpu().contiguous() for k, v in network.items()},
            "history": list(history),
        },
        Path(path),
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (no arbitrary code is unpickled).

    Raises:
        ValueError: if the file is not a GRU4Rec checkpoint of a known format.
    """
    return _load_plain(path, FORMAT, "checkpoint")


def save_training_state(
    path: str | Path,
    key: dict[str, Any],
    epoch: int,
    history: list[dict[str, Any]],
    trainer_state: dict[str, Any],
) -> None:
    """Write the training state after ``epoch`` atomically (a kill leaves the previous one)."""
    state = {
        "format": TRAINING_FORMAT,
        "key": key,
        "epoch": int(epoch),
        "history": list(history),
        "trainer": trainer_state,
    }
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a file written by ``save_training_state`` (no arbitrary code is unpickled).

    Raises:
        ValueError: if the file is not a GRU4Rec training state of a known format.
    """
    return _load_plain(path, TRAINING_FORMAT, "training state")


def _load_plain(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """A dict of plain values and tensors saved with ``"format": fmt``, loaded on the CPU."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: not readable as a GRU4Rec {what} ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not a GRU4Rec {what} of format {fmt!r} (found {found!r})")
    return obj
