"""The contract every algorithm implements.

The evaluator owns the per-session state: an algorithm never keeps a hidden "current
session". It is fitted once on training sessions, then asked, for many sessions in parallel
("slots"), to consume one click per slot and score every training item as the next click.

Conventions (scikit-learn style):
- ``__init__`` only stores its keyword arguments, under the same names; every hyperparameter is a
  constructor argument, so ``get_params()`` reports exactly what a run used.
- What ``fit`` learns ends in ``_``; ``fit`` returns ``self`` and forgets earlier fits; it must
  not modify its input.
- Item inputs may be ``UNKNOWN`` (-1, an item not seen in training); that must not fail.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from algorithms.params import Spec, format_value, inferred_spec
from datasets.sessions import Sessions

try:  # torch is a dependency, but the interface itself does not need it
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

State = Any
"""Per-slot state: whatever the algorithm needs (None, arrays, tensors, or tuples of those).

Arrays/tensors whose first dimension is the slot dimension are handled generically by
``select_state``; algorithms with another layout override it."""

Scores = Any
"""A (n_slots, n_items) numpy array or torch tensor (on any device); higher is better."""

EpochCallback = Callable[["SessionRecommender", int], "Mapping[str, float] | None"]
"""``callback(model, epoch)``, called by an iterative algorithm after each training epoch
(numbered from 1) with the model ready to score: ``init_state``/``step`` use the current
weights, so the caller can evaluate it on a validation split. The values it returns (if any) are
recorded in that epoch's row of ``history_``; an exception it raises (e.g. ``optuna.TrialPruned``)
stops training and propagates out of ``fit``."""


class SessionRecommender(abc.ABC):
    """Base class of all session-based recommenders in the benchmark.

    Subclasses set ``name`` (the registry name) and implement ``fit``, ``init_state`` and
    ``step``. Stochastic algorithms take a ``seed`` constructor argument and algorithms that
    can use a GPU take a ``device`` argument; the runner fills both from the command line.
    """

    name: ClassVar[str]
    hyperparameters: ClassVar[dict[str, Spec]] = {}
    """Type and range of each constructor argument (see :mod:`algorithms.params`); checked before
    any data is loaded. Arguments left out are checked against the type of their default."""

    epoch_callback: EpochCallback | None = None
    """Set by the caller, not a hyperparameter: per-epoch reporting (see :data:`EpochCallback`).
    Algorithms that train in epochs call :meth:`end_epoch`; the others ignore it. A model never
    evaluates itself: validation is the caller's business, done in this callback."""

    resume_file: Path | None = None
    """Set by the caller, not a hyperparameter: where an algorithm that trains in epochs keeps its
    training state after every epoch. ``fit`` continues from this file when it exists and was
    written for the same hyperparameters and training data (otherwise it starts afresh and logs
    why), so a killed fit loses at most the epoch it was in. The caller deletes the file once the
    fitted model is no longer needed; algorithms that do not train in epochs ignore it."""

    @abc.abstractmethod
    def fit(self, train: Sessions) -> "SessionRecommender":
        """Learn from ``train``; return ``self``."""

    @abc.abstractmethod
    def init_state(self, n_slots: int) -> State:
        """The state of ``n_slots`` empty sessions."""

    @abc.abstractmethod
    def step(self, state: State, items: np.ndarray, reset: np.ndarray) -> Scores:
        """Consume one click per slot and score every training item as that slot's next click.

        Args:
            state: the state from ``init_state`` (updated in place).
            items: int64 array (n_slots,), the clicked item index per slot (may be ``UNKNOWN``).
            reset: bool array (n_slots,); ``reset[k]`` means ``items[k]`` is the first click of
                a new session in slot ``k``, so everything that slot held before is forgotten.

        Returns:
            scores of shape (n_slots, n_items), numpy or torch; higher means more likely.
        """

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Run the caller's ``epoch_callback`` (if set); the values it returned as Python floats
        (numpy scalars would not load back from a checkpoint), else ``{}``."""
        if self.epoch_callback is None:
            return {}
        return {k: float(v) for k, v in (self.epoch_callback(self, epoch) or {}).items()}

    def select_state(self, state: State, keep: np.ndarray) -> State:
        """The state of the slots ``keep`` only (in that order); used when the batch shrinks."""
        return _select(state, keep)

    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]

    @classmethod
    def param_specs(cls) -> dict[str, Spec]:
        """Every constructor argument's spec: the declared one, else one inferred from its default."""
        sig = inspect.signature(cls.__init__)
        return {
            name: cls.hyperparameters.get(name) or inferred_spec(sig.parameters[name].default)
            for name in cls.param_names()
        }

    def check_params(self) -> None:
        """Check every hyperparameter against its declaration (``param_specs``).

        Raises:
            ValueError: naming the first argument whose value the declaration rejects.
        """
        for name, spec in self.param_specs().items():
            value = getattr(self, name)
            problem = spec.problem(value)
            if problem is not None:
                raise ValueError(f"{name} = {format_value(value)}: {problem}")

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments this instance was built with."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _select(state: State, keep: np.ndarray) -> State:
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        return state[keep]
    if torch is not None and isinstance(state, torch.Tensor):
        return state[torch.as_tensor(keep, device=state.device)]
    if isinstance(state, (list, tuple)):
        return type(state)(_select(s, keep) for s in state)
    if isinstance(state, dict):
        return {k: _select(v, keep) for k, v in state.items()}
    raise TypeError(
        f"select_state cannot index a state of type {type(state).__name__}; "
        "override SessionRecommender.select_state"
    )
