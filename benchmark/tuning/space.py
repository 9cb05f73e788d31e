"""Search spaces: one TOML file per algorithm, ``configs/search/<algorithm>.toml``.

A file has up to three tables; only ``[params]`` is required::

    [fixed]                      # held constant in every trial (over the constructor defaults)
    n_epochs = 10

    [params]                     # searched, sampled in this order
    learning_rate = { float = [0.01, 0.5], log = true }
    layers = { choice = [[100], [200], [400]] }
    n_sims = { int = [50, 1000], step = 50 }
    loss = { choice = ["cross-entropy", "bpr-max"] }
    bpreg = { float = [0.0, 2.0], when = { loss = "bpr-max" } }   # only for that loss
    logq = { float = [0.0, 1.0], when = { loss = "cross-entropy" }, otherwise = 0.0 }

    [tuning]                     # how trials report (optional)
    report_every = 1             # validate after every k-th epoch, for pruning (0: never)

Each searched parameter is one of ``float = [low, high]``, ``int = [low, high]`` (both bounds
included; optional ``log = true`` and ``step``) or ``choice = [values]`` (any TOML values,
lists included). ``when = { name = value }`` (or a list of values) samples the parameter only
when an earlier searched parameter, or a fixed one, has one of those values; otherwise the
constructor default (or the fixed value) stands, or ``otherwise = value`` where the default
does not fit the other cases. Every bound, choice and fixed value is checked
against the algorithm's declared hyperparameters (:mod:`algorithms.params`) before any data is
loaded, so a new algorithm needs a file here and no code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algorithms.params import Spec, format_value
from benchmark.config import ConfigError, read_toml

SEARCH_DIR = Path(__file__).resolve().parents[2] / "configs" / "search"
KINDS = ("float", "int", "choice")
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its kind, range or choices, and when it is sampled at all."""

    name: str
    kind: str  # "float", "int" or "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    otherwise: Any = None
    has_otherwise: bool = False

    def active(self, values: dict[str, Any]) -> bool:
        """Whether this parameter matters given the values chosen so far."""
        return all(values.get(name) in allowed for name, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this parameter."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        if all(isinstance(c, _SCALARS) for c in self.choices):
            return trial.suggest_categorical(self.name, list(self.choices))
        # Optuna stores scalars only: lists (layer sizes) are drawn by their TOML text.
        labels = [json.dumps(c) for c in self.choices]
        return self.choices[labels.index(trial.suggest_categorical(self.name, labels))]


@dataclass(frozen=True)
class SearchSpace:
    """What a study searches: the fixed values, the searched dimensions, how trials report."""

    algorithm: str
    fixed: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    report_every: int = 1
    source: str = ""

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Every hyperparameter of one trial: the fixed ones and the active drawn ones."""
        values = dict(self.fixed)
        for dim in self.dimensions:
            if dim.active(values):
                values[dim.name] = dim.suggest(trial)
            elif dim.has_otherwise:
                values[dim.name] = dim.otherwise
        return values

    def with_fixed(self, fixed: dict[str, Any]) -> SearchSpace:
        """The space with these values fixed too (a fixed parameter is no longer searched)."""
        return SearchSpace(
            self.algorithm,
            {**self.fixed, **fixed},
            tuple(d for d in self.dimensions if d.name not in fixed),
            self.report_every,
            self.source,
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary, recorded with the study so a resumed study can be compared."""
        return {
            "fixed": self.fixed,
            "params": {
                d.name: {
                    "kind": d.kind,
                    "low": d.low,
                    "high": d.high,
                    "log": d.log,
                    "step": d.step,
                    "choices": list(d.choices),
                    "when": {k: list(v) for k, v in d.when.items()},
                    "otherwise": d.otherwise if d.has_otherwise else None,
                }
                for d in self.dimensions
            },
        }


def space_path(algorithm: str, search_dir: Path = SEARCH_DIR) -> Path:
    return search_dir / f"{algorithm}.toml"


def load_space(algorithm: str, specs: dict[str, Spec], path: Path | None = None) -> SearchSpace:
    """The search space of ``algorithm`` from ``path`` (default ``configs/search/<algorithm>.toml``),
    checked against the algorithm's hyperparameter ``specs``; ConfigError naming file and key."""
    path = path or space_path(algorithm)
    if not path.is_file():
        raise ConfigError(
            f"no search space for {algorithm}: {path} does not exist "
            f"(write one, see benchmark/tuning/space.py, or use --grid)"
        )
    return parse_space(algorithm, read_toml(path), specs, str(path))


def parse_space(
    algorithm: str, raw: dict[str, Any], specs: dict[str, Spec], source: str
) -> SearchSpace:
    unknown = sorted(set(raw) - {"fixed", "params", "tuning"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {', '.join(unknown)}; valid: [fixed], [params], [tuning]"
        )
    fixed = dict(raw.get("fixed", {}))
    for name, value in fixed.items():
        _check_value(source, f"[fixed] {name}", specs, name, value)
    params = raw.get("params", {})
    if not params:
        raise ConfigError(f"{source}: [params] is missing or empty: nothing to search")
    dims: list[Dimension] = []
    for name, entry in params.items():
        if name in fixed:
            raise ConfigError(f"{source}: {name} is both fixed and searched")
        dims.append(_dimension(source, name, entry, specs, known={*fixed, *(d.name for d in dims)}))
    tuning = dict(raw.get("tuning", {}))
    report_every = tuning.pop("report_every", 1)
    if tuning:
        raise ConfigError(
            f"{source}: [tuning] has unknown key(s) {', '.join(sorted(tuning))}; "
            "valid: report_every"
        )
    if isinstance(report_every, bool) or not isinstance(report_every, int) or report_every < 0:
        raise ConfigError(
            f"{source}: [tuning] report_every = {format_value(report_every)}: "
            "must be an integer >= 0"
        )
    return SearchSpace(algorithm, fixed, tuple(dims), report_every, source)


def _dimension(
    source: str, name: str, entry: Any, specs: dict[str, Spec], known: set[str]
) -> Dimension:
    where = f"{source}: [params] {name}"
    if name not in specs:
        raise ConfigError(f"{where}: no such hyperparameter; valid: {', '.join(specs)}")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table such as {{ float = [0.0, 1.0] }}")
    entry = dict(entry)
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where} needs exactly one of {', '.join(KINDS)}")
    kind = kinds[0]
    spread = entry.pop(kind)
    log, step, when = entry.pop("log", False), entry.pop("step", None), entry.pop("when", {})
    has_otherwise = "otherwise" in entry
    otherwise = entry.pop("otherwise", None)
    if entry:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(entry))}; "
            "valid: float/int/choice, log, step, when, otherwise"
        )
    if not isinstance(when, dict) or any(k not in known for k in when):
        raise ConfigError(
            f"{where}: when = {when!r} must name earlier searched or fixed "
            f"parameters ({', '.join(sorted(known)) or 'none yet'})"
        )
    conditions = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}
    if has_otherwise:
        if not conditions:
            raise ConfigError(f"{where}: otherwise needs a when")
        _check_value(source, f"[params] {name} otherwise", specs, name, otherwise)
    extra = {"when": conditions, "otherwise": otherwise, "has_otherwise": has_otherwise}
    if kind == "choice":
        if not isinstance(spread, list) or not spread:
            raise ConfigError(f"{where}: choice must be a non-empty list")
        for value in spread:
            _check_value(source, f"[params] {name}", specs, name, value)
        if log or step is not None:
            raise ConfigError(f"{where}: log and step apply to float and int ranges only")
        return Dimension(name, kind, choices=tuple(spread), **extra)
    numbers_ok = (
        isinstance(spread, list)
        and len(spread) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spread)
    )
    if not numbers_ok or not spread[0] < spread[1]:
        raise ConfigError(f"{where}: {kind} = {spread!r} must be [low, high] with low < high")
    low, high = spread
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where}: int bounds must be integers, got {spread!r}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{where}: a log range needs low > 0 and no step")
    if step is not None and (
        not isinstance(step, (int, float))
        or not step > 0
        or (kind == "int" and not isinstance(step, int))
    ):
        raise ConfigError(f"{where}: step = {step!r} must be a positive number (integer for int)")
    for value in (low, high) if kind == "int" else (float(low), float(high)):
        if kind == "float" and not math.isfinite(value):
            raise ConfigError(f"{where}: bounds must be finite")
        _check_value(source, f"[params] {name} bound", specs, name, value)
    return Dimension(
        name, kind, float(low), float(high), bool(log), None if step is None else step, **extra
    )


def _check_value(source: str, where: str, specs: dict[str, Spec], name: str, value: Any) -> None:
    if name not in specs:
        raise ConfigError(f"{source}: {where}: no such hyperparameter; valid: {', '.join(specs)}")
    problem = specs[name].problem(value)
    if problem is not None:
        raise ConfigError(f"{source}: {where} = {format_value(value)}: {problem}")
