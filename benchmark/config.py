"""Per-algorithm hyperparameters from TOML files, validated against the constructors.

A config file has one table per run label::

    [item-knn]                 # a registered algorithm name: its hyperparameters
    reg_lambda = 20

    [gru4rec]
    preset = "rsc15-best"      # expands configs/presets/gru4rec.toml [rsc15-best]
    n_epochs = 10              # explicit keys override the preset

    [gru4rec-top1]             # any other label names its algorithm
    algorithm = "gru4rec"
    preset = "2016-top1-100"

A table may say how its values were chosen, and the run's tables show it per row::

    tuning = { trials = 30, objective = "mrr", study = "results/tune/rsc15-64/item-knn.journal" }
    tuning = { method = "grid", trials = 48, objective = "recall" }
    tuning = "published"       # a published setting, used as it is

On the command line ``--algorithms gru4rec@2016-top1-100`` is short for such a table.
Unknown labels, algorithms, presets and hyperparameters are errors that list the valid ones.
``seed`` and ``device`` are filled from the command line unless a table sets them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algorithms.base import SessionRecommender
from algorithms.params import format_value
from benchmark.registry import ALGORITHMS, get_algorithm

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"
PRESET_DIR = CONFIG_DIR / "presets"
RESERVED_KEYS = ("algorithm", "preset", "tuning")
TUNING_KEYS = {"trials", "objective", "study", "method"}
TUNING_OBJECTIVES = ("mrr", "recall")
TUNING_METHODS = ("tpe", "grid")


class ConfigError(ValueError):
    """An invalid config file or algorithm specification; the message names what is wrong."""


@dataclass
class AlgorithmSpec:
    """One algorithm of a run: its label, registered name and explicit hyperparameters."""

    label: str
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The file (or preset) each of ``params`` came from, for error messages."""
    tuning: dict[str, Any] | str | None = None
    """How the values were chosen (the table's ``tuning`` key; see :func:`tuning_text`)."""

    def build(self, *, seed: int, device: str) -> SessionRecommender:
        """A fresh, unfitted instance; ``seed``/``device`` apply where the class takes them."""
        cls = get_algorithm(self.algorithm)
        kwargs = dict(self.params)
        names = cls.param_names()
        if "seed" in names:
            kwargs.setdefault("seed", seed)
        if "device" in names:
            kwargs.setdefault("device", device)
        return cls(**kwargs)

    def is_stochastic(self) -> bool:
        return "seed" in get_algorithm(self.algorithm).param_names()


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; expected a TOML config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        reason = "not UTF-8 text (a binary file?)" if isinstance(e, UnicodeDecodeError) else e
        raise ConfigError(f"{path}: invalid TOML: {reason}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from None


def default_config_path(dataset: str) -> Path | None:
    """The shipped per-dataset config (``configs/<dataset>.toml``), if there is one."""
    path = CONFIG_DIR / f"{dataset}.toml"
    return path if path.is_file() else None


def load_tables(
    dataset: str, config_file: Path | None, *, use_shipped: bool = True
) -> tuple[dict[str, dict], list[str]]:
    """The dataset's shipped tables, overridden key by key by ``config_file``'s; and the sources.

    Each table remembers the file every key came from (``origin_of``), for error messages.
    ``use_shipped=False`` skips ``configs/<dataset>.toml`` (datasets given by path get none).
    """
    tables: dict[str, dict] = {}
    sources = []
    shipped = default_config_path(dataset) if use_shipped else None
    for path in (shipped, config_file):
        if path is None:
            continue
        sources.append(str(path))
        for label, table in read_toml(Path(path)).items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{path}: top-level key {label!r} must be a table like [{label}], "
                    "one per algorithm"
                )
            merged = tables.setdefault(label, _Table())
            merged.update(table)
            merged.origins.update({key: str(path) for key in table})
    return tables, sources


class _Table(dict):
    """A config table that knows which file each of its keys came from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins: dict[str, str] = {}


def origin_of(table: dict, key: str, default: str) -> str:
    return getattr(table, "origins", {}).get(key, default)


def resolve(
    labels: list[str], tables: dict[str, dict], source: str = "config"
) -> list[AlgorithmSpec]:
    """Validated specs for the requested labels."""
    unknown = [lb for lb in tables if _algorithm_of(lb, tables[lb]) not in ALGORITHMS]
    if unknown:
        raise ConfigError(
            f"{source}: unknown algorithm in table(s) {', '.join(map(repr, unknown))}; valid: "
            f'{", ".join(sorted(ALGORITHMS))} (or set algorithm = "NAME" in the table)'
        )
    specs = []
    for label in labels:
        table = _Table(tables.get(label, {}))
        table.origins.update(getattr(tables.get(label), "origins", {}))
        name, _, inline_preset = label.partition("@")
        if label not in tables and name not in ALGORITHMS:
            valid = sorted(set(ALGORITHMS) | set(tables))
            raise ConfigError(f"unknown algorithm {label!r}; valid: {', '.join(valid)}")
        if inline_preset:
            table.setdefault("preset", inline_preset)
            table.setdefault("algorithm", name)
        specs.append(_spec(label, table, source))
    if len({s.label for s in specs}) != len(specs):
        raise ConfigError(f"an algorithm is listed twice in {', '.join(labels)}")
    return specs


def _algorithm_of(label: str, table: dict) -> str:
    return table.get("algorithm", label.partition("@")[0])


def _spec(label: str, table: dict, source: str) -> AlgorithmSpec:
    algorithm = _algorithm_of(label, table)
    cls = get_algorithm(algorithm)
    preset = table.get("preset")
    params = {k: v for k, v in table.items() if k not in RESERVED_KEYS}
    origins = {k: origin_of(table, k, source) for k in params}
    if preset is not None:
        preset_values = load_preset(algorithm, preset)
        where = f"{PRESET_DIR / (algorithm + '.toml')} [{preset}]"
        origins = {**{k: where for k in preset_values}, **origins}
        params = {**preset_values, **params}
    valid = cls.param_names()
    bad = sorted(set(params) - set(valid))
    if bad:
        raise ConfigError(
            f"{source}: [{label}] unknown hyperparameter(s) {', '.join(bad)} for {algorithm}; "
            f"{renamed_hint(cls, bad)}valid: {', '.join(valid) or '(none)'}"
        )
    specs = cls.param_specs()
    for key, value in params.items():
        problem = specs[key].problem(value)
        if problem is not None:
            raise ConfigError(
                f"{origins.get(key, source)}: [{label}] {key} = {format_value(value)}: {problem}"
            )
    tuning = table.get("tuning")
    check_tuning(tuning, f"{origin_of(table, 'tuning', source)}: [{label}] tuning")
    return AlgorithmSpec(
        label=label,
        algorithm=algorithm,
        params=params,
        preset=preset,
        origins=origins,
        tuning=tuning,
    )


def renamed_hint(cls: type[SessionRecommender], names: list[str]) -> str:
    """ "iterations is now n_epochs; " for every name in ``names`` the class renamed, else ""."""
    return "".join(f"{old} is now {cls.renamed[old]}; " for old in names if old in cls.renamed)


def check_tuning(tuning: Any, where: str) -> None:
    """ConfigError unless ``tuning`` is absent, ``"published"``, or a table of
    ``trials`` (>= 1), ``objective`` (mrr or recall), optional ``study`` and ``method``."""
    if tuning is None or tuning == "published":
        return
    if not isinstance(tuning, dict):
        raise ConfigError(
            f'{where} = {format_value(tuning)}: must be "published" or a table '
            'such as { trials = 30, objective = "mrr" }'
        )
    unknown = sorted(set(tuning) - TUNING_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(TUNING_KEYS))}"
        )
    trials = tuning.get("trials")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"{where}: trials = {format_value(trials)}: must be an integer >= 1")
    if tuning.get("objective") not in TUNING_OBJECTIVES:
        raise ConfigError(f"{where}: objective must be one of {', '.join(TUNING_OBJECTIVES)}")
    if tuning.get("method", "tpe") not in TUNING_METHODS:
        raise ConfigError(f"{where}: method must be one of {', '.join(TUNING_METHODS)}")
    if not isinstance(tuning.get("study", ""), str):
        raise ConfigError(f"{where}: study must be a string (the journal file or study name)")


OBJECTIVE_NAMES = {"mrr": "MRR@20", "recall": "Recall@20"}
"""A tuning objective (``tuning.objective``) as tables name it."""


def tuning_text(tuning: dict[str, Any] | str | None) -> str:
    """How a row's values were chosen, in a few words ("tuned: 30 trials, MRR@20")."""
    if tuning is None:
        return "not recorded"
    if tuning == "published":
        return "published setting"
    metric = OBJECTIVE_NAMES[tuning["objective"]]
    if tuning.get("method", "tpe") == "grid":
        return f"grid: {tuning['trials']} settings, {metric}"
    return f"tuned: {tuning['trials']} trials, {metric}"


def check_buildable(spec: AlgorithmSpec, *, seed: int, device: str, source: str) -> None:
    """Build ``spec`` and run its ``validate()`` now (ranges, devices, the rules that tie
    parameters), so that e.g. a final_act that does not fit the loss or device = "cuda" on a
    machine without one stops the run before any data is loaded instead of when that
    algorithm's turn to train comes."""
    model = spec.build(seed=seed, device=device)
    try:
        model.validate()
    except (ValueError, TypeError) as e:
        where = sorted(set(spec.origins.values())) or [source]
        raise ConfigError(f"{' + '.join(where)}: [{spec.label}] {e}") from None


def load_preset(algorithm: str, preset: str) -> dict[str, Any]:
    """Hyperparameters of a named preset from ``configs/presets/<algorithm>.toml``."""
    path = PRESET_DIR / f"{algorithm}.toml"
    presets = read_toml(path) if path.is_file() else {}
    if preset not in presets:
        raise ConfigError(
            f"unknown preset {preset!r} for {algorithm}; valid: "
            f"{', '.join(sorted(presets)) or '(none: ' + str(path) + ' is missing)'}"
        )
    return dict(presets[preset])
