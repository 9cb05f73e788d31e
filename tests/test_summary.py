"""``python -m benchmark.report summary`` on a hand-written results tree: the right runs, the
best cells in bold, GRU4Rec's ranks, and the files it writes."""

from __future__ import annotations

import pandas as pd

from benchmark.report import summary


def _run(root, dataset, run_id, rows):
    run = root / dataset / run_id
    run.mkdir(parents=True)
    pd.DataFrame(rows, columns=["algorithm", "recall@20", "mrr@20"]).to_csv(
        run / "table.csv", index=False
    )


def test_summary_by_hand(tmp_path):
    root = tmp_path / "results"
    _run(root, "rsc15-64", "20260101-000000-aaaa", [("pop", 0.9, 0.9)])  # older: ignored
    _run(root, "rsc15-64", "20260102-000000-bbbb",
         [("pop", 0.10, 0.02), ("gru4rec", 0.70, 0.30), ("vsknn", 0.69, 0.31)])  # fmt: skip
    _run(root, "tmall", "20260103-000000-cccc",
         [("pop", 0.01, 0.00), ("spop", 0.45, 0.22), ("gru4rec", 0.18, 0.11),
          ("gru4rec-keras", 0.50, 0.05)])  # fmt: skip
    (root / "tune").mkdir()  # not a dataset
    out = summary.write_summary(root, tmp_path / "out")
    text = (out / "answer.md").read_text()
    assert "| gru4rec       | **0.7000** / 0.3000 | 0.1800 / 0.1100" in text
    assert "| vsknn         | 0.6900 / **0.3100** | –" in text
    assert "| gru4rec-keras | –                   | **0.5000** / 0.0500" in text
    # ranks among each dataset's rows; the third-party variant gets no rank row
    assert "| gru4rec | 1 / 2 of 3 | 3 / 2 of 4 |" in text
    assert "| gru4rec-keras |" not in text.split("GRU4Rec's rank")[1]
    frame = pd.read_csv(out / "answer.csv")
    assert len(frame) == 2 * (3 + 4) and set(frame["run"]) == {
        "20260102-000000-bbbb",
        "20260103-000000-cccc",
    }
    assert (out / "heatmap.png").stat().st_size > 1000
