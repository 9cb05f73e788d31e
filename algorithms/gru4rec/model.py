"""The GRU4Rec network's parameters and its inference step (no autograd, no nn.Module).

Parameters (all float32, names as stored in checkpoints):

- ``output.weight`` (n_items, d), ``output.bias`` (n_items,): item scores ``o @ W^T + b`` from the
  last layer's output ``o`` (d = last layer size).
- input, by ``embedding`` (its ``InputMode``: SHARED, SEPARATE, ONE_HOT):
  ``"shared"`` -- the input vector of item i is ``output.weight[i]`` (the "constrained embedding");
  ``k > 0``    -- ``embedding.weight`` (n_items, k);
  ``0``        -- one-hot input: ``layer0.wx`` is (n_items, 3 H0) and row i is the first layer's input
  projection for item i (multiplying a one-hot vector by a matrix selects a row).
- per GRU layer ``layer``: ``layer{layer}.wx`` (n_in, 3H), ``layer{layer}.bx`` (3H,),
  ``layer{layer}.w_rz`` (H, 2H), ``layer{layer}.w_c`` (H, H), and for the "reset-after" cell the
  recurrent bias ``layer{layer}.bh`` (3H,); see ``gru.py`` for the two cells (a network's cell is
  told by ``bh`` being there).

Initialisation, as in the official code (its compatibility mode): each weight block uniform in
``±sqrt(6 / (rows + cols))`` of *that block*, biases zero. The GRU matrices are stacks of gate
blocks, each drawn separately: ``wx`` is three (n_in, H) blocks, ``w_rz`` two (H, H) blocks, ``w_c``
one; the item tables are one block each. One bound over a whole stacked matrix (e.g.
``sqrt(6 / (H + 3H))`` for ``w_rz``-and-``w_c``) would draw weights about 30% smaller at 100 units.
"""

from __future__ import annotations

import enum
import math

import torch

from algorithms.gru4rec.gru import gru_step


class InputMode(enum.Enum):
    """How the first GRU layer gets its input (told by the ``embedding`` hyperparameter)."""

    SHARED = "shared"
    """``embedding="shared"``: the output item vectors ``output.weight`` (constrained embedding)."""
    ONE_HOT = "one-hot"
    """``embedding=0``: one-hot input, ``layer0.wx`` has a row per item."""
    SEPARATE = "separate"
    """``embedding=k > 0``: a separate input embedding ``embedding.weight`` of size k."""


def input_mode(embedding: int | str) -> InputMode:
    """The input mode of an ``embedding`` hyperparameter (``"shared"``, 0 or a size > 0)."""
    if embedding == "shared":
        return InputMode.SHARED
    if embedding:
        return InputMode.SEPARATE
    return InputMode.ONE_HOT


def uniform_init(
    shape: tuple[int, int], generator: torch.Generator, device: torch.device, blocks: int = 1
) -> torch.Tensor:
    """``blocks`` side-by-side blocks of shape (rows, cols / blocks), each uniform in
    ``±sqrt(6 / (rows + cols / blocks))`` (Glorot over the block, not the whole matrix)."""
    rows, cols = shape
    bound = math.sqrt(6.0 / (rows + cols // blocks))
    # Drawn on the CPU so a seed gives the same weights on every device.
    weights = torch.rand(shape, generator=generator, dtype=torch.float32) * (2 * bound) - bound
    return weights.to(device)


def init_params(
    n_items: int,
    layers: list[int],
    embedding: int | str,
    generator: torch.Generator,
    device: torch.device,
    cell: str = "reset-after",
) -> dict[str, torch.Tensor]:
    """Freshly initialised parameters of a network (see the module docstring for the layout)."""
    out_size = layers[-1]
    params = {
        "output.weight": uniform_init((n_items, out_size), generator, device),
        "output.bias": torch.zeros(n_items, device=device),
    }
    mode = input_mode(embedding)
    if mode is InputMode.SHARED:
        n_in = out_size
    elif mode is InputMode.SEPARATE:
        params["embedding.weight"] = uniform_init((n_items, int(embedding)), generator, device)
        n_in = int(embedding)
    else:  # one-hot
        n_in = n_items
    for layer, size in enumerate(layers):
        params[f"layer{layer}.wx"] = uniform_init((n_in, 3 * size), generator, device, blocks=3)
        params[f"layer{layer}.bx"] = torch.zeros(3 * size, device=device)
        params[f"layer{layer}.w_rz"] = uniform_init((size, 2 * size), generator, device, blocks=2)
        params[f"layer{layer}.w_c"] = uniform_init((size, size), generator, device)
        if cell == "reset-after":
            params[f"layer{layer}.bh"] = torch.zeros(3 * size, device=device)
        n_in = size
    return params


class Network:
    """Inference with a set of parameters (which may be views into the optimizer's tables).

    Attributes:
        params: the parameter tensors by name.
        embedding: ``"shared"``, an embedding size, or 0 (one-hot).
        input_mode: the ``InputMode`` of ``embedding``.
        n_layers: number of GRU layers.
    """

    def __init__(self, params: dict[str, torch.Tensor], embedding: int | str) -> None:
        self.params = params
        self.embedding = embedding
        self.input_mode = input_mode(embedding)
        self.n_layers = sum(1 for name in params if name.endswith(".w_c"))

    @property
    def layer_sizes(self) -> list[int]:
        return [self.params[f"layer{layer}.w_c"].shape[0] for layer in range(self.n_layers)]

    def input_projection(self, items: torch.Tensor) -> torch.Tensor:
        """``x @ Wx + bx`` of the first layer for item indices ``items`` (all known)."""
        params = self.params
        if self.input_mode is InputMode.SHARED:
            x = params["output.weight"].index_select(0, items)
        elif self.input_mode is InputMode.SEPARATE:
            x = params["embedding.weight"].index_select(0, items)
        else:  # one-hot: the projection is a row of the input matrix
            return params["layer0.wx"].index_select(0, items) + params["layer0.bx"]
        return torch.addmm(params["layer0.bx"], x, params["layer0.wx"])

    def step(
        self, hidden: list[torch.Tensor], items: torch.Tensor, reset: torch.Tensor
    ) -> torch.Tensor:
        """Advance every slot by one click; return the last layer's output (B, d).

        ``hidden`` (one (B, H) tensor per layer) is replaced in place. A slot whose item is
        ``UNKNOWN`` (negative) keeps its hidden state (after a reset: zeros), i.e. the click is
        skipped, because the network has no input vector for an item it never saw.
        """
        keep = (~reset).to(hidden[0].dtype).unsqueeze(1)
        known = (items >= 0).to(hidden[0].dtype).unsqueeze(1)
        gx = self.input_projection(items.clamp(min=0))
        params = self.params
        for layer in range(self.n_layers):
            h = hidden[layer] * keep
            if layer > 0:
                gx = torch.addmm(
                    params[f"layer{layer}.bx"], hidden[layer - 1], params[f"layer{layer}.wx"]
                )
            h_new, _ = gru_step(
                h,
                gx,
                params[f"layer{layer}.w_rz"],
                params[f"layer{layer}.w_c"],
                params.get(f"layer{layer}.bh"),
            )
            hidden[layer] = torch.lerp(h, h_new, known)
        return hidden[-1]

    def scores(self, out: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor:
        """Raw scores of every item, (B, n_items), written into ``into`` when given (the same
        operation, so the same values). The final activation is left out: it is strictly
        increasing, so ranks are the same, and tanh would saturate into false ties."""
        bias, weight = self.params["output.bias"], self.params["output.weight"]
        if into is None:
            return torch.addmm(bias, out, weight.T)
        return torch.addmm(bias, out, weight.T, out=into)
