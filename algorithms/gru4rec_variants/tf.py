"""``gru4rec-tf``: Songweiping/GRU4Rec_TensorFlow, ``gru4rec_BP`` (model.py, main.py), in PyTorch.

What the source does (read at commit d53fd9e7d02d980d6e71ff05acc710c43fff2042):

- an input embedding (n_items x 100) and a separate output table ``softmax_W`` (n_items x 100)
  with ``softmax_b``; both tables uniform in +-sqrt(6 / (n_items + rnn_size)) (``sigma = 0``),
  the bias zero;
- one TF1 ``GRUCell`` (reset gate applied before the recurrent product; ``[x, h]`` kernels
  glorot-uniform, gate bias 1.0, candidate bias 0), wrapped in ``DropoutWrapper(
  output_keep_prob=dropout_p_hidden)``: main.py's ``--dropout 0.5`` is the *keep* probability
  of the cell's output (the state is not dropped);
- training scores only the batch's own targets: ``logits = out @ W[Y].T + b[Y]`` (B x B),
  then the final activation and the loss exactly as model.py writes them (XE: softmax and
  ``-mean log(diag + 1e-24)``; BPR: ``-mean log sigmoid(diag - yhat.T)`` over all B x B cells,
  diagonal included; TOP1: ``mean(mean_0(sigmoid(yhat.T - diag) + sigmoid(yhat.T^2)) -
  sigmoid(diag^2) / B)``);
- ``tf.train.AdamOptimizer`` with ``lr = max(1e-5, 0.001 * 0.96^floor(step / 10000))``;
  batch 50, 3 epochs; the state is zeroed at every epoch's start and once per refilled slot.

Its loop also ends an epoch as soon as a finished slot finds no unused session
(``stop_when_sessions_run_out``, on by default, as in the Keras code), and ``dropout_p_hidden``
is a keep probability (``dropout_is_keep_prob``; at 0.5 both readings are the same).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from algorithms.gru4rec_variants.common import (
    EpochTrained,
    EpsHatAdam,
    NetTrainer,
    generator_pair,
    glorot_uniform,
    plan_source_epoch,
    uniform,
)
from algorithms.gru4rec_variants.keras import DEVICE
from algorithms.params import Bool, Choice, Float, Int
from datasets.sessions import Sessions


def init_tf_params(
    n_items: int, units: int, gen: torch.Generator, sigma: float = 0.0, normal: bool = False
) -> dict[str, torch.Tensor]:
    s = sigma if sigma != 0 else math.sqrt(6.0 / (n_items + units))

    def table():
        if normal:
            return torch.randn((n_items, units), generator=gen) * s
        return uniform((n_items, units), s, gen)

    return {
        "embedding": table(),
        "softmax_w": table(),
        "softmax_b": torch.zeros(n_items),
        "gates_kernel": glorot_uniform((2 * units, 2 * units), gen),
        "gates_bias": torch.ones(2 * units),
        "candidate_kernel": glorot_uniform((2 * units, units), gen),
        "candidate_bias": torch.zeros(units),
    }


def tf1_gru_step(p: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor, act) -> torch.Tensor:
    """``tf.nn.rnn_cell.GRUCell``: r and u from ``[x, h]``, candidate from ``[x, r * h]``."""
    gates = torch.sigmoid(torch.cat([x, h], 1) @ p["gates_kernel"] + p["gates_bias"])
    r, u = gates.chunk(2, 1)
    c = act(torch.cat([x, r * h], 1) @ p["candidate_kernel"] + p["candidate_bias"])
    return u * h + (1 - u) * c


def tf_loss(loss: str, final_act: str, logits: torch.Tensor) -> torch.Tensor:
    """model.py's final activation and loss on the (B x B) in-batch logits."""
    if loss == "cross-entropy":
        yhat = torch.softmax(torch.tanh(logits) if final_act == "tanh" else logits, dim=1)
        return torch.mean(-torch.log(torch.diagonal(yhat) + 1e-24))
    if final_act == "linear":
        yhat = logits
    elif final_act == "relu":
        yhat = torch.relu(logits)
    else:
        yhat = torch.tanh(logits)
    diag = torch.diagonal(yhat)
    yt = yhat.T
    if loss == "bpr":
        return torch.mean(-torch.log(torch.sigmoid(diag - yt)))
    term1 = torch.mean(torch.sigmoid(-diag + yt) + torch.sigmoid(yt**2), dim=0)
    term2 = torch.sigmoid(diag**2) / yhat.shape[0]
    return torch.mean(term1 - term2)


def tf_learning_rate(step: int, lr: float, decay: float, decay_steps: int) -> float:
    """``max(1e-5, exponential_decay(lr, step, decay_steps, decay, staircase=True))``."""
    return max(1e-5, lr * decay ** (step // decay_steps))


def keep_dropout(x: torch.Tensor, keep: float, gen: torch.Generator) -> torch.Tensor:
    """``tf.nn.dropout(x, keep_prob=keep)``: keep each cell with probability ``keep``, scaled."""
    if keep >= 1.0:
        return x
    mask = torch.rand(x.shape, generator=gen, device=x.device) < keep
    return x * mask / keep


ACTS = {"tanh": torch.tanh, "relu": torch.relu}


class _Trainer(NetTrainer):
    def __init__(self, model: GRU4RecTF, train: Sessions) -> None:
        self.m = model
        dev = model.device_
        init_gen, self.gen = generator_pair(model.seed, dev)
        params = init_tf_params(
            train.n_items, model.rnn_size, init_gen, model.sigma, model.init_as_normal
        )
        self.net = {k: v.to(dev).requires_grad_() for k, v in params.items()}
        self.opt = EpsHatAdam(list(self.net.values()), lr=model.learning_rate, eps=1e-8)
        self.plan = plan_source_epoch(
            train,
            model.batch_size,
            stop_when_sessions_run_out=model.stop_when_sessions_run_out,
            zero_refilled_every_step=False,
        )
        p = self.plan
        self.slot = torch.as_tensor(p.slot, device=dev)
        self.inp = torch.as_tensor(train.items[p.pos], device=dev)
        self.tgt = torch.as_tensor(train.items[p.pos + 1], device=dev)
        self.zero = torch.as_tensor(p.zero, device=dev)
        self.global_step = 0
        self.hidden = torch.zeros(p.n_slots, model.rnn_size, device=dev)

    def train_epoch(self) -> dict[str, float]:
        m, p, net = self.m, self.plan, self.net
        keep = m.dropout_p_hidden if m.dropout_is_keep_prob else 1.0 - m.dropout_p_hidden
        act = ACTS[m.hidden_act]
        self.hidden = torch.zeros_like(self.hidden)  # fit(): state zeroed per epoch
        total = torch.zeros((), device=self.hidden.device)
        bounds = p.bounds.tolist()
        for t in range(p.n_steps):
            a, b = bounds[t], bounds[t + 1]
            full = b - a == p.n_slots
            slots = None if full else self.slot[a:b]
            h = self.hidden if full else self.hidden[slots]
            if m.reset_after_session:
                h = h.masked_fill(self.zero[a:b].unsqueeze(1), 0.0)
            x = net["embedding"][self.inp[a:b]]
            h_new = tf1_gru_step(net, x, h, act)
            if full:
                self.hidden = h_new.detach()
            else:
                self.hidden[slots] = h_new.detach()
            out = keep_dropout(h_new, keep, self.gen)
            y = self.tgt[a:b]
            logits = out @ net["softmax_w"][y].T + net["softmax_b"][y]
            loss = tf_loss(m.loss, m.final_act, logits)
            for group in self.opt.param_groups:
                group["lr"] = tf_learning_rate(
                    self.global_step, m.learning_rate, m.decay, m.decay_steps
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if m.grad_cap > 0:  # tf.clip_by_norm, tensor by tensor
                for v in net.values():
                    norm = v.grad.norm()
                    if norm > m.grad_cap:
                        v.grad.mul_(m.grad_cap / norm)
            self.opt.step()
            self.global_step += 1
            total += loss.detach()
        if not torch.isfinite(total):
            raise FloatingPointError(f"gru4rec-tf: the {m.loss} loss became NaN or infinite")
        return {"loss": float(total) / max(p.n_steps, 1), "events": p.n_events}

    def extra_state(self) -> dict:
        return {"global_step": self.global_step}

    def load_extra_state(self, state: dict) -> None:
        self.global_step = int(state["global_step"])


class GRU4RecTF(EpochTrained):
    """GRU4Rec as Songweiping/GRU4Rec_TensorFlow (gru4rec_BP) trains it (module docstring).

    Scores at ``step`` are the logits ``out @ softmax_W.T + softmax_b`` over all training items
    (the final activation is monotone, so ranks are those of the source's ``yhat`` up to float
    ties).

    Learned attributes:
        device_: the torch device.
        n_items_: training items.
        network_: {embedding, softmax_w (n_items, H), softmax_b, gates_kernel (2H, 2H),
            gates_bias, candidate_kernel (2H, H), candidate_bias}, TF1's layout.
        history_: one row per epoch.
    """

    name = "gru4rec-tf"
    file_format = "gru4rec-tf/1"
    hyperparameters = {
        "rnn_size": Int(low=1),
        "batch_size": Int(low=1),
        "n_epochs": Int(low=1),
        "loss": Choice(("cross-entropy", "bpr", "top1")),
        "final_act": Choice(("softmax", "tanh", "linear", "relu")),
        "hidden_act": Choice(("tanh", "relu")),
        "dropout_p_hidden": Float(0, 1, low_open=True),
        "dropout_is_keep_prob": Bool(),
        "learning_rate": Float(low=0, low_open=True),
        "decay": Float(0, 1, low_open=True),
        "decay_steps": Int(low=1),
        "sigma": Float(low=0),
        "init_as_normal": Bool(),
        "grad_cap": Float(low=0),
        "reset_after_session": Bool(),
        "stop_when_sessions_run_out": Bool(),
        "seed": Int(),
        "device": DEVICE,
    }

    def __init__(
        self,
        rnn_size: int = 100,
        batch_size: int = 50,
        n_epochs: int = 3,
        loss: str = "cross-entropy",
        final_act: str = "softmax",
        hidden_act: str = "tanh",
        dropout_p_hidden: float = 0.5,
        dropout_is_keep_prob: bool = True,
        learning_rate: float = 0.001,
        decay: float = 0.96,
        decay_steps: int = 10_000,
        sigma: float = 0.0,
        init_as_normal: bool = False,
        grad_cap: float = 0.0,
        reset_after_session: bool = True,
        stop_when_sessions_run_out: bool = True,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.rnn_size = rnn_size
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.loss = loss
        self.final_act = final_act
        self.hidden_act = hidden_act
        self.dropout_p_hidden = dropout_p_hidden
        self.dropout_is_keep_prob = dropout_is_keep_prob
        self.learning_rate = learning_rate
        self.decay = decay
        self.decay_steps = decay_steps
        self.sigma = sigma
        self.init_as_normal = init_as_normal
        self.grad_cap = grad_cap
        self.reset_after_session = reset_after_session
        self.stop_when_sessions_run_out = stop_when_sessions_run_out
        self.seed = seed
        self.device = device

    def validate(self) -> None:
        super().validate()
        if self.loss == "top1" and self.final_act == "relu":
            raise ValueError(
                "final_act 'relu' does not fit loss 'top1' (the source's typo "
                "'final_activatin' leaves top1 + relu without a final activation: it fails)"
            )
        if not self.dropout_is_keep_prob and self.dropout_p_hidden >= 1:
            raise ValueError("dropout_p_hidden must be < 1 as a drop probability")

    def _make_trainer(self, train: Sessions, valid: Sessions | None) -> _Trainer:
        return _Trainer(self, train)

    def init_state(self, n_slots: int) -> torch.Tensor:
        return torch.zeros(n_slots, self.rnn_size, device=self.device_)

    def step(self, state: torch.Tensor, items: np.ndarray, reset: np.ndarray) -> torch.Tensor:
        """Feed one click per slot (UNKNOWN: a zero input vector); return the logits."""
        dev = self.device_
        net = self.network_
        items_t = torch.as_tensor(np.asarray(items, dtype=np.int64), device=dev)
        reset_t = torch.as_tensor(np.asarray(reset, dtype=bool), device=dev)
        with torch.no_grad():
            known = (items_t >= 0).unsqueeze(1).to(state.dtype)
            x = net["embedding"][items_t.clamp(min=0)] * known
            h = state.masked_fill(reset_t.unsqueeze(1), 0.0)
            h = tf1_gru_step(net, x, h, ACTS[self.hidden_act])
            state.copy_(h)
            return h @ net["softmax_w"].T + net["softmax_b"]
