"""The raw RSC15 reader, each GRU4Rec preprocessing rule, the time split, the cache and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasets import rsc15
from datasets.clicks import MICROS, Clicks, encode_items, sort_clicks, vocabulary
from datasets.errors import DataError, MissingDataError
from datasets.synthetic import ClickModel, generate_clicks, make_catalogue

T0 = 1_396_310_400 * MICROS  # 2014-04-01T00:00:00Z in microseconds
DAY = 86_400 * MICROS
SAMPLE = "rsc15-sample/yoochoose-clicks-sample.dat"


def clicks_of(rows: list[tuple[int, int, int]]) -> Clicks:
    """Clicks from (session, time in µs, item) rows."""
    s, t, i = zip(*rows) if rows else ((), (), ())
    return Clicks(np.array(s, np.int64), np.array(t, np.int64), np.array(i, np.int64))


def sessions_of(clicks: Clicks) -> dict[int, list[int]]:
    """session id -> its item ids in order (clicks must be grouped)."""
    out: dict[int, list[int]] = {}
    for s, i in zip(clicks.session_id.tolist(), clicks.item_id.tolist()):
        out.setdefault(s, []).append(i)
    return out


def write_raw(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def iso(us: int) -> str:
    return pd.Timestamp(us, unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- reading ----------------------------------------------------------------------------------


def test_read_clicks_parses_the_raw_format(tmp_path):
    path = write_raw(
        tmp_path / "c.dat",
        [
            "832,2014-04-06T20:21:58.444Z,214717095,0",
            "833,2014-04-02T17:51:21.363Z,214826803,S",
        ],
    )
    clicks = rsc15.read_clicks(path)
    assert clicks.session_id.tolist() == [832, 833]
    assert clicks.item_id.tolist() == [214717095, 214826803]
    expected = pd.Timestamp("2014-04-06T20:21:58.444Z").value // 1000  # ns -> µs
    assert clicks.time[0] == expected


def test_real_sample_gives_a_tiny_dataset(shared_data, tmp_path):
    """The 1,913-row sample survives the rules as a tiny but complete dataset.

    Counts cross-checked with an independent pandas implementation (reference() below).
    """
    data = rsc15.load_rsc15(shared_data / SAMPLE, cache_dir=tmp_path)
    counts = data.split_counts()
    assert (counts["train"]["events"], counts["train"]["sessions"], counts["train"]["items"]) == (
        515,
        158,
        90,
    )
    assert (counts["test"]["events"], counts["test"]["sessions"]) == (76, 25)
    assert (counts["train_tr"]["events"], counts["train_tr"]["sessions"]) == (378, 116)
    assert (counts["valid"]["events"], counts["valid"]["sessions"]) == (92, 32)
    assert counts["test"]["unseen_targets"] == 0
    assert data.n_items == 90 and len(data.item_ids) == 90
    assert np.all(np.diff(data.item_ids) > 0)


# --- the rules, one by one --------------------------------------------------------------------


def test_rule1_drops_sessions_of_length_one():
    clicks = clicks_of(
        [(1, 0, 10), (2, 1, 10), (2, 2, 11), (3, 3, 12), (3, 4, 12), (3, 5, 13), (4, 6, 14)]
    )
    out = rsc15.drop_short_sessions(clicks, 2)
    assert sessions_of(out) == {2: [10, 11], 3: [12, 12, 13]}


def test_rule2_counts_support_on_all_remaining_clicks():
    # item 10: 5 clicks over three sessions (kept); item 11: 4 clicks (dropped); repeats count.
    rows = [
        (1, 0, 10),
        (1, 1, 10),
        (1, 2, 11),
        (2, 3, 10),
        (2, 4, 11),
        (2, 5, 11),
        (3, 6, 10),
        (3, 7, 10),
        (3, 8, 11),
    ]
    out = rsc15.drop_rare_items(clicks_of(rows), 5)
    assert sessions_of(out) == {1: [10, 10], 2: [10], 3: [10, 10]}
    assert len(out) == 5


def test_rules_1_to_3_one_pass_each_in_order_not_iterated():
    # Session 9 (length 1) goes in rule 1, taking one click of item 20 with it, so item 20 has
    # 4 clicks at rule 2 and is dropped. Session 2 then has 1 click and goes in rule 3, which
    # leaves item 30 with 4 clicks: not dropped again (one pass, not iterated).
    rows = [(9, 0, 20)]
    rows += [(1, 1, 20), (1, 2, 20), (1, 3, 30), (1, 4, 30)]
    rows += [(2, 5, 20), (2, 6, 30)]
    rows += [(3, 7, 20), (3, 8, 30), (3, 9, 30)]
    out = rsc15.filter_clicks(sort_clicks(clicks_of(rows)))
    assert sessions_of(out) == {1: [30, 30], 3: [30, 30]}
    assert int(np.sum(out.item_id == 30)) == 4  # below 5, kept: rule 2 is not re-applied


def test_split_boundary_is_inclusive_at_tmax_minus_86400s():
    tmax = T0 + 10 * DAY
    rows = [
        (1, tmax - DAY - 5000, 1),
        (1, tmax - DAY, 2),  # last click exactly at boundary
        (2, tmax - DAY - 5000, 1),
        (2, tmax - DAY - 1000, 2),  # last click 1 ms before
        (3, tmax - 2 * DAY, 1),
        (3, tmax, 2),  # spans the boundary: whole in test
    ]
    train, test = rsc15.split_by_time(sort_clicks(clicks_of(rows)))
    assert sorted(sessions_of(train)) == [2]
    assert sorted(sessions_of(test)) == [1, 3]
    assert sessions_of(test)[3] == [1, 2]  # never cut in two


def test_rule5_drops_unknown_test_items_then_short_sessions():
    test = clicks_of(
        [(1, 0, 1), (1, 1, 99), (1, 2, 2), (2, 3, 1), (2, 4, 99), (3, 5, 99), (3, 6, 98)]
    )
    out = rsc15.drop_unknown_items(test, np.array([1, 2]))
    assert sessions_of(out) == {1: [1, 2]}


def test_sessions_ordered_by_first_click_ties_by_id_and_clicks_stable_by_time():
    rows = [(7, 50, 1), (7, 10, 2), (5, 30, 3), (3, 30, 4), (3, 31, 5), (7, 10, 6)]
    out = sort_clicks(clicks_of(rows))
    assert out.session_id.tolist() == [7, 7, 7, 3, 3, 5]
    assert out.item_id.tolist() == [2, 6, 1, 4, 5, 3]  # 7's two clicks at t=10 keep file order


def test_preprocess_splits_train_tr_and_valid_like_train_and_test():
    rows = []
    for s in range(40):  # 40 sessions of 3 clicks, one session per 6 hours over 10 days
        start = T0 + s * DAY // 4
        rows += [(s, start, s % 4), (s, start + 1000, (s + 1) % 4), (s, start + 2000, s % 4)]
    # (times in µs: the clicks of a session are 1 ms apart)
    splits = rsc15.preprocess(clicks_of(rows))
    counts = splits.counts()
    # tmax = start(39) + 2 ms, so the window starts at start(35) + 2 ms: session 35's last
    # click is exactly on the boundary. Test = sessions 35..39; likewise valid = 30..34.
    assert counts["test"] == {"events": 15, "sessions": 5}
    assert counts["train"] == {"events": 105, "sessions": 35}
    assert counts["valid"] == {"events": 15, "sessions": 5}
    assert counts["train_tr"] == {"events": 90, "sessions": 30}
    assert len(splits.train_tr) == 90
    assert sorted(set(splits.valid.session_id.tolist())) == [30, 31, 32, 33, 34]


def test_train_tr_flags_follow_the_final_session_order():
    """Regression: rule 2 can remove a session's first click and so reorder train; the
    train_tr flags must index the reordered sessions."""
    hour = 3600 * MICROS
    rows = [
        (1, T0 + 9 * hour, 666),  # Q: rare first click ...
        (1, T0 + 2 * DAY, 7),
        (1, T0 + 2 * DAY + 1000, 7),  # ... then two days later
        (2, T0 + 10 * hour, 7),
        (2, T0 + 10 * hour + 1000, 7),  # P: train_tr
        (3, T0 + 4 * DAY, 7),
        (3, T0 + 4 * DAY + 1000, 7),  # test
    ]
    splits = rsc15.preprocess(clicks_of(rows))
    assert list(sessions_of(splits.train)) == [2, 1]  # Q now starts after P
    assert list(sessions_of(splits.train_tr)) == [2]
    assert list(sessions_of(splits.valid)) == [1]
    assert list(sessions_of(splits.test)) == [3]
    data = rsc15.splits_to_dataset(splits, name="x", source={})
    assert data.valid_train.session_ids.tolist() == [2]


def test_too_short_a_span_is_a_data_error_naming_the_source():
    rows = [(s, T0 + s * 1000 + k, k % 2) for s in range(10) for k in range(3)]
    with pytest.raises(DataError, match=r"my-file.*train split is empty"):
        rsc15.preprocess(clicks_of(rows), source="my-file")


# --- against an independent reference implementation ------------------------------------------


def reference(frame: pd.DataFrame) -> dict[str, dict[int, list[int]]]:
    """The rules written the obvious way in pandas (slow, but easy to check by eye)."""
    df = frame.copy()
    df = df[df.session_id.map(df.groupby("session_id").size()) > 1]
    df = df[df.item_id.map(df.groupby("item_id").size()) >= 5]
    df = df[df.session_id.map(df.groupby("session_id").size()) >= 2]

    def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        last = df.groupby("session_id").time.max()
        test_ids = last.index[last >= df.time.max() - DAY]
        train, test = df[~df.session_id.isin(test_ids)], df[df.session_id.isin(test_ids)]
        test = test[test.item_id.isin(train.item_id.unique())]
        test = test[test.session_id.map(test.groupby("session_id").size()) >= 2]
        return train, test

    train, test = split(df)
    train_tr, valid = split(train)

    def ordered(df: pd.DataFrame) -> dict[int, list[int]]:
        df = df.assign(first=df.session_id.map(df.groupby("session_id").time.min()))
        df = df.sort_values(["first", "session_id", "time"], kind="stable")
        return {s: g.item_id.tolist() for s, g in df.groupby("session_id", sort=False)}

    return {
        "train": ordered(train),
        "test": ordered(test),
        "train_tr": ordered(train_tr),
        "valid": ordered(valid),
    }


def test_matches_the_reference_on_shuffled_synthetic_clicks():
    rng = np.random.default_rng(3)
    model = ClickModel(n_items=300, n_clusters=10)
    clicks, _ = generate_clicks(make_catalogue(model, rng), model, np.full(4, 400), rng)
    order = rng.permutation(len(clicks))  # the reader must not rely on file order
    frame = pd.DataFrame(
        {"session_id": clicks.session_id, "time": clicks.time, "item_id": clicks.item_id}
    ).iloc[order]
    splits = rsc15.preprocess(clicks.take(order))
    expected = reference(frame)
    for name in ("train", "test", "train_tr", "valid"):
        got = getattr(splits, name)
        got = Clicks(got.session_id, got.time, splits.item_ids[got.item_id])
        assert list(sessions_of(got).items()) == list(expected[name].items()), name


def test_matches_the_reference_on_the_real_sample(shared_data):
    path = shared_data / SAMPLE
    clicks = rsc15.read_clicks(path)
    frame = pd.DataFrame(
        {"session_id": clicks.session_id, "time": clicks.time, "item_id": clicks.item_id}
    )
    data = rsc15.load_rsc15(path, cache_dir=None)
    expected = reference(frame)
    assert list(data.test.session_ids) == list(expected["test"])
    got_test = [data.item_ids[data.test.session(s)].tolist() for s in range(data.test.n_sessions)]
    assert got_test == list(expected["test"].values())
    assert list(data.valid_test.session_ids) == list(expected["valid"])
    assert list(data.valid_train.session_ids) == list(expected["train_tr"])


# --- the cache --------------------------------------------------------------------------------


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    path = write_sample_like(tmp_path / "clicks.dat")
    first = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")
    assert first.source["cache"] == "miss"

    def fail(*args, **kwargs):
        raise AssertionError("preprocessing ran although the cache was there")

    monkeypatch.setattr(rsc15, "preprocess", fail)
    second = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")
    assert second.source["cache"] == "hit"
    assert second.fingerprint() == first.fingerprint()
    assert second.split_counts() == first.split_counts()
    np.testing.assert_array_equal(second.item_ids, first.item_ids)
    np.testing.assert_array_equal(second.train.times, first.train.times)
    np.testing.assert_array_equal(second.valid_train.session_ids, first.valid_train.session_ids)
    meta = json.loads(next((tmp_path / "cache" / "rsc15").glob("*/meta.json")).read_text())
    assert meta["rules_version"] == rsc15.RULES_VERSION


@pytest.mark.parametrize(
    ("damage", "culprit"),
    [
        (
            lambda d: (d / "train.parquet").write_bytes((d / "train.parquet").read_bytes()[:40]),
            "train.parquet",
        ),
        (lambda d: (d / "test_sessions.parquet").unlink(), "test_sessions.parquet"),
        (lambda d: (d / "items.parquet").write_bytes(b"garbage"), "items.parquet"),
        (lambda d: _miscount(d / "meta.json"), "train.parquet: cached train split holds"),
    ],
    ids=["truncated", "missing", "garbage", "inconsistent"],
)
def test_a_damaged_cache_entry_is_reported_and_rebuilt(tmp_path, caplog, damage, culprit):
    path = write_sample_like(tmp_path / "clicks.dat")
    first = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache" / "rsc15").iterdir()
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="datasets.rsc15"):
        again = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")
    assert again.source["cache"] == "miss"  # prepared anew ...
    assert again.fingerprint() == first.fingerprint()
    (warning,) = [r.getMessage() for r in caplog.records]
    assert culprit in warning and str(entry) in warning
    third = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")  # ... and cached again
    assert third.source["cache"] == "hit" and third.fingerprint() == first.fingerprint()


def _miscount(meta: Path) -> None:
    """meta.json claims one training click: the entry no longer matches its own files."""
    record = json.loads(meta.read_text())
    record["counts"]["train"][0] = 1
    meta.write_text(json.dumps(record))


def test_cache_key_follows_the_file_content(tmp_path):
    path = write_sample_like(tmp_path / "clicks.dat")
    key1 = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache").source["cache_key"]
    with open(path, "a") as f:
        f.write("999999,2014-04-01T00:00:00.000Z,1,0\n")
    data = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")
    assert data.source["cache_key"] != key1 and data.source["cache"] == "miss"
    assert data.source["files"][0]["size"] == path.stat().st_size


def write_sample_like(path: Path) -> Path:
    """A small raw file: 3 days of synthetic clicks."""
    rng = np.random.default_rng(0)
    model = ClickModel(n_items=200, n_clusters=5)
    clicks, _ = generate_clicks(make_catalogue(model, rng), model, np.full(3, 200), rng)
    lines = [
        f"{s},{iso(t)},{i},0"
        for s, t, i in zip(
            clicks.session_id.tolist(), clicks.time.tolist(), clicks.item_id.tolist()
        )
    ]
    return write_raw(path, lines)


# --- bad input --------------------------------------------------------------------------------


def test_missing_file_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(MissingDataError) as err:
        rsc15.load_rsc15(tmp_path / "rsc15" / "yoochoose-clicks.dat", cache_dir=tmp_path)
    message = str(err.value)
    assert "RecSys Challenge 2015" in message and "1,486,798,186 bytes" in message
    assert rsc15.OFFICIAL_SHA256 in message
    assert "<data-dir>/rsc15/yoochoose-clicks.dat" in message and "--clicks" in message


def test_empty_file_is_a_data_error(tmp_path):
    path = write_raw(tmp_path / "empty.dat", [])
    with pytest.raises(DataError, match=r"empty\.dat: empty file"):
        rsc15.read_clicks(path)


GOOD = "1,2014-04-01T10:00:00.000Z,5,0"


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("2,2014-04-01T10:00:01.000Z,5", "Expected 4 columns, got 3"),
        ("2,2014-04-01T10:00:01.000Z,5,0,7", "Expected 4 columns, got 5"),
        ("2,2014-13-01T10:00:01.000Z,5,0", "invalid value '2014-13-01"),
        ("2,yesterday,5,0", "invalid value 'yesterday'"),
        ("x2,2014-04-01T10:00:01.000Z,5,0", "invalid value 'x2'"),
        ("2,2014-04-01T10:00:01.000Z,,0", "invalid value ''"),
    ],
)
def test_bad_row_error_names_file_and_line(tmp_path, bad, what):
    path = write_raw(tmp_path / "bad.dat", [GOOD, GOOD, "", GOOD, bad, GOOD])
    with pytest.raises(DataError) as err:
        rsc15.read_clicks(path)
    assert f"{path}, line 5:" in str(err.value)  # physical line, blank line counted
    assert what in str(err.value)


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("1,nope,5,0", r"column 'Timestamp': invalid value 'nope'"),
        ("x1,%s,5,0", r"column 'SessionId'.*'x1'"),
    ],
)
def test_bad_row_is_found_beyond_the_first_block(tmp_path, monkeypatch, bad, what):
    from datasets import clicks as clicks_module
    from datasets import eventlog

    real = clicks_module.locate_bad_line
    monkeypatch.setattr(
        eventlog,
        "locate_bad_line",
        lambda path, parse, skip_lines=0: real(path, parse, skip_lines=skip_lines, block_lines=7),
    )
    bad = bad.replace("%s", "2014-04-01T10:00:00.000Z")
    path = write_raw(tmp_path / "bad.dat", [GOOD] * 40 + [bad] + [GOOD] * 5)
    with pytest.raises(DataError, match=rf"bad\.dat, line 41: {what}"):
        rsc15.read_clicks(path)


def test_encode_items_keeps_id_order():
    clicks = clicks_of([(1, 0, 500), (1, 1, 7), (2, 2, 500), (2, 3, 90)])
    coded, ids = encode_items(clicks)
    assert ids.tolist() == [7, 90, 500]
    assert coded.item_id.tolist() == [2, 0, 2, 1]
    assert vocabulary(coded.item_id).tolist() == [0, 1, 2]


@pytest.mark.slow
def test_matches_the_reference_end_to_end_on_a_generated_raw_file(tmp_path):
    """File -> Dataset against pandas parsing + the pandas reference (~165k clicks)."""
    from datasets.generate_rsc15 import generate

    path = generate(tmp_path / "clicks.dat", fraction=0.005, seed=11, progress=False).path
    frame = pd.read_csv(
        path, header=None, names=["session_id", "time", "item_id", "category"], usecols=[0, 1, 2]
    )
    frame["time"] = (
        pd.to_datetime(frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")
    ) // pd.Timedelta(microseconds=1)
    expected = reference(frame)
    data = rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")
    parts = {
        "train": data.train,
        "test": data.test,
        "train_tr": data.valid_train,
        "valid": data.valid_test,
    }
    for name, sessions in parts.items():
        got = {
            int(sessions.session_ids[s]): data.item_ids[sessions.session(s)].tolist()
            for s in range(sessions.n_sessions)
        }
        assert list(got.items()) == list(expected[name].items()), name


def test_official_file_must_give_the_published_counts(tmp_path, monkeypatch):
    # Pretend the sample-like file is the official one: its own counts pass, a published count
    # that differs stops the load with both numbers, also when the splits come from the cache.
    path = write_sample_like(tmp_path / "clicks.dat")
    fresh = rsc15.load_rsc15(path, cache_dir=None)
    monkeypatch.setattr(rsc15, "OFFICIAL_SHA256", rsc15.file_sha256(path))
    true = {
        split: {k: v for k, v in values.items() if k != "unseen_targets"}
        for split, values in fresh.split_counts().items()
    }
    monkeypatch.setattr(rsc15, "OFFICIAL_COUNTS", true)
    rsc15.load_rsc15(path, cache_dir=tmp_path / "cache")  # passes, and fills the cache
    wrong = {**true, "test": {**true["test"], "events": true["test"]["events"] + 1}}
    monkeypatch.setattr(rsc15, "OFFICIAL_COUNTS", wrong)
    for cache_dir in (None, tmp_path / "cache"):
        with pytest.raises(
            DataError,
            match=rf"official.*test events: {true['test']['events']} "
            rf"\(published {true['test']['events'] + 1:,}\)",
        ):
            rsc15.load_rsc15(path, cache_dir=cache_dir)
