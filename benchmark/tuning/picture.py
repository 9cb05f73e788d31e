"""A study as a picture: the objective of every trial and the best so far, by trial number."""

from __future__ import annotations

from pathlib import Path

import optuna
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry
from optuna.trial import TrialState


def draw_study(study: optuna.Study, path: Path, objective: str) -> Path:
    """Write the picture of ``study`` to ``path`` (PNG): complete trials as dots, pruned ones
    as crosses at their last reported value, and the best complete value so far as a step line."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    fig = Figure(figsize=(7, 4), dpi=120)
    ax = fig.subplots()
    ax.scatter(
        [t.number for t in complete],
        [t.value for t in complete],
        s=18,
        color="C0",
        label="trial",
        zorder=3,
    )
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
            marker="x",
            s=18,
            color="0.55",
            label="pruned (last report)",
            zorder=2,
        )
    best, xs, ys = float("-inf"), [], []
    for t in complete:
        best = max(best, t.value)
        xs.append(t.number)
        ys.append(best)
    if xs:
        xs.append(max(t.number for t in trials))
        ys.append(best)
        ax.step(xs, ys, where="post", color="C3", label=f"best so far ({best:.4f})")
    n_failed = sum(t.state == TrialState.FAIL for t in trials)
    ax.set_title(
        f"{study.study_name}: {len(complete)} complete, {len(pruned)} pruned"
        + (f", {n_failed} failed" if n_failed else ""),
        fontsize=10,
    )
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {objective}")
    ax.grid(alpha=0.3)
    if complete or pruned:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
