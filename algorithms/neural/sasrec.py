"""SASRec (Kang & McAuley, ICDM 2018) as the authors' TF code (kang205/SASRec) runs it, on the
shared harness with a sequence sampler of its own; ``loss = "cross-entropy"`` is the full-softmax
variant later papers train (the preset ``sasrec@ce``).

Training: every training session is one sequence: inputs s[:-1], targets s[1:], the LAST
``max_len`` of them, right-aligned (left padding; a batch is padded to its own longest sequence
and given positions ``max_len - T .. max_len - 1``, which is the same computation as the authors'
full window since padded keys are masked); one negative per position drawn uniformly from the
items not in that session. Input E[item] * sqrt(d) (pad row zero) + a learned positional
embedding, dropout, times the non-pad mask; ``n_blocks`` blocks of: Q from LN(x), K and V from
raw x (with biases), scaled dot product with key-pad and causal masks, dropout on the attention
weights, no output projection, residual onto LN(x); FFN y = LN(out), y + dropout(W2(dropout(
ReLU(W1 y)))), times the mask; a final LN. score_i = F_last . E_i with the shared table. Glorot
uniform weights, zero biases. Loss: mean over non-pad targets of -log sigma(pos) -
log(1 - sigma(neg)); Adam 1e-3, betas (0.9, 0.98); batch 128.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from algorithms.neural.harness import (
    COMMON_SPECS,
    Network,
    NeuralRecommender,
    dropout,
    gather_padded,
)
from algorithms.params import Choice, Float, Int
from datasets.sessions import Sessions

_UNIT = Float(0, 1, high_open=True)
NEG_TRIES = 100


def _glorot(gen: torch.Generator, fan_out: int, fan_in: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.rand(fan_out, fan_in, generator=gen) * 2 * bound - bound


class SASRecNetwork(Network):
    def __init__(
        self,
        n_items: int,
        d: int,
        n_blocks: int,
        n_heads: int,
        max_len: int,
        p: float,
        gen: torch.Generator,
    ) -> None:
        super().__init__()
        self.d, self.n_heads, self.max_len, self.p = d, n_heads, max_len, p
        emb = _glorot(gen, n_items + 1, d)
        emb[0] = 0.0
        self.E = nn.Parameter(emb)
        self.P = nn.Parameter(_glorot(gen, max_len, d))
        self.blocks = nn.ModuleList()
        for _ in range(n_blocks):
            block = nn.ModuleDict(
                {
                    "ln_q": nn.LayerNorm(d, eps=1e-8),
                    "q": nn.Linear(d, d),
                    "k": nn.Linear(d, d),
                    "v": nn.Linear(d, d),
                    "ln_f": nn.LayerNorm(d, eps=1e-8),
                    "w1": nn.Linear(d, d),
                    "w2": nn.Linear(d, d),
                }
            )
            with torch.no_grad():
                for name in ("q", "k", "v", "w1", "w2"):
                    block[name].weight.copy_(_glorot(gen, d, d))
                    block[name].bias.zero_()
            self.blocks.append(block)
        self.ln_final = nn.LayerNorm(d, eps=1e-8)

    def item_table(self) -> torch.Tensor:
        return self.E

    def sequence(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T, d) outputs of LEFT-padded sequences (0 = pad; T <= max_len)."""
        b, t = items.shape
        mask = (items != 0)[:, :, None].to(self.E.dtype)
        pos = torch.arange(self.max_len - t, self.max_len, device=items.device)
        x = self.E[items] * math.sqrt(self.d) + self.P[pos][None]
        x = dropout(x, self.p, self.training, self.gen) * mask
        causal = torch.ones(t, t, dtype=torch.bool, device=items.device).tril()
        allowed = causal[None] & (items != 0)[:, None, :]  # (B, Tq, Tk)
        h, dh = self.n_heads, self.d // self.n_heads
        for block in self.blocks:
            q_in = block["ln_q"](x)
            q = block["q"](q_in).view(b, t, h, dh).transpose(1, 2)
            k = block["k"](x).view(b, t, h, dh).transpose(1, 2)
            v = block["v"](x).view(b, t, h, dh).transpose(1, 2)
            w = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            w = w.masked_fill(~allowed[:, None], -(2.0**32) + 1)  # the authors' padding value
            w = torch.softmax(w, dim=-1)
            w = dropout(w, self.p, self.training, self.gen)
            out = (w @ v).transpose(1, 2).reshape(b, t, self.d) + q_in
            y = block["ln_f"](out)
            f = dropout(torch.relu(block["w1"](y)), self.p, self.training, self.gen)
            f = dropout(block["w2"](f), self.p, self.training, self.gen)
            x = (y + f) * mask
        return self.ln_final(x)

    def session_vectors(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """F at the last position of each (right-padded, already truncated) prefix."""
        t = items.shape[1]
        shift = t - mask.sum(1, keepdim=True)
        j = torch.arange(t, device=items.device)[None]
        src = (j - shift).clamp(min=0)
        left = torch.where(j >= shift, items.gather(1, src), torch.zeros_like(items))
        return self.sequence(left)[:, -1]


class SASRec(NeuralRecommender):
    """SASRec with the authors' settings as defaults (see the module docstring).

    Args:
        hidden_size: d (50).
        n_blocks: self-attention blocks (2).
        n_heads: attention heads (1; must divide ``hidden_size``).
        dropout: dropout rate everywhere (0.5).
        max_len: the window: the last ``max_len`` items of a sequence (50).
        loss: ``"bce"`` (one sampled negative per position, the authors') or
            ``"cross-entropy"`` (full softmax over all items, the ``ce`` preset).
        learning_rate: Adam learning rate (1e-3); ``beta2``: Adam's beta2 (0.98).
        batch_size: sequences per step (128).
        n_epochs: at most this many epochs (201, the authors' --num_epochs); patience (None:
            no early stopping, as the authors' code), select_on: on ``valid``.
        device, seed, n_threads: as for every model.

    Attributes: see :class:`algorithms.neural.harness.NeuralRecommender`.
    """

    name = "sasrec"
    truncate = "last"  # the window keeps a sequence's last items
    hyperparameters = {
        "hidden_size": Int(low=1),
        "n_blocks": Int(low=1),
        "n_heads": Int(low=1),
        "dropout": _UNIT,
        "loss": Choice(("bce", "cross-entropy")),
        "learning_rate": Float(low=0, low_open=True),
        "beta2": Float(0, 1, high_open=True),
        **{k: v for k, v in COMMON_SPECS.items() if k != "truncate"},
        "max_len": Int(low=1),
    }

    def __init__(
        self,
        hidden_size: int = 50,
        n_blocks: int = 2,
        n_heads: int = 1,
        dropout: float = 0.5,
        max_len: int = 50,
        loss: str = "bce",
        learning_rate: float = 1e-3,
        beta2: float = 0.98,
        batch_size: int = 128,
        n_epochs: int = 201,
        patience: int | None = None,
        select_on: str = "mrr",
        device: str = "auto",
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.hidden_size = hidden_size
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.dropout = dropout
        self.max_len = max_len
        self.loss = loss
        self.learning_rate = learning_rate
        self.beta2 = beta2
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.patience = patience
        self.select_on = select_on
        self.device = device
        self.seed = seed
        self.n_threads = n_threads

    def validate(self) -> None:
        super().validate()
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must divide hidden_size ({self.hidden_size})"
            )

    def _network(self, n_items: int, gen: torch.Generator) -> SASRecNetwork:
        return SASRecNetwork(
            n_items, self.hidden_size, self.n_blocks, self.n_heads, self.max_len, self.dropout, gen
        )

    def _optimizer(self, net: Network) -> torch.optim.Optimizer:
        return torch.optim.Adam(net.parameters(), lr=self.learning_rate, betas=(0.9, self.beta2))

    def _prepare(self, train: Sessions) -> dict[str, Any]:
        dev = self.device_
        lengths = train.lengths
        return {
            "flat": torch.as_tensor(train.items + 1, device=dev),
            "offsets": torch.as_tensor(train.offsets[:-1], device=dev),
            "lengths": torch.as_tensor(lengths, device=dev),
            "n_targets": np.minimum(np.maximum(lengths - 1, 0), self.max_len),
            "sessions": np.flatnonzero(lengths >= 2),
            "n_items": train.n_items,
        }

    def _plan(self, data: dict[str, Any], gen: torch.Generator) -> list[torch.Tensor]:
        """Every training session of two clicks or more once per epoch, in random order."""
        sessions = torch.as_tensor(data["sessions"])
        perm = sessions[torch.randperm(len(sessions), generator=gen)]
        return list(torch.split(perm, self.batch_size))

    def _batch_events(self, data: dict[str, Any], batch: torch.Tensor) -> int:
        return int(data["n_targets"][batch.numpy()].sum())

    def _batch_loss(self, net: SASRecNetwork, data: dict[str, Any], batch: torch.Tensor):
        dev = self.device_
        n_events = self._batch_events(data, batch)
        batch = batch.to(dev)
        flat, off, length = data["flat"], data["offsets"][batch], data["lengths"][batch]
        n_in = (length - 1).clamp(max=self.max_len)
        t = int(n_in.max())
        j = torch.arange(t, device=dev)[None]
        valid = j >= (t - n_in)[:, None]
        idx = (off + length - 1 - t)[:, None] + j
        idx = torch.where(valid, idx, torch.zeros_like(idx))
        zero = torch.zeros((), dtype=flat.dtype, device=dev)
        inputs = torch.where(valid, flat[idx], zero)
        targets = torch.where(valid, flat[idx + 1], zero)
        valid = valid & (targets != 0)  # an UNKNOWN target (shifted to 0) is no target
        out = net.sequence(inputs)
        if self.loss == "cross-entropy":
            logits = net.scores(out[valid])
            return nn.functional.cross_entropy(logits, targets[valid] - 1), n_events
        negs = self._negatives(data, off, length, valid, net.gen)
        pos_logit = (out * net.E[targets]).sum(-1)[valid]
        neg_logit = (out * net.E[negs]).sum(-1)[valid]
        loss = (nn.functional.softplus(-pos_logit) + nn.functional.softplus(neg_logit)).mean()
        return loss, n_events

    def _negatives(self, data, off, length, valid, gen) -> torch.Tensor:
        """One item per position, uniform over the items not in that session (shifted by one)."""
        session, _ = gather_padded(data["flat"], off, length)  # 0 beyond a session
        n = data["n_items"]
        negs = torch.randint(1, n + 1, valid.shape, generator=gen, device=valid.device)
        for _ in range(NEG_TRIES):
            bad = (negs[:, :, None] == session[:, None, :]).any(-1) & valid
            if not bool(bad.any()):
                break
            redraw = torch.randint(1, n + 1, valid.shape, generator=gen, device=valid.device)
            negs = torch.where(bad, redraw, negs)
        return negs
