"""Extra negative samples, drawn in bulk on the model's device.

Besides the other targets of the mini-batch (which are popularity-sampled by construction),
every step scores ``n_sample`` extra items shared by the whole mini-batch, drawn with replacement
with probability proportional to ``support ** sample_alpha`` (alpha = 0: uniform, 1: popularity).
Drawing one sample set per step would cost an op and a random-number call each step, so
``cache_size`` items are drawn at once (inverse-CDF sampling: ``searchsorted`` of uniform numbers
in the cumulative distribution) and consumed row by row; the cache is refilled when used up.
"""

from __future__ import annotations

import numpy as np
import torch

from algorithms.gru4rec import kernels


def sampling_weights(support: np.ndarray, alpha: float) -> np.ndarray:
    """Unnormalised sampling probability of each item: ``support ** alpha`` (0 for unseen items)."""
    support = np.asarray(support, dtype=np.float64)
    weights = np.zeros_like(support)
    seen = support > 0  # masked first: 0 ** 0 would give unseen items weight 1 at alpha = 0
    weights[seen] = support[seen] ** alpha
    return weights


class SampleCache:
    """Pre-drawn rows of ``n_sample`` items (and their log sampling weights) on ``device``.

    Attributes:
        cdf: float64 cumulative distribution over items (on ``device``).
        items: int64 (n_rows, n_sample), the current cache.
        log_weight: float32 (n_rows, n_sample), ``alpha * log(support)`` of each drawn item: the
            log of its unnormalised sampling weight ``support ** alpha``, which the official logQ
            correction subtracts (raw click counts, not divided by their total). With
            ``fast_search`` it is not kept (``next`` returns None for it): the fast training
            step looks the drawn items up in ``item_log_weight`` itself.
        item_log_weight: float32 (n_items,), ``alpha * log(support)`` of every item.
        fast_search: draw the same items with a compiled bucketed search instead of
            ``torch.searchsorted`` (CPU, numba; the fast training path): the same uniform numbers
            and the same comparisons, so exactly the same samples, about 10x faster.
    """

    def __init__(
        self,
        support: np.ndarray,
        alpha: float,
        n_sample: int,
        cache_size: int,
        device: torch.device,
        generator: torch.Generator,
        max_rows: int | None = None,
        fast_search: bool = False,
    ) -> None:
        if n_sample < 1:
            raise ValueError(f"n_sample must be >= 1 to build a sample cache, got {n_sample}")
        weights = sampling_weights(support, alpha)
        if weights.sum() <= 0:
            raise ValueError("no item has positive support: nothing to sample from")
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0  # guard against rounding: every uniform draw must land on an item
        self.cdf = torch.as_tensor(cdf, device=device)
        self.fast_search = fast_search
        if fast_search:
            self._cdf_np = np.ascontiguousarray(cdf)
            n_buckets = 4 * len(cdf)
            self._starts = np.searchsorted(
                self._cdf_np, np.arange(n_buckets + 1) / n_buckets, side="right"
            ).astype(np.int64)
        # Unseen items (support 0) are never drawn; the floor only keeps the log finite.
        log_weight = alpha * np.log(np.maximum(support, 1e-12))
        self._log_weight = torch.as_tensor(log_weight, dtype=torch.float32, device=device)
        self.item_log_weight = self._log_weight
        self.n_sample = n_sample
        # No point drawing more rows than there are steps (``max_rows``: one epoch): on small
        # data a 10M-sample cache would cost more than the training itself.
        self.n_rows = max(1, cache_size // n_sample)
        if max_rows is not None:
            self.n_rows = max(1, min(self.n_rows, max_rows))
        self.generator = generator
        self.device = device
        self._next = self.n_rows  # forces a draw on first use

    def _refill(self) -> None:
        size = self.n_rows * self.n_sample
        if self.fast_search:
            # The same draws into buffers kept from refill to refill: fresh pages for 10M
            # numbers cost more than the search itself (and the rows handed out by ``next`` are
            # used up before the next refill).
            if getattr(self, "_u", None) is None:
                self._u = torch.empty(size, dtype=torch.float64)
                self._drawn = np.empty(size, dtype=np.int64)
            torch.rand(size, dtype=torch.float64, generator=self.generator, out=self._u)
            kernels.search_right(self._cdf_np, self._starts, self._u.numpy(), self._drawn)
            self._set_items(torch.from_numpy(self._drawn).view(self.n_rows, self.n_sample))
            self._next = 0
            return
        u = torch.rand(size, device=self.device, dtype=torch.float64, generator=self.generator)
        # right=True: item i is drawn when cdf[i-1] <= u < cdf[i]; items of weight 0 never are.
        self.items = torch.searchsorted(self.cdf, u, right=True)
        self.items = self.items.view(self.n_rows, self.n_sample).clamp_(max=len(self.cdf) - 1)
        self._set_items(self.items)
        self._next = 0

    def _set_items(self, items: torch.Tensor) -> None:
        self.items = items
        self.log_weight = None if self.fast_search else self._log_weight[items]

    def state(self) -> dict[str, object]:
        """The cache and its position, for a training checkpoint (items as int32 on the CPU;
        the log weights follow from them)."""
        if self._next >= self.n_rows:  # nothing drawn, or used up: the next call draws anew
            return {"next": self.n_rows}
        return {"next": self._next, "items": self.items.to(torch.int32).cpu()}

    def load_state(self, state: dict[str, object]) -> None:
        """Continue from a :meth:`state` (the generator's state is restored by the caller).

        Raises:
            ValueError: if the state's cache has another shape than this one.
        """
        if "items" not in state:  # the next call draws anew
            self._next = self.n_rows
            return
        items = state["items"]
        if tuple(items.shape) != (self.n_rows, self.n_sample):
            raise ValueError(
                f"sample cache state of shape {tuple(items.shape)} does not fit "
                f"this cache ({self.n_rows}, {self.n_sample})"
            )
        self._set_items(items.to(device=self.device, dtype=torch.int64))
        self._next = int(state["next"])

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next row of samples and their log sampling weights (views into the cache)."""
        if self._next >= self.n_rows:
            self._refill()
        i = self._next
        self._next += 1
        if self.log_weight is None:  # fast_search: the caller looks up item_log_weight
            return self.items[i], None
        return self.items[i], self.log_weight[i]
