"""Pieces the three third-party GRU4Rec re-implementations share.

- :func:`plan_source_epoch`: the session-parallel loop of yhs-968/pyGRU4REC as the Keras and the
  TensorFlow code run it (blocks of ``minlen - 1`` steps, refills after each block), with its
  two bugs as switches;
- :class:`EpsHatAdam`: Adam as Keras and TF1 write it (epsilon added to the square root of the
  uncorrected second moment, bias correction folded into the step size);
- :class:`EpochTrained`: ``fit`` epoch by epoch with ``on_epoch``, per-epoch training states
  (``resume_file``), ``save``/``load``; each variant supplies a trainer object.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.base import (
    EpochCallback,
    SessionRecommender,
    cpu_training,
    epoch_values,
    resolve_device,
)
from datasets.io import atomic_write
from datasets.sessions import Sessions

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- session-parallel schedule
@dataclass(frozen=True)
class SourcePlan:
    """The steps of one epoch of the pyGRU4REC-style loop.

    Step ``t`` covers rows ``bounds[t]:bounds[t + 1]`` of the flat arrays: ``slot`` (which
    hidden-state row), ``pos`` (index into ``Sessions.items`` of the input click; the target
    is ``pos + 1``) and ``zero`` (zero that slot's state before the step).
    """

    slot: np.ndarray
    pos: np.ndarray
    zero: np.ndarray
    bounds: np.ndarray
    n_slots: int
    untrained_sessions: int

    @property
    def n_steps(self) -> int:
        return len(self.bounds) - 1

    @property
    def n_events(self) -> int:
        return len(self.pos)

    def step(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self.bounds[t], self.bounds[t + 1]
        return self.slot[a:b], self.pos[a:b], self.zero[a:b]


def plan_source_epoch(
    sessions: Sessions,
    batch_size: int,
    *,
    stop_when_sessions_run_out: bool,
    zero_refilled_every_step: bool,
) -> SourcePlan:
    """One epoch of the session-parallel loop of the Keras / TF code (``SessionDataLoader``).

    ``batch_size`` slots start with the first sessions (in their given order). In a block, every
    slot advances ``minlen - 1`` steps, ``minlen`` being the shortest number of clicks any slot
    has left; then every slot whose session is used up takes the next unused session.

    Args:
        stop_when_sessions_run_out: the source's behaviour: the epoch ends as soon as a finished
            slot finds no unused session, so the clicks left in the other slots' sessions are
            never trained on. Off: finished slots go idle and the batch shrinks until every
            session is done.
        zero_refilled_every_step: the Keras loop's behaviour: the slots refilled after a block
            (``mask``) are zeroed before *every* step of the next block, not only its first (and
            a block with no step replaces the mask, so a slot refilled before it is never
            zeroed). Off: each refilled slot is zeroed once, before its first step (TF's code).

    A batch wider than the number of sessions is cut to that number (the source fails there).
    """
    lengths = sessions.lengths
    use = np.flatnonzero(lengths > 0)
    offsets = sessions.offsets
    first, last = offsets[use], offsets[use + 1]
    n = len(use)
    if n == 0:
        raise ValueError("the training data has no session")
    b = min(batch_size, n)
    start = first[:b].copy()
    end = last[:b].copy()
    active = np.ones(b, dtype=bool)
    next_session = b
    mask = np.zeros(b, dtype=bool)  # Keras: slots refilled after the last block
    pending = np.zeros(b, dtype=bool)  # zero-once: refilled, not yet zeroed
    slots_out, pos_out, zero_out, sizes = [], [], [], []
    finished = False
    while not finished and active.any():
        cols = np.flatnonzero(active)
        minlen = int((end[cols] - start[cols]).min())
        for i in range(minlen - 1):
            if zero_refilled_every_step:
                zero = mask[cols]
            else:
                zero = pending[cols]
                pending[cols] = False
            slots_out.append(cols)
            pos_out.append(start[cols] + i)
            zero_out.append(zero.copy())
            sizes.append(len(cols))
        start[cols] += minlen - 1
        done = cols[(end[cols] - start[cols]) <= 1]
        mask = np.zeros(b, dtype=bool)
        for k in done:
            mask[k] = True
            if next_session >= n:
                if stop_when_sessions_run_out:
                    finished = True
                    break
                active[k] = False
                continue
            start[k], end[k] = first[next_session], last[next_session]
            pending[k] = True
            next_session += 1
    # Sessions (of two or more clicks) with a click never used as a target.
    untrained = int(np.count_nonzero(last[next_session:] - first[next_session:] >= 2))
    if finished:
        untrained += int(np.count_nonzero(active & (end - start >= 2)))
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt)) if sizes else None
    if not sizes:
        raise ValueError("the training data has no session with at least two clicks")
    return SourcePlan(
        slot=cat(slots_out, np.int64),
        pos=cat(pos_out, np.int64),
        zero=cat(zero_out, bool),
        bounds=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        n_slots=b,
        untrained_sessions=untrained,
    )


# ---------------------------------------------------------------- optimizer
class EpsHatAdam(torch.optim.Optimizer):
    """Adam as ``tf.train.AdamOptimizer`` and Keras's ``Adam`` compute it::

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    (torch's Adam adds eps to the *bias-corrected* root instead). The learning rate is read from
    ``param_groups[0]["lr"]`` at every step, so a schedule just sets it.
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                lr_t = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-lr_t)


# ---------------------------------------------------------------- files
def save_plain(path: str | Path, obj: dict[str, Any]) -> None:
    """``torch.save`` a dict of plain values and tensors atomically."""
    atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def load_plain(path: str | Path, fmt: str) -> dict[str, Any]:
    """A dict written by :func:`save_plain` with ``"format": fmt`` (nothing is unpickled).

    Raises:
        ValueError: if the file is unreadable or of another format.
    """
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: not readable as {fmt} ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not a file of format {fmt!r} (found {found!r})")
    return obj


def cpu_tree(obj: Any) -> Any:
    """``obj`` with every tensor detached and moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: cpu_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_tree(v) for v in obj)
    return obj


def to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


# ---------------------------------------------------------------- the fit loop
class EpochTrained(SessionRecommender):
    """``fit`` / ``save`` / ``load`` for a model trained in epochs by a trainer object.

    A subclass sets ``file_format`` and implements ``_make_trainer(train, valid)``, returning an
    object with ``train_epoch() -> {"loss", "events"}``, ``state() -> dict``,
    ``load_state(dict)``, ``params() -> {name: tensor}`` and optionally
    ``after_epoch(epoch) -> (values, stop)`` (early stopping) and ``final_params()``; and
    ``_set_network(params)``, which makes ``init_state``/``step`` use those weights.
    """

    file_format: str = ""
    resume_excluded = ("device", "n_epochs")

    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ):
        self.validate()
        self.device_ = resolve_device(self.device)
        with cpu_training(self.device_):
            return self._fit(train, valid, on_epoch, resume_file)

    def _fit(
        self,
        train: Sessions,
        valid: Sessions | None,
        on_epoch: EpochCallback | None,
        resume_file: Path | None,
    ):
        self.n_items_ = train.n_items
        self.history_: list[dict[str, Any]] = []
        trainer = self._make_trainer(train, valid)
        key = None
        done = 0
        if resume_file is not None:
            key = {
                "params": {
                    k: v for k, v in self.get_params().items() if k not in self.resume_excluded
                },
                "data": train.fingerprint(),
                "valid": None if valid is None else valid.fingerprint(),
            }
            done = self._resume(trainer, key, Path(resume_file))
        stopped = bool(self.history_ and self.history_[-1].get("stopped"))
        for epoch in range(done + 1, self.n_epochs + 1):
            if stopped:
                break
            t0 = time.perf_counter()
            stats = trainer.train_epoch()
            if self.device_.type == "cuda":
                torch.cuda.synchronize(self.device_)
            seconds = time.perf_counter() - t0
            self._set_network(trainer.params())
            row: dict[str, Any] = {
                "epoch": epoch,
                "loss": float(stats["loss"]),
                "events": int(stats["events"]),
                "events_per_s": stats["events"] / max(seconds, 1e-9),
            }
            if hasattr(trainer, "after_epoch"):
                values, stopped = trainer.after_epoch(epoch)
                row.update(values)
                row["stopped"] = bool(stopped)
            row.update(epoch_values(on_epoch, self, epoch))
            self.history_.append(row)
            log.info(
                "%s epoch %d: loss %.4f, %.0f events/s",
                self.name,
                epoch,
                row["loss"],
                row["events_per_s"],
            )
            if key is not None:
                save_plain(
                    resume_file,
                    {
                        "format": self.file_format + "-training",
                        "key": key,
                        "epoch": epoch,
                        "history": self.history_,
                        "trainer": cpu_tree(trainer.state()),
                    },
                )
        final = getattr(trainer, "final_params", trainer.params)()
        self._set_network({k: v.detach().clone() for k, v in final.items()})
        return self

    def _resume(self, trainer, key: dict[str, Any], path: Path) -> int:
        if not path.is_file():
            return 0
        try:
            state = load_plain(path, self.file_format + "-training")
        except ValueError as e:
            log.warning("%s; training from epoch 1", e)
            return 0
        if state["key"] != key:
            log.warning(
                "%s: written for other hyperparameters or data; training from epoch 1", path
            )
            return 0
        if not 1 <= state["epoch"] <= self.n_epochs:
            log.warning(
                "%s: holds epoch %d > n_epochs; training from epoch 1", path, state["epoch"]
            )
            return 0
        trainer.load_state(to_device(state["trainer"], self.device_))
        self.history_ = list(state["history"])
        self._set_network(trainer.params())
        return int(state["epoch"])

    def save(self, path: str | Path) -> None:
        """Write the fitted model (hyperparameters, weights, history) to ``path``."""
        save_plain(
            path,
            {
                "format": self.file_format,
                "params": self.get_params(),
                "n_items": int(self.n_items_),
                "network": cpu_tree(self.network_),
                "history": list(self.history_),
            },
        )

    @classmethod
    def load(cls, path: str | Path, device: str | None = None):
        """A fitted model from :meth:`save`'s file, on ``device`` (default: the saved one)."""
        ckpt = load_plain(path, cls.file_format)
        model = cls._restored(ckpt, device)
        model._set_network(to_device(ckpt["network"], model.device_))
        return model

    def _set_network(self, params: dict[str, torch.Tensor]) -> None:
        self.network_ = params

    def _make_trainer(self, train: Sessions, valid: Sessions | None):  # pragma: no cover
        raise NotImplementedError


class NetTrainer:
    """What the Keras and TF trainers share: weights ``net`` (a dict of tensors), optimizer
    ``opt`` and random generator ``gen``, saved and restored with whatever
    :meth:`extra_state` adds (the carried hidden state, the step counter)."""

    net: dict[str, torch.Tensor]
    opt: torch.optim.Optimizer
    gen: torch.Generator

    def params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.net.items()}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state(self) -> dict:
        return {
            "net": self.params(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            **self.extra_state(),
        }

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state["net"].items():
                self.net[k].copy_(v)
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"].cpu())
        self.load_extra_state(state)


def generator_pair(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(initialisation generator on the CPU, run generator on ``device``) from one seed."""
    init_seed, run_seed = np.random.SeedSequence(seed).generate_state(2)
    init = torch.Generator().manual_seed(int(init_seed))
    run = torch.Generator(device=device).manual_seed(int(run_seed))
    return init, run


def glorot_uniform(shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """Keras / TF ``glorot_uniform`` for a (fan_in, fan_out) kernel."""
    limit = math.sqrt(6.0 / (shape[0] + shape[1]))
    return (torch.rand(shape, generator=gen) * 2 - 1) * limit


def uniform(shape, limit: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2 - 1) * limit
