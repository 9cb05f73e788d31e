"""The GRU4Rec training loop: session-parallel steps, sampled scores, manual backward pass.

One step (B active slots, S extra samples, K = B + S scored items, d = last layer size):

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
checked for NaN every ``CHECK_EVERY`` steps).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from algorithms.gru4rec.batching import EpochPlan
from algorithms.gru4rec.gru import GRUCache, gru_step, gru_step_backward, recurrent_candidate_grad
from algorithms.gru4rec.losses import LOSSES, FinalActivation
from algorithms.gru4rec.model import Network
from algorithms.gru4rec.optimizer import LAYOUTS, DenseAdagradM, SparseAdagradM, default_layout
from algorithms.gru4rec.sampling import SampleCache
from algorithms.gru4rec.threads import ThreadPolicy
from datasets.progress import bars_enabled

log = logging.getLogger(__name__)

CHECK_EVERY = 1024
"""Steps between NaN/inf checks of the running loss (each check waits for the device)."""

LOG_EVERY_S = 30.0
"""Without a progress bar (no terminal), a progress line is logged this often during an epoch."""


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

    def __init__(self, max_rows: int, width: int, p: float, device: torch.device,
                 generator: torch.Generator, block: int = 256) -> None:
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
            raise ValueError(f"dropout state of shape {tuple(kept.shape)} does not fit "
                             f"masks of shape {self.shape}")
        self.masks = kept.to(self.device, torch.float32).div_(1.0 - self.p)
        self._next = int(state["next"])

    def next(self, n: int) -> torch.Tensor:
        """The next mask, its first ``n`` rows."""
        if self._next >= self.shape[0]:
            u = torch.rand(self.shape, device=self.device, generator=self.generator)
            self.masks = (u >= self.p).to(torch.float32).div_(1.0 - self.p)
            self._next = 0
        self._next += 1
        return self.masks[self._next - 1, :n]


class Trainer:
    """Owns the optimizer state and trains a network's parameters in place, epoch by epoch.

    Attributes:
        net: a ``Network`` whose parameters are views into the optimizer's buffers (usable for
            validation between epochs).
        hidden: per layer, the (B, H) hidden state of the current step's slots.
    """

    def __init__(self, params: dict[str, torch.Tensor], embedding: int | str,
                 config: TrainConfig, support: np.ndarray, plan: EpochPlan,
                 device: torch.device, generator: torch.Generator,
                 layout: str | None = None, threads: ThreadPolicy | None = None) -> None:
        self.cfg = config
        self.embedding = embedding
        self.device = device
        self.generator = generator
        self.layout = layout or default_layout(device)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        self.threads = threads
        self.loss_fn = LOSSES[config.loss]
        self.act = FinalActivation(config.final_act)
        lr, mom = config.learning_rate, config.momentum
        self.d = params["output.weight"].shape[1]
        self.n_layers = sum(1 for k in params if k.endswith(".w_c"))
        self.sizes = [params[f"layer{l}.w_c"].shape[0] for l in range(self.n_layers)]

        # Item tables: output weights with the bias as an extra column, so one gather, one matmul
        # and one sparse update serve both; plus the input table unless it is shared.
        table = torch.cat([params["output.weight"], params["output.bias"].unsqueeze(1)], 1)
        self.out_opt = SparseAdagradM(table, lr, mom, layout=self.layout)
        self.in_opt: SparseAdagradM | None = None
        if embedding != "shared":
            key = "embedding.weight" if embedding else "layer0.wx"
            self.in_opt = SparseAdagradM(params[key], lr, mom, layout=self.layout)
        dense = {k: tuple(v.shape) for k, v in params.items()
                 if k.startswith("layer") and not (not embedding and k == "layer0.wx")}
        self.dense = DenseAdagradM(dense, lr, mom, device)
        for k, view in self.dense.views.items():
            view.copy_(params[k])
        self.net = Network(self._param_views(), embedding)

        self.samples = None
        if config.n_sample > 0:
            self.samples = SampleCache(support, config.sample_alpha, config.n_sample,
                                       config.sample_cache_size, device, generator,
                                       max_rows=plan.n_steps)
        # logQ of a target column: log of the item's raw click count (official: not a probability).
        self.log_count = torch.as_tensor(np.log(np.maximum(support, 1e-12)), dtype=torch.float32,
                                         device=device)
        self._load_plan(plan)
        self._bufs: dict[tuple[str, int], torch.Tensor] = {}
        n_slots = plan.inputs.shape[1]
        # The official loss is summed over the active rows and divided by the batch size.
        self.norm = float(n_slots)
        # Dropout of each layer's output: dropout_hidden, except that with one-hot input the first
        # layer is the official code's input layer and takes dropout_embed.
        self.p_layer = [config.dropout_hidden] * self.n_layers
        if not embedding:
            self.p_layer[0] = config.dropout_embed
        self.p_input = config.dropout_embed if embedding else 0.0
        self._dropout = {}
        widths = [(size, p) for size, p in zip(self.sizes, self.p_layer) if p > 0]
        if self.p_input > 0:
            widths.append((self.d if embedding == "shared" else int(embedding), self.p_input))
        for width, p in set(widths):
            self._dropout[(width, p)] = BulkDropout(n_slots, width, p, device, generator)

    # ----------------------------------------------------------------- setup helpers
    def _param_views(self) -> dict[str, torch.Tensor]:
        views = dict(self.dense.views)
        views["output.weight"] = self.out_opt.param[:, : self.d]
        views["output.bias"] = self.out_opt.param[:, self.d]
        if self.in_opt is not None:
            views["embedding.weight" if self.embedding else "layer0.wx"] = self.in_opt.param
        return views

    def _load_plan(self, plan: EpochPlan) -> None:
        dev = self.device
        self.plan = plan
        self.inputs = torch.as_tensor(plan.inputs, device=dev)
        self.targets = torch.as_tensor(plan.targets, device=dev)
        self.keep_mask = torch.as_tensor(~plan.reset, dtype=torch.float32, device=dev).unsqueeze(2)
        self.n_active = plan.n_active.tolist()
        self.keep = [None if k is None else torch.as_tensor(k, device=dev) for k in plan.keep]

    def export_params(self) -> dict[str, torch.Tensor]:
        """Contiguous copies of the trained parameters (the optimizer state is left behind)."""
        return {k: v.contiguous().clone() for k, v in self._param_views().items()}

    def state(self) -> dict[str, Any]:
        """What training carries from one epoch to the next, as tensors and numbers on the CPU:
        the parameters with their accumulators and velocities, the random generator, and the
        pre-drawn samples and dropout masks not used yet. An epoch starts from zero hidden states
        and the same plan, so a trainer built like this one and given this state trains the next
        epochs exactly as this one would (on the CPU with the same thread count, bit for bit)."""
        return {
            "out_opt": self.out_opt.state(),
            "in_opt": None if self.in_opt is None else self.in_opt.state(),
            "dense": self.dense.state(),
            "generator": self.generator.get_state(),
            "samples": None if self.samples is None else self.samples.state(),
            "dropout": [{"width": width, "p": p, **self._dropout[(width, p)].state()}
                        for width, p in sorted(self._dropout)],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` of a trainer built with the same settings and data.

        Raises:
            ValueError: if a part of the state does not fit this trainer.
        """
        if (state["in_opt"] is None) != (self.in_opt is None) or \
                (state["samples"] is None) != (self.samples is None) or \
                sorted((d["width"], d["p"]) for d in state["dropout"]) != sorted(self._dropout):
            raise ValueError("training state of another configuration (input table, samples "
                             "or dropout differ)")
        self.out_opt.load_state(state["out_opt"])
        if self.in_opt is not None:
            self.in_opt.load_state(state["in_opt"])
        self.dense.load_state(state["dense"])
        if self.samples is not None:
            self.samples.load_state(state["samples"])
        for d in state["dropout"]:
            self._dropout[(d["width"], d["p"])].load_state(d)
        self.generator.set_state(state["generator"])

    def _buffer(self, name: str, n: int, shape: tuple[int, ...]) -> torch.Tensor:
        """A reusable scratch tensor per (name, batch size): the batch only changes in the tail."""
        buf = self._bufs.get((name, n))
        if buf is None:
            buf = torch.zeros(shape, device=self.device)
            if name == "o_ext":
                buf[:, -1] = 1.0  # the constant input of the bias column
            self._bufs[(name, n)] = buf
        return buf

    def _dropout_mask(self, n: int, width: int, p: float) -> torch.Tensor:
        """An (n, width) inverted-dropout mask: 0 with probability p, 1 / (1 - p) otherwise."""
        return self._dropout[(width, p)].next(n)

    # ----------------------------------------------------------------- the step
    def train_step(self, t: int) -> torch.Tensor | None:
        """Forward, backward and update for step ``t`` of the plan; returns the loss (a tensor)."""
        cfg, d = self.cfg, self.d
        n = self.n_active[t]
        if self.keep[t] is not None:  # the batch shrank: drop finished slots' states
            self.hidden = [h.index_select(0, self.keep[t]) for h in self.hidden]
        inp, tgt = self.inputs[t, :n], self.targets[t, :n]
        n_scored = n + cfg.n_sample
        items = self._gather_items(inp, tgt)

        # Input of the first layer (None for one-hot input: layer 0 gathers its own rows).
        mask_e = None
        x = items.input_rows[:, :d] if items.input_rows is not None else (
            self.in_opt.param.index_select(0, inp) if self.embedding else None)
        if self.p_input > 0:
            mask_e = self._dropout_mask(n, x.shape[1], self.p_input)
            x = x * mask_e

        # The last layer's output goes straight into [o, 1], the input of the scoring matmul.
        o_ext = self._buffer("o_ext", n, (n, d + 1))
        layer_inputs, caches, masks_h = self._forward_layers(x, inp, self.keep_mask[t, :n],
                                                             o_ext[:, :d])
        if n_scored < 2:  # a lone slot and no samples: no negative, nothing to learn
            return None

        # Scores against the scored items, loss and its gradient.
        w_out = items.table if items.out_inverse is not None else items.table[:n_scored]
        s = torch.mm(o_ext, w_out.T)
        if items.out_inverse is not None:  # deduplicated rows: back to one column per item
            s = s.index_select(1, items.out_inverse)
        if cfg.logq > 0:
            s.sub_(items.log_q, alpha=cfg.logq)
        y = self.act.forward(s)
        loss, dy = self.loss_fn(y, cfg.bpreg, self.norm)
        ds = self.act.backward(y, s, dy)

        # Backward: output layer (weights and bias in one matmul), then the GRU layers.
        if items.out_inverse is not None:  # sum the columns of duplicate items
            ds = torch.zeros((n, items.table.shape[0]), device=self.device).index_add_(
                1, items.out_inverse, ds)
            g_rows = torch.mm(ds.T, o_ext)
        else:
            g_rows = self._buffer("g_rows", n, (len(items.rows), d + 1))
            torch.mm(ds.T, o_ext, out=g_rows[:n_scored])
        d_out = torch.mm(ds, w_out[:, :d])
        d_in = self._backward_layers(d_out, layer_inputs, caches, masks_h, mask_e)
        last_col = self._scored_rows(items, n_scored) if self.out_opt.vel is not None else None

        self.dense.step()
        if items.input_rows is not None:  # shared embedding: inputs are rows of the same table
            if items.in_inverse is not None:
                g_rows[:, :d].index_add_(0, items.in_inverse, d_in)
            else:
                g_rows[n_scored:, :d].copy_(d_in)
        elif self.in_opt is not None:
            self.in_opt.step(inp, d_in)
        self.out_opt.step(items.rows, g_rows, unique=items.out_inverse is not None,
                          gathered=items.blocks, last_col=last_col)
        return loss

    def _scored_rows(self, items: "_ItemRows", n_scored: int) -> torch.Tensor | None:
        """1 for each row of ``items`` whose bias was scored this step, 0 for an input-only row
        (shared embedding); None when every row was scored. With momentum the optimizer would
        otherwise move an input-only row's bias by its velocity: the official code keeps the bias
        in its own table, which such a row does not touch."""
        if items.input_rows is None:
            return None
        if items.out_inverse is not None:
            return torch.zeros(len(items.rows), device=self.device).index_fill_(
                0, items.out_inverse, 1.0)
        mask = self._buffer("scored", len(items.rows), (len(items.rows),))
        mask[:n_scored] = 1.0
        return mask

    def _gather_items(self, inp: torch.Tensor, tgt: torch.Tensor) -> "_ItemRows":
        """Read the item-table rows of the step: targets, samples and (shared) inputs.

        On the CPU the rows are deduplicated first (``unique``), so the gather, the matmuls and
        the sparse update work on each item once; duplicates are mapped back by index. On a GPU
        every occurrence keeps its own row (static shapes; the optimizer merges duplicates).
        """
        parts = [tgt]
        log_q = None
        if self.samples is not None:
            sample, sample_logw = self.samples.next()
            parts.append(sample)
            if self.cfg.logq > 0:
                log_q = torch.cat([self.log_count[tgt], sample_logw])
        elif self.cfg.logq > 0:
            log_q = self.log_count[tgt]
        shared = self.embedding == "shared"
        if shared:
            parts.append(inp)
        idx = torch.cat(parts)
        n_scored = len(idx) - (len(inp) if shared else 0)
        if self.layout == "static":
            blocks = self.out_opt.gather(idx)
            return _ItemRows(idx, blocks, None, None,
                             blocks[n_scored:, 0] if shared else None, log_q)
        rows, inverse = torch.unique(idx, return_inverse=True)
        blocks = self.out_opt.gather(rows)
        in_inverse = inverse[n_scored:] if shared else None
        input_rows = blocks[:, 0].index_select(0, in_inverse) if shared else None
        return _ItemRows(rows, blocks, inverse[:n_scored], in_inverse, input_rows, log_q)

    def _forward_layers(self, x: torch.Tensor | None, inp: torch.Tensor, keep_mask: torch.Tensor,
                        out: torch.Tensor):
        """Advance every GRU layer one click; ``self.hidden`` gets the new states (after dropout,
        as in the official code) and ``out`` the last layer's output."""
        p = self.net.params
        layer_in, layer_inputs, caches, masks_h = x, [], [], []
        for l in range(self.n_layers):
            layer_inputs.append(layer_in)
            h = self.hidden[l] * keep_mask  # zero the state of slots that start a session
            if x is None and l == 0:  # one-hot input: the projection is a row per item
                gx = self.in_opt.param.index_select(0, inp).add_(p["layer0.bx"])
            else:
                gx = torch.addmm(p[f"layer{l}.bx"], layer_in, p[f"layer{l}.wx"])
            h_new, cache = gru_step(h, gx, p[f"layer{l}.w_rz"], p[f"layer{l}.w_c"],
                                    p.get(f"layer{l}.bh"))
            caches.append(cache)
            mask = None
            if self.p_layer[l] > 0:
                mask = self._dropout_mask(len(inp), self.sizes[l], self.p_layer[l])
                h_new = h_new.mul_(mask)
            masks_h.append(mask)
            self.hidden[l] = layer_in = h_new
        out.copy_(layer_in)
        return layer_inputs, caches, masks_h

    def _backward_layers(self, d_out: torch.Tensor, layer_inputs: list, caches: list,
                         masks_h: list, mask_e: torch.Tensor | None) -> torch.Tensor | None:
        """Write the GRU weights' gradients; return the gradient of the input rows (if any)."""
        p, g = self.net.params, self.dense.grad_views
        n = d_out.shape[0]
        for l in reversed(range(self.n_layers)):
            if masks_h[l] is not None:
                d_out.mul_(masks_h[l])
            cache: GRUCache = caches[l]
            size = self.sizes[l]
            dgx = gru_step_backward(cache, d_out, p[f"layer{l}.w_c"],
                                    torch.empty((n, 3 * size), device=self.device))
            torch.mm(cache.h.T, dgx[:, : 2 * size], out=g[f"layer{l}.w_rz"])
            a, d_c = recurrent_candidate_grad(cache, dgx)
            torch.mm(a.T, d_c, out=g[f"layer{l}.w_c"])
            torch.sum(dgx, 0, out=g[f"layer{l}.bx"])
            if f"layer{l}.bh" in g:  # reset-after: the recurrent bias
                g_bh = g[f"layer{l}.bh"]
                torch.sum(dgx[:, : 2 * size], 0, out=g_bh[: 2 * size])
                torch.sum(d_c, 0, out=g_bh[2 * size :])
            if layer_inputs[l] is None:  # one-hot: the input rows' gradient is dgx itself
                return dgx
            torch.mm(layer_inputs[l].T, dgx, out=g[f"layer{l}.wx"])
            d_out = torch.mm(dgx, p[f"layer{l}.wx"].T)
        if mask_e is not None:
            d_out.mul_(mask_e)
        return d_out if self.embedding else None

    # ----------------------------------------------------------------- epochs
    def reset_hidden(self) -> None:
        n = self.n_active[0] if self.n_active else 0
        self.hidden = [torch.zeros(n, size, device=self.device) for size in self.sizes]

    def train_epoch(self, epoch: int, progress: bool = True) -> dict[str, float]:
        """One pass over the plan. Returns {loss (mean over steps), events, seconds}.

        The progress bar follows :func:`datasets.progress.bars_enabled` (a terminal only);
        without one, a line with the events done, events/s and the running loss is logged every
        ``LOG_EVERY_S`` seconds.

        Raises:
            FloatingPointError: if the loss becomes NaN or infinite.
        """
        self.reset_hidden()
        if self.threads is not None:
            self.threads.begin_epoch()
        loss_sum = torch.zeros((), device=self.device)
        n_losses = 0
        n_steps = self.plan.n_steps
        show_bar = progress and bars_enabled()
        bar = tqdm(total=n_steps, desc=f"gru4rec epoch {epoch}", unit="step",
                   disable=not show_bar, leave=False, mininterval=1.0)
        events_done = np.cumsum(self.n_active)
        start = last_log = time.perf_counter()
        for t in range(n_steps):
            loss = self.train_step(t)
            if loss is not None:
                loss_sum += loss
                n_losses += 1
            if self.threads is not None:
                self.threads.step_done()
            if (t + 1) % CHECK_EVERY == 0 or t + 1 == n_steps:
                self._check_finite(loss_sum, epoch, t)
                bar.update((t + 1) - bar.n)
            if not show_bar and (t + 1) % 64 == 0 and t + 1 < n_steps:
                now = time.perf_counter()
                if now - last_log >= LOG_EVERY_S:
                    last_log = now
                    done = int(events_done[t])
                    log.info("epoch %d: %d/%d events (%.0f%%), %.0f events/s, running loss %.4f",
                             epoch, done, self.plan.n_events, 100.0 * done / self.plan.n_events,
                             done / (now - start), float(loss_sum) / max(n_losses, 1))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        bar.close()
        return {"loss": float(loss_sum) / max(n_losses, 1), "events": self.plan.n_events,
                "seconds": seconds}

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, t: int) -> None:
        if not bool(torch.isfinite(loss_sum)):
            raise FloatingPointError(
                f"GRU4Rec training diverged: the {self.cfg.loss} loss became "
                f"{float(loss_sum)} (NaN or infinite) by step {t + 1} of epoch {epoch}; "
                f"try a lower learning_rate (now {self.cfg.learning_rate})"
            )
