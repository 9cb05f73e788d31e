"""STAMP (Liu et al., KDD 2018) as the authors' TF code (uestcnlp/STAMP, STAMP_rsc.py) runs it.

Embedding (N+1) x 100, pad row zero; the looked-up vectors are clipped to L2 norm <= 1 (a
functional op on the gathered vectors; the table itself is never rewritten, and the output
scoring uses its unclipped rows). m_s = mean(x_1..x_t), m_t = x_t;
a_i = w0 . sigmoid(W1 x_i + W2 x_t + W3 m_s) (no bias, NOT normalised);
m_a = sum_i a_i x_i + m_s (the code's ``+ m_s``); h_s = tanh(W_s m_a), h_t = tanh(W_t m_t);
score_i = <h_s * h_t, E_i>. Weights N(0, 0.05), embedding N(0, 0.002). Cross-entropy summed
over the batch, each parameter's gradient clipped to norm 150, Adam 3e-3, batch 512, 10 epochs.

Batching (``batching = "by-length"``, the authors' default): training sessions grouped by length,
the groups visited in random order; each chunk of <= ``batch_size`` equal-length sessions takes
one Adam step per prefix position (prefix length 1, 2, ..., L - 1). ``"random"``: random prefix
batches as the other models train.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from algorithms.neural.harness import COMMON_SPECS, Network, NeuralRecommender
from algorithms.params import Choice, Float, Int, Optional
from datasets.sessions import Sessions


class STAMPNetwork(Network):
    def __init__(self, n_items: int, size: int, max_norm: float | None, gen: torch.Generator):
        super().__init__()
        self.max_norm = max_norm
        emb = torch.randn(n_items + 1, size, generator=gen) * 0.002
        emb[0] = 0.0
        self.E = nn.Parameter(emb)
        for name in ("W1", "W2", "W3", "Ws", "Wt"):
            setattr(self, name, nn.Parameter(torch.randn(size, size, generator=gen) * 0.05))
        self.w0 = nn.Parameter(torch.randn(size, generator=gen) * 0.05)

    def item_table(self) -> torch.Tensor:
        return self.E

    def inputs(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The looked-up vectors, clipped to norm ``max_norm`` (0 at padded positions)."""
        x = self.E[items]
        if self.max_norm is not None:
            norm = x.norm(dim=-1, keepdim=True)
            x = x * (self.max_norm / norm.clamp(min=1e-12)).clamp(max=1.0)
        return x * mask[:, :, None]

    def attention(self, items: torch.Tensor, mask: torch.Tensor):
        """(a, x, m_s, x_t): the unnormalised attention (B, T) (0 at padded positions), the
        inputs, their mean and the last click's vector."""
        x = self.inputs(items, mask)
        lengths = mask.sum(1)
        m_s = x.sum(1) / lengths[:, None].to(x.dtype)
        x_t = x[torch.arange(len(x), device=x.device), lengths - 1]
        pre = x @ self.W1.T + (x_t @ self.W2.T + m_s @ self.W3.T)[:, None, :]
        a = (torch.sigmoid(pre) @ self.w0) * mask
        return a, x, m_s, x_t

    def session_vectors(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a, x, m_s, x_t = self.attention(items, mask)
        m_a = (a[:, :, None] * x).sum(1) + m_s
        return torch.tanh(m_a @ self.Ws.T) * torch.tanh(x_t @ self.Wt.T)


class STAMP(NeuralRecommender):
    """STAMP with the authors' settings as defaults (see the module docstring).

    Args:
        embedding_size: item vector size (100).
        max_norm: the L2 norm the looked-up input vectors are clipped to (1; None: no clip).
        clip_grad: each parameter's gradient is clipped to this L2 norm (150; None: no clip).
        learning_rate: Adam learning rate (3e-3, constant).
        batch_size: sessions per chunk with ``by-length`` batching, examples per step with
            ``random`` (512).
        batching: ``"by-length"`` (the authors') or ``"random"`` (random prefix batches).
        n_epochs: epochs (10); patience, select_on: as for NARM (``valid`` only).
        max_len, truncate: prefix truncation (None: none, as the authors').
        device, seed, n_threads: as for every model.

    Attributes: see :class:`algorithms.neural.harness.NeuralRecommender`.
    """

    name = "stamp"
    loss_reduction = "sum"
    hyperparameters = {
        "embedding_size": Int(low=1),
        "max_norm": Optional(Float(low=0, low_open=True)),
        "clip_grad": Optional(Float(low=0, low_open=True)),
        "learning_rate": Float(low=0, low_open=True),
        "batching": Choice(("by-length", "random")),
        **COMMON_SPECS,
    }

    def __init__(
        self,
        embedding_size: int = 100,
        max_norm: float | None = 1.0,
        clip_grad: float | None = 150.0,
        learning_rate: float = 3e-3,
        batch_size: int = 512,
        batching: str = "by-length",
        n_epochs: int = 10,
        patience: int | None = None,
        select_on: str = "mrr",
        max_len: int | None = None,
        truncate: str = "last",
        device: str = "auto",
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.embedding_size = embedding_size
        self.max_norm = max_norm
        self.clip_grad = clip_grad
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.batching = batching
        self.n_epochs = n_epochs
        self.patience = patience
        self.select_on = select_on
        self.max_len = max_len
        self.truncate = truncate
        self.device = device
        self.seed = seed
        self.n_threads = n_threads

    def _network(self, n_items: int, gen: torch.Generator) -> STAMPNetwork:
        return STAMPNetwork(n_items, self.embedding_size, self.max_norm, gen)

    def _after_backward(self, net: Network) -> None:
        if self.clip_grad is None:
            return
        for p in net.parameters():  # per parameter, as TF's clip_by_norm on each gradient
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_([p], self.clip_grad)

    def _prepare(self, train: Sessions) -> dict[str, Any]:
        data = super()._prepare(train)
        lengths = train.lengths
        n_ex = np.maximum(lengths - 1, 0)
        data["session_lengths"] = lengths
        data["first_example"] = np.cumsum(n_ex) - n_ex
        return data

    def _plan(self, data: dict[str, Any], gen: torch.Generator) -> list[torch.Tensor]:
        if self.batching == "random":
            return super()._plan(data, gen)
        lengths, first = data["session_lengths"], data["first_example"]
        groups = np.unique(lengths[lengths >= 2])
        batches = []
        for g in groups[torch.randperm(len(groups), generator=gen).numpy()]:
            members = np.flatnonzero(lengths == g)
            members = members[torch.randperm(len(members), generator=gen).numpy()]
            for lo in range(0, len(members), self.batch_size):
                firsts = torch.as_tensor(first[members[lo : lo + self.batch_size]])
                batches.extend(firsts + k for k in range(int(g) - 1))
        return batches
