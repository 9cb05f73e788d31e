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
        if lr <= 0:
            raise ValueError(f"learning_rate must be > 0, got {lr}")
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

    Parameter, accumulator and velocity of a row are stored side by side in ``table`` (shape
    (n_rows, 2 or 3, width)), so a touched row is read with one gather and written with one
    scatter.

    Attributes:
        table: (n_rows, 3, width) with momentum, (n_rows, 2, width) without: [param, acc, vel].
        param: the (n_rows, width) parameter view of ``table`` (what the model reads).
    """

    def __init__(self, init: torch.Tensor, lr: float, momentum: float, eps: float = EPS) -> None:
        super().__init__(lr, momentum, eps)
        n_rows, width = init.shape
        slots = 3 if momentum > 0 else 2
        self.table = torch.zeros(n_rows, slots, width, device=init.device, dtype=init.dtype)
        self.table[:, 0] = init
        self.param = self.table[:, 0]
        self._scratch = torch.zeros(n_rows, width, device=init.device, dtype=init.dtype)

    def step(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        """Update the rows ``rows`` (int64, duplicates allowed) with per-occurrence ``grads``."""
        scratch = self._scratch
        scratch.index_add_(0, rows, grads)
        g = scratch.index_select(0, rows)  # the summed gradient of each occurrence's row
        scratch.index_fill_(0, rows, 0.0)
        state = self.table.index_select(0, rows)
        vel = state[:, 2] if self.momentum > 0 else None
        self._apply(state[:, 0], state[:, 1], vel, g)
        self.table.index_copy_(0, rows, state)
