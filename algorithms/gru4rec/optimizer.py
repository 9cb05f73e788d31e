"""Adagrad with classic (heavy-ball) momentum, as in the official GRU4Rec, with sparse row updates.

For a parameter ``p`` with gradient ``g`` (``lr`` learning rate, ``mu`` momentum)::

    acc <- acc + g^2
    u   <- g / sqrt(acc + eps)             (eps = 1e-6)
    v   <- mu * v - lr * u                 (only if mu > 0)
    p   <- p + v                           (p <- p - lr * u if mu == 0)

This is the official code's rule (its ``IndexedAdagradM``): the velocity is added as it is, with no
Nesterov look-ahead.

Item tables (output weights and bias, input embeddings) get only the rows touched by the
mini-batch updated: their accumulators and velocities stay as they are elsewhere, which is what
makes the update cheap and is how the official code trains them. An item touched several times
in a step (two slots' targets, a sample that is also a target, ...) is updated once with the sum
of its gradients, exactly as a dense optimizer restricted to the touched rows would do.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithms.gru4rec import kernels

EPS = 1e-6

_NO_ROWS = np.zeros(0, dtype=np.int64)
_NO_GRADS = np.zeros((0, 0), dtype=np.float32)


class _AdagradM:
    """The shared update rule. Accumulators start at ``eps`` (not 0), so ``acc`` holds
    ``eps + sum g^2`` and the scale is ``rsqrt(acc)``: one pass less per step, same numbers."""

    def __init__(self, lr: float, momentum: float, eps: float = EPS) -> None:
        if lr < 0:  # 0 is allowed: a frozen run, used by tests to compare forward passes
            raise ValueError(f"learning_rate must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.lr, self.momentum, self.eps = lr, momentum, eps

    def _apply(
        self, p: torch.Tensor, acc: torch.Tensor, vel: torch.Tensor | None, g: torch.Tensor
    ) -> None:
        """In-place update of ``p``, ``acc`` and ``vel`` from ``g`` (``g`` is overwritten)."""
        acc.addcmul_(g, g)
        g.mul_(acc.rsqrt())
        if vel is None:
            p.add_(g, alpha=-self.lr)
        else:
            vel.mul_(self.momentum).add_(g, alpha=-self.lr)
            p.add_(vel)

    _carried: tuple[str, ...] = ()
    """The attributes that training carries from step to step (the rest is per-step scratch)."""

    def state(self) -> dict[str, torch.Tensor]:
        """CPU copies of the parameters, accumulators and velocities, for a training checkpoint."""
        return {
            k: getattr(self, k).detach().cpu().clone()
            for k in self._carried
            if getattr(self, k) is not None
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy a :meth:`state` back in place (views into the buffers stay valid).

        Raises:
            ValueError: if the state holds other buffers or shapes than this optimizer.
        """
        mine = {k: getattr(self, k) for k in self._carried if getattr(self, k) is not None}
        given = {k: tuple(v.shape) for k, v in state.items()}
        expected = {k: tuple(v.shape) for k, v in mine.items()}
        if given != expected:
            raise ValueError(f"optimizer state does not fit: {given} given, {expected} expected")
        for k, v in mine.items():
            v.copy_(state[k])


class DenseAdagradM(_AdagradM):
    """Adagrad-momentum over several dense parameters packed into one flat buffer.

    One flat buffer per quantity (parameters, gradients, accumulators, velocities) makes the
    update a handful of elementwise ops whatever the number of parameters.

    Attributes:
        flat: all parameters, concatenated; ``views[name]`` are reshaped slices of it.
        grad: gradients, same layout; ``grad_views[name]`` are written by the backward pass.
        acc: Adagrad accumulators (``eps`` + sum of squared gradients).
        vel: momentum velocities, or None when momentum is 0.
    """

    def __init__(
        self,
        shapes: dict[str, tuple[int, ...]],
        lr: float,
        momentum: float,
        device: torch.device,
        eps: float = EPS,
    ) -> None:
        super().__init__(lr, momentum, eps)
        sizes = {name: int(torch.Size(shape).numel()) for name, shape in shapes.items()}
        total = sum(sizes.values())
        self.flat = torch.zeros(total, device=device)
        self.grad = torch.zeros(total, device=device)
        self.acc = torch.full((total,), eps, device=device)
        self.vel = torch.zeros(total, device=device) if momentum > 0 else None
        self.views: dict[str, torch.Tensor] = {}
        self.grad_views: dict[str, torch.Tensor] = {}
        start = 0
        for name, shape in shapes.items():
            end = start + sizes[name]
            self.views[name] = self.flat[start:end].view(shape)
            self.grad_views[name] = self.grad[start:end].view(shape)
            start = end

    _carried = ("flat", "acc", "vel")

    def step(self) -> None:
        """Apply the gradients in ``grad`` (every slot must have been written this step)."""
        self._apply(self.flat, self.acc, self.vel, self.grad)

    def fused_step(self) -> None:
        """:meth:`step` as one compiled pass over the buffers (CPU, float32; the ``"numba"``
        implementation): the same numbers up to float rounding."""
        arrays = self.__dict__.get("_arrays")
        if arrays is None:
            vel = self.vel.numpy() if self.vel is not None else np.zeros(0, dtype=np.float32)
            arrays = self._arrays = (self.flat.numpy(), self.grad.numpy(), self.acc.numpy(), vel)
        kernels.dense_step(*arrays, kernels.as_f32(self.lr), kernels.as_f32(self.momentum))


LAYOUTS = ("unique", "static")
"""How a step's item rows are laid out (one choice for the trainer and its sparse optimizers):

- ``"unique"`` (the CPU default): each distinct item once (``torch.unique``); duplicates are mapped
  back by index. Fewer rows to gather, multiply and update, but ``unique`` has a data-dependent
  output size, which on a GPU means a host-device synchronisation every step.
- ``"static"`` (the GPU default): one row per occurrence, so every shape is fixed; duplicates
  are merged through a dense scratch table instead.
Both compute the same update up to float rounding."""


def default_layout(device: torch.device) -> str:
    return "unique" if device.type == "cpu" else "static"


class SparseAdagradM(_AdagradM):
    """Adagrad-momentum for a (n_rows, width) table, updating only the rows given each step.

    A row's parameter, accumulator and velocity are stored side by side in ``table``
    (n_rows, 3 or 2, width): the touched rows are scattered over a table too big for the caches,
    so one gather and one scatter of whole [param, acc, vel] blocks beat three of each. The
    caller may gather the blocks itself (``gather``) to read the parameters for its forward pass
    and hand them back to ``step``, which then needs no gather at all.

    Duplicate rows are merged according to ``layout`` (see :data:`LAYOUTS`):

    - ``"unique"``: ``torch.unique`` the rows and sum their gradients (or the caller did); the
      update is written back with one ``index_add_`` of the increments (on the CPU ``index_add_``
      has a fast row-wise path that ``index_copy_`` lacks).
    - ``"static"``: sum gradients in a dense zeroed scratch table, read the sums back per
      occurrence and write identical new rows for duplicates with ``index_copy_``.

    Attributes:
        table: (n_rows, 3, width) with momentum, (n_rows, 2, width) without.
        param: the (n_rows, width) parameter view of ``table``.
        acc: the accumulator view (``eps`` + sum of squared gradients).
        vel: the velocity view, or None when momentum is 0.
        layout: ``"unique"`` or ``"static"``.
    """

    def __init__(
        self,
        init: torch.Tensor,
        lr: float,
        momentum: float,
        eps: float = EPS,
        layout: str | None = None,
    ) -> None:
        super().__init__(lr, momentum, eps)
        layout = layout or default_layout(init.device)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.layout = layout
        n_rows, width = init.shape
        slots = 3 if momentum > 0 else 2
        self.table = torch.zeros(n_rows, slots, width, dtype=init.dtype, device=init.device)
        self.table[:, 0] = init
        self.table[:, 1] = eps
        self.param, self.acc = self.table[:, 0], self.table[:, 1]
        self.vel = self.table[:, 2] if momentum > 0 else None
        static = layout == "static"
        self._scratch = torch.zeros_like(init) if static else None
        self._flags = torch.zeros(n_rows, dtype=init.dtype, device=init.device) if static else None

    _carried = ("table",)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The [param, acc, (vel)] blocks of ``rows``: a (len(rows), slots, width) copy."""
        return self.table.index_select(0, rows)

    def step(
        self,
        rows: torch.Tensor,
        grads: torch.Tensor,
        unique: bool = False,
        gathered: torch.Tensor | None = None,
        last_col: torch.Tensor | None = None,
    ) -> None:
        """Update the rows ``rows`` (int64) with per-occurrence ``grads``.

        Args:
            rows: table rows, one per gradient row.
            grads: (len(rows), width) gradients; may be overwritten.
            unique: the caller promises ``rows`` has no duplicates (it merged them).
            gathered: ``gather(rows)`` taken before any update this step (saves the gather).
            last_col: optional float (len(rows),): 1 where the occurrence uses the table's last
                column, 0 where it does not. A row's last column (accumulator and velocity too)
                is left alone unless one of its occurrences uses it: the bias column of an item
                that was only an input this step is not a parameter of this step, exactly as
                the official code's separate bias table is not touched for it.
        """
        if self.layout == "static":
            self._step_static(rows, grads, gathered, last_col)
            return
        if not unique:
            rows, inverse = torch.unique(rows, return_inverse=True)
            merged = torch.zeros(
                (len(rows), grads.shape[1]), dtype=grads.dtype, device=grads.device
            )
            grads, gathered = merged.index_add_(0, inverse, grads), None
            if last_col is not None:
                last_col = torch.zeros(
                    len(rows), dtype=grads.dtype, device=grads.device
                ).index_add_(0, inverse, last_col)
        if gathered is None:
            gathered = self.gather(rows)
        self._update_unique(rows, grads, gathered, last_col)

    def table_np(self) -> np.ndarray:
        """``table`` as a numpy array sharing its memory (CPU only)."""
        table = self.__dict__.get("_table_np")
        if table is None:
            table = self._table_np = self.table.numpy()
        return table

    def update_rows(
        self,
        rows1: np.ndarray,
        grads: np.ndarray,
        rows2: np.ndarray | None = None,
        rows_b: np.ndarray | None = None,
        grads_b: np.ndarray | None = None,
    ) -> None:
        """The update in one compiled pass (the ``"numba"`` implementation; CPU, float32).

        Duplicates are merged in place, without ``unique``, copies or a scatter: see
        ``kernels.update_rows``, whose arguments these are (numpy arrays; ``grads`` and
        ``grads_b`` are overwritten). ``rows1`` then ``rows2`` name the rows of ``grads``
        (full width); ``rows_b`` those of ``grads_b``, which covers only the first
        ``grads_b.shape[1]`` columns: a row that occurs only there keeps its other columns (the
        ``last_col`` rule of :meth:`step`). Computes what :meth:`step` does, up to float
        rounding.
        """
        first = self.__dict__.get("_first")
        if first is None:
            first = self._first = np.full(self.table.shape[0], -1, dtype=np.int64)
        kernels.update_rows(
            self.table_np(),
            first,
            rows1,
            _NO_ROWS if rows2 is None else rows2,
            grads,
            _NO_ROWS if rows_b is None else rows_b,
            _NO_GRADS if grads_b is None else grads_b,
            kernels.as_f32(self.lr),
            kernels.as_f32(self.momentum),
        )

    def _update_unique(
        self,
        rows: torch.Tensor,
        g: torch.Tensor,
        blocks: torch.Tensor,
        last_col: torch.Tensor | None,
    ) -> None:
        # Written as increments so the table is only touched by one scatter:
        #   acc' - acc = g^2;  u = g / sqrt(acc')
        #   v' - v = (mu - 1) v - lr u;  p' - p = v' = mu v - lr u
        delta = torch.empty_like(blocks)
        torch.mul(g, g, out=delta[:, 1])
        u = g.mul_(blocks[:, 1].add_(delta[:, 1]).rsqrt_())
        if self.vel is None:
            torch.mul(u, -self.lr, out=delta[:, 0])
        else:
            vel = blocks[:, 2]
            torch.mul(vel, self.momentum, out=delta[:, 0]).add_(u, alpha=-self.lr)
            torch.sub(delta[:, 0], vel, out=delta[:, 2])
        if last_col is not None:
            delta[:, :, -1].mul_((last_col > 0).to(delta.dtype).unsqueeze(1))
        self.table.index_add_(0, rows, delta)

    def _step_static(
        self,
        rows: torch.Tensor,
        grads: torch.Tensor,
        gathered: torch.Tensor | None,
        last_col: torch.Tensor | None,
    ) -> None:
        scratch = self._scratch
        scratch.index_add_(0, rows, grads)
        g = scratch.index_select(0, rows)  # the summed gradient of each occurrence's row
        scratch.index_fill_(0, rows, 0.0)
        blocks = self.gather(rows) if gathered is None else gathered
        if last_col is not None:  # whether any occurrence of the row uses the last column
            self._flags.index_add_(0, rows, last_col)
            last_col = self._flags.index_select(0, rows) > 0
            self._flags.index_fill_(0, rows, 0.0)
            before = blocks[:, :, -1].clone()
        vel = blocks[:, 2] if self.vel is not None else None
        self._apply(blocks[:, 0], blocks[:, 1], vel, g)
        if last_col is not None:
            blocks[:, :, -1] = torch.where(last_col.unsqueeze(1), blocks[:, :, -1], before)
        self.table.index_copy_(0, rows, blocks)
