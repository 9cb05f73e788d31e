"""GRU4Rec's losses over sampled scores, each with its hand-written gradient.

Every loss sees ``y``, a (B, K) matrix of (final-activated) scores for the B slots of a step
against K = B + n_sample items: the B targets of the mini-batch, then the extra samples. Row i's
positive item is column i (the diagonal); every other column is a negative for it. A loss returns
its value (the mean over rows) and ``dL/dy``; the trainer back-propagates by hand because at batch
size 32 autograd's per-op bookkeeping would cost more than the arithmetic.

With ``s_ij`` = softmax over row i's negatives (diagonal excluded) and ``sigma`` the logistic:

- cross-entropy: ``L_i = -log softmax(y_i)_i`` (softmax over all K columns)
- bpr-max:  ``L_i = -log sum_j s_ij sigma(y_ii - y_ij) + bpreg * sum_j s_ij y_ij^2``
- top1-max: ``L_i = sum_j s_ij (sigma(y_ij - y_ii) + sigma(y_ij^2))``
- bpr:      ``L_i = -mean_{j != i} log sigma(y_ii - y_ij)``
- top1:     ``L_i = mean_{j != i} sigma(y_ij - y_ii) + sigma(y_ij^2)``

BPR and TOP1 average over the K - 1 negatives, as in the 2016 paper's formulas (the official code
averages over all K columns including the positive's constant term; only the scale differs).
"""

from __future__ import annotations

from typing import Callable

import torch

EPS_LOG = 1e-24
"""Added inside logs of probabilities, as in the official code, so an underflow gives a finite loss."""

LossFn = Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy(y: torch.Tensor, bpreg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy with the diagonal as the class; ``dL/dy = (softmax(y) - I) / B``."""
    p = torch.softmax(y, 1)
    loss = -torch.log(p.diagonal() + EPS_LOG).mean()
    p.diagonal().sub_(1.0)
    return loss, p.div_(y.shape[0])


def _softmax_negatives(y: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax over every column but the diagonal (which gets weight 0)."""
    masked = y.clone()
    masked.diagonal().fill_(float("-inf"))
    return torch.softmax(masked, 1)


def _positives(y: torch.Tensor) -> torch.Tensor:
    return y.diagonal().unsqueeze(1)


def bpr_max(y: torch.Tensor, bpreg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR-max with score regularisation ``bpreg`` (Hidasi & Karatzoglou, 2018)."""
    s = _softmax_negatives(y)
    u = torch.sigmoid(_positives(y) - y)
    su = s * u
    a = su.sum(1, keepdim=True) + EPS_LOG
    y2 = y * y
    q = (s * y2).sum(1, keepdim=True)
    loss = (-torch.log(a) + bpreg * q).mean()
    w = su * (1.0 - u)  # s_j * dsigma: the slope of each pair
    # d/dy_ij of sum_k s_k u_k = s_j (u_j - A) - w_j;  of sum_k s_k y_k^2 = s_j (y_j^2 - Q + 2 y_j)
    grad = (s * a - su + w) / a + bpreg * s * (y2 - q + 2.0 * y)
    grad.diagonal().sub_(w.sum(1) / a.squeeze(1))
    return loss, grad.div_(y.shape[0])


def top1_max(y: torch.Tensor, bpreg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """TOP1-max (Hidasi & Karatzoglou, 2018)."""
    s = _softmax_negatives(y)
    e = torch.sigmoid(y - _positives(y))
    f = torch.sigmoid(y * y)
    v = e + f
    total = (s * v).sum(1, keepdim=True)
    loss = total.mean()
    de = s * e * (1.0 - e)
    grad = s * (v - total) + de + 2.0 * y * s * f * (1.0 - f)
    grad.diagonal().sub_(de.sum(1))
    return loss, grad.div_(y.shape[0])


def _off_diagonal(y: torch.Tensor) -> torch.Tensor:
    mask = torch.ones_like(y)
    mask.diagonal().zero_()
    return mask


def bpr(y: torch.Tensor, bpreg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR over the sampled negatives (ICLR 2016)."""
    mask = _off_diagonal(y)
    n_neg = y.shape[1] - 1
    d = _positives(y) - y
    loss = -(torch.nn.functional.logsigmoid(d) * mask).sum(1).mean() / n_neg
    grad = (1.0 - torch.sigmoid(d)) * mask  # = d(-log sigma(d))/dy_ij
    grad.diagonal().sub_(grad.sum(1))
    return loss, grad.div_(n_neg * y.shape[0])


def top1(y: torch.Tensor, bpreg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """TOP1: relative-rank approximation plus score regularisation of the negatives (ICLR 2016)."""
    mask = _off_diagonal(y)
    n_neg = y.shape[1] - 1
    e = torch.sigmoid(y - _positives(y))
    f = torch.sigmoid(y * y)
    loss = ((e + f) * mask).sum(1).mean() / n_neg
    de = e * (1.0 - e) * mask
    grad = de + 2.0 * y * f * (1.0 - f) * mask
    grad.diagonal().sub_(de.sum(1))
    return loss, grad.div_(n_neg * y.shape[0])


LOSSES: dict[str, LossFn] = {
    "cross-entropy": cross_entropy,
    "bpr-max": bpr_max,
    "top1-max": top1_max,
    "bpr": bpr,
    "top1": top1,
}


class FinalActivation:
    """The elementwise activation between raw scores and the loss, with its derivative.

    Names: ``linear``, ``tanh``, ``elu-<alpha>`` (``elu`` = ``elu-1``), and ``softmax``, which is
    the identity here because the cross-entropy loss applies the softmax itself.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.alpha = 0.0
        if name in ("linear", "softmax", "tanh"):
            self.kind = "identity" if name != "tanh" else "tanh"
        elif name == "elu" or name.startswith("elu-"):
            self.kind = "elu"
            try:
                self.alpha = float(name[4:]) if name.startswith("elu-") else 1.0
            except ValueError:
                raise ValueError(f"final_act {name!r}: expected elu-<alpha>, e.g. elu-0.5") from None
        else:
            raise ValueError(
                f"final_act must be linear, tanh, elu-<alpha> or softmax, got {name!r}"
            )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """y = act(s); may overwrite ``s`` (the raw scores are not needed after this)."""
        if self.kind == "tanh":
            return s.tanh_()
        if self.kind == "elu":
            return torch.nn.functional.elu(s, self.alpha)
        return s

    def backward(self, y: torch.Tensor, s: torch.Tensor | None, dy: torch.Tensor) -> torch.Tensor:
        """dL/ds from dL/dy, using the activation's output ``y`` (and input ``s`` for ELU)."""
        if self.kind == "tanh":
            return dy.mul_(1.0 - y * y)
        if self.kind == "elu":
            # elu'(s) = 1 for s > 0, alpha * exp(s) = y + alpha otherwise
            return dy.mul_(torch.where(s > 0, 1.0, y + self.alpha))
        return dy
