"""GRU4Rec's losses over sampled scores, each with its hand-written gradient.

Every loss sees ``y``, a (B, K) matrix of (final-activated) scores for the B slots of a step
against K = B + n_sample items: the B targets of the mini-batch, then the extra samples. Row i's
positive item is column i (the diagonal); every other column is a negative for it. A loss returns
its value, the *sum* over rows divided by ``norm``, and ``dL/dy``. The official code divides by the
configured batch size, also in the shrinking tail of an epoch where fewer rows are active, so the
trainer passes ``norm = batch_size``; ``norm=None`` divides by the number of rows (the mean). The
trainer back-propagates by hand because at batch size 32 autograd's per-op bookkeeping would cost
more than the arithmetic.

With ``s_ij`` = softmax over row i's negatives (diagonal excluded) and ``sigma`` the logistic:

- cross-entropy: ``L_i = -log softmax(y_i)_i`` (softmax over all K columns)
- bpr-max:  ``L_i = -log sum_j s_ij sigma(y_ii - y_ij) + bpreg * sum_j s_ij y_ij^2``
- top1-max: ``L_i = sum_j s_ij (sigma(y_ij - y_ii) + sigma(y_ij^2))``

As in the official code, BPR and TOP1 average over all K columns of the row, the positive's own
column included (its pair term is the constant log 2 for BPR and sigma(0) = 1/2 for TOP1, and TOP1
leaves out the positive's sigma(y_ii^2)); so the negatives' terms are divided by K, not K - 1:

- bpr:      ``L_i = (1/K) [log 2 + sum_{j != i} -log sigma(y_ii - y_ij)]``
- top1:     ``L_i = (1/K) [1/2 + sum_{j != i} sigma(y_ij - y_ii) + sigma(y_ij^2)]``
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS_LOG = 1e-24
"""Added inside logs of probabilities, as in the official code, so an underflow gives a finite loss."""

LossFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _norm(y: torch.Tensor, norm: float | None) -> float:
    return float(y.shape[0] if norm is None else norm)


def cross_entropy(
    y: torch.Tensor, bpreg: float = 0.0, norm: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy with the diagonal as the class; ``dL/dy = (softmax(y) - I) / norm``."""
    n = _norm(y, norm)
    p = torch.softmax(y, 1)
    loss = -torch.log(p.diagonal() + EPS_LOG).sum() / n
    p.diagonal().sub_(1.0)
    return loss, p.div_(n)


def _softmax_negatives(y: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax over every column but the diagonal (which gets weight 0)."""
    masked = y.clone()
    masked.diagonal().fill_(float("-inf"))
    return torch.softmax(masked, 1)


def _positives(y: torch.Tensor) -> torch.Tensor:
    return y.diagonal().unsqueeze(1)


def bpr_max(
    y: torch.Tensor, bpreg: float = 0.0, norm: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR-max with score regularisation ``bpreg`` (Hidasi & Karatzoglou, 2018)."""
    n = _norm(y, norm)
    s = _softmax_negatives(y)
    u = torch.sigmoid(_positives(y) - y)
    su = s * u
    a = su.sum(1, keepdim=True) + EPS_LOG
    y2 = y * y
    q = (s * y2).sum(1, keepdim=True)
    loss = (-torch.log(a) + bpreg * q).sum() / n
    w = su * (1.0 - u)  # s_j * dsigma: the slope of each pair
    # d/dy_ij of sum_k s_k u_k = s_j (u_j - A) - w_j;  of sum_k s_k y_k^2 = s_j (y_j^2 - Q + 2 y_j)
    grad = (s * a - su + w) / a + bpreg * s * (y2 - q + 2.0 * y)
    grad.diagonal().sub_(w.sum(1) / a.squeeze(1))
    return loss, grad.div_(n)


def top1_max(
    y: torch.Tensor, bpreg: float = 0.0, norm: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """TOP1-max (Hidasi & Karatzoglou, 2018)."""
    n = _norm(y, norm)
    s = _softmax_negatives(y)
    e = torch.sigmoid(y - _positives(y))
    f = torch.sigmoid(y * y)
    v = e + f
    total = (s * v).sum(1, keepdim=True)
    loss = total.sum() / n
    de = s * e * (1.0 - e)
    grad = s * (v - total) + de + 2.0 * y * s * f * (1.0 - f)
    grad.diagonal().sub_(de.sum(1))
    return loss, grad.div_(n)


def _off_diagonal(y: torch.Tensor) -> torch.Tensor:
    mask = torch.ones_like(y)
    mask.diagonal().zero_()
    return mask


def bpr(
    y: torch.Tensor, bpreg: float = 0.0, norm: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR over the sampled negatives (ICLR 2016), averaged over all K columns."""
    n, k = _norm(y, norm), y.shape[1]
    d = _positives(y) - y  # the diagonal is 0: its term is the constant -log sigma(0)
    loss = -torch.nn.functional.logsigmoid(d).sum() / (k * n)
    grad = 1.0 - torch.sigmoid(d)  # = d(-log sigma(d))/dy_ij
    grad.diagonal().zero_()
    grad.diagonal().sub_(grad.sum(1))
    return loss, grad.div_(k * n)


def top1(
    y: torch.Tensor, bpreg: float = 0.0, norm: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """TOP1: relative-rank approximation plus score regularisation of the negatives (ICLR 2016),
    averaged over all K columns."""
    n, k = _norm(y, norm), y.shape[1]
    mask = _off_diagonal(y)
    e = torch.sigmoid(y - _positives(y))  # the diagonal is sigma(0) = 1/2, a constant
    f = torch.sigmoid(y * y) * mask  # the positive's own regulariser is left out
    loss = (e + f).sum() / (k * n)
    de = e * (1.0 - e) * mask
    grad = de + 2.0 * y * f * (1.0 - f)
    grad.diagonal().sub_(de.sum(1))
    return loss, grad.div_(k * n)


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
                raise ValueError(
                    f"final_act {name!r}: expected elu-<alpha>, e.g. elu-0.5"
                ) from None
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
