"""``gru4rec-recbole``: RecBole's ``GRU4Rec`` (sequential_recommender/gru4rec.py) in PyTorch.

What the source does (read at commit 7b02be5ec80a88310f2d04a27a82adfcbb5dc211: gru4rec.py,
properties/model/GRU4Rec.yaml, properties/overall.yaml, utils/utils.py ``early_stopping``,
model/loss.py ``BPRLoss``):

- every prefix of a training sequence is one example (RecBole's data augmentation), cut on the
  left to the last ``MAX_ITEM_LIST_LENGTH = 50`` items and right-padded with the item id 0;
- ``Embedding(N + 1, 64, padding_idx=0)`` -> ``Dropout(0.3)`` -> ``GRU(64, 128, num_layers=1,
  bias=False)`` from a zero state -> ``Linear(128, 64)`` at the last real position; scores are
  the dot products with the item table itself (tied), all N + 1 rows in the CE softmax, the
  pad row included; the table is xavier-normal (pad row too), the GRU weights xavier-uniform,
  the Linear torch's default;
- CE, or BPR with one uniform negative: ``-mean log(1e-10 + sigmoid(pos - neg))``;
- Adam 1e-3 (torch's), batch 2048, shuffled every epoch, up to 300 epochs, early stopping on
  validation MRR@10: an epoch at least as good as the best (``>=``) resets the count, and
  training stops once the count exceeds ``stopping_step = 10``; the best epoch's weights are the
  result (RecBole tests the best saved model).

Here the validation MRR@10 is computed only when ``fit`` is given ``valid``, over *every*
next-click target of those sessions (ranks among the N training items, conservative ties),
not RecBole's last-target-only protocol. Without ``valid`` all ``n_epochs`` are trained.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from algorithms.gru4rec_variants.common import EpochTrained, generator_pair
from algorithms.gru4rec_variants.keras import DEVICE
from algorithms.params import Choice, Float, Int
from datasets.sessions import UNKNOWN, Sessions


def init_recbole_params(
    n_items: int, embedding_size: int, hidden_size: int, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """RecBole's initialisation; ``item_embedding`` has N + 1 rows, row 0 the padding."""
    emb = torch.empty(n_items + 1, embedding_size)
    torch.nn.init.xavier_normal_(emb, generator=gen)
    w_ih = torch.empty(3 * hidden_size, embedding_size)
    w_hh = torch.empty(3 * hidden_size, hidden_size)
    torch.nn.init.xavier_uniform_(w_hh, generator=gen)  # the order of _init_weights
    torch.nn.init.xavier_uniform_(w_ih, generator=gen)
    dense_w = torch.empty(embedding_size, hidden_size)
    torch.nn.init.kaiming_uniform_(dense_w, a=math.sqrt(5), generator=gen)  # nn.Linear default
    bound = 1 / math.sqrt(hidden_size)
    dense_b = (torch.rand(embedding_size, generator=gen) * 2 - 1) * bound
    return {
        "item_embedding": emb,
        "weight_ih_l0": w_ih,
        "weight_hh_l0": w_hh,
        "dense_weight": dense_w,
        "dense_bias": dense_b,
    }


def gru_cell(p: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One step of ``torch.nn.GRU(bias=False)`` (gate order r, z, n)."""
    ir, iz, i_n = (x @ p["weight_ih_l0"].T).chunk(3, 1)
    hr, hz, h_n = (h @ p["weight_hh_l0"].T).chunk(3, 1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def prefix_examples(sessions: Sessions) -> tuple[np.ndarray, np.ndarray]:
    """(end, target position) of every prefix example: the input is ``items[:end]`` of the
    session cut to its window, the target ``items[end]``."""
    lengths = sessions.lengths
    n_pairs = np.maximum(lengths - 1, 0)
    sess = np.repeat(np.arange(len(lengths)), n_pairs)
    within = np.arange(int(n_pairs.sum())) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    first = sessions.offsets[:-1][sess]
    return first, first + within + 1  # session start, target position


def window(
    items: torch.Tensor, first: torch.Tensor, target: torch.Tensor, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """RecBole's ``item_id_list`` (right-padded with 0, ids shifted by one) and its length for
    examples whose clicks are ``items[first:target]``, cut to the last ``max_len``."""
    length = torch.clamp(target - first, max=max_len)
    begin = target - length
    width = int(length.max())
    cols = torch.arange(width, device=items.device)
    idx = begin.unsqueeze(1) + cols
    real = cols.unsqueeze(0) < length.unsqueeze(1)
    ids = items[idx.clamp(max=len(items) - 1)] + 1  # UNKNOWN (-1) -> 0, the pad row
    return torch.where(real, ids, 0), length


class _Net(torch.nn.Module):
    def __init__(self, params: dict[str, torch.Tensor], dropout: float) -> None:
        super().__init__()
        self.p = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})
        self.dropout = dropout
        self.padded = False  # True: run the GRU over the padding too (tests' reference)

    def forward(self, seq: torch.Tensor, length: torch.Tensor, gen: torch.Generator | None):
        p = self.p
        x = p["item_embedding"][seq]
        if gen is not None and self.dropout > 0:
            keep = torch.rand(x.shape, generator=gen, device=x.device) >= self.dropout
            x = x * keep / (1 - self.dropout)
        weights = {"weight_ih_l0": p["weight_ih_l0"], "weight_hh_l0": p["weight_hh_l0"]}
        if self.padded:  # the source's pass over the whole padded width
            out, _ = torch.func.functional_call(self._gru(x.device), weights, (x,))
            last = out[torch.arange(len(seq), device=seq.device), length - 1]
        else:  # the same outputs (the GRU is causal), without the steps on the padding
            packed = pack_padded_sequence(x, length.cpu(), batch_first=True, enforce_sorted=False)
            _, h = torch.func.functional_call(self._gru(x.device), weights, (packed,))
            last = h[0]
        return last @ p["dense_weight"].T + p["dense_bias"]

    def _gru(self, device):
        if not hasattr(self, "_gru_module"):
            hidden, emb = self.p["weight_hh_l0"].shape[1], self.p["weight_ih_l0"].shape[1]
            module = torch.nn.GRU(emb, hidden, bias=False, batch_first=True, device="meta")
            object.__setattr__(self, "_gru_module", module.to_empty(device=device))
        return self._gru_module


class _Trainer:
    def __init__(self, model: GRU4RecRecBole, train: Sessions, valid: Sessions | None) -> None:
        self.m = model
        dev = model.device_
        init_gen, self.gen = generator_pair(model.seed, dev)
        self.shuffle_gen = torch.Generator().manual_seed(int(model.seed) + 1)
        params = init_recbole_params(
            train.n_items, model.embedding_size, model.hidden_size, init_gen
        )
        self.net = _Net({k: v.to(dev) for k, v in params.items()}, model.dropout_prob)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=model.learning_rate)
        self.n_items = train.n_items
        self.items = torch.as_tensor(train.items, device=dev)
        first, target = prefix_examples(train)
        self.first = torch.as_tensor(first, device=dev)
        self.target = torch.as_tensor(target, device=dev)
        self.valid = valid
        self.best = -math.inf
        self.bad = 0
        self.best_params: dict[str, torch.Tensor] | None = None

    def train_epoch(self) -> dict[str, float]:
        m = self.m
        n = len(self.first)
        perm = torch.randperm(n, generator=self.shuffle_gen).to(self.items.device)
        total = torch.zeros((), device=self.items.device)
        n_batches = 0
        for a in range(0, n, m.batch_size):
            idx = perm[a : a + m.batch_size]
            seq, length = window(self.items, self.first[idx], self.target[idx], m.max_seq_length)
            pos = self.items[self.target[idx]] + 1
            out = self.net(seq, length, self.gen)
            emb = self.net.p["item_embedding"]
            if m.loss_type == "CE":
                loss = F.cross_entropy(out @ emb.T, pos)
            else:  # one uniform negative among the other N - 1 items (ids 1..N)
                neg = torch.randint(
                    1, self.n_items, pos.shape, generator=self.gen, device=pos.device
                )
                neg = neg + (neg >= pos).long()
                pos_s = (out * emb[pos]).sum(-1)
                neg_s = (out * emb[neg]).sum(-1)
                loss = -torch.log(1e-10 + torch.sigmoid(pos_s - neg_s)).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.detach()
            n_batches += 1
        if not torch.isfinite(total):
            raise FloatingPointError("gru4rec-recbole: the loss became NaN or infinite")
        return {"loss": float(total) / max(n_batches, 1), "events": n}

    @torch.no_grad()
    def valid_mrr(self, k: int = 10) -> float:
        v = self.valid
        items = torch.as_tensor(v.items, device=self.items.device)
        first, target = (torch.as_tensor(a, device=items.device) for a in prefix_examples(v))
        rr_sum, n = 0.0, len(first)
        emb = self.net.p["item_embedding"][1:]
        for a in range(0, n, 4096):
            seq, length = window(
                items, first[a : a + 4096], target[a : a + 4096], self.m.max_seq_length
            )
            scores = self.net(seq, length, None) @ emb.T
            tgt = items[target[a : a + 4096]]
            known = tgt != UNKNOWN
            s_t = scores.gather(1, tgt.clamp(min=0).unsqueeze(1))
            rank = (scores >= s_t).sum(1).float()
            hit = known & (rank <= k)
            rr_sum += float(torch.where(hit, 1.0 / rank, 0.0).sum())
        return rr_sum / max(n, 1)

    def after_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        if self.valid is None:
            return {}, False
        score = self.valid_mrr()
        if score >= self.best:  # RecBole's early_stopping: ties count as better
            self.best, self.bad = score, 0
            self.best_params = self.params(clone=True)
        else:
            self.bad += 1
        return {"valid_mrr10": score}, self.bad > self.m.stopping_step

    def params(self, clone: bool = False) -> dict[str, torch.Tensor]:
        out = {k: v.detach() for k, v in self.net.p.items()}
        return {k: v.clone() for k, v in out.items()} if clone else out

    def final_params(self) -> dict[str, torch.Tensor]:
        return self.best_params if self.best_params is not None else self.params()

    def state(self) -> dict:
        return {
            "net": self.params(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            "shuffle_gen": self.shuffle_gen.get_state(),
            "best": self.best,
            "bad": self.bad,
            "best_params": self.best_params,
        }

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state["net"].items():
                self.net.p[k].copy_(v)
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"].cpu())
        self.shuffle_gen.set_state(state["shuffle_gen"].cpu())
        self.best, self.bad = float(state["best"]), int(state["bad"])
        self.best_params = state["best_params"]


class GRU4RecRecBole(EpochTrained):
    """GRU4Rec as RecBole trains it (see the module docstring).

    Learned attributes:
        device_: the torch device.
        n_items_: training items.
        network_: {item_embedding (N + 1, E) (row 0: padding), weight_ih_l0 (3H, E),
            weight_hh_l0 (3H, H), dense_weight (E, H), dense_bias (E,)}.
        history_: one row per epoch (with ``valid_mrr10`` when ``valid`` was given).
    """

    name = "gru4rec-recbole"
    file_format = "gru4rec-recbole/1"
    hyperparameters = {
        "embedding_size": Int(low=1),
        "hidden_size": Int(low=1),
        "dropout_prob": Float(0, 1, high_open=True),
        "loss_type": Choice(("CE", "BPR")),
        "max_seq_length": Int(low=1),
        "batch_size": Int(low=1),
        "n_epochs": Int(low=1),
        "learning_rate": Float(low=0, low_open=True),
        "stopping_step": Int(low=0),
        "seed": Int(),
        "device": DEVICE,
    }

    def __init__(
        self,
        embedding_size: int = 64,
        hidden_size: int = 128,
        dropout_prob: float = 0.3,
        loss_type: str = "CE",
        max_seq_length: int = 50,
        batch_size: int = 2048,
        n_epochs: int = 300,
        learning_rate: float = 0.001,
        stopping_step: int = 10,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.dropout_prob = dropout_prob
        self.loss_type = loss_type
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.stopping_step = stopping_step
        self.seed = seed
        self.device = device

    def _make_trainer(self, train: Sessions, valid: Sessions | None) -> _Trainer:
        return _Trainer(self, train, valid)

    @property
    def selects_epochs(self) -> bool:
        return True  # RecBole always stops early on the validation MRR@10

    def chosen_epochs(self) -> int:
        """The epoch whose weights ``fit`` kept: the last one at the best validation MRR@10 (a
        tie counts as better, as RecBole's ``early_stopping``)."""
        scores = [row["valid_mrr10"] for row in self.history_]
        if not scores:
            raise ValueError("gru4rec-recbole: chosen_epochs needs a fit given valid")
        best = max(scores)
        return max(i for i, v in enumerate(scores) if v == best) + 1

    def init_state(self, n_slots: int) -> dict[str, torch.Tensor]:
        """Per slot: the GRU state, the window of the last ``max_seq_length`` ids, its length."""
        dev = self.device_
        return {
            "h": torch.zeros(n_slots, self.hidden_size, device=dev),
            "seq": torch.zeros(n_slots, self.max_seq_length, dtype=torch.long, device=dev),
            "len": torch.zeros(n_slots, dtype=torch.long, device=dev),
        }

    def step(self, state: dict, items: np.ndarray, reset: np.ndarray) -> torch.Tensor:
        """Feed one click per slot (UNKNOWN: the pad id 0); return the scores of items 1..N.

        The GRU state is carried from click to click, which is the source's forward pass over
        the window while a session has at most ``max_seq_length`` clicks; a slot past that is
        recomputed from a zero state over its window, as RecBole's left cut does.
        """
        dev = self.device_
        p = self.network_
        ids = torch.as_tensor(np.asarray(items, dtype=np.int64), device=dev) + 1
        reset_t = torch.as_tensor(np.asarray(reset, dtype=bool), device=dev)
        with torch.no_grad():
            h = state["h"].masked_fill(reset_t.unsqueeze(1), 0.0)
            seq = state["seq"].masked_fill(reset_t.unsqueeze(1), 0)
            length = state["len"].masked_fill(reset_t, 0)
            full = length >= self.max_seq_length
            seq = torch.where(full.unsqueeze(1), seq.roll(-1, 1), seq)
            col = torch.clamp(length, max=self.max_seq_length - 1)
            seq[torch.arange(len(ids), device=dev), col] = ids
            length = torch.clamp(length + 1, max=self.max_seq_length)
            h = gru_cell(p, p["item_embedding"][ids], h)
            if bool(full.any()):
                rows = torch.nonzero(full).squeeze(1)
                hr = torch.zeros(len(rows), self.hidden_size, device=dev)
                for t in range(self.max_seq_length):
                    hr = gru_cell(p, p["item_embedding"][seq[rows, t]], hr)
                h[rows] = hr
            state["h"].copy_(h)
            state["seq"].copy_(seq)
            state["len"].copy_(length)
            out = h @ p["dense_weight"].T + p["dense_bias"]
            return out @ p["item_embedding"][1:].T
