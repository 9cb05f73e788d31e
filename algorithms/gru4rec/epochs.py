"""GRU4Rec training epoch by epoch: the loop over a trainer's steps and its checkpointable state.

The step mathematics is ``trainer.Trainer.train_step``; this module runs it over a plan (with the
progress bar, the timings, the thread policy and the NaN check) and captures / restores what a
trainer carries from one epoch to the next.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from algorithms.gru4rec.trainer import Trainer
from datasets.progress import bars_enabled

log = logging.getLogger(__name__)

CHECK_EVERY = 1024
"""Steps between NaN/inf checks of the running loss (each check waits for the device)."""

LOG_EVERY_S = 30.0
"""Without a progress bar (no terminal), a progress line is logged this often during an epoch."""


def train_epoch(trainer: Trainer, epoch: int, progress: bool = True) -> dict[str, float]:
    """One pass over the trainer's plan. Returns {loss (mean over steps), events, seconds}.

    The progress bar follows :func:`datasets.progress.bars_enabled` (a terminal only); without
    one, a line with the events done, events/s and the running loss is logged every
    ``LOG_EVERY_S`` seconds.

    Raises:
        FloatingPointError: if the loss becomes NaN or infinite.
    """
    trainer.reset_hidden()
    threads = trainer.threads
    if threads is not None:
        threads.begin_epoch()
    plan = trainer.plan
    loss_sum = torch.zeros((), device=trainer.device)
    n_losses = 0
    n_steps = plan.n_steps
    show_bar = progress and bars_enabled()
    bar = tqdm(
        total=n_steps,
        desc=f"gru4rec epoch {epoch}",
        unit="step",
        disable=not show_bar,
        leave=False,
        mininterval=1.0,
    )
    events_done = np.cumsum(trainer.n_active)
    start = last_log = time.perf_counter()
    for t in range(n_steps):
        loss = trainer.train_step(t)
        if loss is not None:
            loss_sum += loss
            n_losses += 1
        if threads is not None:
            threads.step_done()
        if (t + 1) % CHECK_EVERY == 0 or t + 1 == n_steps:
            _check_finite(trainer, loss_sum, epoch, t)
            bar.update((t + 1) - bar.n)
        if not show_bar and (t + 1) % 64 == 0 and t + 1 < n_steps:
            now = time.perf_counter()
            if now - last_log >= LOG_EVERY_S:
                last_log = now
                done = int(events_done[t])
                log.info(
                    "epoch %d: %d/%d events (%.0f%%), %.0f events/s, running loss %.4f",
                    epoch,
                    done,
                    plan.n_events,
                    100.0 * done / plan.n_events,
                    done / (now - start),
                    float(loss_sum) / max(n_losses, 1),
                )
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    seconds = time.perf_counter() - start
    bar.close()
    return {
        "loss": float(loss_sum) / max(n_losses, 1),
        "events": plan.n_events,
        "seconds": seconds,
    }


def _check_finite(trainer: Trainer, loss_sum: torch.Tensor, epoch: int, t: int) -> None:
    if not bool(torch.isfinite(loss_sum)):
        config = trainer.config
        raise FloatingPointError(
            f"GRU4Rec training diverged: the {config.loss} loss became "
            f"{float(loss_sum)} (NaN or infinite) by step {t + 1} of epoch {epoch}; "
            f"try a lower learning_rate (now {config.learning_rate})"
        )


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """What training carries from one epoch to the next, as tensors and numbers on the CPU: the
    parameters with their accumulators and velocities, the random generator, and the pre-drawn
    samples and dropout masks not used yet. An epoch starts from zero hidden states and the same
    plan, so a trainer built like this one and given this state (:func:`load_trainer_state`)
    trains the next epochs exactly as this one would (on the CPU with the same thread count, bit
    for bit)."""
    dropout = trainer.dropout_masks
    return {
        "out_opt": trainer.out_opt.state(),
        "in_opt": None if trainer.in_opt is None else trainer.in_opt.state(),
        "dense": trainer.dense_opt.state(),
        "generator": trainer.generator.get_state(),
        "samples": None if trainer.samples is None else trainer.samples.state(),
        "dropout": [
            {"width": width, "p": p, **dropout[(width, p)].state()} for width, p in sorted(dropout)
        ],
    }


def load_trainer_state(trainer: Trainer, state: dict[str, Any]) -> None:
    """Continue from a :func:`trainer_state` of a trainer built with the same settings and data.

    Raises:
        ValueError: if a part of the state does not fit this trainer.
    """
    dropout = trainer.dropout_masks
    if (
        (state["in_opt"] is None) != (trainer.in_opt is None)
        or (state["samples"] is None) != (trainer.samples is None)
        or sorted((masks["width"], masks["p"]) for masks in state["dropout"]) != sorted(dropout)
    ):
        raise ValueError(
            "training state of another configuration (input table, samples or dropout differ)"
        )
    trainer.out_opt.load_state(state["out_opt"])
    if trainer.in_opt is not None:
        trainer.in_opt.load_state(state["in_opt"])
    trainer.dense_opt.load_state(state["dense"])
    if trainer.samples is not None:
        trainer.samples.load_state(state["samples"])
    for masks in state["dropout"]:
        dropout[(masks["width"], masks["p"])].load_state(masks)
    trainer.generator.set_state(state["generator"])
