"""SR-GNN (Wu et al., AAAI 2019) as the authors' PyTorch code (CRIPAC-DIG/SR-GNN) runs it.

Each prefix is a session graph: its nodes are the prefix's unique items (sorted, as
``np.unique``; no pad node), ``alias`` maps every position to its node, and a binary edge u -> v
stands for every consecutive pair (a repeated transition counts once, self-loops are kept):
``A_in[v, u] = 1 / indeg(v)``, ``A_out[u, v] = 1 / outdeg(u)``, batched as B x n x 2n
``[A_in | A_out]`` with n the batch's largest node count. :func:`session_graph` builds the whole
batch with tensor operations (sorting, scatter), with no Python per example.

One gated GNN step (``gnn_steps``), then the readout: v_i the node vectors at the positions,
s_l = v_t, a_i = q . sigmoid(W1 s_l + b1 + W2 v_i + b2), s_g = sum_i a_i v_i,
s_h = W3 [s_g; s_l] + b3 and score_j = s_h . E_j with E the raw input table. Every parameter
U(-0.1, 0.1) (1 / sqrt(hidden)); mean cross-entropy; Adam 1e-3 with weight decay 1e-5 (coupled);
batch 100; the learning rate times 0.1 after epochs 2, 5, 8, ... (the authors step their StepLR
at the start of every epoch); up to 30 epochs, patience 10 on validation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from algorithms.neural.harness import COMMON_SPECS, Network, NeuralRecommender
from algorithms.params import Float, Int

GROUP_ROWS = 25
"""Rows per length group in :meth:`SRGNNNetwork.session_vectors` (a batch of 100: four)."""


def session_graph(
    items: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The session graphs of a batch of right-padded prefixes.

    Returns:
        alias: (B, T) the node of every position (0 at padded positions).
        A: (B, n, 2n) float, ``[A_in | A_out]``.
        nodes: (B, n) the item of every node (0, the pad item, beyond a row's node count).
    """
    b, t = items.shape
    dev = items.device
    big = torch.iinfo(items.dtype).max
    key = torch.where(mask, items, torch.full_like(items, big))
    vals, order = key.sort(dim=1)
    real = vals != big
    new = real.clone()
    new[:, 1:] &= vals[:, 1:] != vals[:, :-1]
    node_of_sorted = new.long().cumsum(1) - 1
    alias = torch.zeros_like(items).scatter_(1, order, node_of_sorted.clamp(min=0))
    alias = torch.where(mask, alias, torch.zeros_like(alias))
    n = max(int(new.sum(1).max()) if b else 1, 1)
    nodes = torch.zeros(b, n, dtype=items.dtype, device=dev)
    rows, cols = torch.nonzero(new, as_tuple=True)
    nodes[rows, node_of_sorted[rows, cols]] = vals[rows, cols]
    adj = torch.zeros(b, n + 1, n + 1, device=dev)
    if t > 1:
        edge = mask[:, 1:]
        u = torch.where(edge, alias[:, :-1], torch.full_like(alias[:, :-1], n))
        v = torch.where(edge, alias[:, 1:], torch.full_like(alias[:, 1:], n))
        batch = torch.arange(b, device=dev)[:, None].expand_as(u)
        adj[batch, u, v] = 1.0  # assignment: a repeated transition counts once
    adj = adj[:, :n, :n]
    indeg = adj.sum(1).clamp(min=1)  # column sums
    outdeg = adj.sum(2).clamp(min=1)
    a_in = adj.transpose(1, 2) / indeg[:, :, None]
    a_out = adj / outdeg[:, :, None]
    return alias, torch.cat([a_in, a_out], dim=2), nodes


class SRGNNNetwork(Network):
    def __init__(self, n_items: int, hidden: int, steps: int, gen: torch.Generator) -> None:
        super().__init__()
        self.hidden, self.steps = hidden, steps
        h = hidden
        self.embedding = nn.Embedding(n_items + 1, h)
        self.w_ih = nn.Parameter(torch.empty(3 * h, 2 * h))
        self.w_hh = nn.Parameter(torch.empty(3 * h, h))
        self.b_ih = nn.Parameter(torch.empty(3 * h))
        self.b_hh = nn.Parameter(torch.empty(3 * h))
        self.b_iah = nn.Parameter(torch.empty(h))
        self.b_oah = nn.Parameter(torch.empty(h))
        self.edge_in = nn.Linear(h, h)
        self.edge_out = nn.Linear(h, h)
        self.linear_one = nn.Linear(h, h)
        self.linear_two = nn.Linear(h, h)
        self.linear_three = nn.Linear(h, 1, bias=False)
        self.linear_transform = nn.Linear(2 * h, h)
        stdv = 1.0 / math.sqrt(h)
        with torch.no_grad():
            for p in self.parameters():  # the authors' reset_parameters
                p.copy_(torch.rand(p.shape, generator=gen) * 2 * stdv - stdv)

    def item_table(self) -> torch.Tensor:
        return self.embedding.weight

    def gnn_cell(self, a: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        n = a.shape[1]
        input_in = a[:, :, :n] @ self.edge_in(hidden) + self.b_iah
        input_out = a[:, :, n : 2 * n] @ self.edge_out(hidden) + self.b_oah
        inputs = torch.cat([input_in, input_out], 2)
        gi = nn.functional.linear(inputs, self.w_ih, self.b_ih)
        gh = nn.functional.linear(hidden, self.w_hh, self.b_hh)
        i_r, i_i, i_n = gi.chunk(3, 2)
        h_r, h_i, h_n = gh.chunk(3, 2)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_i + h_i)
        new = torch.tanh(i_n + reset * h_n)
        return new + update * (hidden - new)

    def session_vectors(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """s_h of every row. The rows are computed in groups of similar length, each padded to
        its own longest prefix (and largest node count): a session's vector depends on its own
        graph only, so this is the same function as one graph batch padded to the longest, at a
        fraction of the work when one long prefix would pad a hundred short ones."""
        lengths = mask.sum(1)
        if len(items) <= GROUP_ROWS:
            return self._vectors(items, mask)
        order = torch.argsort(lengths, stable=True)
        parts = []
        for idx in torch.split(order, GROUP_ROWS):
            width = max(int(lengths[idx].max()), 1)
            parts.append(self._vectors(items[idx, :width], mask[idx, :width]))
        return torch.cat(parts)[torch.argsort(order)]

    def _vectors(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        alias, a, nodes = session_graph(items, mask)
        hidden = self.embedding(nodes)
        for _ in range(self.steps):
            hidden = self.gnn_cell(a, hidden)
        seq = hidden.gather(1, alias[:, :, None].expand(-1, -1, self.hidden))
        lengths = mask.sum(1)
        ht = seq[torch.arange(len(seq), device=seq.device), lengths - 1]
        alpha = self.linear_three(
            torch.sigmoid(self.linear_one(ht)[:, None, :] + self.linear_two(seq))
        )
        s_g = (alpha * seq * mask[:, :, None]).sum(1)
        return self.linear_transform(torch.cat([s_g, ht], 1))


class SRGNN(NeuralRecommender):
    """SR-GNN with the authors' settings as defaults (see the module docstring).

    Args:
        hidden_size: item and node vector size (100).
        gnn_steps: gated GNN propagation steps (1).
        learning_rate: Adam learning rate (1e-3).
        weight_decay: Adam's coupled L2 on every parameter (1e-5).
        lr_step: the learning rate is multiplied by ``lr_decay`` every ``lr_step`` epochs,
            first after epoch ``lr_step - 1`` (3: after epochs 2, 5, 8, ...).
        lr_decay: that factor (0.1).
        batch_size: examples per step (100).
        n_epochs: at most this many epochs (30); patience (10), select_on: on ``valid`` only.
        max_len, truncate: prefix truncation (None: none, as the authors').
        device, seed, n_threads: as for every model.

    Attributes: see :class:`algorithms.neural.harness.NeuralRecommender`.
    """

    name = "sr-gnn"
    keeps_best_epoch = True
    hyperparameters = {
        "hidden_size": Int(low=1),
        "gnn_steps": Int(low=1),
        "learning_rate": Float(low=0, low_open=True),
        "weight_decay": Float(low=0),
        "lr_step": Int(low=1),
        "lr_decay": Float(low=0, high=1, low_open=True),
        **COMMON_SPECS,
    }

    def __init__(
        self,
        hidden_size: int = 100,
        gnn_steps: int = 1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        lr_step: int = 3,
        lr_decay: float = 0.1,
        batch_size: int = 100,
        n_epochs: int = 30,
        patience: int | None = 10,
        select_on: str = "mrr",
        max_len: int | None = None,
        truncate: str = "last",
        device: str = "auto",
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.hidden_size = hidden_size
        self.gnn_steps = gnn_steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_step = lr_step
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.patience = patience
        self.select_on = select_on
        self.max_len = max_len
        self.truncate = truncate
        self.device = device
        self.seed = seed
        self.n_threads = n_threads

    def _network(self, n_items: int, gen: torch.Generator) -> SRGNNNetwork:
        return SRGNNNetwork(n_items, self.hidden_size, self.gnn_steps, gen)

    def _lr_factor(self, epoch: int) -> float:
        return self.lr_decay ** (epoch // self.lr_step)
