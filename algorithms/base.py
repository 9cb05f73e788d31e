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
import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from algorithms.params import Spec, format_value, inferred_spec
from datasets.sessions import Sessions

try:  # torch is a dependency, but the interface itself does not need it
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]


def flush_denormals() -> bool:
    """Flush float values below float32's normal range (1.2e-38) to zero in this process's CPU
    computations, as GPUs and TensorFlow's CPU kernels do; True where the CPU supports it.

    x86 cores compute with such values many times slower, and training produces some: SR-GNN's
    first epoch on all of rsc15-64 ran at 1,016 events/s without flushing (docs/neural.md).
    The setting is per thread, and torch's worker threads copy the main thread's when they are
    created, at the first parallel operation, so this runs when this module is imported, which
    every algorithm does before torch computes anything. Numbers that small change no rank.
    """
    return torch is not None and bool(torch.set_flush_denormal(True))


flush_denormals()

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

    renamed: ClassVar[dict[str, str]] = {}
    """Old hyperparameter name -> its current name, for names that changed: a config that still
    uses an old name is refused with a hint, and records written before the change (study
    journals) are read with :meth:`migrate_params`."""

    @abc.abstractmethod
    def fit(
        self,
        train: Sessions,
        *,
        valid: Sessions | None = None,
        on_epoch: EpochCallback | None = None,
        resume_file: Path | None = None,
    ) -> SessionRecommender:
        """Learn from ``train`` (never modified) and return ``self``; earlier fits are forgotten.

        Args:
            train: the training sessions.
            valid: held-out sessions an algorithm may watch while it trains (e.g. to stop early);
                never the test set. Algorithms that do not use it ignore it.
            on_epoch: per-epoch reporting (see :data:`EpochCallback`); algorithms that train in
                epochs call :func:`epoch_values` after each, the others ignore it. A model never
                evaluates itself: validation is the caller's business, done in this callback.
            resume_file: where an algorithm that trains in epochs keeps its training state after
                every epoch. ``fit`` continues from this file when it exists and was written for
                the same hyperparameters and training data (otherwise it starts afresh and logs
                why), so a killed fit loses at most the epoch it was in. The caller deletes the
                file once the fitted model is no longer needed; other algorithms ignore it.
        """

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

    def validate(self) -> None:
        """Check the hyperparameters without touching any data; the runner calls it for every
        row of a run before a dataset is read, and ``fit`` calls it first (so every tuning
        trial's setting is checked too).

        The base check: every argument against its declaration (``param_specs``), then a
        ``device`` argument against the devices this machine has (:meth:`cuda_available`).
        Algorithms with rules that tie parameters together override it and call
        ``super().validate()`` first.

        Raises:
            ValueError: naming the first argument whose value is rejected, and why.
        """
        for name, spec in self.param_specs().items():
            value = getattr(self, name)
            problem = spec.problem(value)
            if problem is not None:
                raise ValueError(f"{name} = {format_value(value)}: {problem}")
        if "device" in self.param_names():
            resolve_device(self.device, cuda_available=self.cuda_available())

    def data_problem(self, train: Sessions) -> str | None:
        """Why these settings cannot be fitted on ``train``, or ``None`` when they can.

        The runner asks every row of a run before its run folder exists, so a row that cannot
        train stops the run at once instead of after the rows before it. The base check compares
        :meth:`memory_estimate` with the memory this machine has free (for a model on the CPU);
        algorithms with data requirements (GRU4Rec needs a session of two clicks) override it
        and call ``super().data_problem(train)`` last.
        """
        estimate = self.memory_estimate(train)
        if estimate is None:
            return None
        need, why = estimate
        if "device" in self.param_names():
            if resolve_device(self.device, cuda_available=self.cuda_available()).type != "cpu":
                return None  # the GPU's memory is the limit; torch says so clearly itself
        free = available_memory()
        if free is not None and need > free:
            return (
                f"these settings need about {need / 2**30:.1f} GiB of memory ({why}), "
                f"more than the {free / 2**30:.1f} GiB free on this machine"
            )
        return None

    def memory_estimate(self, train: Sessions) -> tuple[int, str] | None:
        """A lower bound of the bytes a fit on ``train`` needs, with what drives it, or
        ``None`` (no estimate; the default). Only for refusing settings that cannot fit."""
        return None

    @classmethod
    def cuda_available(cls) -> bool:
        """Whether this algorithm can use a CUDA GPU here (torch's view; BPR-MF asks implicit)."""
        return torch is not None and torch.cuda.is_available()

    @classmethod
    def migrate_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every old name (:attr:`renamed`) replaced by its current one."""
        return {cls.renamed.get(name, name): value for name, value in params.items()}

    @property
    def selects_epochs(self) -> bool:
        """Whether the reference code picks the number of epochs on held-out data (NARM keeps its
        best epoch, SR-GNN and RecBole stop early). For such a row the runner first fits a copy on
        the dataset's validation split (``valid_train``, watching ``valid_test``), reads
        :meth:`chosen_epochs`, then trains the row on the full training set for that many epochs
        (:meth:`with_epochs`), so the test set is never watched. False for the rest."""
        return False

    def chosen_epochs(self) -> int:
        """After a ``fit`` given ``valid``: the epoch count it selected (only where
        :attr:`selects_epochs`)."""
        raise NotImplementedError(f"{self.name} does not select epochs")

    def with_epochs(self, n_epochs: int) -> SessionRecommender:
        """A fresh copy with every hyperparameter the same but ``n_epochs``, which trains exactly
        that many epochs when fitted without ``valid``."""
        return type(self)(**{**self.get_params(), "n_epochs": n_epochs})

    @classmethod
    def _restored(cls, ckpt: Mapping[str, Any], device: str | None) -> SessionRecommender:
        """What loading a saved model has in common: an instance with the saved hyperparameters
        (``device`` instead of the saved one when given), validated, with ``device_``,
        ``n_items_`` and ``history_`` from ``ckpt``; the caller then restores its weights."""
        params = dict(ckpt["params"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model.validate()
        model.device_ = resolve_device(model.device)
        model.n_items_ = int(ckpt["n_items"])
        model.history_ = list(ckpt["history"])
        return model

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments this instance was built with."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def epoch_values(
    on_epoch: EpochCallback | None, model: SessionRecommender, epoch: int
) -> dict[str, float]:
    """Run the caller's ``on_epoch`` (if any) after ``epoch``; the values it returned as Python
    floats (numpy scalars would not load back from a checkpoint), else ``{}``."""
    if on_epoch is None:
        return {}
    return {k: float(v) for k, v in (on_epoch(model, epoch) or {}).items()}


def available_memory() -> int | None:
    """Bytes of memory free for a new process here (Linux ``MemAvailable``), else ``None``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def cpu_training(device: torch.device) -> Iterator[None]:
    """torch's deterministic kernels while a model trains on the CPU (a no-op elsewhere); the
    caller's setting comes back afterwards, also on error. (Denormals are flushed process-wide:
    :func:`flush_denormals`.)

    With more than one thread the default gradient of an embedding lookup adds its rows up in an
    unordered parallel pass: two STAMP fits of one seed with two threads ended an epoch up to
    0.66 apart in some weight, RecBole's and Keras's GRU4Rec 2e-8 and 6e-8 (differences that
    grow over epochs). With one thread the two kernels give the same bits.
    """
    if torch is None or torch.device(device).type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def resolve_device(device: str, *, cuda_available: bool | None = None) -> torch.device:
    """The torch device a ``device`` hyperparameter means here, shared by every model.

    ``"auto"`` is CUDA when available, else the CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:N"``.
    ``cuda_available`` defaults to torch's answer (BPR-MF passes implicit's).

    Raises:
        ValueError: an unknown device, or CUDA asked for on a machine (or build) without it.
    """
    if cuda_available is None:
        cuda_available = torch is not None and torch.cuda.is_available()
    text = str(device)
    if text == "auto":
        text = "cuda" if cuda_available else "cpu"
    elif not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise ValueError(f"device = {format_value(device)}: must be auto, cpu, cuda or cuda:N")
    elif text.startswith("cuda") and not cuda_available:
        raise ValueError(
            f"device = {format_value(device)}: no CUDA GPU is usable here "
            '(use device = "cpu" or "auto")'
        )
    return torch.device(text)


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
