"""A dataset's run config written from its equal-budget studies.

    python -m benchmark.tuning.configfile --dataset rsc15-64 --trials 30 > configs/rsc15-64.toml

reads every study journal in ``results/tune/<dataset>/`` and prints a config with, in this order:
the published Item-KNN row (``[item-knn]``, the regularized cosine of PROTOCOL.md), one table per
study holding the best trial's setting and its tuning record (Item-KNN's is ``[item-knn-tuned]``,
so that the published row keeps its name), and the authors' published GRU4Rec paramfile row for
the dataset. Every algorithm with a search space (``configs/search/<algorithm>.toml``) must have
a study, and every study must hold exactly ``--trials`` finished trials: a config whose rows had
different budgets is what this benchmark exists to avoid. Journals are read, never written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from benchmark.config import OBJECTIVE_NAMES
from benchmark.registry import get_algorithm
from benchmark.tuning.cli import toml_table
from benchmark.tuning.space import SEARCH_DIR
from benchmark.tuning.study import OBJECTIVES, best_config, counts, journal_studies

PUBLISHED_ITEM_KNN = {
    "n_sims": 100,
    "reg_lambda": 20.0,
    "alpha": 0.5,
    "counting": "session",
    "include_self": False,
}
"""Item-KNN as the GRU4Rec papers report it (docs/PROTOCOL.md)."""

PUBLISHED_GRU4REC = {"diginetica": "diginetica-bprmax-paramfile"}
"""The authors' paramfile preset (configs/presets/gru4rec.toml) shown for a dataset; the RSC15
one for every other dataset."""
DEFAULT_GRU4REC = "rsc15-best-paramfile"

ORDER = ("item-knn", "bpr-mf", "sknn", "vsknn", "stan", "vstan", "sr", "ar", "markov", "gru4rec")
"""Row order of the config (studies of other algorithms follow, by name)."""

HEADER = """\
# Hyperparameters for the {dataset} data set, written from its studies by
#   python -m benchmark.tuning.configfile --dataset {dataset} --trials {trials}
#
# Two kinds of rows, shown in the tables' tuning column:
# - tuning = "published": a paper's fixed setting, used as it is.
# - tuning = {{ trials = {trials}, ... }}: the best of an equal-budget study. Every tunable algorithm
#   of this dataset had the same {trials} trials of the seeded TPE of benchmark/tuning (search spaces
#   in configs/search/<algorithm>.toml), scored by {metric} on the validation split only (fit on
#   the first 90% of the training sessions in file order, evaluated on the last 10%;
#   conservative ties), never on test. Each study's journal and picture are in
#   results/tune/{dataset}/; the command is given above each table, and
#   python -m benchmark.tune --dataset {dataset} --algorithm A --plot-only prints the table again.

# Item-KNN as published (docs/PROTOCOL.md; GRU4Rec papers): regularized cosine, lambda 20,
# alpha 0.5, 100 neighbours, co-occurrence counted once per session, no self-similarity.
"""


class BudgetError(ValueError):
    """A study does not hold the dataset's budget of finished trials."""


def study_table(path: Path, dataset: str, trials: int) -> tuple[str, str, str]:
    """(algorithm, objective as in a tuning record, the commented config table of the best trial
    of the study in ``path``)."""
    studies = journal_studies(path)
    if len(studies) != 1:
        raise ValueError(f"{path}: expected one study, found {len(studies)}")
    study = studies[0]
    algorithm = study.user_attrs.get("algorithm", path.stem)
    get_algorithm(algorithm)  # KeyError for a study of an unknown algorithm
    c = counts(study)
    finished = c["complete"] + c["pruned"]
    if finished != trials:
        fix = (
            f"python -m benchmark.tune --dataset {dataset} --algorithm {algorithm} --trials "
            f"{trials} completes it"
            if finished < trials
            else "more than the others had"
        )
        raise BudgetError(
            f"{path}: study {study.study_name!r} holds {finished} finished trials, "
            f"not the budget of {trials} ({fix})"
        )
    objective = {v: k for k, v in OBJECTIVES.items()}.get(study.user_attrs.get("objective"))
    if objective is None:
        raise ValueError(
            f"{path}: study {study.study_name!r} records no known objective "
            f"({study.user_attrs.get('objective')!r})"
        )
    best, config = best_config(study)
    row = f"{algorithm}-tuned" if algorithm == "item-knn" else algorithm
    params = {"algorithm": algorithm, **config} if row != algorithm else config
    tuning = {"trials": finished, "objective": objective, "study": str(path)}
    comment = (
        f"# {row}: python -m benchmark.tune --dataset {dataset} --data-dir data "
        f"--algorithm {algorithm} --trials {trials}\n"
        f"# ({c['complete']} complete, {c['pruned']} pruned; best: trial {best.number}, "
        f"validation MRR@20 {best.user_attrs['mrr@20']:.4f}, "
        f"Recall@20 {best.user_attrs['recall@20']:.4f}).\n"
    )
    return algorithm, objective, comment + toml_table(row, params, tuning)


def config_text(folder: Path, dataset: str, trials: int, search_dir: Path = SEARCH_DIR) -> str:
    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    journals = sorted((folder / dataset).glob("*.journal"))
    if not journals:
        raise ValueError(f"no study journal (*.journal) in {folder / dataset}")
    studies = [study_table(path, dataset, trials) for path in journals]
    tables = {algorithm: text for algorithm, _, text in studies}
    missing = sorted({p.stem for p in search_dir.glob("*.toml")} - set(tables))
    if missing:
        raise BudgetError(
            f"no study in {folder / dataset} for {', '.join(missing)} (every "
            f"algorithm with a search space in {search_dir} is tuned)"
        )
    metric = " / ".join(sorted({OBJECTIVE_NAMES[objective] for _, objective, _ in studies}))
    order = sorted(tables, key=lambda a: (ORDER.index(a) if a in ORDER else len(ORDER), a))
    paramfile = PUBLISHED_GRU4REC.get(dataset, DEFAULT_GRU4REC)
    parts = [
        HEADER.format(dataset=dataset, trials=trials, metric=metric)
        + toml_table("item-knn", PUBLISHED_ITEM_KNN, "published"),
        *(tables[a] for a in order),
        "# GRU4Rec with the authors' published paramfile for this data "
        "(configs/presets/gru4rec.toml).\n" + toml_table(f"gru4rec@{paramfile}", {}, "published"),
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.tuning.configfile",
        description="Print a dataset's config from its studies.",
    )
    p.add_argument("--dataset", required=True, help="the folder name under --folder")
    p.add_argument(
        "--trials",
        type=int,
        required=True,
        help="the dataset's budget: every study must hold this many finished trials",
    )
    p.add_argument("--folder", type=Path, default=Path("results") / "tune")
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        text = config_text(args.folder, args.dataset, args.trials)
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
