"""Checkpoints as plain dicts: hyperparameters, tensors and numbers, never pickled objects.

Layout (``torch.save``'d, loadable with ``torch.load(weights_only=True)``)::

    {"format": "gru4rec/1",
     "params": {constructor argument: value},      # exactly GRU4Rec.get_params()
     "n_items": int,
     "network": {parameter name: CPU tensor},      # see model.py for the names
     "history": [{"epoch", "loss", "events_per_s", "threads", ...}, ...]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FORMAT = "gru4rec/1"


def save_checkpoint(path: str | Path, params: dict[str, Any], n_items: int,
                    network: dict[str, torch.Tensor], history: list[dict[str, Any]]) -> None:
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
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a GRU4Rec checkpoint of format {FORMAT!r} (found {found!r})")
    return ckpt
