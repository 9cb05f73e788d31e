"""The "which GRU4Rec?" table of table.md, from a hand-written run table."""

from __future__ import annotations

import pandas as pd

from benchmark.report.which import which_markdown


def test_which_gru4rec_by_hand():
    table = pd.DataFrame(
        {
            "recall@20": [0.70, 0.50, 0.35, 0.60],
            "mrr@20": [0.30, 0.25, 0.15, 0.27],
            "fit_s": [100.0, 90.0, 30.0, 50.0],
        },  # fmt: skip
        index=["gru4rec", "pop", "gru4rec-tf", "gru4rec-keras@fixed"],
    )
    algorithms = {"gru4rec-keras@fixed": "gru4rec-keras"}
    record = {"config": {"gru4rec-tf": {"params": {"n_epochs": 3}}, "gru4rec": {"params": {}}}}
    text = which_markdown(table, algorithms, record)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[1].split("|")[1].strip() == "gru4rec" and "ref." in lines[1]
    tf = next(line for line in lines if line.startswith("| gru4rec-tf"))
    assert "-50.0%" in tf and "-50.0%" in tf.split("-50.0%", 1)[1]  # recall and mrr both halved
    assert "| 10 " in tf  # 30 s over 3 epochs
    assert "-43.3% / -54.7%" in tf and "in-batch only" in tf
    keras = next(line for line in lines if line.startswith("| gru4rec-keras@fixed"))
    assert "-14.3%" in keras and "-10.0%" in keras and "-6.0% / -11.2%" in keras
    assert "| pop" not in text
    assert which_markdown(table.drop(index=["gru4rec-tf", "gru4rec-keras@fixed"]), {}, {}) is None
    # the epochs a fit really trained win over n_epochs (Keras's --epochs 10 trains 9 passes)
    record["config"]["gru4rec-keras@fixed"] = {"params": {"n_epochs": 10}}
    histories = {
        "gru4rec-keras@fixed": pd.DataFrame({"epoch": range(1, 10), "loss": 1.0}),
        # a history with per-epoch timing is used as it is: 120 s per epoch, not 30 / 3
        "gru4rec-tf": pd.DataFrame({"epoch": [1, 2, 3], "events": 1200, "events_per_s": 10.0}),
    }
    text = which_markdown(table, algorithms, record, histories)
    keras = next(line for line in text.splitlines() if line.startswith("| gru4rec-keras@fixed"))
    assert "| 6 " in keras  # 50 s over 9 passes, not 5 s over 10
    tf = next(line for line in text.splitlines() if line.startswith("| gru4rec-tf"))
    assert "| 120 " in tf
