"""Run options and the checks made before any work: a run that :func:`plan` accepts has valid
options, config files and hyperparameters; nothing has been loaded or written yet.

``--resume`` rebuilds the options from the run's ``run.json`` (:func:`read_run_record`) and
refuses options given again that contradict them (:data:`RESUME_MAY_CHANGE`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.config import AlgorithmSpec, ConfigError, check_buildable, load_tables, resolve
from benchmark.errors import writable_folder
from benchmark.evaluator import DEFAULT_TIE_MODE, TIE_MODES
from datasets import io

DEFAULT_ALGORITHMS = (
    "pop",
    "spop",
    "item-knn",
    "bpr-mf",
    "sknn",
    "vsknn",
    "stan",
    "vstan",
    "sr",
    "ar",
    "markov",
    "gru4rec",
)
DEFAULT_CUTOFFS = (1, 5, 10, 20)


log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Everything a run depends on; stored in run.json so ``--resume`` can rebuild it."""

    dataset: str
    algorithms: list[str] = field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    data_dir: Path = Path("data")
    clicks: Path | None = None
    out: Path = Path("results")
    cutoffs: list[int] = field(default_factory=lambda: list(DEFAULT_CUTOFFS))
    tie_mode: str = DEFAULT_TIE_MODE
    seed: int = 0
    seeds: int = 1
    device: str = "auto"
    config: Path | None = None
    cache_dir: Path = Path("cache")
    eval_batch_size: int = 256
    progress: bool = True
    dataset_path: Path | None = None
    """A dataset given by path (``--dataset PATH``): ``dataset`` is then its folder/file name."""
    columns: str | None = None
    session_gap: float = 30.0
    time_unit: str | None = None
    min_item_support: int = 5
    min_session_length: int = 2
    test_days: float = 1.0
    """The event-log flags (benchmark.cli_options), for a click file given by path."""
    seeds_per_label: dict[str, int] = field(default_factory=dict)
    """Labels given another number of seeds than ``seeds`` by ``--resume RUN --algorithms
    LABELS --seeds N`` (stochastic labels only; the others keep one seed)."""

    def events(self):
        """The :class:`datasets.eventlog.EventLogOptions` of these options."""
        from benchmark.cli_options import event_log_options

        return event_log_options(self)

    def to_json(self) -> dict:
        return {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_json(cls, obj: dict) -> RunOptions:
        paths = {"data_dir", "clicks", "out", "config", "cache_dir", "dataset_path"}
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in obj.items()})

    def absolute(self) -> RunOptions:
        """The same options with every path absolute, so ``--resume`` works from any folder."""
        paths = {
            k: Path(v).absolute()
            for k, v in dataclasses.asdict(self).items()
            if isinstance(v, Path)
        }
        return dataclasses.replace(self, **paths)


RESUME_MAY_CHANGE = ("data_dir", "clicks", "cache_dir", "progress")
"""Options a ``--resume`` may give anew: where the (same) data lies and how to show progress.
The data is checked against the run's fingerprint; every other option must match the run,
except ``--algorithms``, whose labels the run lacks are added to it (rows it has are kept)."""


@dataclass
class Plan:
    """A run checked and ready to start: nothing has been loaded or written yet."""

    options: RunOptions
    specs: list[AlgorithmSpec]
    config_sources: list[str]
    resume: Path | None = None
    record: dict = field(default_factory=dict)
    seeds_added: dict[str, int] = field(default_factory=dict)
    """``--resume --algorithms LABELS --seeds N``: the labels whose seed count it raises."""
    only: list[str] | None = None
    """``--resume RUN --algorithms LABELS``: this attempt fits only these labels; the run's other
    unfinished rows stay pending for a later ``--resume`` (None: every unfinished row)."""
    cutoffs_given: bool = True
    """False when the cutoffs are the defaults: those above the number of items are then
    dropped (a small dataset of your own), where given ones are an error."""


def plan(options: RunOptions, *, resume: Path | None = None, overrides: dict | None = None) -> Plan:
    """Check the options, the config files and every hyperparameter, before any work.

    With ``resume``, the options come from the run's ``run.json``; ``overrides`` (options given
    again on the command line) may only change :data:`RESUME_MAY_CHANGE`.

    Raises:
        ConfigError: anything invalid; the message names the option or config file and key.
    """
    record: dict = {}
    only: list[str] | None = None
    seeds_given: tuple[int, list[str]] | None = None  # --seeds N for the labels named
    if resume is not None:
        resume = Path(resume).absolute()
        record = read_run_record(resume)
        options = RunOptions.from_json(record["options"])
        overrides = dict(overrides or {})
        if "seeds" in overrides:
            n = overrides.pop("seeds")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"--seeds {n}: must be an integer >= 1")
            if "algorithms" in overrides:
                seeds_given = (n, list(overrides["algorithms"]))
            elif n != options.seeds:
                raise ConfigError(
                    f"--resume {resume}: --seeds {n} needs --algorithms, the labels to give "
                    f"{n} seeds (the run used --seeds {options.seeds}): e.g. --resume RUN "
                    f"--algorithms gru4rec --seeds {n}"
                )
        if "algorithms" in overrides:  # extends the run: labels it lacks are added at its end
            only = list(dict.fromkeys(overrides["algorithms"]))
            kept = list(options.algorithms)
            overrides["algorithms"] = kept + [a for a in overrides["algorithms"] if a not in kept]
            added = overrides["algorithms"][len(kept) :]
            if added:
                log.info("--resume: adding %s to the run", ", ".join(added))
                record.setdefault("extended", []).append(added)
        changed = {
            k: v
            for k, v in overrides.items()
            if k not in RESUME_MAY_CHANGE + ("algorithms",)
            and _norm(v) != _norm(getattr(options, k))
        }
        if changed:
            k, v = next(iter(changed.items()))
            raise ConfigError(
                f"--resume {resume}: --{k.replace('_', '-')} {show_option(v)} contradicts the "
                f"run, which used {show_option(getattr(options, k))}; start a new run instead"
            )
        options = dataclasses.replace(
            options,
            **{k: v for k, v in overrides.items() if k in RESUME_MAY_CHANGE + ("algorithms",)},
        )
    options = options.absolute()
    try:
        check_options(options, new_run=resume is None)
    except ConfigError as e:
        typed = {f"--{k.replace('_', '-')}" for k in overrides or {}}
        if resume is None or str(e).split(" ", 1)[0] in typed:
            raise
        raise ConfigError(  # a value of the run record, not a flag the user typed
            f"--resume {resume}: its run.json holds a value that is not valid ({e}); "
            "start a new run instead"
        ) from None
    tables, sources = load_tables(
        options.dataset, options.config, use_shipped=options.dataset_path is None
    )
    specs = resolve(options.algorithms, tables, source=" + ".join(sources) or "config")
    for spec in specs:
        check_buildable(
            spec, seed=options.seed, device=options.device, source=" + ".join(sources) or "config"
        )
    seeds_added: dict[str, int] = {}
    if seeds_given is not None:
        seeds_added = _more_seeds(options, specs, *seeds_given, resume=resume)
        options = dataclasses.replace(
            options, seeds_per_label={**options.seeds_per_label, **seeds_added}
        )
    return Plan(
        options=options,
        specs=specs,
        config_sources=sources,
        resume=resume,
        record=record,
        seeds_added=seeds_added,
        only=only,
    )


def _more_seeds(
    options: RunOptions, specs: list[AlgorithmSpec], n: int, named: list[str], *, resume: Path
) -> dict[str, int]:
    """``--resume RUN --algorithms NAMED --seeds n``: the stochastic labels among ``named``
    whose seed count becomes ``n`` (seeds ``seed .. seed+n-1``; those done are reused). A
    deterministic label keeps its one seed; fewer seeds than a label has are refused."""
    by_label = {s.label: s for s in specs}
    out = {}
    for label in dict.fromkeys(named):
        spec = by_label.get(label)
        if spec is None:
            continue
        if not spec.is_stochastic():
            log.info("--seeds %d: %s is deterministic, it keeps one seed", n, label)
            continue
        now = options.seeds_per_label.get(label, options.seeds)
        if n < now:
            raise ConfigError(
                f"--resume {resume}: --seeds {n} for {label}, which has {now} seeds; "
                "--seeds on --resume only adds seeds"
            )
        if n != now:
            log.info(
                "--resume: %s gets %d seeds (%d to %d); seeds done are reused",
                label,
                n,
                options.seed,
                options.seed + n - 1,
            )
            out[label] = n
    return out


def check_options(options: RunOptions, *, new_run: bool = True) -> None:
    """Every command-line option on its own (no data needed); ConfigError naming the option."""
    if not options.algorithms or any(not a.strip() for a in options.algorithms):
        raise ConfigError(
            f"--algorithms {','.join(options.algorithms)!r}: give at least one "
            "algorithm name, e.g. --algorithms pop,gru4rec"
        )
    cutoffs = list(options.cutoffs)
    if not cutoffs or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in cutoffs):
        raise ConfigError(f"--cutoffs {show_option(cutoffs)}: every cutoff must be an integer >= 1")
    if len(set(cutoffs)) != len(cutoffs):
        dup = sorted({k for k in cutoffs if cutoffs.count(k) > 1})
        raise ConfigError(
            f"--cutoffs {show_option(cutoffs)}: {', '.join(map(str, dup))} given more than once"
        )
    for name, low in (("seed", 0), ("seeds", 1), ("eval_batch_size", 1)):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: must be an integer >= {low}")
    if options.tie_mode not in TIE_MODES:
        raise ConfigError(f"--tie-mode {options.tie_mode}: must be one of {', '.join(TIE_MODES)}")
    if options.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {options.device}: must be auto, cpu or cuda")
    if options.device == "cuda" and not _cuda_available():
        raise ConfigError(
            "--device cuda: no CUDA GPU is available here (torch sees none); "
            "use --device cpu or auto"
        )
    if options.clicks is not None and (options.dataset != "rsc15" or options.dataset_path):
        raise ConfigError(
            f"--clicks only applies to --dataset rsc15, not {options.dataset!r} "
            "(a raw click file of your own: --dataset PATH)"
        )
    if options.clicks is not None and Path(options.clicks).is_dir():
        raise ConfigError(
            f"--clicks {options.clicks}: is a directory; give the click file (yoochoose-clicks.dat)"
        )
    from benchmark.cli_options import event_options_given

    given = event_options_given(options.events())  # ConfigError for an invalid value
    if given and options.dataset_path is None:
        raise ConfigError(
            f"{', '.join(given)}: only apply to a click file given by path (--dataset FILE), "
            f"not to the named dataset {options.dataset!r}"
        )
    if new_run:
        writable_folder(Path(options.out), "--out")
    try:
        writable_folder(Path(options.cache_dir), "--cache-dir")
    except ConfigError as e:  # the run needs no cache: go on, and say so now
        log.warning("%s; the data will be preprocessed without caching it", e)


def read_run_record(run_dir: Path) -> dict:
    """The ``run.json`` of a run directory, checked to be one of ours."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no run.json there, so nothing to resume")
    try:
        record = io.read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume {run_dir}: run.json is not valid JSON ({e})") from None
    try:
        RunOptions.from_json(record["options"])
        record["data"]["fingerprint"]
    except (KeyError, TypeError):
        raise ConfigError(
            f"--resume {run_dir}: run.json is not a sessionbench run record "
            "(no options or data fingerprint)"
        ) from None
    return record


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def _norm(value: object) -> object:
    if isinstance(value, Path):
        return str(Path(value).absolute())
    if isinstance(value, tuple):
        return list(value)
    return value


def show_option(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)
