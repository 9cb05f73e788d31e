"""BPR-MF: matrix factorization with the BPR loss (via ``implicit``), sessions as mean item vectors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.base import EpochCallback, SessionRecommender, epoch_values, resolve_device
from algorithms.params import Choice, Float, Int
from algorithms.sparse import session_item_matrix
from datasets.progress import bars_enabled
from datasets.sessions import UNKNOWN, Sessions

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


class BPRMF(SessionRecommender):
    """BPR matrix factorization on the binary session x item training matrix.

    ``implicit``'s BayesianPersonalizedRanking learns a vector ``q_j`` and a bias ``b_j`` per
    item (and one vector per *training* session, which is discarded). A session being evaluated
    is the mean of the vectors of the known items clicked in it so far (every click counts, a
    repeated item counts as often as it was clicked; ``UNKNOWN`` clicks are ignored)::

        p = (1 / n) * sum_{t <= n} q_{i_t}
        score(j) = p . q_j + b_j

    implicit stores ``[q_j, b_j]`` as one row of ``item_factors`` and gives every user a
    constant 1 in the last column, so ``score = [p, 1] . [q_j, b_j]`` is the same dot product
    implicit trains. A session without any known click has the all-zero vector ``[0, 0]``:
    every item scores 0 (no popularity fallback). Items without training clicks keep
    implicit's all-zero row (score 0).

    Training is seeded by ``seed``; with ``n_threads`` > 1 implicit updates the factors from
    several threads at once (Hogwild), so results then vary slightly from run to run.
    ``implicit.recommend()`` is not used: it drops already-clicked items, which are valid next
    clicks under the protocol.

    Args:
        factors: size of the item vectors (without the bias).
        learning_rate: SGD learning rate.
        regularization: L2 regularization of the factors.
        n_epochs: passes over the training matrix (implicit's ``iterations``).
        seed: random seed of the initialisation and of the negative sampling.
        device: ``"cpu"``, ``"cuda"`` (implicit's CUDA build), or ``"auto"`` (CUDA if built).
        n_threads: CPU training threads; 0 lets implicit use every core.

    Attributes:
        item_factors_: ``[q_j, b_j]`` per item, float32 of shape (n_items, factors + 1).
        device_: the device the model was trained on (``"cpu"`` or ``"cuda"``).
        history_: with an ``on_epoch`` callback, one dict per iteration: ``epoch`` and the values
            the callback returned (empty without one). The callback sees the factors as they
            are after that iteration.
    """

    name = "bpr-mf"
    hyperparameters = {
        "factors": Int(low=1),
        "learning_rate": Float(low=0, low_open=True),
        "regularization": Float(low=0),
        "n_epochs": Int(low=0),
        "seed": Int(low=0),
        "device": Choice(DEVICES),
        "n_threads": Int(low=0),
    }
    renamed = {"iterations": "n_epochs", "num_threads": "n_threads"}

    def __init__(
        self,
        factors: int = 100,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        n_epochs: int = 100,
        seed: int = 0,
        device: str = "auto",
        n_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.n_epochs = n_epochs
        self.seed = seed
        self.device = device
        self.n_threads = n_threads

    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> BPRMF:
        self.validate()
        self.device_ = resolve_device(self.device, cuda_available=self.cuda_available()).type
        x = session_item_matrix(train, binary=True)
        log.info(
            "bpr-mf: %d sessions x %d items, %d nonzeros, on %s",
            x.shape[0],
            x.shape[1],
            x.nnz,
            self.device_,
        )
        model = self._implicit_model()
        self.history_: list[dict[str, Any]] = []

        def on_iteration(iteration: int, *_: Any) -> None:  # implicit counts from 0
            self._keep_factors(model)
            self.history_.append(
                {"epoch": iteration + 1, **epoch_values(on_epoch, self, iteration + 1)}
            )

        callback = on_iteration if on_epoch is not None else None
        model.fit(x, show_progress=bars_enabled(), callback=callback)  # implicit's own bar
        self._keep_factors(model)
        return self

    def _keep_factors(self, model: Any) -> None:
        """Copy the implicit model's current item factors (to the CPU) for scoring."""
        factors = model.item_factors
        if self.device_ == "cuda":
            factors = factors.to_numpy()
        self.item_factors_ = np.ascontiguousarray(factors, dtype=np.float32)
        # Scoring multiplies by the transpose; a contiguous copy makes that product ~20% faster.
        self._factors_t = np.ascontiguousarray(self.item_factors_.T)

    def init_state(self, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        """Per slot: the sum of the item vectors ``[q, b]`` seen so far, and their count."""
        width = self.item_factors_.shape[1]
        return np.zeros((n_slots, width), dtype=np.float32), np.zeros(n_slots, dtype=np.float32)

    def step(
        self, state: tuple[np.ndarray, np.ndarray], items: np.ndarray, reset: np.ndarray
    ) -> np.ndarray:
        total, count = state
        total[reset] = 0.0
        count[reset] = 0.0
        known = np.flatnonzero(items != UNKNOWN)
        total[known] += self.item_factors_[items[known]]
        count[known] += 1.0
        return self.session_vectors(state) @ self._factors_t

    def session_vectors(self, state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """``[p, 1]`` per slot (``[0, 0]`` for a slot without known clicks), shape (n, factors+1).

        The running sum also adds up the item biases in its last column; that column is
        replaced by the constant 1 implicit pairs with the bias.
        """
        total, count = state
        seen = count > 0
        vectors = total / np.maximum(count, 1.0)[:, None]
        vectors[:, -1] = seen
        return vectors

    def _implicit_model(self):
        if self.device_ == "cuda":
            from implicit.gpu.bpr import BayesianPersonalizedRanking

            return BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.n_epochs,
                random_state=self.seed,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.n_epochs,
            num_threads=self.n_threads,
            random_state=self.seed,
        )

    @classmethod
    def cuda_available(cls) -> bool:
        """implicit's CUDA build, not torch's, decides whether BPR-MF can train on a GPU."""
        import implicit.gpu

        return bool(implicit.gpu.HAS_CUDA)
