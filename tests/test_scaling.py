"""benchmark/perf/scaling.py: the slope fit, the skip prediction, resuming, rendering from a
hand-written JSONL, the refused arguments, and one tiny run end to end (no timings asserted)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from benchmark.perf import scaling
from benchmark.perf.baselines_scale import generate

SETUP = {
    "seed": 0,
    "threads": 1,
    "eval_batch_size": 256,
    "tie_mode": "conservative",
    "test_predictions_at_full_scale": 55_898,
}


def stage(algorithm, scale, stage_name, seconds, clicks, status="done", **extra):
    """A stage record as the script writes it (only the fields the readers use)."""
    record = {
        "kind": "stage",
        "algorithm": algorithm,
        "scale": scale,
        "fraction": float(Fraction(scale)),
        "stage": stage_name,
        "setup": SETUP,
        "params": {},
        "status": status,
    }
    if status == "done":
        record.update(
            seconds=seconds,
            cpu_seconds=seconds,
            peak_rss_mb=100.0 + clicks / 1000,
            rss_start_mb=90.0,
            loadavg_before=[0.5, 0.4, 0.3],
            loadavg_after=[0.6, 0.4, 0.3],
            train_clicks=clicks,
        )
    record.update(extra)
    return record


def test_the_slope_of_exact_power_laws_is_recovered():
    n = np.array([1e3, 4e3, 16e3, 64e3])
    slope, coefficient = scaling.fit_power_law(n, 3e-6 * n**1.5)
    assert slope == pytest.approx(1.5, abs=1e-9)
    assert coefficient == pytest.approx(3e-6, rel=1e-9)
    assert scaling.fit_power_law(n, np.full(4, 2.0))[0] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="two different sizes"):
        scaling.fit_power_law([5.0, 5.0], [1.0, 2.0])


def test_a_stage_is_predicted_from_the_two_largest_smaller_scales_and_skipped_over_the_limit():
    # times 2 s, 8 s, 32 s at 1k, 4k, 16k clicks (slope 1) and a bend to slope 2 at the top:
    # the prediction for 64k uses the last two (slope 2), not all three.
    records = [
        stage("a", "1/64", "fit", 2.0, 1_000),
        stage("a", "1/16", "fit", 4.0, 4_000),
        stage("a", "1/4", "fit", 64.0, 16_000),
    ]
    pred = scaling.predict_seconds(records, "a", "fit", 1.0)
    assert pred["predicted_slope"] == pytest.approx(2.0)
    assert pred["predicted_from"] == ["1/16", "1/4"]
    assert pred["predicted_seconds"] == pytest.approx(64.0 * 4**2)  # 64k clicks expected
    assert scaling.over_limit(pred, 1000.0) and not scaling.over_limit(pred, 2000.0)
    # with one smaller scale, or another algorithm's or stage's records, there is no prediction
    assert scaling.predict_seconds(records, "a", "fit", 1 / 16) is None
    assert scaling.predict_seconds(records, "b", "fit", 1.0) is None
    assert scaling.predict_seconds(records, "a", "evaluate", 1.0) is None
    assert not scaling.over_limit(None, 1.0)


def test_a_stage_over_the_limit_is_recorded_as_skipped_with_its_prediction(tmp_path):
    out = tmp_path / "out"
    # pop's fit at 1/32 and 1/16 "took" 100 s and 400 s: 1/8 is predicted at 1,600 s
    lines = [
        stage("pop", "1/32", "fit", 100.0, 10_000),
        stage("pop", "1/32", "evaluate", 1.0, 10_000),
        stage("pop", "1/16", "fit", 400.0, 20_000),
        stage("pop", "1/16", "evaluate", 2.0, 20_000),
    ]
    out.mkdir()
    (out / scaling.JSONL).write_text("".join(json.dumps(r) + "\n" for r in lines))
    argv = ["--scales", "1/32,1/16,1/8", "--algorithms", "pop", "--threads", "1"]
    assert scaling.main([*argv, "--out-dir", str(out), "--time-limit", "1000"]) == 0
    last = scaling.latest(scaling.read_records(out / scaling.JSONL))
    fit, ev = last[("pop", "1/8", "fit")], last[("pop", "1/8", "evaluate")]
    assert fit["status"] == "skipped" and fit["predicted_seconds"] == pytest.approx(1600.0)
    assert fit["limit_seconds"] == 1000.0 and fit["train_clicks_expected"] == 40_000
    assert ev["status"] == "skipped" and ev["reason"] == "its fit was skipped"
    assert "skipped (≈1,600 predicted)" in (out / scaling.TABLE).read_text()


def test_a_second_call_runs_nothing_that_is_done(tmp_path, monkeypatch):
    argv = ["--scales", "1/20000", "--algorithms", "pop,markov", "--threads", "1"]
    argv += ["--out-dir", str(tmp_path)]
    assert scaling.main(argv) == 0
    first = scaling.read_records(tmp_path / scaling.JSONL)
    assert [r["status"] for r in first if r["kind"] == "stage"] == ["done"] * 4

    def no_work(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(scaling, "make_data", no_work)
    monkeypatch.setattr(scaling, "run_stage", no_work)
    assert scaling.main(argv) == 0
    second = scaling.read_records(tmp_path / scaling.JSONL)
    assert second[: len(first)] == first
    assert [r["kind"] for r in second[len(first) :]] == ["run"]  # only the invocation's line
    # another setup is refused, naming the options
    assert scaling.main([*argv, "--seed", "1"]) == 2


def test_the_smoke_run_records_the_exact_training_and_test_counts(tmp_path):
    argv = ["--scales", "1/20000,1/10000", "--algorithms", "pop,markov", "--threads", "1"]
    assert scaling.main([*argv, "--out-dir", str(tmp_path)]) == 0
    records = [r for r in scaling.read_records(tmp_path / scaling.JSONL) if r["kind"] == "stage"]
    assert len(records) == 2 * 2 * 2
    for scale in (Fraction(1, 20000), Fraction(1, 10000)):
        train, test = generate(float(scale), 0, test_predictions=round(55_898 * scale))
        mine = [r for r in records if r["scale"] == str(scale)]
        assert {r["train_clicks"] for r in mine} == {train.n_events}
        assert {r["train_sessions"] for r in mine} == {train.n_sessions}
        assert {r["test_predictions"] for r in mine} == {test.n_predictions}
        assert {r["n_items"] for r in mine} == {train.stats()["items"]}  # its own vocabulary
    assert train.n_sessions == round(7_966_257 / 10000)
    for r in records:
        assert r["status"] == "done" and r["setup"]["threads"] == 1
        assert r["seconds"] >= 0 and r["peak_rss_mb"] > 0 and len(r["loadavg_after"]) == 3
        if r["stage"] == "evaluate":
            assert r["predictions"] == r["test_predictions"]
    assert (tmp_path / scaling.TABLE).exists() and (tmp_path / scaling.PLOT).exists()


def test_table_and_plot_are_rendered_from_a_hand_written_jsonl(tmp_path):
    lines = [
        {
            "kind": "run",
            "command": "python -m benchmark.perf.scaling",
            "when": "t0",
            "cpus": 2,
            "platform": "test",
            "loadavg": [0.1, 0.1, 0.1],
        }
    ]
    # "slow": fit 1e-6 * n ** 1.5, evaluation 1e-4 * n: total slope between 1 and 1.5
    for scale, n in (("1/256", 10_000), ("1/64", 40_000), ("1/16", 160_000)):
        lines.append(stage("slow", scale, "fit", 1e-6 * n**1.5, n))
        lines.append(stage("slow", scale, "evaluate", 1e-4 * n, n))
        lines.append(stage("flat", scale, "fit", 5.0, n))
        lines.append(stage("flat", scale, "evaluate", 5.0, n))
    lines.append(
        stage(
            "slow",
            "1/4",
            "fit",
            None,
            0,
            status="skipped",
            predicted_seconds=4096.0,
            train_clicks_expected=640_000,
        )
    )
    lines.append(
        stage("gru", "1/256", "fit", 10.0, 10_000, events_per_s=750.0, epochs_in_config=10)
    )
    lines.append(stage("gru", "1/256", "evaluate", 1.0, 10_000))
    lines.append(stage("gru", "1/64", "fit", 40.0, 40_000, epochs_in_config=10))
    lines.append(stage("gru", "1/64", "evaluate", 4.0, 40_000))
    (tmp_path / scaling.JSONL).write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert scaling.main(["--render-only", "--out-dir", str(tmp_path)]) == 0
    table = (tmp_path / scaling.TABLE).read_text()
    costs = table.split("1-minute load")[0].splitlines()  # the first table, not the loads'
    rows = {line.split(" | ")[0][2:]: line for line in costs if line.startswith("| ")}
    assert "1/256 (10,000 clicks)" in table and "1/4 (≈640,000 clicks)" in table
    assert "| 1.50 / 1.00 / " in rows["slow"]
    assert "skipped (≈4,096 predicted)" in rows["slow"]
    assert "| 0.00 / 0.00 / 0.00 | 10.0 s |" in rows["flat"]
    assert "10.0 (750 ev/s) / 1.00, 110 MB" in rows["gru"]
    # gru: 11 s at 10k, 44 s at 40k: slope 1, so 11 s * 3,163.7239 at full RSC15
    assert "| 1.00 / 1.00 / 1.00 | 34,801 s (9.7 h) |" in rows["gru"]
    assert "gru: the estimate is one epoch; the config's 10 epochs" in table
    assert "Runs that wrote the file" in table and "0.5→0.6" in table
    assert (tmp_path / scaling.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_only_without_a_jsonl_is_an_error(tmp_path, capsys):
    assert scaling.main(["--render-only", "--out-dir", str(tmp_path)]) == 2
    assert "--render-only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--scales", "0"], "--scales"),
        (["--scales", "1/0"], "--scales"),
        (["--scales", "2"], "--scales"),
        (["--scales", "1/4,abc"], "--scales"),
        (["--scales", "1/4,0.25"], "--scales"),
        (["--algorithms", "pop,nope"], "--algorithms"),
        (["--algorithms", ","], "--algorithms"),
        (["--threads", "0"], "--threads"),
        (["--time-limit", "0"], "--time-limit"),
    ],
)
def test_bad_arguments_are_refused_naming_the_option(tmp_path, capsys, args, option):
    with pytest.raises(SystemExit) as exc:
        scaling.main([*args, "--out-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / scaling.JSONL).exists()


def test_a_torn_last_line_is_ignored_and_a_broken_one_is_an_error(tmp_path, capsys):
    path = tmp_path / scaling.JSONL
    good = json.dumps(stage("pop", "1/64", "fit", 1.0, 1_000))
    path.write_text(good + "\n" + good[:20])  # killed while appending
    assert len(scaling.read_records(path)) == 1
    path.write_text(good[:20] + "\n" + good + "\n")
    assert scaling.main(["--render-only", "--out-dir", str(tmp_path)]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
