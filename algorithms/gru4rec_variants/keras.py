"""``gru4rec-keras``: paxcema/KerasGRU4Rec (``model/gru4rec.py``) re-built in PyTorch.

What the source does (read at commit 5f52c60654079e0448f7889da417784fcc0e6f1c):

- items are one-hot vectors of width ``n_items + 1`` (``train_n_items = nunique + 1``; the
  last column is never used), fed straight into a stateful ``GRU(100)`` (Keras's reset-after
  equations, input kernel glorot-uniform, recurrent kernel orthogonal, biases zero);
  ``Dropout(0.25)`` on its output, then an untied ``Dense(n_items + 1, softmax)`` and the
  full-softmax categorical cross-entropy (no negative sampling);
- ``Adam(lr=0.001, epsilon=None)`` (Keras's epsilon 1e-7), one update per step;
- session-parallel batches of 512, sessions in id order, one time step per update (the
  state is carried by the stateful layer);
- ``for epoch in range(1, args.epochs)``: ``--epochs 10`` trains 9 passes.

Its bugs, as switches on by default (``configs/presets/gru4rec-keras.toml [fixed]`` turns them
off): ``zero_refilled_every_step``, ``stop_when_sessions_run_out``, ``keep_state_across_epochs``
(see :func:`~algorithms.gru4rec_variants.common.plan_source_epoch` and ``docs/gru4rec-variants.md``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from algorithms.gru4rec_variants.common import (
    EpochTrained,
    EpsHatAdam,
    NetTrainer,
    generator_pair,
    glorot_uniform,
    plan_source_epoch,
)
from algorithms.params import Bool, Float, Int, Pattern
from datasets.sessions import Sessions

DEVICE = Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N")


def init_keras_params(n_items: int, units: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The Keras layers' weights, in Keras's layout and gate order ``[z, r, h]``."""
    width = n_items + 1
    recurrent = torch.empty(units, 3 * units)
    torch.nn.init.orthogonal_(recurrent, generator=gen)
    return {
        "gru_kernel": glorot_uniform((width, 3 * units), gen),
        "gru_recurrent_kernel": recurrent,
        "gru_bias": torch.zeros(2, 3 * units),  # reset_after: input and recurrent biases
        "dense_kernel": glorot_uniform((units, width), gen),
        "dense_bias": torch.zeros(width),
    }


def keras_gru_step(p: dict[str, torch.Tensor], items: torch.Tensor, h: torch.Tensor):
    """One step of Keras's ``GRU(reset_after=True)`` on one-hot inputs ``items`` (-1: zeros)."""
    known = items >= 0
    gi = p["gru_kernel"][items.clamp(min=0)] * known.unsqueeze(1).to(h.dtype) + p["gru_bias"][0]
    gh = h @ p["gru_recurrent_kernel"] + p["gru_bias"][1]
    iz, ir, ih = gi.chunk(3, 1)
    hz, hr, hh = gh.chunk(3, 1)
    z = torch.sigmoid(iz + hz)
    r = torch.sigmoid(ir + hr)
    cand = torch.tanh(ih + r * hh)
    return z * h + (1 - z) * cand


class _Trainer(NetTrainer):
    def __init__(self, model: GRU4RecKeras, train: Sessions) -> None:
        self.m = model
        dev = model.device_
        init_gen, self.gen = generator_pair(model.seed, dev)
        self.net = {
            k: v.to(dev).requires_grad_()
            for k, v in init_keras_params(train.n_items, model.units, init_gen).items()
        }
        self.opt = EpsHatAdam(
            list(self.net.values()), lr=model.learning_rate, betas=(0.9, 0.999), eps=model.epsilon
        )
        self.plan = plan_source_epoch(
            train,
            model.batch_size,
            stop_when_sessions_run_out=model.stop_when_sessions_run_out,
            zero_refilled_every_step=model.zero_refilled_every_step,
        )
        p = self.plan
        self.slot = torch.as_tensor(p.slot, device=dev)
        self.inp = torch.as_tensor(train.items[p.pos], device=dev)
        self.tgt = torch.as_tensor(train.items[p.pos + 1], device=dev)
        self.zero = torch.as_tensor(p.zero, device=dev)
        self.full = bool(np.all(np.diff(p.bounds) == p.n_slots))
        self.hidden = torch.zeros(p.n_slots, model.units, device=dev)

    def train_epoch(self) -> dict[str, float]:
        m, p, net = self.m, self.plan, self.net
        if not m.keep_state_across_epochs:
            self.hidden.zero_()
        total = torch.zeros((), device=self.hidden.device)
        bounds = p.bounds.tolist()
        for t in range(p.n_steps):
            a, b = bounds[t], bounds[t + 1]
            zero = self.zero[a:b]
            if self.full and b - a == p.n_slots:
                h = self.hidden
                slots = None
            else:
                slots = self.slot[a:b]
                h = self.hidden[slots]
            h = h.masked_fill(zero.unsqueeze(1), 0.0)
            h_new = keras_gru_step(net, self.inp[a:b], h)
            if slots is None:
                self.hidden = h_new.detach()
            else:
                self.hidden[slots] = h_new.detach()
            out = h_new
            if m.dropout > 0:  # inverted dropout, the mask drawn from our generator
                keep = torch.rand(h_new.shape, generator=self.gen, device=h_new.device)
                out = h_new * (keep >= m.dropout) / (1 - m.dropout)
            logits = out @ net["dense_kernel"] + net["dense_bias"]
            loss = F.cross_entropy(logits, self.tgt[a:b])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach()
        return {"loss": float(total) / max(p.n_steps, 1), "events": p.n_events}

    def extra_state(self) -> dict:
        return {"hidden": self.hidden}

    def load_extra_state(self, state: dict) -> None:
        self.hidden = state["hidden"].clone()


class GRU4RecKeras(EpochTrained):
    """GRU4Rec as paxcema/KerasGRU4Rec trains it (see the module docstring).

    Learned attributes:
        device_: the torch device.
        n_items_: training items.
        network_: {gru_kernel (n_items+1, 3H), gru_recurrent_kernel (H, 3H), gru_bias (2, 3H),
            dense_kernel (H, n_items+1), dense_bias (n_items+1,)}, Keras's layout.
        history_: one row per epoch (loss, events, events_per_s, on_epoch's values).
    """

    name = "gru4rec-keras"
    file_format = "gru4rec-keras/1"
    hyperparameters = {
        "units": Int(low=1),
        "batch_size": Int(low=1),
        "n_epochs": Int(low=1),
        "dropout": Float(0, 1, high_open=True),
        "learning_rate": Float(low=0, low_open=True),
        "epsilon": Float(low=0, low_open=True),
        "zero_refilled_every_step": Bool(),
        "stop_when_sessions_run_out": Bool(),
        "keep_state_across_epochs": Bool(),
        "seed": Int(),
        "device": DEVICE,
    }

    def __init__(
        self,
        units: int = 100,
        batch_size: int = 512,
        n_epochs: int = 9,
        dropout: float = 0.25,
        learning_rate: float = 0.001,
        epsilon: float = 1e-7,
        zero_refilled_every_step: bool = True,
        stop_when_sessions_run_out: bool = True,
        keep_state_across_epochs: bool = True,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.units = units
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.zero_refilled_every_step = zero_refilled_every_step
        self.stop_when_sessions_run_out = stop_when_sessions_run_out
        self.keep_state_across_epochs = keep_state_across_epochs
        self.seed = seed
        self.device = device

    def _make_trainer(self, train: Sessions, valid: Sessions | None) -> _Trainer:
        return _Trainer(self, train)

    def init_state(self, n_slots: int) -> torch.Tensor:
        return torch.zeros(n_slots, self.units, device=self.device_)

    def step(self, state: torch.Tensor, items: np.ndarray, reset: np.ndarray) -> torch.Tensor:
        """Feed one click per slot (UNKNOWN: an all-zero one-hot row); return the logits of the
        training items (the source's extra column ``n_items`` is dropped)."""
        dev = self.device_
        items_t = torch.as_tensor(np.asarray(items, dtype=np.int64), device=dev)
        reset_t = torch.as_tensor(np.asarray(reset, dtype=bool), device=dev)
        with torch.no_grad():
            h = state.masked_fill(reset_t.unsqueeze(1), 0.0)
            h = keras_gru_step(self.network_, items_t, h)
            state.copy_(h)
            logits = h @ self.network_["dense_kernel"] + self.network_["dense_bias"]
            return logits[:, : self.n_items_]
