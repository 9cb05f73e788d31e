"""Turn a run directory's per-prediction ranks into trustworthy tables and plots.

:func:`finalize_run` is called by the runner when a run ends (and by ``python -m
benchmark.report RUN_DIR ...`` to re-render). From ``predictions.parquet`` and ``ranks/*.parquet``
it computes (with :mod:`benchmark.report.analysis`), deterministically for a given ``seed``:

- ``ci_low``/``ci_high`` columns of ``metrics.csv``: 95% percentile bootstrap over test sessions
  (the values in ``metrics.csv`` are first checked against the ranks);
- ``significance.csv``: the reference method (every label starting with ``gru4rec``) against each
  other algorithm, paired over the same predictions (sign-flip permutation test over sessions),
  with a session-bootstrap interval of the difference;
- ``curves.csv`` (Recall@K and MRR@K for K = 1..20) and ``breakdown.csv`` (Recall and MRR by
  position in the session and by the target's popularity decile), which the plots are drawn from;
- ``report.json``: the settings used for all of the above;

then renders ``table.md``/``table.csv`` and ``plots/*.png`` from those files only.
:func:`summarize` puts several runs (datasets) side by side.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config import tuning_text
from benchmark.registry import get_algorithm
from benchmark.report import analysis, plots, tables
from benchmark.report.published import other_data
from benchmark.report.which import which_markdown
from datasets import io

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = "gru4rec"
PROTOCOL_PAGE = "docs/PROTOCOL.md"
"""The protocol every table.md cites (a file of this repository)."""
N_RESAMPLES = 10_000


# ------------------------------------------------------------------------------- reading


def read_run(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """``run.json`` (empty dict if absent) and ``metrics.csv`` of a run directory."""
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file}: no metrics.csv, so the run has no results yet")
    record = io.read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    return record, pd.read_csv(metrics_file)


def read_optional_csv(path: Path) -> pd.DataFrame | None:
    """The CSV at ``path``, or ``None`` if there is no such file."""
    return pd.read_csv(path) if Path(path).is_file() else None


def read_ranks(run_dir: Path, labels: Sequence[str], n_predictions: int) -> dict[str, np.ndarray]:
    """``ranks/<label>.parquet`` for every label, checked to align with ``predictions.parquet``."""
    ranks = {}
    for label in labels:
        path = Path(run_dir) / "ranks" / f"{label}.parquet"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: metrics.csv lists {label!r} but its ranks are missing"
            )
        values = pd.read_parquet(path, columns=["rank"])["rank"].to_numpy(np.float64)
        if len(values) != n_predictions:
            raise ValueError(
                f"{path}: {len(values)} ranks for {n_predictions} predictions "
                "in predictions.parquet"
            )
        if np.isnan(values).any() or (values < 1).any():
            raise ValueError(f"{path}: ranks must be >= 1 or inf (found NaN or a rank below 1)")
        ranks[label] = values
    return ranks


def dataset_name(record: dict, run_dir: Path) -> str:
    """The run's dataset (from ``run.json``; else the parent directory's name), marked
    "(not the official file)" when it is not the data of the published numbers, so that
    none are looked up for it."""
    name = Path(run_dir).resolve().parent.name
    for getter in (
        lambda r: r["data"]["dataset"],
        lambda r: r["dataset"],
        lambda r: r["options"]["dataset"],
    ):
        try:
            name = str(getter(record))
            break
        except (KeyError, TypeError):
            continue
    if not other_data(record):
        return name
    source = (record.get("data") or {}).get("source") or {}
    if source.get("official_file") is False and not source.get("given_path"):
        return f"{name} (not the official file)"
    return f"{name} (own data)"


def tuning_texts(record: dict) -> dict[str, str]:
    """Run label -> how its values were chosen, from ``run.json``'s ``config`` (runs older than
    the ``tuning`` key have none: their rows show no tuning column). An algorithm without
    hyperparameters (POP) says so rather than "not recorded"."""
    config = record.get("config") or {}
    return {
        label: (
            "no hyperparameters"
            if entry["tuning"] is None and entry.get("params") == {}
            else f"preset {entry['preset']}"
            if entry["tuning"] is None and entry.get("preset")
            else "defaults"
            if entry["tuning"] is None and _are_defaults(entry)
            else tuning_text(entry["tuning"])
        )
        + _selection_text(entry.get("epoch_selection"))
        for label, entry in config.items()
        if isinstance(entry, dict) and "tuning" in entry
    }


def _are_defaults(entry: dict) -> bool:
    """Whether a row's recorded values are its class's constructor defaults (``seed`` and
    ``device`` aside, which the run sets); an algorithm this checkout lacks is not."""
    try:
        defaults = get_algorithm(entry.get("algorithm", ""))().get_params()
    except KeyError:
        return False

    def own(params: dict) -> dict:
        return {k: v for k, v in params.items() if k not in ("seed", "device")}

    return own(entry.get("params") or {}) == own(defaults)


def _selection_text(selection: dict | None) -> str:
    """How a row's epoch count was chosen, appended to its tuning text."""
    if not selection:
        return ""
    if selection.get("chosen_on") is None:
        return f"; all {selection['max_epochs']} epochs (no validation split to choose on)"
    return f"; {selection['epochs']} of at most {selection['max_epochs']} epochs, chosen on valid"


def algorithm_names(record: dict) -> dict[str, str]:
    """Run label -> registry algorithm name, from ``run.json``'s ``config``."""
    config = record.get("config") or {}
    return {
        label: entry.get("algorithm", label)
        for label, entry in config.items()
        if isinstance(entry, dict)
    }


# ---------------------------------------------------------------------------- the run


def finalize_run(
    run_dir: Path,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str = DEFAULT_REFERENCE,
    n_resamples: int = N_RESAMPLES,
) -> None:
    """Add confidence intervals and significance to a finished run, then render it.

    Deterministic: the same files and ``seed`` give the same outputs, so re-running it (e.g.
    after ``--resume``) changes nothing that was already right.

    Args:
        run_dir: the run directory (``<out>/<dataset>/<run-id>``).
        n_boot: bootstrap resamples for every interval.
        seed: seed of every random draw (each statistic gets a fresh generator from it).
        reference: labels starting with this are the reference method, tested against the rest.
        n_resamples: sign flips of the paired permutation test.
    """
    run_dir = Path(run_dir)
    _, metrics = read_run(run_dir)
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    sessions = canonical_sessions(predictions)
    labels = list(dict.fromkeys(metrics["algorithm"]))
    ranks = read_ranks(run_dir, labels, len(predictions))
    analysis.check_metric_values(metrics, ranks)
    cutoff = tables.headline_cutoff(metrics["cutoff"].unique())
    log.info(
        "%s: bootstrap intervals (%d resamples of %d sessions)",
        run_dir,
        n_boot,
        len(np.unique(sessions)),
    )
    metrics = analysis.confidence_intervals(metrics, ranks, sessions, n_boot=n_boot, seed=seed)
    io.write_csv(run_dir / "metrics.csv", metrics)
    sig = analysis.significance(
        ranks,
        sessions,
        reference=reference,
        cutoff=cutoff,
        n_resamples=n_resamples,
        n_boot=n_boot,
        seed=seed,
    )
    io.write_csv(run_dir / "significance.csv", sig)
    curves = analysis.cutoff_curves(ranks, analysis.MAX_CURVE_K)  # K = 1..20, whatever --cutoffs
    io.write_csv(run_dir / "curves.csv", curves)
    io.write_csv(run_dir / "breakdown.csv", analysis.breakdown(predictions, ranks, cutoff))
    io.write_json(
        run_dir / "report.json",
        {
            "n_boot": n_boot,
            "alpha": analysis.ALPHA,
            "seed": seed,
            "reference": reference,
            "n_resamples": n_resamples,
            "interval": "percentile bootstrap over test sessions (clusters)",
            "test": "two-sided paired sign-flip permutation test over test sessions",
        },
    )
    render_run(run_dir)


def canonical_sessions(predictions: pd.DataFrame) -> np.ndarray:
    """Session labels numbered in a canonical order (by the sessions' content hash,
    ``session_key``), so that bootstrap resamples do not depend on the order of the test
    sessions in the file. Identical sessions stay separate clusters; their order among
    themselves does not matter since their values are identical. Runs written before the
    key existed keep file order."""
    session = predictions["session"].to_numpy(np.int64)
    if "session_key" not in predictions:
        return session
    ids, first, inverse = np.unique(session, return_index=True, return_inverse=True)
    keys = predictions["session_key"].to_numpy(np.int64)[first]
    order = np.lexsort((ids, keys))
    canonical = np.empty(len(ids), dtype=np.int64)
    canonical[order] = np.arange(len(ids))
    return canonical[inverse]


def render_run(run_dir: Path) -> None:
    """Write ``table.md``, ``table.csv`` and ``plots/*.png`` from the run's saved files."""
    run_dir = Path(run_dir)
    record, metrics = read_run(run_dir)
    settings = io.read_json(run_dir / "report.json") if (run_dir / "report.json").is_file() else {}
    dataset = dataset_name(record, run_dir)
    table = tables.run_table(
        metrics,
        timings=read_optional_csv(run_dir / "timings.csv"),
        significance=read_optional_csv(run_dir / "significance.csv"),
        seeds=read_optional_csv(run_dir / "seeds.csv"),
        algorithms=algorithm_names(record),
        dataset=dataset,
        reference=settings.get("reference", DEFAULT_REFERENCE),
        tuning=tuning_texts(record),
    )
    io.write_csv(run_dir / "table.csv", table.reset_index())
    predictions = pd.read_parquet(run_dir / "predictions.parquet", columns=["session", "target"])
    io.write_text(
        run_dir / "table.md", run_markdown(table, metrics, record, settings, predictions, run_dir)
    )
    plots.draw_run(
        run_dir, title=dataset, published=_published_pairs(table), losses=_losses(record)
    )


def _published_pairs(table: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Label -> published (Recall@20, MRR@20), from the table's published columns."""
    if "published_recall@20" not in table:
        return {}
    rows = table[table["published_recall@20"].notna()]
    return {
        label: (r, m)
        for label, r, m in zip(rows.index, rows["published_recall@20"], rows["published_mrr@20"])
    }


def _losses(record: dict) -> dict[str, str]:
    """Label -> ``params.loss`` from ``run.json``'s config, for the algorithms that have one."""
    config = record.get("config") or {}
    return {
        label: str(entry["params"]["loss"])
        for label, entry in config.items()
        if isinstance(entry, dict) and "loss" in (entry.get("params") or {})
    }


def run_markdown(
    table: pd.DataFrame,
    metrics: pd.DataFrame,
    record: dict,
    settings: dict,
    predictions: pd.DataFrame,
    run_dir: Path,
) -> str:
    """The whole ``table.md``: protocol line, the two tables, notes on sources and the run."""
    dataset = dataset_name(record, run_dir)
    cutoffs = sorted(int(k) for k in metrics["cutoff"].unique())
    cutoff = tables.headline_cutoff(cutoffs)
    notes = tables.published_notes(table, dataset)
    histories = {p.stem: pd.read_csv(p) for p in sorted((Path(run_dir) / "history").glob("*.csv"))}
    which = which_markdown(table, algorithm_names(record), record, histories)
    repeats = tables.repeat_markdown(
        read_optional_csv(Path(run_dir) / "breakdown.csv"), list(table.index)
    )
    parts = [
        f"# {dataset}: run {Path(run_dir).name}",
        "",
        protocol_line(record, predictions, dataset),
        "",
        uncertainty_line(settings, table),
        "",
        f"## Recall@{cutoff} and MRR@{cutoff}",
        "",
        tables.headline_markdown(table, cutoff),
        "",
        *([*notes, ""] if notes else []),
        *(["## Which GRU4Rec?", "", which, ""] if which else []),
        *(["## Repeat and new targets", "", repeats, ""] if repeats else []),
        "## Every cutoff, time and memory",
        "",
        tables.detail_markdown(table, cutoffs),
        "",
        run_line(record),
        "",
    ]
    return "\n".join(parts)


def protocol_line(record: dict, predictions: pd.DataFrame, dataset: str) -> str:
    """Dataset, tie mode, counts and unseen-target policy in one paragraph."""
    protocol = record.get("protocol") or {}
    options = record.get("options") or {}
    tie_mode = protocol.get("tie_mode") or record.get("tie_mode") or options.get("tie_mode", "?")
    n = len(predictions)
    unseen = int((predictions["target"] < 0).sum())
    text = (
        f"**Protocol** (`{PROTOCOL_PAGE}` in the sessionbench repository): dataset "
        f"**{dataset}**; "
        "next-click prediction, "
        f"{protocol.get('ranking', 'full ranking against all training items')}; "
        f"tie mode **{tie_mode}**"
        + (f" (rank = {protocol['rank']})" if "rank" in protocol else "")
        + f". Test: {n:,} predictions in {predictions['session'].nunique():,} sessions; "
        + _unseen_text(unseen, n)
        + "."
    )
    counts = (record.get("data") or {}).get("counts") or {}
    if counts:
        text += " Data: " + "; ".join(_count_text(k, v) for k, v in counts.items()) + "."
    policy = (record.get("data") or {}).get("policy") or {}
    if policy:
        text += (
            " Policy: "
            + "; ".join(f"{k.replace('_', ' ')}: {_cite(v)}" for k, v in policy.items())
            + "."
        )
    return text


def _cite(text: object) -> str:
    """Policy text with the protocol page cited by its path in this repository (records
    written before docs/PROTOCOL.md existed say "PROTOCOL.md")."""
    return re.sub(r"(?<![/\w])PROTOCOL\.md", PROTOCOL_PAGE, str(text))


def _unseen_text(unseen: int, n: int) -> str:
    if unseen == 0:
        return "every target item occurs in training"
    return (
        f"{unseen:,} target{'s' if unseen != 1 else ''} ({100.0 * unseen / max(n, 1):.2f}%) "
        "not in training, counted as misses for every algorithm"
    )


def _count_text(split: str, counts: object) -> str:
    if not isinstance(counts, dict):
        return f"{split} {counts}"
    shown = {k: v for k, v in counts.items() if k in ("events", "sessions", "items")}
    return f"{split} " + " / ".join(f"{v:,} {k}" for k, v in shown.items())


def uncertainty_line(settings: dict, table: pd.DataFrame) -> str:
    """How the intervals and p-values were computed (or that they were not)."""
    if not settings:
        return "**Uncertainty**: not computed (run `python -m benchmark.report RUN_DIR`)."
    text = (
        f"**Uncertainty**: {100 * (1 - settings['alpha']):.0f}% intervals are percentile "
        f"bootstraps over test sessions ({settings['n_boot']:,} resamples, seed "
        f"{settings['seed']}); they cover test-set sampling only, not training randomness "
        "(see the seeds column where present)."
    )
    reference = table["reference"].iloc[0]
    if reference:
        text += (
            f" p-values: two-sided paired sign-flip permutation test over test sessions "
            f"({settings['n_resamples']:,} resamples) of **{reference}** against each row, "
            "not adjusted for multiple comparisons. Δ is the relative change against the "
            "best baseline by Recall."
        )
    return text


def run_line(record: dict) -> str:
    """Command, time span, code version and hardware of the run."""
    if not record:
        return ""
    versions = record.get("versions") or {}
    hardware = record.get("hardware") or {}
    hw = ", ".join(f"{k} {v}" for k, v in hardware.items())
    return (
        f"Run: `{record.get('command', '')}`; {record.get('started', '?')} → "
        f"{record.get('finished') or record.get('ended', '?')}; code {versions.get('code', '?')}; {hw}."
    )


# ------------------------------------------------------------------------- several runs


def summarize(run_dirs: Sequence[Path], out_dir: Path) -> None:
    """Cross-dataset ``summary.md``, ``summary.csv`` and ``summary.png`` of finished runs."""
    runs = []
    for run_dir in run_dirs:
        record, metrics = read_run(Path(run_dir))
        runs.append((dataset_name(record, Path(run_dir)), metrics, algorithm_names(record)))
    names = [r[0] for r in runs]
    if len(set(names)) != len(names):  # the same dataset twice: tell the runs apart
        runs = [(f"{name} ({Path(d).name})", m, a) for (name, m, a), d in zip(runs, run_dirs)]
    summary = tables.summary_frame(runs)
    out_dir = Path(out_dir)
    io.write_csv(out_dir / "summary.csv", summary)
    sources = "\n".join(f"- {name}: `{d}`" for (name, _, _), d in zip(runs, run_dirs))
    io.write_text(
        out_dir / "summary.md",
        "# Summary across datasets\n\n"
        + tables.summary_markdown(summary)
        + "\n\nIntervals: 95% percentile bootstrap over test sessions. Runs:\n\n"
        + sources
        + "\n",
    )
    plots.draw_summary(summary, out_dir / "summary.png")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.report",
        description="Recompute intervals and significance of finished runs and re-render their "
        "tables and plots; with several runs, also write a cross-dataset summary.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories")
    parser.add_argument(
        "--summary-dir",
        type=Path,
        default=None,
        help="where summary.* go (default: <common parent of the runs>/summary)",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--n-resamples", type=int, default=N_RESAMPLES, help="sign flips of the paired test"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference", default=DEFAULT_REFERENCE, help="label prefix of the reference method"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="only redraw tables and plots from the saved CSV files",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for run_dir in args.run_dirs:
        if args.render_only:
            render_run(run_dir)
        else:
            finalize_run(
                run_dir,
                n_boot=args.n_boot,
                seed=args.seed,
                reference=args.reference,
                n_resamples=args.n_resamples,
            )
        print(f"rendered {run_dir / 'table.md'}")
    if len(args.run_dirs) > 1:
        out = (
            args.summary_dir
            or Path(os.path.commonpath([str(Path(d).resolve()) for d in args.run_dirs])) / "summary"
        )
        summarize(args.run_dirs, out)
        print(f"summary in {out}")


if __name__ == "__main__":
    main()
