"""Tables, significance and plots of a small hand-made run directory with known numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from algorithms.item_knn import ItemKNN
from benchmark.metrics import compute_metrics
from benchmark.report import analysis, render

INF = np.inf
# 10 predictions in 4 test sessions; the 5th target is an item unseen in training.
PREDICTIONS = pd.DataFrame(
    {
        "session": [0, 0, 0, 1, 1, 2, 2, 2, 2, 3],
        "position": [1, 2, 3, 1, 2, 1, 2, 3, 4, 1],
        "target": [5, 6, 7, 8, -1, 9, 10, 11, 12, 13],
        "target_support": [10, 20, 30, 40, 0, 50, 60, 70, 80, 90],
    }
)
RANKS = {
    # Recall@20 7/10; MRR@20 (1 + 1/2 + 1/4 + 1 + 1/5 + 1/2 + 1) / 10 = 0.445
    "pop": np.array([50, 60, 70, 20, INF, 80, 90, 100, 100, 100.0]),  # 0.1 / 0.005
    "item-knn": np.array([2, 1, 30, 30, INF, 3, 10, 25, 40, 1.0]),  # 0.5 / 0.29333
    "gru4rec": np.array([1, 2, 4, 30, INF, 1, 5, 25, 2, 1.0]),
}
CUTOFFS = [1, 5, 10, 20]


def make_run(
    run_dir: Path,
    dataset: str = "rsc15-64",
    ranks: dict | None = None,
    seeds: bool = False,
    source: dict | None = None,
) -> Path:
    """Write a run directory in the runner's layout."""
    ranks = RANKS if ranks is None else ranks
    (run_dir / "ranks").mkdir(parents=True)
    PREDICTIONS.to_parquet(run_dir / "predictions.parquet", index=False)
    metrics, timings = [], []
    for i, (label, r) in enumerate(ranks.items()):
        pd.DataFrame({"rank": r}).to_parquet(run_dir / "ranks" / f"{label}.parquet", index=False)
        metrics += [{"algorithm": label, **row} for row in compute_metrics(r, CUTOFFS)]
        timings += [
            {
                "algorithm": label,
                "stage": "fit",
                "seconds": 12.5 * (i + 1),
                "peak_rss_mb": 1000.0 + i,
                "peak_gpu_mb": 0.0,
            },
            {
                "algorithm": label,
                "stage": "evaluate",
                "seconds": 3.25,
                "peak_rss_mb": 1234.0 + i,
                "peak_gpu_mb": 0.0,
            },
        ]
    pd.DataFrame(metrics).to_csv(run_dir / "metrics.csv", index=False)
    pd.DataFrame(timings).to_csv(run_dir / "timings.csv", index=False)
    if seeds:  # two seeds of gru4rec: Recall@20 0.7 and 0.8, MRR@20 0.445 and 0.455
        pd.DataFrame(
            [
                {
                    "algorithm": "gru4rec",
                    "seed": seed,
                    "metric": metric,
                    "cutoff": 20,
                    "value": value,
                }
                for metric, values in (("recall", (0.7, 0.8)), ("mrr", (0.445, 0.455)))
                for seed, value in enumerate(values)
            ]
        ).to_csv(run_dir / "seeds.csv", index=False)
    (run_dir / "history").mkdir()
    pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [5.0, 4.0, 3.5],
            "events_per_s": [1e4] * 3,
            "valid_recall20": [0.5, 0.6, np.nan],
        }
    ).to_csv(run_dir / "history" / "gru4rec.csv", index=False)
    record = {
        "command": "test",
        "options": {"dataset": dataset, "tie_mode": "conservative"},
        "config": {label: {"algorithm": label, "params": {}} for label in ranks},
        "data": {
            "dataset": dataset,
            "fingerprint": "f",
            "counts": {"train": {"events": 100, "sessions": 20, "items": 14}},
            "policy": {"unseen_targets": "misses"},
            "source": source or {},
        },
        "protocol": {"tie_mode": "conservative", "cutoffs": CUTOFFS},
        "started": "s",
        "finished": "f",
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = make_run(tmp_path_factory.mktemp("out") / "rsc15-64" / "run1", seeds=True)
    render.finalize_run(path, n_boot=200, n_resamples=500)
    return path


def test_metrics_csv_gets_intervals_around_each_value(run_dir):
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"ci_low", "ci_high"} <= set(metrics.columns)
    assert metrics[["ci_low", "ci_high"]].notna().all().all()
    assert (metrics["ci_low"] <= metrics["value"] + 1e-12).all()
    assert (metrics["value"] <= metrics["ci_high"] + 1e-12).all()


def test_table_csv_has_the_known_numbers_and_relative_change(run_dir):
    table = pd.read_csv(run_dir / "table.csv").set_index("algorithm")
    assert table.loc["gru4rec", "recall@20"] == pytest.approx(0.7)
    assert table.loc["gru4rec", "mrr@20"] == pytest.approx(0.445)
    assert table.loc["item-knn", "mrr@20"] == pytest.approx(2.9333333 / 10)
    assert (table["best_baseline"] == "item-knn").all()
    assert table.loc["gru4rec", "recall@20_change_pct"] == pytest.approx(40.0)
    assert table.loc["pop", "recall@20_change_pct"] == pytest.approx(-80.0)
    assert table.loc["gru4rec", "fit_s"] == pytest.approx(37.5)
    assert table.loc["pop", "peak_rss_mb"] == pytest.approx(1234.0)
    assert table.loc["pop", "published_recall@20"] == pytest.approx(0.0671)
    assert table.loc["gru4rec", "recall@20_seed_mean"] == pytest.approx(0.75)
    assert table.loc["gru4rec", "role"] == "reference"


def test_table_md_shows_protocol_ci_change_p_value_and_published(run_dir):
    text = (run_dir / "table.md").read_text()
    assert "tie mode **conservative**" in text
    assert "10 predictions in 4 sessions; 1 target (10.00%) not in training" in text
    gru = next(line for line in text.splitlines() if line.startswith("| **gru4rec**"))
    assert "0.7000 [" in gru and "+40.0%" in gru and "+51.7%" in gru
    assert "(reference)" in gru and "0.7500 ± 0.0707" in gru and "0.6064 / 0.2289" in gru
    pop = next(line for line in text.splitlines() if line.startswith("| pop "))
    assert "-80.0%" in pop and "-98.3%" in pop
    assert "(best baseline)" in next(
        line for line in text.splitlines() if line.startswith("| item-knn")
    )
    assert "| 37.5 " in text and "| 3.25 " in text and "1,236" in text


def test_significance_csv_tests_the_reference_against_every_other_algorithm(run_dir):
    sig = pd.read_csv(run_dir / "significance.csv")
    assert set(sig["algorithm"]) == {"pop", "item-knn"}
    assert set(sig["reference"]) == {"gru4rec"}
    row = sig[(sig["algorithm"] == "pop") & (sig["metric"] == "recall")].iloc[0]
    assert row["difference"] == pytest.approx(0.6)
    assert 0 < row["p_value"] <= 1
    assert row["difference_ci_low"] <= 0.6 <= row["difference_ci_high"]


def test_curves_and_breakdown_match_the_ranks(run_dir):
    curves = pd.read_csv(run_dir / "curves.csv").set_index(["algorithm", "metric", "cutoff"])
    assert curves.loc[("gru4rec", "recall", 1), "value"] == pytest.approx(0.3)
    assert curves.loc[("gru4rec", "recall", 4), "value"] == pytest.approx(0.6)
    assert len(curves) == 3 * 2 * 20
    parts = pd.read_csv(run_dir / "breakdown.csv")
    first = parts[
        (parts["by"] == "position")
        & (parts["bucket"] == 1)
        & (parts["algorithm"] == "item-knn")
        & (parts["metric"] == "recall")
    ]
    assert first["value"].item() == pytest.approx(3 / 4)  # ranks 2, 30, 3, 1 at position 1
    deciles = parts[parts["by"] == "popularity"]
    assert deciles["n_predictions"].drop_duplicates().tolist() == [1]  # 9 seen targets, 9 bins


def test_plots_are_written(run_dir):
    for name in ("headline", "cutoffs", "by_position", "by_popularity", "training"):
        path = run_dir / "plots" / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 5000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finalize_is_deterministic(run_dir):
    before = (run_dir / "metrics.csv").read_bytes(), (run_dir / "significance.csv").read_bytes()
    render.finalize_run(run_dir, n_boot=200, n_resamples=500)
    after = (run_dir / "metrics.csv").read_bytes(), (run_dir / "significance.csv").read_bytes()
    assert before == after


def test_finalize_refuses_metrics_that_disagree_with_the_ranks(tmp_path):
    path = make_run(tmp_path / "run")
    metrics = pd.read_csv(path / "metrics.csv")
    metrics.loc[0, "value"] += 0.01
    metrics.to_csv(path / "metrics.csv", index=False)
    with pytest.raises(ValueError, match="ranks/pop.parquet gives"):
        render.finalize_run(path, n_boot=20, n_resamples=20)


def test_run_without_reference_has_no_p_values_but_a_best_baseline(tmp_path):
    ranks = {k: v for k, v in RANKS.items() if k != "gru4rec"}
    path = make_run(tmp_path / "run", dataset="synthetic", ranks=ranks)
    render.finalize_run(path, n_boot=20, n_resamples=20)
    assert pd.read_csv(path / "significance.csv").empty
    text = (path / "table.md").read_text()
    assert "p vs" not in text and "published" not in text.lower().split("## every")[0]
    assert "-80.0%" in text


def test_popularity_buckets_cut_seen_targets_into_equal_groups():
    support = np.array([0, 5, 1, 3, 3, 9, 2, 0, 7, 4, 8])  # 9 seen targets
    bucket, labels = analysis.popularity_buckets(support, n_bins=3)
    assert bucket.tolist() == [0, 2, 1, 1, 2, 3, 1, 0, 3, 2, 3]  # ties kept in row order
    assert labels == ["1–3", "3–5", "7–9"]


def test_summarize_puts_datasets_side_by_side(run_dir, tmp_path):
    other = make_run(tmp_path / "diginetica" / "run2", dataset="diginetica")
    render.finalize_run(other, n_boot=20, n_resamples=20)
    render.summarize([run_dir, other], tmp_path / "summary")
    summary = pd.read_csv(tmp_path / "summary" / "summary.csv")
    assert set(summary["dataset"]) == {"rsc15-64", "diginetica"}
    row = summary[
        (summary["dataset"] == "diginetica")
        & (summary["algorithm"] == "item-knn")
        & (summary["metric"] == "recall")
    ].iloc[0]
    assert row["value"] == pytest.approx(0.5) and row["published"] == pytest.approx(0.3575)
    text = (tmp_path / "summary" / "summary.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| algorithm"))
    assert "rsc15-64" in header and "diginetica" in header
    assert "0.5000 [" in text and "(published 0.3575)" in text
    assert (tmp_path / "summary" / "summary.png").stat().st_size > 5000


def test_command_line_rerenders_a_run_without_recomputing(run_dir, capsys):
    (run_dir / "table.md").unlink()
    before = (run_dir / "metrics.csv").read_bytes()
    render.main([str(run_dir), "--render-only"])
    assert (run_dir / "table.md").is_file()
    assert (run_dir / "metrics.csv").read_bytes() == before
    assert "rendered" in capsys.readouterr().out


def test_a_run_on_another_clicks_file_gets_no_published_numbers(tmp_path):
    # A simulated yoochoose-clicks.dat: same dataset name, but not the published data.
    path = make_run(tmp_path / "rsc15" / "run1", dataset="rsc15", source={"official_file": False})
    render.finalize_run(path, n_boot=50, n_resamples=50)
    text = (path / "table.md").read_text()
    assert text.startswith("# rsc15 (not the official file): run run1")
    assert "published" not in text.lower()
    official = make_run(
        tmp_path / "rsc15" / "run2", dataset="rsc15", source={"official_file": True}
    )
    render.finalize_run(official, n_boot=50, n_resamples=50)
    assert "0.5065 / 0.2048" in (official / "table.md").read_text()  # ICLR 2016 Item-KNN


def test_headline_plot_gets_the_tables_published_numbers(run_dir):
    table = pd.read_csv(run_dir / "table.csv", index_col="algorithm")
    assert render._published_pairs(table) == {
        "pop": (0.0671, 0.0165),
        "item-knn": (0.5160, 0.2181),
        "gru4rec": (0.6064, 0.2289),
    }
    no_published = table.drop(columns=["published_recall@20", "published_mrr@20"])
    assert render._published_pairs(no_published) == {}


def test_old_policy_text_cites_the_protocol_page_of_the_repository():
    """Regression: table.md cited "PROTOCOL.md", a file users do not have."""
    record = {"data": {"policy": {"preprocessing": "GRU4Rec RSC15 rules (PROTOCOL.md 1-6)"}}}
    predictions = pd.DataFrame({"session": [0, 0], "target": [1, 2]})
    text = render.protocol_line(record, predictions, "rsc15")
    assert "rules (docs/PROTOCOL.md 1-6)" in text
    assert text.startswith("**Protocol** (`docs/PROTOCOL.md` in the sessionbench repository)")
    assert text.count("PROTOCOL.md") == text.count("docs/PROTOCOL.md") == 2


def test_each_row_shows_how_its_values_were_chosen(tmp_path):
    path = make_run(tmp_path / "rsc15-64" / "run1")
    record = json.loads((path / "run.json").read_text())
    record["config"]["item-knn"]["tuning"] = {
        "trials": 30,
        "objective": "mrr",
        "study": "results/tune/rsc15-64/item-knn.journal",
    }
    record["config"]["gru4rec"]["tuning"] = "published"
    record["config"]["pop"]["tuning"] = None  # params {}: nothing to tune
    (path / "run.json").write_text(json.dumps(record))
    render.finalize_run(path, n_boot=50, n_resamples=50)
    lines = (path / "table.md").read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("| algorithm   | tuning"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows[line.split("|")[1].strip()] = line.split("|")[2].strip()
    assert rows["item-knn"] == "tuned: 30 trials, MRR@20"
    assert rows["**gru4rec**"] == "published setting"
    assert rows["pop"] == "no hyperparameters"
    table = pd.read_csv(path / "table.csv").set_index("algorithm")
    assert table.loc["item-knn", "tuning"] == "tuned: 30 trials, MRR@20"
    # hyperparameters whose origin the config does not say
    record["config"]["item-knn"].update(tuning=None, params={"alpha": 0.5})
    assert render.tuning_texts(record)["item-knn"] == "not recorded"
    # the class's own defaults (seed and device are the run's) say so
    record["config"]["item-knn"]["params"] = dict(ItemKNN().get_params(), seed=7)
    assert render.tuning_texts(record)["item-knn"] == "defaults"
    record["config"]["item-knn"]["preset"] = "authors"  # a preset row says which preset
    assert render.tuning_texts(record)["item-knn"] == "preset authors"


def test_runs_without_tuning_records_keep_their_table_shape(run_dir):
    assert "tuning" not in pd.read_csv(run_dir / "table.csv").columns


def test_a_neural_row_gets_its_papers_figure_and_leaves_the_other_methods_line(tmp_path):
    path = make_run(tmp_path / "rsc15-64" / "run1", ranks={**RANKS, "stamp@authors": RANKS["pop"]})
    record = json.loads((path / "run.json").read_text())
    record["config"]["stamp@authors"]["algorithm"] = "stamp"
    (path / "run.json").write_text(json.dumps(record))
    render.finalize_run(path, n_boot=50, n_resamples=50)
    table = pd.read_csv(path / "table.csv").set_index("algorithm")
    assert table.loc["stamp@authors", "published_recall@20"] == pytest.approx(0.6874)
    assert table.loc["stamp@authors", "published_mrr@20"] == pytest.approx(0.2967)
    other = next(
        line for line in (path / "table.md").read_text().splitlines() if "Other published" in line
    )
    assert "NARM 0.6832 / 0.2863" in other and "SR-GNN 0.7057" in other and "STAMP" not in other
