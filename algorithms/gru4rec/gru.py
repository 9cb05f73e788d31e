"""One GRU step and its hand-written backward pass, in the two forms the official code uses.

``[a_r, a_z, a_c] = x @ Wx + bx`` is precomputed by the caller (``gx``). Then

- ``"reset-after"`` (``torch.nn.GRUCell``, which the official PyTorch code trains with; the
  default): the reset gate scales the recurrent product, and the recurrent side has its own
  bias ``bh``::

      r, z = sigmoid([a_r, a_z] + h @ Wrz + bh_rz)
      c    = tanh(a_c + r * (h @ Wc + bh_c))

- ``"reset-before"`` (Cho et al. 2014, as the official Theano code): the reset gate scales the
  previous state before the recurrent matrix, and there is no recurrent bias::

      r, z = sigmoid([a_r, a_z] + h @ Wrz)
      c    = tanh(a_c + (r * h) @ Wc)

and in both ``h' = (1 - z) * h + z * c``. (``torch.nn.GRUCell`` writes ``h' = (1 - z) * c + z * h``:
the same family with ``z`` renamed ``1 - z``, i.e. the update gate's weights negated; the
initialisation is symmetric, so the two train identically in distribution.)

Training back-propagates one step at a time (the previous state is a constant), so the backward
pass needs only this step's intermediates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

CELLS = ("reset-after", "reset-before")


class GRUCache(NamedTuple):
    """What the backward pass needs from the forward pass."""

    h: torch.Tensor  # previous state (B, H)
    rz: torch.Tensor  # gates (B, 2H): reset then update
    rh: torch.Tensor | None  # reset-before: r * h (B, H)
    gh_c: torch.Tensor | None  # reset-after: h @ Wc + bh_c (B, H)
    c: torch.Tensor  # candidate state (B, H)


def gru_step(
    h: torch.Tensor,
    gx: torch.Tensor,
    w_rz: torch.Tensor,
    w_c: torch.Tensor,
    b_h: torch.Tensor | None = None,
) -> tuple[torch.Tensor, GRUCache]:
    """The next hidden state from the previous one ``h`` and the input projection ``gx``.

    Args:
        h: (B, H) previous state.
        gx: (B, 3H) ``x @ Wx + bx``, columns ordered [reset, update, candidate].
        w_rz: (H, 2H) recurrent weights of the reset and update gates.
        w_c: (H, H) recurrent weights of the candidate.
        b_h: (3H,) recurrent bias: given for the "reset-after" cell, None for "reset-before".
    """
    n_hidden = h.shape[1]
    if b_h is None:
        rz = torch.addmm(gx[:, : 2 * n_hidden], h, w_rz).sigmoid_()
        rh = rz[:, :n_hidden] * h
        c = torch.addmm(gx[:, 2 * n_hidden :], rh, w_c).tanh_()
        gh_c = None
    else:
        rz = torch.addmm(gx[:, : 2 * n_hidden], h, w_rz).add_(b_h[: 2 * n_hidden]).sigmoid_()
        gh_c = torch.addmm(b_h[2 * n_hidden :], h, w_c)
        c = torch.addcmul(gx[:, 2 * n_hidden :], rz[:, :n_hidden], gh_c).tanh_()
        rh = None
    return torch.lerp(h, c, rz[:, n_hidden:]), GRUCache(h, rz, rh, gh_c, c)


def gru_step_backward(
    cache: GRUCache, dh_new: torch.Tensor, w_c: torch.Tensor, dgx: torch.Tensor
) -> torch.Tensor:
    """Gradient of the pre-activations ``gx`` given ``dL/dh'``; written into ``dgx`` (B, 3H).

    The weight gradients follow from ``dgx`` (``dWx = x^T dgx``, ``dbx = sum(dgx)``,
    ``dWrz = h^T dgx[:, :2H]``, and ``dWc``, ``dbh`` by :func:`recurrent_candidate_grad`); the
    caller computes them where it wants them stored.
    """
    h, rz, _, gh_c, c = cache
    n_hidden = h.shape[1]
    z = rz[:, n_hidden:]
    d_rz = dgx[:, : 2 * n_hidden]
    d_c = dgx[:, 2 * n_hidden :]
    torch.mul(dh_new, z, out=d_c)
    d_c.mul_(1.0 - c * c)  # through tanh
    if gh_c is None:
        torch.mul(torch.mm(d_c, w_c.T), h, out=d_rz[:, :n_hidden])  # dL/dr
    else:
        torch.mul(d_c, gh_c, out=d_rz[:, :n_hidden])
    torch.mul(dh_new, c - h, out=d_rz[:, n_hidden:])  # dL/dz
    d_rz.mul_(rz * (1.0 - rz))  # through both sigmoids at once
    return dgx


def recurrent_candidate_grad(
    cache: GRUCache, dgx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, D) such that ``dWc = A^T D`` and, for the reset-after cell, ``dbh_c = sum(D)``."""
    n_hidden = cache.h.shape[1]
    d_c = dgx[:, 2 * n_hidden :]
    if cache.gh_c is None:
        return cache.rh, d_c
    return cache.h, d_c * cache.rz[:, :n_hidden]
