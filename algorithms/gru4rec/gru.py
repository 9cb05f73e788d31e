"""One GRU step and its hand-written backward pass.

The cell follows Cho et al. (2014), as the official GRU4Rec does (the reset gate scales the
previous state *before* the recurrent matrix; ``torch.nn.GRU`` scales after it)::

    [a_r, a_z, a_c] = x @ Wx + bx                 (precomputed by the caller: ``gx``)
    r, z = sigmoid([a_r, a_z] + h @ Wrz)
    c    = tanh(a_c + (r * h) @ Wc)
    h'   = (1 - z) * h + z * c

Training back-propagates one step at a time (the previous state is a constant), so the backward
pass needs only this step's intermediates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class GRUCache(NamedTuple):
    """What the backward pass needs from the forward pass."""

    h: torch.Tensor  # previous state (B, H)
    rz: torch.Tensor  # gates (B, 2H): reset then update
    rh: torch.Tensor  # r * h (B, H)
    c: torch.Tensor  # candidate state (B, H)


def gru_step(h: torch.Tensor, gx: torch.Tensor, w_rz: torch.Tensor,
             w_c: torch.Tensor) -> tuple[torch.Tensor, GRUCache]:
    """The next hidden state from the previous one ``h`` and the input projection ``gx``.

    Args:
        h: (B, H) previous state.
        gx: (B, 3H) ``x @ Wx + bx``, columns ordered [reset, update, candidate].
        w_rz: (H, 2H) recurrent weights of the reset and update gates.
        w_c: (H, H) recurrent weights of the candidate.
    """
    n_hidden = h.shape[1]
    rz = torch.addmm(gx[:, : 2 * n_hidden], h, w_rz).sigmoid_()
    rh = rz[:, :n_hidden] * h
    c = torch.addmm(gx[:, 2 * n_hidden :], rh, w_c).tanh_()
    return torch.lerp(h, c, rz[:, n_hidden:]), GRUCache(h, rz, rh, c)


def gru_step_backward(cache: GRUCache, dh_new: torch.Tensor, w_c: torch.Tensor,
                      dgx: torch.Tensor) -> torch.Tensor:
    """Gradient of the pre-activations ``gx`` given ``dL/dh'``; written into ``dgx`` (B, 3H).

    The weight gradients follow from ``dgx`` (``dWx = x^T dgx``, ``dbx = sum(dgx)``,
    ``dWrz = h^T dgx[:, :2H]``, ``dWc = (r h)^T dgx[:, 2H:]``); the caller computes them where it
    wants them stored.
    """
    h, rz, _, c = cache
    n_hidden = h.shape[1]
    z = rz[:, n_hidden:]
    d_rz = dgx[:, : 2 * n_hidden]
    d_c = dgx[:, 2 * n_hidden :]
    torch.mul(dh_new, z, out=d_c)
    d_c.mul_(1.0 - c * c)  # through tanh
    torch.mul(torch.mm(d_c, w_c.T), h, out=d_rz[:, :n_hidden])  # dL/dr
    torch.mul(dh_new, c - h, out=d_rz[:, n_hidden:])  # dL/dz
    d_rz.mul_(rz * (1.0 - rz))  # through both sigmoids at once
    return dgx
