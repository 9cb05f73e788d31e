"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018) behind the benchmark API.

Score of item j after the clicks of a session so far: ``o_t . W_j + b_j``, where ``o_t`` is the
last GRU layer's state after feeding the session's clicks one by one (see ``model.py``).
Training: session-parallel mini-batches, in-batch + popularity^alpha-sampled negatives, one of
five losses, Adagrad with classic momentum and sparse item-row updates (see ``trainer.py``).
Every default follows the authors' official code (PyTorch port); ``tests/reference_gru4rec.py`` is the same
training step written plainly with autograd, and the tests hold ``trainer.py`` to it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.base import EpochCallback, SessionRecommender, epoch_values, resolve_device
from algorithms.gru4rec.batching import plan_epoch
from algorithms.gru4rec.checkpoint import (
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from algorithms.gru4rec.epochs import load_trainer_state, train_epoch, trainer_state
from algorithms.gru4rec.gru import CELLS
from algorithms.gru4rec.losses import LOSSES, FinalActivation
from algorithms.gru4rec.model import Network, init_params
from algorithms.gru4rec.threads import ThreadPolicy
from algorithms.gru4rec.trainer import TrainConfig, Trainer
from algorithms.params import AnyOf, Choice, Float, Int, ListOf, Optional, Pattern
from datasets.sessions import UNKNOWN, Sessions

log = logging.getLogger(__name__)

_UNIT = Float(0, 1, high_open=True)
# The official defaults: bpr-max takes the PyTorch code's ELU parameter (0.5); the losses only
# the Theano code has (top1-max, bpr, top1) take its default final activation, linear (its
# docstring says elu-1, its constructor says linear). The 2016 presets set tanh explicitly.
DEFAULT_FINAL_ACT = {
    "cross-entropy": "softmax",
    "bpr-max": "elu-0.5",
    "top1-max": "linear",
    "bpr": "linear",
    "top1": "linear",
}


class GRU4Rec(SessionRecommender):
    """Session-based recommendations with a GRU, with every feature of the official code.

    Args:
        layers: GRU layer sizes (an int for one layer). The last size is the item vector size.
        cell: ``"reset-after"`` (``torch.nn.GRUCell``'s form, with a recurrent bias, which the
            official PyTorch code trains) or ``"reset-before"`` (Cho et al.'s, as the official
            Theano code); see ``gru.py``.
        embedding: input of the first layer: ``"shared"`` (the output item vectors, a.k.a.
            constrained embedding; usually best), a positive int (a separate embedding of that
            size) or 0 (one-hot input).
        loss: ``cross-entropy``, ``bpr-max``, ``top1-max``, ``bpr`` or ``top1``.
        final_act: activation of the sampled scores before the loss: ``softmax`` (cross-entropy
            only), ``linear``, ``tanh`` or ``elu-<alpha>``. None: softmax for cross-entropy,
            elu-0.5 for bpr-max (the official default), linear for top1-max, bpr and top1 (the
            Theano code's default). Scores returned by ``step`` are the raw
            scores (every allowed activation is increasing, so ranks are unchanged).
        n_sample: extra negative items per step, shared by the mini-batch (0: in-batch only).
        sample_alpha: extra samples are drawn with probability proportional to support^alpha.
        sample_cache_size: number of extra samples drawn at once on the device.
        logq: weight of the logQ correction (cross-entropy only; training only): the score of
            each in-batch target column is lowered by ``logq * log(c_j)`` and of each extra
            sample column by ``logq * log(c_j ** sample_alpha)``, ``c_j`` the item's raw click
            count in the training data (as the official code does; not a probability).
        bpreg: score regularisation weight of bpr-max.
        learning_rate: Adagrad learning rate.
        momentum: classic (heavy-ball) momentum of the Adagrad updates (0 disables it).
        dropout_embed: dropout on the input embedding; with one-hot input (``embedding=0``), on
            the first GRU layer's output instead, which is the official code's input layer.
        dropout_hidden: dropout on every GRU layer's output (but the first with one-hot input).
            The dropped-out output is also the hidden state carried to the next click.
        batch_size: number of session-parallel slots.
        n_epochs: passes over the training data.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
        seed: seeds the weight initialisation, sampling and dropout (no global seeding).
        n_threads: CPU threads while training on the CPU (restored afterwards). None (default):
            the cores that other processes leave free (at least 1, at most torch's default),
            looked at every 10 s (``threads.py``): two threads are faster on a quiet machine,
            one is far faster once other processes keep the cores busy.

    Attributes:
        network_: the trained ``Network`` (parameters on ``device_``).
        n_items_: number of items scored (the training vocabulary).
        device_: the torch device used.
        history_: one dict per epoch: ``epoch``, ``loss``, ``events_per_s``, ``threads`` (the
            CPU thread count in force at the epoch's end; None on a GPU), and whatever the
            caller's ``on_epoch`` returned for that epoch (e.g. ``valid_recall20``).

    An ``UNKNOWN`` input item (not in training) leaves its slot's hidden state unchanged: the
    click is skipped, since there is no input vector for it.
    """

    name = "gru4rec"
    hyperparameters = {  # cross-parameter rules (final_act vs loss, ...) are in validate
        "layers": AnyOf((Int(low=1), ListOf(Int(low=1)))),
        "cell": Choice(CELLS),
        "embedding": AnyOf((Choice(("shared",)), Int(low=0))),
        "loss": Choice(tuple(LOSSES)),
        "final_act": Optional(
            Pattern(
                r"softmax|linear|tanh|elu(-[0-9]*\.?[0-9]+)?",
                "softmax, linear, tanh or elu-<alpha>",
            )
        ),
        "n_sample": Int(low=0),
        "sample_alpha": Float(low=0),
        "sample_cache_size": Int(low=1),
        "logq": Float(low=0),
        "bpreg": Float(low=0),
        "learning_rate": Float(low=0, low_open=True),
        "momentum": _UNIT,
        "dropout_embed": _UNIT,
        "dropout_hidden": _UNIT,
        "batch_size": Int(low=1),
        "n_epochs": Int(low=1),
        "device": Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N"),
        "seed": Int(low=0),
        "n_threads": Optional(Int(low=1)),
    }

    def __init__(
        self,
        layers: int | list[int] = 100,
        cell: str = "reset-after",
        embedding: int | str = "shared",
        loss: str = "cross-entropy",
        final_act: str | None = None,
        n_sample: int = 2048,
        sample_alpha: float = 0.75,
        sample_cache_size: int = 10_000_000,
        logq: float = 1.0,
        bpreg: float = 1.0,
        learning_rate: float = 0.1,
        momentum: float = 0.0,
        dropout_embed: float = 0.1,
        dropout_hidden: float = 0.0,
        batch_size: int = 32,
        n_epochs: int = 10,
        device: str = "auto",
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.layers = layers
        self.cell = cell
        self.embedding = embedding
        self.loss = loss
        self.final_act = final_act
        self.n_sample = n_sample
        self.sample_alpha = sample_alpha
        self.sample_cache_size = sample_cache_size
        self.logq = logq
        self.bpreg = bpreg
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.dropout_embed = dropout_embed
        self.dropout_hidden = dropout_hidden
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.device = device
        self.seed = seed
        self.n_threads = n_threads

    # ------------------------------------------------------------------ validation
    def _layer_sizes(self) -> list[int]:
        sizes = [self.layers] if isinstance(self.layers, int) else list(self.layers)
        if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(
                f"layers must be a positive int or a list of them, got {self.layers!r}"
            )
        return sizes

    def _resolved_final_act(self) -> str:
        act = self.final_act or DEFAULT_FINAL_ACT[self.loss]
        FinalActivation(act)  # raises on a bad name
        if (act == "softmax") != (self.loss == "cross-entropy"):
            raise ValueError(
                f"final_act {act!r} does not fit loss {self.loss!r}: cross-entropy needs "
                "final_act 'softmax' and softmax is only used with cross-entropy"
            )
        return act

    def validate(self) -> None:
        """Every declared range (``hyperparameters``) and the device, then the rules that tie
        parameters."""
        super().validate()
        self._resolved_final_act()  # final_act must fit the loss
        if self.n_sample and self.sample_cache_size < self.n_sample:
            raise ValueError(
                f"sample_cache_size ({self.sample_cache_size}) must be >= n_sample "
                f"({self.n_sample})"
            )
        if self.logq > 0 and self.loss != "cross-entropy":
            raise ValueError(
                f"logq is only used with cross-entropy, got logq={self.logq} with "
                f"loss {self.loss!r}"
            )

    def data_problem(self, train: Sessions) -> str | None:
        """No session of two clicks (nothing to learn from), else the memory check."""
        if not np.any(train.lengths >= 2):
            return "the training data has no session with at least two clicks"
        return super().data_problem(train)

    def memory_estimate(self, train: Sessions) -> tuple[int, str]:
        """The per-step score matrices and the item tables with their optimizer state.

        ``batch_size`` slots (at most one per session) score themselves and ``n_sample``
        shared samples; logits, softmax and gradient are float32 matrices of that shape, and
        the epoch plan holds three int64/bool arrays of slots x steps."""
        n_sessions = int(np.count_nonzero(train.lengths >= 2))
        slots = min(self.batch_size, n_sessions)
        steps = int(train.lengths.max()) + max(0, int((train.lengths - 1).clip(0).sum()) // slots)
        scores = 3 * 4 * slots * (slots + self.n_sample)
        plan = 17 * slots * steps
        sizes = self._layer_sizes()
        width = sizes[-1] + (self.embedding if isinstance(self.embedding, int) else 0)
        if self.embedding == 0:
            width += 3 * sizes[0]
        tables = 3 * 4 * train.n_items * (width + 1)  # weights, accumulator, velocity
        why = (
            f"batch_size {self.batch_size} -> {slots:,} slots x {slots + self.n_sample:,} "
            f"scored items per step, and {train.n_items:,} items x {width} weights"
        )
        return scores + plan + tables, why

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> GRU4Rec:
        """Train on ``train`` (continuing from ``resume_file`` where it holds this training's
        state), calling ``on_epoch`` after every epoch; ``valid`` is not used."""
        self.validate()
        self.device_ = resolve_device(self.device)
        self.n_items_ = train.n_items
        self.history_: list[dict[str, Any]] = []
        init_seed, run_seed = np.random.SeedSequence(self.seed).generate_state(2)
        init_gen = torch.Generator().manual_seed(int(init_seed))
        run_gen = torch.Generator(device=self.device_).manual_seed(int(run_seed))

        known = train.items[train.items != UNKNOWN]
        support = np.bincount(known, minlength=train.n_items).astype(np.float64)
        plan = plan_epoch(train, self.batch_size)
        params = init_params(
            train.n_items,
            self._layer_sizes(),
            self.embedding,
            init_gen,
            self.device_,
            cell=self.cell,
        )
        with self._restore_threads() as caller_threads:
            self._train(
                train, plan, params, support, run_gen, caller_threads, on_epoch, resume_file
            )
        return self

    def _train(
        self,
        train: Sessions,
        plan,
        params,
        support: np.ndarray,
        run_gen: torch.Generator,
        caller_threads: int,
        on_epoch: EpochCallback | None,
        resume_file: Path | None,
    ) -> None:
        threads = None
        if self.device_.type == "cpu":
            threads = (
                ThreadPolicy.fixed(self.n_threads)
                if self.n_threads
                else ThreadPolicy.adaptive_default()
            )
        trainer = Trainer(
            params,
            self.embedding,
            self._train_config(),
            support,
            plan,
            self.device_,
            run_gen,
            threads=threads,
        )
        log.info(
            "GRU4Rec: %d items, %d training events/epoch in %d steps, device %s",
            train.n_items,
            plan.n_events,
            plan.n_steps,
            self.device_,
        )
        key = self._training_key(train) if resume_file is not None else None
        done = self._resume(trainer, key, Path(resume_file)) if key is not None else 0
        for epoch in range(done + 1, self.n_epochs + 1):
            stats = train_epoch(trainer, epoch)  # sets the policy's thread count at its start
            if threads is not None:  # the epoch callback (validation) runs with the caller's
                torch.set_num_threads(caller_threads)
            self.network_ = trainer.net  # live views: the callback scores the current weights
            row = {
                "epoch": epoch,
                "loss": stats["loss"],
                "events_per_s": stats["events"] / max(stats["seconds"], 1e-9),
                "threads": None if threads is None else threads.current,
            }
            row.update(epoch_values(on_epoch, self, epoch))
            self.history_.append(row)
            log.info(
                "epoch %d: loss %.4f, %.0f events/s%s",
                epoch,
                row["loss"],
                row["events_per_s"],
                "".join(
                    f", {k} {v:.4f}"
                    for k, v in row.items()
                    if k not in ("epoch", "loss", "events_per_s", "threads")
                ),
            )
            if key is not None:
                save_training_state(resume_file, key, epoch, self.history_, trainer_state(trainer))
        self.network_ = Network(trainer.export_params(), self.embedding)

    def _training_key(self, train: Sessions) -> dict[str, Any]:
        """What a training state must have been trained with to be continued: the training
        data's content and every hyperparameter but the device, the thread count and the number
        of epochs (an epoch does not depend on how many follow it)."""
        params = {
            k: v
            for k, v in self.get_params().items()
            if k not in ("device", "n_threads", "n_epochs")
        }
        return {"params": params, "data": train.fingerprint()}

    def _resume(self, trainer: Trainer, key: dict[str, Any], path: Path) -> int:
        """Load ``path`` (the fit's ``resume_file``) into ``trainer`` and ``history_`` if it
        exists and was written for ``key``; return the number of epochs it holds (0: train from
        the start)."""
        if not path.is_file():
            return 0
        try:
            state = load_training_state(path)
        except ValueError as e:
            log.warning("%s; training from epoch 1", e)
            return 0
        why = self._not_continued(state, key)
        if why:
            log.warning("%s: %s; training from epoch 1", path, why)
            return 0
        try:  # same settings and data, so a misfit is a bug or another code's file: stop
            load_trainer_state(trainer, state["trainer"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}; delete the file to train from epoch 1") from None
        self.history_ = list(state["history"])
        log.info(
            "GRU4Rec: continuing after epoch %d of %d from %s", state["epoch"], self.n_epochs, path
        )
        return int(state["epoch"])

    def _not_continued(self, state: dict[str, Any], key: dict[str, Any]) -> str | None:
        """Why this fit cannot continue from a training state, or None when it can."""
        mine, theirs = key["params"], state["key"]["params"]
        changed = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if changed:
            return f"written for other hyperparameters ({', '.join(changed)})"
        if state["key"]["data"] != key["data"]:
            return "written for other training data"
        if not 1 <= state["epoch"] <= self.n_epochs:
            return f"holds epoch {state['epoch']}, more than n_epochs = {self.n_epochs}"
        return None

    @contextlib.contextmanager
    def _restore_threads(self) -> Iterator[int]:
        """Run the block with torch's current thread count as its value, then put that count
        back (training changes it)."""
        before = torch.get_num_threads()
        try:
            yield before
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            loss=self.loss,
            final_act=self._resolved_final_act(),
            n_sample=self.n_sample,
            sample_alpha=self.sample_alpha,
            sample_cache_size=self.sample_cache_size,
            logq=self.logq,
            bpreg=self.bpreg,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            dropout_embed=self.dropout_embed,
            dropout_hidden=self.dropout_hidden,
        )

    # ------------------------------------------------------------------ inference
    def init_state(self, n_slots: int) -> list[torch.Tensor]:
        """Zero hidden states, one (n_slots, H) tensor per layer, on the model's device."""
        return [
            torch.zeros(n_slots, size, device=self.device_) for size in self.network_.layer_sizes
        ]

    def step(self, state: list[torch.Tensor], items: np.ndarray, reset: np.ndarray) -> torch.Tensor:
        """Feed one click per slot; return (n_slots, n_items) raw scores on the model's device."""
        with torch.no_grad():
            return self.network_.scores(self._advance(state, items, reset))

    def step_ranked(self, state: list[torch.Tensor], items: np.ndarray, reset: np.ndarray, rank):
        """``step`` for the evaluator: the scores go into the evaluator's reused buffer
        (``rank.buffer``) and are ranked there; the ranks are those of ``step``'s scores."""
        with torch.no_grad():
            out = self._advance(state, items, reset)
            scores = rank.buffer(len(out), out.dtype, out.device)
            return rank(self.network_.scores(out, into=scores))

    def _advance(self, state: list[torch.Tensor], items: np.ndarray, reset: np.ndarray):
        items_t = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.device_)
        reset_t = torch.as_tensor(np.asarray(reset, dtype=bool), device=self.device_)
        return self.network_.step(state, items_t, reset_t)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path) -> None:
        """Write the fitted model to ``path`` (see ``checkpoint.py`` for the layout)."""
        save_checkpoint(path, self.get_params(), self.n_items_, self.network_.params, self.history_)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> GRU4Rec:
        """A fitted model from a checkpoint, on ``device`` (default: the saved ``device``)."""
        ckpt = load_checkpoint(path)
        model = cls._restored(ckpt, device)
        weights = {k: v.to(model.device_) for k, v in ckpt["network"].items()}
        model.network_ = Network(weights, model.embedding)
        return model
