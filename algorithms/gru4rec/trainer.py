"""The GRU4Rec training step: session-parallel steps, sampled scores, manual backward pass.

One step (B active slots, S extra samples, K = B + S scored items, d = last layer size,
``Trainer.out_size``):

1. hidden rows of slots that start a new session are zeroed (``reset``);
2. one gather reads the item-table rows ``[W | b]`` (with their optimizer state) of the K scored
   items (targets, then samples) and, with a shared embedding, of the B inputs; in the
   ``"unique"`` row layout (the CPU default) each distinct item is read once and duplicates are
   mapped back by index, in the ``"static"`` one (the GPU default) every occurrence has its row
   (see ``optimizer.LAYOUTS``);
3. the GRU layers advance one click, with dropout on the input embedding and on each layer's
   output; the dropped-out output is also the state carried to the next step, as in the official
   code (with one-hot input the first layer's output takes ``dropout_embed`` instead);
4. scores ``[o, 1] @ [W | b]_K^T``, minus ``logq * log(c_j)`` for target columns and
   ``logq * log(c_j ** sample_alpha)`` for sample columns for cross-entropy (``c_j``: the item's
   raw training click count), the final activation and the loss with its gradient
   (``losses.py``), summed over the active rows and divided by the batch size;
5. gradients by hand (one step deep: the previous hidden state is a constant, as in the
   official code), dense Adagrad-momentum for the GRU weights, sparse for the touched item rows
   (the bias column only for scored items).

Everything per epoch that does not depend on the parameters (the session-parallel layout, the
reset masks, the samples, the dropout masks) is prepared in bulk beforehand, so a step is ~80
tensor ops, no Python loops over slots and no host-device synchronisation on a GPU (the loss is
checked for NaN every ``epochs.CHECK_EVERY`` steps). The loop over an epoch's steps and the
state carried from one epoch to the next are in ``epochs.py``.

Two implementations of the step (``Trainer(impl=...)``, default ``kernels.resolve_impl``):
``"torch"``, tensor ops only (the GPU path, and the reference), and ``"numba"``, the CPU default
where numba is installed: the item-row path (gather, duplicate merge, sparse update), the dense
update, the GRU backward's elementwise work and the sample search run as compiled loops
(``kernels.py``); the same samples and dropout masks in the same order, the same model up to
float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from algorithms.gru4rec import kernels
from algorithms.gru4rec.batching import EpochPlan
from algorithms.gru4rec.gru import GRUCache, gru_step, gru_step_backward, recurrent_candidate_grad
from algorithms.gru4rec.losses import LOSSES, FinalActivation
from algorithms.gru4rec.model import InputMode, Network, input_mode
from algorithms.gru4rec.optimizer import LAYOUTS, DenseAdagradM, SparseAdagradM, default_layout
from algorithms.gru4rec.sampling import SampleCache
from algorithms.gru4rec.threads import ThreadPolicy


@dataclass(frozen=True)
class TrainConfig:
    """The training hyperparameters the trainer needs (validated by the caller)."""

    loss: str
    final_act: str
    n_sample: int
    sample_alpha: float
    sample_cache_size: int
    logq: float
    bpreg: float
    learning_rate: float
    momentum: float
    dropout_embed: float
    dropout_hidden: float


class _ItemRows(NamedTuple):
    """The item-table rows a step works on.

    ``rows`` are table indices and ``table`` their parameter rows ([W | b]). With deduplication
    (``out_inverse`` not None) ``rows`` are unique and ``out_inverse`` / ``in_inverse`` give, for
    each scored column / each input click, its position in ``rows``. Without it, ``rows`` are the
    scored items then (shared embedding) the inputs, one per occurrence.
    """

    rows: torch.Tensor
    blocks: torch.Tensor  # the optimizer's [param, acc, vel] blocks of ``rows``
    out_inverse: torch.Tensor | None
    in_inverse: torch.Tensor | None
    input_rows: torch.Tensor | None  # the inputs' rows, shared embedding only
    log_q: torch.Tensor | None  # log sampling probability of each scored column, for logQ

    @property
    def table(self) -> torch.Tensor:
        """The parameters of ``rows``, [W | b] (a view into ``blocks``)."""
        return self.blocks[:, 0]


class BulkDropout:
    """Inverted-dropout masks drawn for many steps at once (one random call per ``block`` steps).

    Attributes:
        masks: (block, max_rows, width) masks with entries 0 (probability p) or 1 / (1 - p).
    """

    def __init__(
        self,
        max_rows: int,
        width: int,
        p: float,
        device: torch.device,
        generator: torch.Generator,
        block: int = 256,
    ) -> None:
        self.shape = (block, max_rows, width)
        self.p, self.device, self.generator = p, device, generator
        self._next = block

    def state(self) -> dict[str, object]:
        """The drawn masks (as booleans: kept or not) and the position in them."""
        if self._next >= self.shape[0]:  # nothing drawn, or used up
            return {"next": self.shape[0]}
        return {"next": self._next, "kept": (self.masks > 0).cpu()}

    def load_state(self, state: dict[str, object]) -> None:
        """Continue from a :meth:`state`."""
        if "kept" not in state:  # the next call draws anew
            self._next = self.shape[0]
            return
        kept = state["kept"]
        if tuple(kept.shape) != self.shape:
            raise ValueError(
                f"dropout state of shape {tuple(kept.shape)} does not fit "
                f"masks of shape {self.shape}"
            )
        self.masks = kept.to(self.device, torch.float32).div_(1.0 - self.p)
        self._next = int(state["next"])

    def next(self, n: int) -> torch.Tensor:
        """The next mask, its first ``n`` rows."""
        if self._next >= self.shape[0]:
            uniform = torch.rand(self.shape, device=self.device, generator=self.generator)
            self.masks = (uniform >= self.p).to(torch.float32).div_(1.0 - self.p)
            self._next = 0
        self._next += 1
        return self.masks[self._next - 1, :n]


class Trainer:
    """Owns the optimizer state and does the training step on a network's parameters in place.

    The loop over an epoch's steps and the state carried between epochs are in ``epochs.py``.

    Attributes:
        net: a ``Network`` whose parameters are views into the optimizer's buffers (usable for
            validation between epochs).
        input_mode: how the first layer gets its input (``model.InputMode``).
        hidden: per layer, the (B, H) hidden state of the current step's slots.
        dropout_masks: the pre-drawn dropout masks by (width, p).
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        embedding: int | str,
        config: TrainConfig,
        support: np.ndarray,
        plan: EpochPlan,
        device: torch.device,
        generator: torch.Generator,
        layout: str | None = None,
        threads: ThreadPolicy | None = None,
        impl: str | None = None,
    ) -> None:
        self.config = config
        self.embedding = embedding
        self.input_mode = mode = input_mode(embedding)
        self.device = device
        self.generator = generator
        self.layout = layout or default_layout(device)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        self.threads = threads  # the epoch loop's thread policy (CPU), see ``epochs.py``
        # "torch" (tensor ops: the reference, and the GPU path) or "numba" (the CPU fast path)
        self.impl = kernels.resolve_impl(impl, device.type, self.layout)
        if self.impl == "numba":
            kernels.warm_up()  # compiled (or loaded) now, not in the first timed step
        self.loss_fn = LOSSES[config.loss]
        self.final_activation = FinalActivation(config.final_act)
        learning_rate, momentum = config.learning_rate, config.momentum
        self.out_size = params["output.weight"].shape[1]
        self.n_layers = sum(1 for name in params if name.endswith(".w_c"))
        self.layer_sizes = [params[f"layer{layer}.w_c"].shape[0] for layer in range(self.n_layers)]

        # Item tables: output weights with the bias as an extra column, so one gather, one matmul
        # and one sparse update serve both; plus the input table unless it is shared.
        table = torch.cat([params["output.weight"], params["output.bias"].unsqueeze(1)], 1)
        self.out_opt = SparseAdagradM(table, learning_rate, momentum, layout=self.layout)
        self.in_opt: SparseAdagradM | None = None
        if mode is not InputMode.SHARED:
            self.in_opt = SparseAdagradM(
                params[self._input_table_name()], learning_rate, momentum, layout=self.layout
            )
        dense_shapes = {
            name: tuple(value.shape)
            for name, value in params.items()
            if name.startswith("layer") and not (mode is InputMode.ONE_HOT and name == "layer0.wx")
        }
        self.dense_opt = DenseAdagradM(dense_shapes, learning_rate, momentum, device)
        for name, view in self.dense_opt.views.items():
            view.copy_(params[name])
        self.net = Network(self._param_views(), embedding)

        self.samples = None
        if config.n_sample > 0:
            self.samples = SampleCache(
                support,
                config.sample_alpha,
                config.n_sample,
                config.sample_cache_size,
                device,
                generator,
                max_rows=plan.n_steps,
                fast_search=self.impl == "numba",
            )
        # logQ of a target column: log of the item's raw click count (official: not a probability).
        self.log_count = torch.as_tensor(
            np.log(np.maximum(support, 1e-12)), dtype=torch.float32, device=device
        )
        self._load_plan(plan)
        self._buffers: dict[tuple[str, int], torch.Tensor] = {}
        n_slots = plan.inputs.shape[1]
        # The official loss is summed over the active rows and divided by the batch size.
        self.loss_norm = float(n_slots)
        # Dropout of each layer's output: dropout_hidden, except that with one-hot input the first
        # layer is the official code's input layer and takes dropout_embed.
        self.layer_dropout = [config.dropout_hidden] * self.n_layers
        if mode is InputMode.ONE_HOT:
            self.layer_dropout[0] = config.dropout_embed
        self.input_dropout = config.dropout_embed if mode is not InputMode.ONE_HOT else 0.0
        self.dropout_masks: dict[tuple[int, float], BulkDropout] = {}
        widths = [(size, p) for size, p in zip(self.layer_sizes, self.layer_dropout) if p > 0]
        if self.input_dropout > 0:
            input_width = self.out_size if mode is InputMode.SHARED else int(embedding)
            widths.append((input_width, self.input_dropout))
        for width, p in set(widths):
            self.dropout_masks[(width, p)] = BulkDropout(n_slots, width, p, device, generator)

    # ----------------------------------------------------------------- setup helpers
    def _input_table_name(self) -> str:
        """The parameter the input optimizer owns (no shared embedding)."""
        return "embedding.weight" if self.input_mode is InputMode.SEPARATE else "layer0.wx"

    def _param_views(self) -> dict[str, torch.Tensor]:
        views = dict(self.dense_opt.views)
        views["output.weight"] = self.out_opt.param[:, : self.out_size]
        views["output.bias"] = self.out_opt.param[:, self.out_size]
        if self.in_opt is not None:
            views[self._input_table_name()] = self.in_opt.param
        return views

    def _load_plan(self, plan: EpochPlan) -> None:
        device = self.device
        self.plan = plan
        self.inputs = torch.as_tensor(plan.inputs, device=device)
        self.targets = torch.as_tensor(plan.targets, device=device)
        keep_mask = torch.as_tensor(~plan.reset, dtype=torch.float32, device=device)
        self.keep_mask = keep_mask.unsqueeze(2)
        self.n_active = plan.n_active.tolist()
        self.keep = [
            None if kept is None else torch.as_tensor(kept, device=device) for kept in plan.keep
        ]
        if self.impl == "numba":  # the plan as numpy arrays, for the compiled loops
            self._inputs_np = np.ascontiguousarray(plan.inputs, dtype=np.int64)
            self._targets_np = np.ascontiguousarray(plan.targets, dtype=np.int64)
            self._keep_np = np.ascontiguousarray(~plan.reset, dtype=np.float32)
            self._any_reset = plan.reset.any(axis=1).tolist()

    def export_params(self) -> dict[str, torch.Tensor]:
        """Contiguous copies of the trained parameters (the optimizer state is left behind)."""
        return {name: view.contiguous().clone() for name, view in self._param_views().items()}

    def _buffer(self, name: str, n: int, shape: tuple[int, ...]) -> torch.Tensor:
        """A reusable scratch tensor per (name, batch size): the batch only changes in the tail."""
        buffer = self._buffers.get((name, n))
        if buffer is None:
            buffer = torch.zeros(shape, device=self.device)
            if name == "o_ext":
                buffer[:, -1] = 1.0  # the constant input of the bias column
            self._buffers[(name, n)] = buffer
        return buffer

    def _dropout_mask(self, n: int, width: int, p: float) -> torch.Tensor:
        """An (n, width) inverted-dropout mask: 0 with probability p, 1 / (1 - p) otherwise."""
        return self.dropout_masks[(width, p)].next(n)

    # ----------------------------------------------------------------- hidden state
    def reset_hidden(self) -> None:
        """Zero hidden states for the first step of the plan."""
        n = self.n_active[0] if self.n_active else 0
        self.hidden = [torch.zeros(n, size, device=self.device) for size in self.layer_sizes]

    # ----------------------------------------------------------------- the step
    def train_step(self, t: int) -> torch.Tensor | None:
        """Forward, backward and update for step ``t`` of the plan; returns the loss (a tensor)."""
        if self.impl == "numba":
            return self._train_step_numba(t)
        return self._train_step_torch(t)

    def _train_step_torch(self, t: int) -> torch.Tensor | None:
        """The step with tensor ops only (``impl="torch"``): the reference of the fast path."""
        config, out_size, mode = self.config, self.out_size, self.input_mode
        n = self.n_active[t]
        if self.keep[t] is not None:  # the batch shrank: drop finished slots' states
            self.hidden = [h.index_select(0, self.keep[t]) for h in self.hidden]
        input_items, target_items = self.inputs[t, :n], self.targets[t, :n]
        n_scored = n + config.n_sample
        items = self._gather_items(input_items, target_items)

        # Input of the first layer (None for one-hot input: layer 0 gathers its own rows).
        embed_mask = None
        if mode is InputMode.SHARED:
            x = items.input_rows[:, :out_size]
        elif mode is InputMode.SEPARATE:
            x = self.in_opt.param.index_select(0, input_items)
        else:
            x = None
        if self.input_dropout > 0:
            embed_mask = self._dropout_mask(n, x.shape[1], self.input_dropout)
            x = x * embed_mask

        # The last layer's output goes straight into [o, 1], the input of the scoring matmul.
        o_ext = self._buffer("o_ext", n, (n, out_size + 1))
        layer_inputs, caches, layer_masks = self._forward_layers(
            x, input_items, self.keep_mask[t, :n], o_ext[:, :out_size]
        )
        if n_scored < 2:  # a lone slot and no samples: no negative, nothing to learn
            return None

        # Scores against the scored items, loss and its gradient.
        deduplicated = items.out_inverse is not None
        w_out = items.table if deduplicated else items.table[:n_scored]
        scores = torch.mm(o_ext, w_out.T)
        if deduplicated:  # deduplicated rows: back to one column per item
            scores = scores.index_select(1, items.out_inverse)
        if config.logq > 0:
            scores.sub_(items.log_q, alpha=config.logq)
        y = self.final_activation.forward(scores)
        loss, dy = self.loss_fn(y, config.bpreg, self.loss_norm)
        d_scores = self.final_activation.backward(y, scores, dy)

        # Backward: output layer (weights and bias in one matmul), then the GRU layers.
        if deduplicated:  # sum the columns of duplicate items
            d_scores = torch.zeros((n, items.table.shape[0]), device=self.device).index_add_(
                1, items.out_inverse, d_scores
            )
            row_grads = torch.mm(d_scores.T, o_ext)
        else:
            row_grads = self._buffer("g_rows", n, (len(items.rows), out_size + 1))
            torch.mm(d_scores.T, o_ext, out=row_grads[:n_scored])
        d_out = torch.mm(d_scores, w_out[:, :out_size])
        d_in = self._backward_layers(d_out, layer_inputs, caches, layer_masks, embed_mask)
        last_col = self._scored_rows(items, n_scored) if self.out_opt.vel is not None else None

        self.dense_opt.step()
        if mode is InputMode.SHARED:  # inputs are rows of the output table
            if items.in_inverse is not None:
                row_grads[:, :out_size].index_add_(0, items.in_inverse, d_in)
            else:
                row_grads[n_scored:, :out_size].copy_(d_in)
        else:
            self.in_opt.step(input_items, d_in)
        self.out_opt.step(
            items.rows,
            row_grads,
            unique=deduplicated,
            gathered=items.blocks,
            last_col=last_col,
        )
        return loss

    def _scored_rows(self, items: _ItemRows, n_scored: int) -> torch.Tensor | None:
        """1 for each row of ``items`` whose bias was scored this step, 0 for an input-only row
        (shared embedding); None when every row was scored. With momentum the optimizer would
        otherwise move an input-only row's bias by its velocity: the official code keeps the bias
        in its own table, which such a row does not touch."""
        if self.input_mode is not InputMode.SHARED:
            return None
        n_rows = len(items.rows)
        if items.out_inverse is not None:
            return torch.zeros(n_rows, device=self.device).index_fill_(0, items.out_inverse, 1.0)
        mask = self._buffer("scored", n_rows, (n_rows,))
        mask[:n_scored] = 1.0
        return mask

    def _gather_items(self, input_items: torch.Tensor, target_items: torch.Tensor) -> _ItemRows:
        """Read the item-table rows of the step: targets, samples and (shared) inputs.

        On the CPU the rows are deduplicated first (``unique``), so the gather, the matmuls and
        the sparse update work on each item once; duplicates are mapped back by index. On a GPU
        every occurrence keeps its own row (static shapes; the optimizer merges duplicates).
        """
        parts = [target_items]
        log_q = None
        if self.samples is not None:
            sample, sample_logw = self.samples.next()
            parts.append(sample)
            if self.config.logq > 0:
                log_q = torch.cat([self.log_count[target_items], sample_logw])
        elif self.config.logq > 0:
            log_q = self.log_count[target_items]
        shared = self.input_mode is InputMode.SHARED
        if shared:
            parts.append(input_items)
        indices = torch.cat(parts)
        n_scored = len(indices) - (len(input_items) if shared else 0)
        if self.layout == "static":
            blocks = self.out_opt.gather(indices)
            input_rows = blocks[n_scored:, 0] if shared else None
            return _ItemRows(indices, blocks, None, None, input_rows, log_q)
        rows, inverse = torch.unique(indices, return_inverse=True)
        blocks = self.out_opt.gather(rows)
        in_inverse = inverse[n_scored:] if shared else None
        input_rows = blocks[:, 0].index_select(0, in_inverse) if shared else None
        return _ItemRows(rows, blocks, inverse[:n_scored], in_inverse, input_rows, log_q)

    def _forward_layers(
        self,
        x: torch.Tensor | None,
        input_items: torch.Tensor,
        keep_mask: torch.Tensor,
        out: torch.Tensor,
    ):
        """Advance every GRU layer one click; ``self.hidden`` gets the new states (after dropout,
        as in the official code) and ``out`` the last layer's output."""
        params = self.net.params
        one_hot = self.input_mode is InputMode.ONE_HOT
        layer_in, layer_inputs, caches, layer_masks = x, [], [], []
        for layer in range(self.n_layers):
            layer_inputs.append(layer_in)
            h = self.hidden[layer] * keep_mask  # zero the state of slots that start a session
            if one_hot and layer == 0:  # the projection is a row per item
                gx = self.in_opt.param.index_select(0, input_items).add_(params["layer0.bx"])
            else:
                gx = torch.addmm(params[f"layer{layer}.bx"], layer_in, params[f"layer{layer}.wx"])
            h_new, cache = gru_step(
                h,
                gx,
                params[f"layer{layer}.w_rz"],
                params[f"layer{layer}.w_c"],
                params.get(f"layer{layer}.bh"),
            )
            caches.append(cache)
            mask = None
            if self.layer_dropout[layer] > 0:
                mask = self._dropout_mask(
                    len(input_items), self.layer_sizes[layer], self.layer_dropout[layer]
                )
                h_new = h_new.mul_(mask)
            layer_masks.append(mask)
            self.hidden[layer] = layer_in = h_new
        out.copy_(layer_in)
        return layer_inputs, caches, layer_masks

    def _backward_layers(
        self,
        d_out: torch.Tensor,
        layer_inputs: list,
        caches: list,
        layer_masks: list,
        embed_mask: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """Write the GRU weights' gradients; return the gradient of the input rows (if any)."""
        params, grads = self.net.params, self.dense_opt.grad_views
        one_hot = self.input_mode is InputMode.ONE_HOT
        n = d_out.shape[0]
        for layer in reversed(range(self.n_layers)):
            if layer_masks[layer] is not None:
                d_out.mul_(layer_masks[layer])
            cache: GRUCache = caches[layer]
            size = self.layer_sizes[layer]
            d_gx = gru_step_backward(
                cache,
                d_out,
                params[f"layer{layer}.w_c"],
                torch.empty((n, 3 * size), device=self.device),
            )
            torch.mm(cache.h.T, d_gx[:, : 2 * size], out=grads[f"layer{layer}.w_rz"])
            candidate_in, d_c = recurrent_candidate_grad(cache, d_gx)
            torch.mm(candidate_in.T, d_c, out=grads[f"layer{layer}.w_c"])
            torch.sum(d_gx, 0, out=grads[f"layer{layer}.bx"])
            if f"layer{layer}.bh" in grads:  # reset-after: the recurrent bias
                grad_bh = grads[f"layer{layer}.bh"]
                torch.sum(d_gx[:, : 2 * size], 0, out=grad_bh[: 2 * size])
                torch.sum(d_c, 0, out=grad_bh[2 * size :])
            if one_hot and layer == 0:  # the input rows' gradient is d_gx itself
                return d_gx
            torch.mm(layer_inputs[layer].T, d_gx, out=grads[f"layer{layer}.wx"])
            d_out = torch.mm(d_gx, params[f"layer{layer}.wx"].T)
        if embed_mask is not None:
            d_out.mul_(embed_mask)
        return None if one_hot else d_out

    # ----------------------------------------------------------------- the fast CPU step
    def _np(self, name: str, n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray]:
        """``_buffer`` with its numpy view (the compiled loops read and write numpy arrays)."""
        key = (name, n)
        views = self.__dict__.setdefault("_np_views", {})
        pair = views.get(key)
        if pair is None:
            tensor = self._buffer(name, n, shape)
            pair = views[key] = (tensor, tensor.numpy())
        return pair

    def _np_flat(
        self, name: str, n: int, shape: tuple[int, int], size: int
    ) -> tuple[torch.Tensor, np.ndarray]:
        """A contiguous ``shape`` view at the start of a reusable buffer of ``size`` floats
        (for shapes that change every step, such as the distinct items' scores)."""
        flat, flat_np = self._np(name, n, (size,))
        count = shape[0] * shape[1]
        return flat[:count].view(shape), flat_np[:count].reshape(shape)

    def _np_scratch(self, n_scored: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-step scratch of the gather: each score column's distinct item, its logQ shift,
        and the distinct items' rows."""
        scratch = self.__dict__.setdefault("_scratch", {})
        arrays = scratch.get(n_scored)
        if arrays is None:
            arrays = scratch[n_scored] = (
                np.empty(n_scored, dtype=np.int64),
                np.empty(n_scored, dtype=np.float32),
                np.empty(n_scored, dtype=np.int64),
            )
        return arrays

    def _fused_cells(self) -> bool:
        """Whether the GRU layers' backward pass runs the compiled loop (reset-after cells)."""
        fused = self.__dict__.get("_fused")
        if fused is None:
            params = self.net.params
            fused = self._fused = all(f"layer{i}.bh" in params for i in range(self.n_layers))
            self._grads_np = {k: v.numpy() for k, v in self.dense_opt.grad_views.items()}
            self._log_count_np = self.log_count.numpy()
            self._first = np.full(self.out_opt.table.shape[0], -1, dtype=np.int64)
            if self.samples is not None:
                self._sample_logw_np = self.samples.item_log_weight.numpy()
        return fused

    def _train_step_numba(self, t: int) -> torch.Tensor | None:
        """The step of :meth:`_train_step_torch` with the item-row path, the dense update and
        the elementwise backward pass of reset-after cells in compiled loops (``impl="numba"``,
        CPU).

        The touched rows are deduplicated by the gather itself (no ``unique``, no block copy):
        the distinct scored items' ``[W | b]`` are read once into a contiguous block, their
        scores are spread to one column per target and sample for the loss (logQ shift
        included) and the columns' gradients summed back, both in one compiled pass; then
        ``SparseAdagradM.update_rows`` merges the inputs' rows in and updates each row once.
        Samples and dropout masks are drawn in the same order as the torch step, so both train
        the same model up to float rounding.
        """
        config, out_size, mode = self.config, self.out_size, self.input_mode
        fused = self._fused_cells()
        n = self.n_active[t]
        if self.keep[t] is not None:  # the batch shrank: drop finished slots' states
            self.hidden = [h.index_select(0, self.keep[t]) for h in self.hidden]
        inputs, targets = self._inputs_np[t, :n], self._targets_np[t, :n]
        n_scored = n + config.n_sample
        samples, sample_logw = _NO_ROWS, _NO_F32
        if self.samples is not None:  # (the fast search leaves the log weights to gather_rows)
            samples = self.samples.next()[0].numpy()
            sample_logw = self._sample_logw_np
        embed_mask = None
        if self.input_dropout > 0:
            width = out_size if mode is InputMode.SHARED else int(self.embedding)
            embed_mask = self._dropout_mask(n, width, self.input_dropout)
        mask_np = _NO_F32_2D if embed_mask is None else embed_mask.numpy()

        # One pass over the tables: the distinct scored items' [W | b], the score columns' items
        # and logQ shifts, and the input rows after dropout.
        width = out_size + 1
        w_u, w_u_np = self._np("w_u", n, (n_scored, width))
        col, shift, rows_u = self._np_scratch(n_scored)
        logq = kernels.as_f32(config.logq)
        x = x_np = None
        if mode is InputMode.SHARED:
            x, x_np = self._np("x", n, (n, out_size))
            gathered = (inputs, x_np, mask_np)
        else:
            gathered = (_NO_ROWS, _NO_F32_2D, _NO_F32_2D)
        n_u = kernels.gather_rows(
            self.out_opt.table_np(), self._first, targets, samples, self._log_count_np,
            sample_logw, logq, rows_u, w_u_np, col, shift, *gathered,
        )  # fmt: skip
        if mode is InputMode.SEPARATE or (mode is InputMode.ONE_HOT and fused):
            in_table = self.in_opt.table_np()
            x, x_np = self._np("x", n, (n, in_table.shape[2]))
            kernels.gather_rows(
                in_table, self._first, _NO_ROWS, _NO_ROWS, _NO_F32, _NO_F32, logq, _NO_ROWS,
                _NO_F32_2D, _NO_ROWS, _NO_F32, inputs, x_np, mask_np,
            )  # fmt: skip
            if mode is InputMode.ONE_HOT:  # the rows are the first layer's projection
                x = x.add(self.net.params["layer0.bx"])

        o_ext = self._buffer("o_ext", n, (n, width))
        if fused:
            caches = self._forward_fused(x, t, n, o_ext)
        else:
            # (with one-hot input x is None: _forward_layers gathers the rows itself)
            caches = self._forward_layers(
                x, self.inputs[t, :n], self.keep_mask[t, :n], o_ext[:, :out_size]
            )
        if n_scored < 2:  # a lone slot and no samples: no negative, nothing to learn
            return None

        # Scores of the distinct items, then one column per target and sample (logQ shifted).
        w_out = w_u[:n_u]
        scores_u, scores_u_np = self._np_flat("s_u", n, (n, n_u), n * n_scored)
        torch.mm(o_ext, w_out.T, out=scores_u)
        scores = torch.empty((n, n_scored))
        kernels.expand_columns(scores_u_np, col, shift, scores.numpy())
        y = self.final_activation.forward(scores)
        loss, dy = self.loss_fn(y, config.bpreg, self.loss_norm)
        d_scores = self.final_activation.backward(y, scores, dy)

        # Backward: the columns of each distinct item summed, then its row gradient [W | b].
        d_u, d_u_np = scores_u, scores_u_np  # (the scores of the distinct items are spent)
        kernels.merge_columns(d_scores.numpy(), col, d_u_np)
        row_grads, row_grads_np = self._np("g_rows", n, (n_scored, width))
        row_grads, row_grads_np = row_grads[:n_u], row_grads_np[:n_u]
        torch.mm(d_u.T, o_ext, out=row_grads)
        d_out = torch.mm(d_u, w_out[:, :out_size])
        if fused:
            d_in = self._backward_fused(d_out, caches, embed_mask)
        else:
            d_in = self._backward_layers(d_out, *caches, embed_mask)

        self.dense_opt.fused_step()
        rows_u = rows_u[:n_u]
        if mode is InputMode.SHARED:  # the inputs' rows, without their bias column
            self.out_opt.update_rows(rows_u, row_grads_np, None, inputs, d_in.numpy())
        else:
            self.out_opt.update_rows(rows_u, row_grads_np)
            self.in_opt.update_rows(inputs, d_in.numpy())
        return loss

    def _forward_fused(self, x: torch.Tensor, t: int, n: int, o_ext: torch.Tensor) -> list:
        """``_forward_layers`` for reset-after cells, keeping what ``_backward_fused`` needs.
        With one-hot input ``x`` is the first layer's projection already. (The forward pass
        stays torch's: its vectorised sigmoid and tanh beat a compiled scalar loop.)"""
        params = self.net.params
        keep = self._keep_np[t, :n]
        reset = self._any_reset[t]
        one_hot = self.input_mode is InputMode.ONE_HOT
        layer_in, caches = x, []
        for layer in range(self.n_layers):
            h = self.hidden[layer]
            if reset:  # zero the state of slots that start a session (h is this step's own)
                kernels.reset_rows(h.numpy(), keep)
            if one_hot and layer == 0:
                gx = layer_in
            else:
                gx = torch.addmm(params[f"layer{layer}.bx"], layer_in, params[f"layer{layer}.wx"])
            h_new, cache = gru_step(
                h, gx, params[f"layer{layer}.w_rz"], params[f"layer{layer}.w_c"],
                params[f"layer{layer}.bh"],
            )  # fmt: skip
            mask_np = _NO_F32_2D
            if self.layer_dropout[layer] > 0:
                size = self.layer_sizes[layer]
                mask = self._dropout_mask(n, size, self.layer_dropout[layer])
                h_new.mul_(mask)
                mask_np = mask.numpy()
            caches.append((layer_in, cache, mask_np))
            self.hidden[layer] = layer_in = h_new
        o_ext[:, : self.out_size].copy_(layer_in)
        return caches

    def _backward_fused(
        self, d_out: torch.Tensor, caches: list, embed_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``_backward_layers`` for reset-after cells; returns the input rows' gradient."""
        params, grads, grads_np = self.net.params, self.dense_opt.grad_views, self._grads_np
        one_hot = self.input_mode is InputMode.ONE_HOT
        n = d_out.shape[0]
        for layer in reversed(range(self.n_layers)):
            x, (h, rz, _, gh_c, c), mask_np = caches[layer]
            size = self.layer_sizes[layer]
            dgx = torch.empty((n, 3 * size))
            d_cr = torch.empty((n, size))
            kernels.gru_backward(
                d_out.numpy(),
                mask_np,
                h.numpy(),
                rz.numpy(),
                gh_c.numpy(),
                c.numpy(),
                dgx.numpy(),
                d_cr.numpy(),
                grads_np[f"layer{layer}.bx"],
                grads_np[f"layer{layer}.bh"],
            )
            torch.mm(h.T, dgx[:, : 2 * size], out=grads[f"layer{layer}.w_rz"])
            torch.mm(h.T, d_cr, out=grads[f"layer{layer}.w_c"])
            if one_hot and layer == 0:  # the input rows' gradient is dgx itself
                return dgx
            torch.mm(x.T, dgx, out=grads[f"layer{layer}.wx"])
            d_out = torch.mm(dgx, params[f"layer{layer}.wx"].T)
        if embed_mask is not None:
            d_out.mul_(embed_mask)
        return d_out


_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_F32 = np.zeros(0, dtype=np.float32)
_NO_F32_2D = np.zeros((0, 0), dtype=np.float32)
