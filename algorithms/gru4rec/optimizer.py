"""Adagrad with Nesterov momentum, as in the official GRU4Rec, with sparse row updates.

For a parameter ``p`` with gradient ``g`` (``lr`` learning rate, ``mu`` momentum)::

    acc <- acc + g^2
    u   <- g / sqrt(acc + eps)
    v   <- mu * v - lr * u                 (only if mu > 0)
    p   <- p + mu * v - lr * u             (Nesterov look-ahead; p <- p - lr * u if mu == 0)

Item tables (output weights and bias, input embeddings) get only the rows touched by the
mini-batch updated: their accumulators and velocities stay as they are elsewhere, which is what
makes the update cheap and is how the official code trains them. An item touched several times
in a step (two slots' targets, a sample that is also a target, ...) is updated once with the sum
of its gradients, exactly as a dense optimizer restricted to the touched rows would do.
"""

from __future__ import annotations

import torch

EPS = 1e-6


class _AdagradM:
    """The shared update rule. Accumulators start at ``eps`` (not 0), so ``acc`` holds
    ``eps + sum g^2`` and the scale is ``rsqrt(acc)``: one pass less per step, same numbers."""

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
        g.mul_(acc.rsqrt())
        if vel is None:
            p.add_(g, alpha=-self.lr)
        else:
            vel.mul_(self.momentum).add_(g, alpha=-self.lr)
            p.add_(vel, alpha=self.momentum).add_(g, alpha=-self.lr)


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

    def __init__(self, shapes: dict[str, tuple[int, ...]], lr: float, momentum: float,
                 device: torch.device, eps: float = EPS) -> None:
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

    def step(self) -> None:
        """Apply the gradients in ``grad`` (every slot must have been written this step)."""
        self._apply(self.flat, self.acc, self.vel, self.grad)


class SparseAdagradM(_AdagradM):
    """Adagrad-momentum for a (n_rows, width) table, updating only the rows given each step.

    A row's parameter, accumulator and velocity are stored side by side in ``table``
    (n_rows, 3 or 2, width): the touched rows are scattered over a table too big for the caches,
    so one gather and one scatter of whole [param, acc, vel] blocks beat three of each. The
    caller may gather the blocks itself (``gather``) to read the parameters for its forward pass
    and hand them back to ``step``, which then needs no gather at all.

    Duplicate rows are merged in one of two ways, with the same result up to float rounding:

    - ``"unique"`` (CPU): ``torch.unique`` the rows and sum their gradients (or the caller did);
      the update is written back with one ``index_add_`` of the increments (on the CPU
      ``index_add_`` has a fast row-wise path that ``index_copy_`` lacks).
    - ``"scratch"`` (GPU): sum gradients in a dense zeroed scratch table, read the sums back per
      occurrence and write identical new rows for duplicates with ``index_copy_``. Static shapes,
      so no host-device synchronisation (``unique`` would need one for its output size).

    Attributes:
        table: (n_rows, 3, width) with momentum, (n_rows, 2, width) without.
        param: the (n_rows, width) parameter view of ``table``.
        acc: the accumulator view (``eps`` + sum of squared gradients).
        vel: the velocity view, or None when momentum is 0.
    """

    def __init__(self, init: torch.Tensor, lr: float, momentum: float, eps: float = EPS,
                 dedupe: str | None = None) -> None:
        super().__init__(lr, momentum, eps)
        if dedupe is None:
            dedupe = "unique" if init.device.type == "cpu" else "scratch"
        if dedupe not in ("unique", "scratch"):
            raise ValueError(f"dedupe must be 'unique' or 'scratch', got {dedupe!r}")
        self.dedupe = dedupe
        n_rows, width = init.shape
        slots = 3 if momentum > 0 else 2
        self.table = torch.zeros(n_rows, slots, width, dtype=init.dtype, device=init.device)
        self.table[:, 0] = init
        self.table[:, 1] = eps
        self.param, self.acc = self.table[:, 0], self.table[:, 1]
        self.vel = self.table[:, 2] if momentum > 0 else None
        self._scratch = torch.zeros_like(init) if dedupe == "scratch" else None

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The [param, acc, (vel)] blocks of ``rows``: a (len(rows), slots, width) copy."""
        return self.table.index_select(0, rows)

    def step(self, rows: torch.Tensor, grads: torch.Tensor, unique: bool = False,
             gathered: torch.Tensor | None = None) -> None:
        """Update the rows ``rows`` (int64) with per-occurrence ``grads``.

        Args:
            rows: table rows, one per gradient row.
            grads: (len(rows), width) gradients; may be overwritten.
            unique: the caller promises ``rows`` has no duplicates (it merged them).
            gathered: ``gather(rows)`` taken before any update this step (saves the gather).
        """
        if self.dedupe == "scratch":
            self._step_scratch(rows, grads, gathered)
            return
        if not unique:
            rows, inverse = torch.unique(rows, return_inverse=True)
            merged = torch.zeros((len(rows), grads.shape[1]), dtype=grads.dtype,
                                 device=grads.device)
            grads, gathered = merged.index_add_(0, inverse, grads), None
        if gathered is None:
            gathered = self.gather(rows)
        self._update_unique(rows, grads, gathered)

    def _update_unique(self, rows: torch.Tensor, g: torch.Tensor, blocks: torch.Tensor) -> None:
        # Written as increments so the table is only touched by one scatter:
        #   acc' - acc = g^2;  u = g / sqrt(acc')
        #   v' - v = (mu - 1) v - lr u;  p' - p = mu v' - lr u = mu^2 v - lr (1 + mu) u
        delta = torch.empty_like(blocks)
        torch.mul(g, g, out=delta[:, 1])
        u = g.mul_(blocks[:, 1].add_(delta[:, 1]).rsqrt_())
        if self.vel is None:
            torch.mul(u, -self.lr, out=delta[:, 0])
        else:
            mu, vel = self.momentum, blocks[:, 2]
            torch.mul(vel, mu * mu, out=delta[:, 0]).add_(u, alpha=-self.lr * (1 + mu))
            torch.mul(vel, mu - 1.0, out=delta[:, 2]).add_(u, alpha=-self.lr)
        self.table.index_add_(0, rows, delta)

    def _step_scratch(self, rows: torch.Tensor, grads: torch.Tensor,
                      gathered: torch.Tensor | None) -> None:
        scratch = self._scratch
        scratch.index_add_(0, rows, grads)
        g = scratch.index_select(0, rows)  # the summed gradient of each occurrence's row
        scratch.index_fill_(0, rows, 0.0)
        blocks = self.gather(rows) if gathered is None else gathered
        vel = blocks[:, 2] if self.vel is not None else None
        self._apply(blocks[:, 0], blocks[:, 1], vel, g)
        self.table.index_copy_(0, rows, blocks)
