"""The simulated raw RSC15 file: format, shape at a tiny fraction, determinism."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from datasets import rsc15
from datasets.generate_rsc15 import RSC15_SESSIONS, format_timestamps, generate, main

LINE = re.compile(r"^\d+,\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z,\d+,0$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "yoochoose-clicks.dat"
    summary = generate(out, fraction=0.002, seed=5, progress=False)
    return out, summary


def test_format_timestamps_matches_iso_8601_with_milliseconds():
    stamps = [
        "2014-04-06T20:21:58.444Z",
        "2014-09-30T23:59:59.999Z",
        "1970-01-01T00:00:00.000Z",
        "2014-04-01T00:00:00.007Z",
    ]
    us = np.array([pd.Timestamp(s).value // 1000 for s in stamps])
    assert format_timestamps(us).to_pylist() == stamps
    assert format_timestamps(np.zeros(0, dtype=np.int64)).to_pylist() == []


def test_output_is_the_raw_format(tiny):
    out, summary = tiny
    with open(out) as f:
        head = [next(f).rstrip("\n") for _ in range(200)]
    assert all(LINE.match(line) for line in head), head[:3]
    clicks = rsc15.read_clicks(out)
    assert len(clicks) == summary.clicks
    assert summary.bytes == out.stat().st_size


def test_shape_at_a_tiny_fraction(tiny):
    out, summary = tiny
    clicks = rsc15.read_clicks(out)
    assert summary.sessions == round(RSC15_SESSIONS * 0.002)
    assert abs(summary.clicks / summary.sessions - 3.57) < 0.1
    ids = clicks.session_id
    assert np.all(np.diff(ids) >= 0) and ids[0] == 1 and ids[-1] == summary.sessions
    lengths = np.bincount(ids)[1:]
    assert abs((lengths == 1).mean() - 0.13) < 0.02
    days = pd.to_datetime(clicks.time, unit="us").normalize()
    assert days.min() == pd.Timestamp("2014-04-01") and days.max() >= pd.Timestamp("2014-09-30")
    daily = pd.Series(1, index=days).groupby(level=0).size()
    assert daily.iloc[:30].mean() > 3 * daily.iloc[-30:].mean()  # the volume declines


def test_file_order_and_preprocessing(tiny, tmp_path):
    out, summary = tiny
    clicks = rsc15.read_clicks(out)
    same = clicks.session_id[1:] == clicks.session_id[:-1]
    assert np.all(np.diff(clicks.time)[same] > 0)  # clicks of a session in time order
    data = rsc15.load_rsc15(out, cache_dir=tmp_path)
    counts = data.split_counts()
    # Length-1 sessions (13%) go, and at this size many items fall under the support filter.
    assert 0.7 * summary.sessions < counts["train"]["sessions"] < 0.87 * summary.sessions
    assert 15 <= counts["test"]["sessions"] <= 60  # ~15,324 x 0.002 = 31


def test_seeded(tiny, tmp_path):
    out, summary = tiny
    again = generate(tmp_path / "again.dat", fraction=0.002, seed=5, progress=False)
    assert again.path.read_bytes() == out.read_bytes()
    other = generate(tmp_path / "other.dat", fraction=0.002, seed=6, progress=False)
    assert other.path.read_bytes() != out.read_bytes()


def test_cli_rejects_bad_fraction(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x.dat"), "--fraction", "0"])
    assert "--fraction" in capsys.readouterr().err
