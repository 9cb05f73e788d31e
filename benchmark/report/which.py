"""The "which GRU4Rec?" table of a run: the faithful GRU4Rec rows beside the third-party
versions (``gru4rec-keras``, ``gru4rec-tf``, ``gru4rec-recbole``) that published comparisons
ran, with each one's change against the faithful row, its time per epoch and the features of
the original it lacks. Hidasi & Czapp (RecSys 2023) measured two of the same versions against
the tuned original on their own Yoochoose split; their drops are shown beside ours.
"""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

FAITHFUL = "gru4rec"
VARIANTS = ("gru4rec-keras", "gru4rec-tf", "gru4rec-recbole")

LACKS = {
    "gru4rec": "",
    "gru4rec-keras": "negative sampling, BPR-max, logQ, momentum, embedding (one-hot input, "
    "untied output)",
    "gru4rec-tf": "extra negative samples (in-batch only), BPR-max, logQ, momentum, tied "
    "embeddings",
    "gru4rec-recbole": "negative sampling, BPR-max, logQ, momentum, session-parallel state "
    "(prefixes from a zero state)",
}
"""Features of the authors' GRU4Rec each version does not have (from its source code;
docs/gru4rec-variants.md)."""

PUBLISHED_DROP = {
    "gru4rec-keras": (-6.0, -11.2),
    "gru4rec-tf": (-43.3, -54.7),
}
"""Hidasi & Czapp 2023: Recall@20 / MRR@20 change against the tuned original, in %, on their
Yoochoose split (not ours)."""


def which_markdown(
    table: pd.DataFrame,
    algorithms: dict[str, str],
    record: dict,
    histories: dict[str, pd.DataFrame] | None = None,
) -> str | None:
    """The table, or ``None`` when the run has no third-party row or no faithful one.

    ``histories``: label -> its ``history/<label>.csv``, for the seconds per epoch."""
    labels = list(table.index)
    faithful = [lab for lab in labels if algorithms.get(lab, lab) == FAITHFUL]
    variants = [lab for lab in labels if algorithms.get(lab, lab) in VARIANTS]
    if not faithful or not variants:
        return None
    reference = FAITHFUL if FAITHFUL in faithful else faithful[0]
    ref = table.loc[reference]
    config = record.get("config") or {}
    rows = []
    for label in faithful + variants:
        r = table.loc[label]
        algorithm = algorithms.get(label, label)
        per_epoch = epoch_seconds(
            r.get("fit_s", math.nan),
            (histories or {}).get(label),
            (config.get(label) or {}).get("params", {}).get("n_epochs"),
        )
        published = PUBLISHED_DROP.get(algorithm)
        rows.append(
            [
                label,
                f"{r['recall@20']:.4f}",
                f"{r['mrr@20']:.4f}",
                _pct(r["recall@20"], ref["recall@20"]) if label != reference else "ref.",
                _pct(r["mrr@20"], ref["mrr@20"]) if label != reference else "ref.",
                f"{per_epoch:.0f}" if math.isfinite(per_epoch) else "–",
                f"{published[0]:+.1f}% / {published[1]:+.1f}%" if published else "–",
                LACKS.get(algorithm, "") or "–",
            ]
        )
    header = [
        "row",
        "Recall@20",
        "MRR@20",
        "Δ Recall",
        "Δ MRR",
        "s / epoch",
        "Hidasi & Czapp Δ",
        "lacks",
    ]
    return (
        f"Changes against `{reference}`; every row evaluated by this benchmark's evaluator, never "
        "by its source's own evaluation code. Hidasi & Czapp's drops are from their own "
        "Yoochoose split, not this one.\n\n"
        + tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
    )


def epoch_seconds(fit_s: float, history: pd.DataFrame | None, n_epochs: int | None) -> float:
    """Seconds per training epoch: from the history's own timing where it records the events
    of each epoch (right even for a fit resumed after a kill, whose fit time covers only the
    epochs after the resume), else the fit time over the epochs the history lists (KerasGRU4Rec's
    ``--epochs 10`` trains 9 passes), else over ``n_epochs``."""
    if history is not None and len(history):
        if {"events", "events_per_s"} <= set(history.columns):
            return float((history["events"] / history["events_per_s"]).mean())
        return fit_s / len(history)
    return fit_s / n_epochs if n_epochs else math.nan


def _pct(value: float, reference: float) -> str:
    return f"{100 * (value / reference - 1):+.1f}%" if reference else "–"
