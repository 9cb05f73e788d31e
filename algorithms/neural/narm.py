"""NARM (Li et al., CIKM 2017) as the authors' Theano code (lijingsdu/sessionRec_NARM) runs it.

Embedding (N+1) x 50 with dropout 0.25; a GRU of 100 units whose gates are Theano's hard
sigmoid ``clip(0.2 x + 0.5, 0, 1)``, padded steps carrying h forward; global vector c_g = h_t,
local vector c_l = sum_j a_j h_j with a = softmax_j(v^T hs(A1 h_t + A2 h_j)) over the real
positions; c = [c_l; c_g] with dropout 0.5; score_i = E_i . (B c) (B is 50 x 200, the input table
shared). Every matrix N(0, sqrt(2 / rows)), the recurrent matrices orthogonal, biases 0. Mean
cross-entropy, Adam 1e-3, batch 512, up to 30 epochs, the best epoch on validation. Sequences
longer than ``max_len`` = 19 keep their FIRST 19 clicks (data_process.py), train and test alike;
``truncate = "last"`` keeps the last ones instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from algorithms.neural.harness import COMMON_SPECS, Network, NeuralRecommender, dropout
from algorithms.params import Choice, Float, Int

_UNIT = Float(0, 1, high_open=True)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Theano's ``hard_sigmoid``: clip(0.2 x + 0.5, 0, 1)."""
    return (0.2 * x + 0.5).clamp(0.0, 1.0)


def _normal(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """NARM's init_weights: N(0, sqrt(2 / shape[0]))."""
    return torch.randn(*shape, generator=gen) * math.sqrt(2.0 / shape[0])


def _orthogonal(gen: torch.Generator, n: int) -> torch.Tensor:
    """NARM's ortho_weight: the U of the SVD of a standard normal n x n matrix."""
    u, _, _ = torch.linalg.svd(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return u.float()


class NARMNetwork(Network):
    def __init__(
        self,
        n_items: int,
        embedding_size: int,
        hidden_size: int,
        dropout_embed: float,
        dropout_context: float,
        gru: str,
        gen: torch.Generator,
    ) -> None:
        super().__init__()
        d, h = embedding_size, hidden_size
        self.dropout_embed, self.dropout_context, self.gru = dropout_embed, dropout_context, gru
        self.E = nn.Parameter(_normal(gen, n_items + 1, d))
        self.W = nn.Parameter(torch.cat([_normal(gen, d, h) for _ in range(3)], dim=1))  # z r h
        self.U = nn.Parameter(torch.cat([_orthogonal(gen, h) for _ in range(3)], dim=1))
        self.b = nn.Parameter(torch.zeros(3 * h))
        self.A1 = nn.Parameter(_normal(gen, h, h))  # applied to h_t (W_encoder)
        self.A2 = nn.Parameter(_normal(gen, h, h))  # applied to every h_j (W_decoder)
        self.v = nn.Parameter(_normal(gen, h, 1))
        self.B = nn.Parameter(_normal(gen, d, 2 * h))

    def item_table(self) -> torch.Tensor:
        return self.E

    def hidden_states(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H): the GRU state after every position (padded steps carry h forward)."""
        x = dropout(self.E[items], self.dropout_embed, self.training, self.gen)
        h_size = self.U.shape[0]
        # Per time step: unbind / chunk (whose backward is one stack / cat), never slicing a big
        # tensor per step (each slice's backward would allocate the whole tensor).
        xw = (x @ self.W + self.b).unbind(1)  # T x (B, 3H)
        steps = mask.unbind(1)
        h = x.new_zeros(x.shape[0], h_size)
        u = self.U[:, : 2 * h_size], self.U[:, 2 * h_size :]  # sliced once, not per step
        states = []
        for x_t, m_t in zip(xw, steps):
            h = torch.where(m_t[:, None], self._gru_step(x_t, h, *u), h)
            states.append(h)
        return torch.stack(states, dim=1)

    def _gru_step(
        self, xw_t: torch.Tensor, h: torch.Tensor, uzr: torch.Tensor, uh: torch.Tensor
    ) -> torch.Tensor:
        """The GRU state after one input whose ``x W + b`` is ``xw_t`` (B, 3H); ``uzr``, ``uh``:
        the gates' and the candidate's columns of U."""
        gate = hard_sigmoid if self.gru == "theano" else torch.sigmoid
        xzr, xh = xw_t.split((uh.shape[1] * 2, uh.shape[1]), dim=1)
        z, r = gate(xzr + h @ uzr).chunk(2, dim=1)
        cand = torch.tanh(xh + (r * h) @ uh)
        return h + z * (cand - h)

    def session_vectors(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hs = self.hidden_states(items, mask)
        return self._readout(hs[:, -1], hs, hs @ self.A2, mask)

    def _readout(
        self, c_g: torch.Tensor, hs: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """B [c_l; c_g] from the last real state ``c_g`` (carried over the padding), every
        position's state ``hs`` and its ``A2 h_j`` (``keys``), real where ``mask``."""
        e = (hard_sigmoid(c_g[:, None, :] @ self.A1 + keys) @ self.v).squeeze(-1)
        e = e.masked_fill(~mask, -math.inf)
        a = torch.softmax(e, dim=1)
        c_l = (a[:, :, None] * hs).sum(1)
        c = dropout(torch.cat([c_l, c_g], dim=1), self.dropout_context, self.training, self.gen)
        return c @ self.B.T  # B c, never the materialised E B

    # Incremental evaluation (the harness's ``step``): per slot the GRU state ``h``, every
    # position's state ``hs`` and its attention key ``A2 h_j``, so that a click costs one GRU
    # step and one attention over the stored positions, not a pass over the whole prefix.
    def start_state(self, n: int, capacity: int) -> dict[str, torch.Tensor]:
        h = self.U.shape[0]
        zeros = torch.zeros(n, capacity, h, device=self.U.device)
        return {"h": torch.zeros(n, h, device=self.U.device), "hs": zeros, "keys": zeros.clone()}

    def advance(
        self,
        state: dict[str, torch.Tensor],
        rows: torch.Tensor,
        at: torch.Tensor,
        items: torch.Tensor,
    ) -> None:
        """Feed ``items`` (shifted by one) to the slots ``rows``, whose next position is ``at``
        (their state is from a zero start where ``at`` is 0)."""
        h = torch.where((at > 0)[:, None], state["h"][rows], 0.0)
        hh = self.U.shape[0]
        h = self._gru_step(
            self.E[items] @ self.W + self.b, h, self.U[:, : 2 * hh], self.U[:, 2 * hh :]
        )
        while int(at.max()) >= state["hs"].shape[1]:  # without max_len a session can outgrow
            for key in ("hs", "keys"):  # the position buffers: double them
                state[key] = torch.cat([state[key], torch.zeros_like(state[key])], dim=1)
        state["h"][rows] = h
        state["hs"][rows, at] = h
        state["keys"][rows, at] = h @ self.A2

    def state_vectors(
        self, state: dict[str, torch.Tensor], rows: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        width = int(lengths.max())
        mask = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
        hs, keys = state["hs"][rows, :width], state["keys"][rows, :width]
        return self._readout(state["h"][rows], hs, keys, mask)


class NARM(NeuralRecommender):
    """NARM with the authors' settings as defaults (see the module docstring).

    Args:
        embedding_size: item embedding size (50).
        hidden_size: GRU units (100).
        dropout_embed: dropout on the embedded inputs (0.25).
        dropout_context: dropout on c = [c_l; c_g] (0.5).
        gru: ``"theano"`` (hard-sigmoid gates, the authors' code) or ``"sigmoid"`` (the same GRU
            with logistic gates, as ``nn.GRU``-based ports run it).
        learning_rate: Adam learning rate (1e-3).
        batch_size: examples per step (512).
        n_epochs: at most this many epochs (30).
        patience: with ``valid``, stop after this many epochs without a better ``select_on``
            score (None, the authors' 100 > 30 epochs: never; the best epoch is kept anyway).
        select_on: ``"mrr"`` or ``"recall"`` (@20 on ``valid``).
        max_len: prefixes longer than this are truncated (19; None: never).
        truncate: ``"first"`` (keep the first ``max_len`` clicks, the authors' code) or
            ``"last"``.
        device, seed, n_threads: as for every model (``n_threads``: CPU threads while training).

    Attributes: see :class:`algorithms.neural.harness.NeuralRecommender`.
    """

    name = "narm"
    keeps_best_epoch = True
    hyperparameters = {
        "embedding_size": Int(low=1),
        "hidden_size": Int(low=1),
        "dropout_embed": _UNIT,
        "dropout_context": _UNIT,
        "gru": Choice(("theano", "sigmoid")),
        "learning_rate": Float(low=0, low_open=True),
        **COMMON_SPECS,
    }

    def __init__(
        self,
        embedding_size: int = 50,
        hidden_size: int = 100,
        dropout_embed: float = 0.25,
        dropout_context: float = 0.5,
        gru: str = "theano",
        learning_rate: float = 1e-3,
        batch_size: int = 512,
        n_epochs: int = 30,
        patience: int | None = None,
        select_on: str = "mrr",
        max_len: int | None = 19,
        truncate: str = "first",
        device: str = "auto",
        seed: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.dropout_embed = dropout_embed
        self.dropout_context = dropout_context
        self.gru = gru
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.patience = patience
        self.select_on = select_on
        self.max_len = max_len
        self.truncate = truncate
        self.device = device
        self.seed = seed
        self.n_threads = n_threads

    def _network(self, n_items: int, gen: torch.Generator) -> NARMNetwork:
        return NARMNetwork(
            n_items,
            self.embedding_size,
            self.hidden_size,
            self.dropout_embed,
            self.dropout_context,
            self.gru,
            gen,
        )
