"""Adagrad with Nesterov momentum, as in the official GRU4Rec, with sparse row updates.

For a parameter ``p`` with gradient ``g`` (``lr`` learning rate, ``mu`` momentum)::

    acc <- acc + g^2
    u   <- g / sqrt(acc + eps)
    v   <- mu * v - lr * u                 (only if mu > 0)
    p   <- p + mu * v - lr * u             (Nesterov look-ahead; p <- p - lr * u if mu == 0)

Item tables (output weights and bias, input embeddings) get only the rows touched by the
mini-batch updated: their accumulators and velocities stay as they are elsewhere, which is what
makes the update cheap and is how the official code trains them. Touched rows are given per
occurrence (an item may occur several times in a step: as two slots' targets, as a sample and a
target, ...). Their gradients are first summed into a dense scratch buffer, read back per
occurrence and the buffer re-zeroed, so duplicates compute identical new rows and the write-back
order does not matter. All shapes are static (no ``unique``), which keeps the step free of
host-device synchronisation on a GPU.
"""

from __future__ import annotations

import torch

EPS = 1e-6


class _AdagradM:
    def __init__(self, lr: float, momentum: float, eps: float = EPS) -> None:
        if lr < 0:  # 0 is allowed: a frozen run, used by tests to compare forward passes
            raise ValueError(f"learning_rate must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.lr, self.momentum, self.eps = lr, momentum, eps

    def _apply(self, p: torch.Tensor, acc: torch.Tensor, vel: torch.Tensor | None,
               g: torch.Tensor) -> None:
        """In-place update of ``p``, ``acc`` and ``vel`` from ``g`` (``g`` is overwritten)."""
        acc.addcmul_(g, g)
        g.mul_(torch.add(acc, self.eps).rsqrt_())
        if vel is None:
            p.add_(g, alpha=-self.lr)
        else:
            vel.mul_(self.momentum).add_(g, alpha=-self.lr)
            p.add_(vel, alpha=self.momentum).add_(g, alpha=-self.lr)


class DenseAdagradM(_AdagradM):
    """Adagrad-momentum over several dense parameters packed into one flat buffer.

    One flat buffer per quantity (parameters, gradients, accumulators, velocities) makes the
    update five elementwise ops whatever the number of parameters.

    Attributes:
        flat: all parameters, concatenated; ``views[name]`` are reshaped slices of it.
        grad: gradients, same layout; ``grad_views[name]`` are written by the backward pass.
        acc: Adagrad accumulators (sum of squared gradients).
        vel: momentum velocities, or None when momentum is 0.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], lr: float, momentum: float,
                 device: torch.device, eps: float = EPS) -> None:
        super().__init__(lr, momentum, eps)
        sizes = {name: int(torch.Size(shape).numel()) for name, shape in shapes.items()}
        total = sum(sizes.values())
        self.flat = torch.zeros(total, device=device)
        self.grad = torch.zeros(total, device=device)
        self.acc = torch.zeros(total, device=device)
        self.vel = torch.zeros(total, device=device) if momentum > 0 else None
        self.views: dict[str, torch.Tensor] = {}
        self.grad_views: dict[str, torch.Tensor] = {}
        start = 0
        for name, shape in shapes.items():
            end = start + sizes[name]
            self.views[name] = self.flat[start:end].view(shape)
            self.grad_views[name] = self.grad[start:end].view(shape)
            start = end

    def step(self) -> None:
        """Apply the gradients in ``grad`` (every slot must have been written this step)."""
        self._apply(self.flat, self.acc, self.vel, self.grad)


class SparseAdagradM(_AdagradM):
    """Adagrad-momentum for a (n_rows, width) table, updating only the rows given each step.

    Two ways to merge duplicate rows, with the same result (up to float rounding):

    - ``"unique"`` (CPU): ``torch.unique`` the rows, sum their gradients, and write the updates
      back with ``index_add_`` of the *change* of each quantity (on the CPU ``index_add_`` has a
      fast row-wise path that ``index_copy_`` lacks, and the parameter never has to be read).
    - ``"scratch"`` (GPU): sum gradients in a dense zeroed scratch table, read the sums back per
      occurrence and write identical new rows for duplicates with ``index_copy_``. Static shapes,
      so no host-device synchronisation (``unique`` would need one for its output size).

    Attributes:
        param: (n_rows, width) the parameter table.
        acc: (n_rows, width) Adagrad accumulators.
        vel: (n_rows, width) momentum velocities, or None when momentum is 0.
    """

    def __init__(self, init: torch.Tensor, lr: float, momentum: float, eps: float = EPS,
                 dedupe: str | None = None) -> None:
        super().__init__(lr, momentum, eps)
        if dedupe is None:
            dedupe = "unique" if init.device.type == "cpu" else "scratch"
        if dedupe not in ("unique", "scratch"):
            raise ValueError(f"dedupe must be 'unique' or 'scratch', got {dedupe!r}")
        self.dedupe = dedupe
        self.param = init.detach().clone().contiguous()
        self.acc = torch.zeros_like(self.param)
        self.vel = torch.zeros_like(self.param) if momentum > 0 else None
        self._scratch = torch.zeros_like(self.param) if dedupe == "scratch" else None

    def step(self, rows: torch.Tensor, grads: torch.Tensor, unique: bool = False) -> None:
        """Update the rows ``rows`` (int64) with per-occurrence ``grads``.

        ``unique=True`` promises that ``rows`` has no duplicates (the caller merged them), which
        skips the merge; ``grads`` may then be overwritten.
        """
        if unique:
            self._update_unique(rows, grads)
        elif self.dedupe == "unique":
            rows, inverse = torch.unique(rows, return_inverse=True)
            g = torch.zeros((len(rows), grads.shape[1]), dtype=grads.dtype, device=grads.device)
            self._update_unique(rows, g.index_add_(0, inverse, grads))
        else:
            self._step_scratch(rows, grads)

    def _update_unique(self, rows: torch.Tensor, g: torch.Tensor) -> None:
        self.acc.index_add_(0, rows, g * g)
        u = g.mul_(self.acc.index_select(0, rows).add_(self.eps).rsqrt_())
        if self.vel is None:
            self.param.index_add_(0, rows, u, alpha=-self.lr)
            return
        vel = self.vel.index_select(0, rows)
        new_vel = torch.add(vel.mul(self.momentum), u, alpha=-self.lr)
        self.vel.index_add_(0, rows, new_vel.sub_(vel))
        # p + mu * v_new - lr * u, with v_new = vel + (new_vel - vel)
        delta = torch.add(vel, new_vel).mul_(self.momentum).sub_(u, alpha=self.lr)
        self.param.index_add_(0, rows, delta)

    def _step_scratch(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        scratch = self._scratch
        scratch.index_add_(0, rows, grads)
        g = scratch.index_select(0, rows)  # the summed gradient of each occurrence's row
        scratch.index_fill_(0, rows, 0.0)
        param = self.param.index_select(0, rows)
        acc = self.acc.index_select(0, rows)
        vel = None if self.vel is None else self.vel.index_select(0, rows)
        self._apply(param, acc, vel, g)
        self.param.index_copy_(0, rows, param)
        self.acc.index_copy_(0, rows, acc)
        if vel is not None:
            self.vel.index_copy_(0, rows, vel)
