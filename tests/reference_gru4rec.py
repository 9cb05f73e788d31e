"""One GRU4Rec training step as the official code computes it, written plainly with autograd.

This is the slow twin of ``trainer.py``. It exists to be read and to be tested against: the fast
trainer packs tables together, deduplicates rows and writes every gradient by hand, which is
hard to get right and easy to break; this file does none of that. Tests train both from the same
parameters, with the same negative samples and dropout masks, and require the same parameters
after several steps.

One step, for the B sessions (slots) of a mini-batch (the official PyTorch code's ``fit`` loop):

1. Slots that start a new session get a zero hidden state.
2. Input: the clicked items' rows of the shared output table (``embedding="shared"``), of a
   separate embedding, or -- one-hot input -- of the first GRU layer's input matrix. Dropout
   ``dropout_embed`` on the embedding; with one-hot input on the first layer's output instead.
3. Each GRU layer, with ``torch.nn.GRUCell``'s reset-after form as the official PyTorch code
   (or Cho et al.'s reset-before form, as the official Theano code, when there is no ``bh``)::

       r, z = sigmoid(x Wx_rz + bx_rz + h W_rz + bh_rz);  c = tanh(x Wx_c + bx_c + r (h W_c + bh_c))
       [reset-before: r, z = sigmoid(x Wx_rz + bx_rz + h W_rz);  c = tanh(x Wx_c + bx_c + (r h) W_c)]
       h'   = (1 - z) h + z c;  then dropout, and the *dropped* h' is the state for the next step.

4. Scores of the B targets and ``n_sample`` extra samples: ``o W_j + b_j``. For cross-entropy with
   logQ, subtract ``logq * log(count_j)`` from target columns and
   ``logq * log(count_j ** sample_alpha)`` from sample columns (raw training click counts).
5. Final activation, the loss summed over the B rows, divided by the configured batch size.
6. Gradients by autograd, one step deep (the previous state is a constant).
7. Adagrad with classic momentum: ``acc += g^2; v = mu v - lr g / sqrt(acc + 1e-6); p += v``
   (``p -= lr g / sqrt(acc + 1e-6)`` without momentum). Dense parameters: every entry. Item
   tables: only the rows this step used (the weight rows of the targets, samples and, when the
   output table is the input embedding, the inputs; the bias rows of the targets and samples).

Everything is float64 so that the comparison measures the fast trainer's mistakes, not rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-6  # Adagrad's epsilon in the official code


@dataclass
class StepConfig:
    loss: str  # cross-entropy, bpr-max, top1-max, bpr, top1
    final_act: str  # softmax (= linear before cross-entropy), linear, tanh, elu-<alpha>
    embedding: int | str  # "shared", a size > 0, or 0 (one-hot)
    batch_size: int
    learning_rate: float
    momentum: float
    logq: float = 0.0
    sample_alpha: float = 0.5
    bpreg: float = 1.0


# ----------------------------------------------------------------------------- the loss
def final_activation(s: torch.Tensor, name: str) -> torch.Tensor:
    if name in ("softmax", "linear"):
        return s  # cross-entropy applies the softmax itself
    if name == "tanh":
        return torch.tanh(s)
    if name.startswith("elu"):
        alpha = float(name[4:]) if name.startswith("elu-") else 1.0
        return F.elu(s, alpha)
    raise ValueError(name)


def loss_per_row(y: torch.Tensor, loss: str, bpreg: float) -> torch.Tensor:
    """The official losses; column i of row i is the positive, all others are negatives."""
    k = y.shape[1]
    pos = y.diagonal().unsqueeze(1)
    eye = torch.eye(*y.shape, dtype=torch.bool)
    if loss == "cross-entropy":
        return -torch.log(torch.softmax(y, 1).diagonal() + 1e-24)
    if loss in ("bpr-max", "top1-max"):
        s = torch.softmax(y.masked_fill(eye, float("-inf")), 1)  # softmax over the negatives
        if loss == "bpr-max":
            return -torch.log((s * torch.sigmoid(pos - y)).sum(1) + 1e-24) + bpreg * (s * y**2).sum(
                1
            )
        return (s * (torch.sigmoid(y - pos) + torch.sigmoid(y**2))).sum(1)
    if loss == "bpr":  # the mean over all K columns (the positive's own term is log 2)
        return -F.logsigmoid(pos - y).sum(1) / k
    if loss == "top1":  # the mean over all K columns, without the positive's regulariser
        terms = torch.sigmoid(y - pos) + torch.sigmoid(y**2).masked_fill(eye, 0.0)
        return terms.sum(1) / k
    raise ValueError(loss)


# ----------------------------------------------------------------------------- the network
def gru_cell(
    x_proj: torch.Tensor,
    h: torch.Tensor,
    w_rz: torch.Tensor,
    w_c: torch.Tensor,
    b_h: torch.Tensor | None,
) -> torch.Tensor:
    """``x_proj`` = x Wx + bx, columns [reset, update, candidate]; ``b_h`` None: reset-before."""
    size = h.shape[1]
    if b_h is None:
        rz = torch.sigmoid(x_proj[:, : 2 * size] + h @ w_rz)
        r, z = rz[:, :size], rz[:, size:]
        c = torch.tanh(x_proj[:, 2 * size :] + (r * h) @ w_c)
    else:
        rz = torch.sigmoid(x_proj[:, : 2 * size] + h @ w_rz + b_h[: 2 * size])
        r, z = rz[:, :size], rz[:, size:]
        c = torch.tanh(x_proj[:, 2 * size :] + r * (h @ w_c + b_h[2 * size :]))
    return (1 - z) * h + z * c


def forward(
    p: dict[str, torch.Tensor],
    hidden: list[torch.Tensor],
    inp: torch.Tensor,
    embedding: int | str,
    embed_mask: torch.Tensor | None,
    layer_masks: list[torch.Tensor | None],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The last layer's output and the new (dropped-out) hidden states."""
    n_layers = len(hidden)
    if embedding == "shared":
        x = p["output.weight"][inp]
    elif embedding:
        x = p["embedding.weight"][inp]
    else:
        x = None  # one-hot: the first layer reads its input rows directly
    if x is not None and embed_mask is not None:
        x = x * embed_mask
    new_hidden = []
    for layer in range(n_layers):
        if x is None:
            x_proj = p["layer0.wx"][inp] + p["layer0.bx"]
        else:
            x_proj = x @ p[f"layer{layer}.wx"] + p[f"layer{layer}.bx"]
        x = gru_cell(
            x_proj,
            hidden[layer],
            p[f"layer{layer}.w_rz"],
            p[f"layer{layer}.w_c"],
            p.get(f"layer{layer}.bh"),
        )
        if layer_masks[layer] is not None:
            x = x * layer_masks[layer]
        new_hidden.append(x)
    return x, new_hidden


# ----------------------------------------------------------------------------- the optimizer
def adagrad_momentum(
    p: torch.Tensor,
    g: torch.Tensor,
    acc: torch.Tensor,
    vel: torch.Tensor,
    rows: torch.Tensor | None,
    lr: float,
    momentum: float,
) -> None:
    """Update ``p`` in place: every entry (``rows`` None) or only the given rows."""
    idx = slice(None) if rows is None else rows
    acc[idx] += g[idx] ** 2
    step = lr * g[idx] / torch.sqrt(acc[idx] + EPS)
    if momentum > 0:
        vel[idx] = momentum * vel[idx] - step
        p[idx] += vel[idx]
    else:
        p[idx] -= step


# ----------------------------------------------------------------------------- the step
class ReferenceGRU4Rec:
    """Parameters, optimizer state and hidden states; ``step`` trains on one mini-batch.

    Args:
        params: initial parameters, named as in ``model.py`` (copied to float64).
        counts: raw training click count of every item (for logQ).
        config: the hyperparameters of the step.
    """

    def __init__(
        self, params: dict[str, torch.Tensor], counts: torch.Tensor, config: StepConfig
    ) -> None:
        self.p = {k: v.detach().double().clone() for k, v in params.items()}
        self.acc = {k: torch.zeros_like(v) for k, v in self.p.items()}
        self.vel = {k: torch.zeros_like(v) for k, v in self.p.items()}
        self.log_count = torch.log(counts.double())
        self.cfg = config
        n_layers = sum(1 for k in self.p if k.endswith(".w_c"))
        self.hidden = [
            torch.zeros(
                config.batch_size, self.p[f"layer{layer}.w_c"].shape[0], dtype=torch.float64
            )
            for layer in range(n_layers)
        ]

    def step(
        self,
        inp: torch.Tensor,
        tgt: torch.Tensor,
        reset: torch.Tensor,
        sample: torch.Tensor | None,
        embed_mask: torch.Tensor | None,
        layer_masks: list[torch.Tensor | None],
        keep: torch.Tensor | None = None,
    ) -> float | None:
        """Train on one mini-batch; returns the loss (None if there was nothing to learn).

        Args:
            inp, tgt: the clicked item and the next item of each active slot.
            reset: True where the slot starts a new session.
            sample: the extra negative items shared by the batch (None: in-batch only).
            embed_mask, layer_masks: the inverted-dropout masks (entries 0 or 1 / (1 - p)).
            keep: when the batch shrank, the rows of the previous hidden states that go on.
        """
        cfg = self.cfg
        if keep is not None:
            self.hidden = [h[keep] for h in self.hidden]
        if sample is None and len(tgt) < 2:
            return None  # one slot and no samples: no negative; the official loop stops here
        hidden = [h * (~reset).double().unsqueeze(1) for h in self.hidden]
        p = {k: v.clone().requires_grad_(True) for k, v in self.p.items()}

        out, new_hidden = forward(p, hidden, inp, cfg.embedding, embed_mask, layer_masks)
        cols = tgt if sample is None else torch.cat([tgt, sample])
        scores = out @ p["output.weight"][cols].T + p["output.bias"][cols]
        if cfg.loss == "cross-entropy" and cfg.logq > 0:
            log_q = self.log_count[cols].clone()
            log_q[len(tgt) :] *= cfg.sample_alpha  # log(count ** alpha) for the samples
            scores = scores - cfg.logq * log_q
        y = final_activation(scores, cfg.final_act)
        loss = loss_per_row(y, cfg.loss, cfg.bpreg).sum() / cfg.batch_size

        names = list(p)
        grads = dict(
            zip(names, torch.autograd.grad(loss, [p[k] for k in names], allow_unused=True))
        )
        weight_rows = torch.unique(torch.cat([cols, inp]) if cfg.embedding == "shared" else cols)
        sparse_rows = {
            "output.weight": weight_rows,
            "output.bias": torch.unique(cols),
            "embedding.weight": torch.unique(inp),
        }
        if not cfg.embedding:
            sparse_rows["layer0.wx"] = torch.unique(inp)
        with torch.no_grad():
            for k in names:
                g = grads[k] if grads[k] is not None else torch.zeros_like(self.p[k])
                adagrad_momentum(
                    self.p[k],
                    g,
                    self.acc[k],
                    self.vel[k],
                    sparse_rows.get(k),
                    cfg.learning_rate,
                    cfg.momentum,
                )
        self.hidden = [h.detach() for h in new_hidden]
        return float(loss.detach())


def init_params(
    n_items: int,
    layers: list[int],
    embedding: int | str,
    generator: torch.Generator,
    cell: str = "reset-after",
) -> dict[str, torch.Tensor]:
    """Initial parameters as the official code draws them: every weight *block* uniform in
    ``±sqrt(6 / (rows + cols))`` of that block (the GRU input matrix is three (n_in, H) blocks,
    one per gate, the recurrent ones two and one (H, H) blocks), biases zero."""

    def block(rows: int, cols: int) -> torch.Tensor:
        bound = math.sqrt(6.0 / (rows + cols))
        return (torch.rand(rows, cols, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    d = layers[-1]
    p = {"output.weight": block(n_items, d), "output.bias": torch.zeros(n_items)}
    if embedding == "shared":
        n_in = d
    elif embedding:
        p["embedding.weight"] = block(n_items, int(embedding))
        n_in = int(embedding)
    else:
        n_in = n_items
    for layer, size in enumerate(layers):
        p[f"layer{layer}.wx"] = torch.cat([block(n_in, size) for _ in range(3)], 1)
        p[f"layer{layer}.bx"] = torch.zeros(3 * size)
        p[f"layer{layer}.w_rz"] = torch.cat([block(size, size) for _ in range(2)], 1)
        p[f"layer{layer}.w_c"] = block(size, size)
        if cell == "reset-after":
            p[f"layer{layer}.bh"] = torch.zeros(3 * size)
        n_in = size
    return {k: v.double() for k, v in p.items()}
