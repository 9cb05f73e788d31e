"""Users' own event logs (``--dataset FILE.csv|.tsv|.parquet``): tiny hand-written logs whose
sessions, gap cuts, drops and split dates are obvious, and the raw-RSC15-vs-renamed-CSV identity."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasets import eventlog, rsc15
from datasets.eventlog import EventLogOptions, load_eventlog, read_events

T0 = 1_396_310_400  # 2014-04-01T00:00:00Z
DAY, MIN = 86_400, 60


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sessions(data_part, item_ids) -> dict[int, list[int]]:
    return {
        int(data_part.session_ids[s]): item_ids[data_part.session(s)].tolist()
        for s in range(data_part.n_sessions)
    }


# A shop's log: day 0 and day 2 train, day 4 test (so every boundary is far from every click).
# Session 1 has an exact duplicate row, session 6 one click, row 'x' a missing item; in session
# 4 item 99 is unknown to training, session 5 only has unknown items.
LOG = [
    (1, 10, T0),
    (1, 11, T0 + MIN),
    (1, 11, T0 + MIN),  # exact duplicate: kept, counted
    (2, 10, T0 + 2 * MIN),
    (2, 12, T0 + 3 * MIN),
    (6, 10, T0 + 4 * MIN),  # length 1: rule 1
    (3, 11, T0 + 2 * DAY),
    (3, 12, T0 + 2 * DAY + MIN),
    (4, 10, T0 + 4 * DAY),
    (4, 99, T0 + 4 * DAY + MIN),  # unknown in train: rule 5
    (4, 11, T0 + 4 * DAY + 2 * MIN),
    (5, 98, T0 + 4 * DAY + 3 * MIN),
    (5, 97, T0 + 4 * DAY + 4 * MIN),
]


def shop_csv(path: Path, *, sep: str = ",", unit: int = 1000) -> Path:
    lines = [sep.join(("session_id", "item_id", "timestamp"))]
    lines += [sep.join(map(str, (s, i, t * unit))) for s, i, t in LOG]
    lines.insert(4, sep.join(("7", "", str(T0 * unit))))  # missing item: dropped
    return write(path, "\n".join(lines) + "\n")


ONE = EventLogOptions(min_item_support=1)


def test_a_small_log_gives_the_obvious_splits(tmp_path, caplog):
    path = shop_csv(tmp_path / "shop.csv")
    with caplog.at_level(logging.INFO):
        data = load_eventlog(path, ONE, cache_dir=tmp_path / "cache", name="shop")
    ids = data.item_ids
    assert sessions(data.train, ids) == {1: [10, 11, 11], 2: [10, 12], 3: [11, 12]}
    assert sessions(data.test, ids) == {4: [10, 11]}
    assert sessions(data.valid_train, ids) == {1: [10, 11, 11], 2: [10, 12]}
    assert sessions(data.valid_test, ids) == {3: [11, 12]}
    text = caplog.text
    assert "rows read: 14" in text
    assert "time: ms (detected from numbers around" in text
    assert "dropped 1 rows with a missing value (1 in column 'item_id')" in text
    assert "kept 1 exact duplicate events" in text
    assert "1 sessions (1 events) shorter than 2" in text
    assert (
        "dropped 3 test events on items not in train, then 1 test sessions left with fewer than 2 events"
        in text
    )
    assert (
        "train: 7 events, 3 sessions, 3 items, 2014-04-01 00:00:00 .. 2014-04-03 00:01:00 UTC"
        in text
    )
    assert (
        "test: 2 events, 1 sessions, 2 items, 2014-04-05 00:00:00 .. 2014-04-05 00:02:00 UTC"
        in text
    )
    assert data.source["options"]["min_item_support"] == 1 and data.source["cache"] == "miss"
    again = load_eventlog(path, ONE, cache_dir=tmp_path / "cache", name="shop")
    assert again.source["cache"] == "hit" and again.fingerprint() == data.fingerprint()


def test_the_cache_key_holds_every_option(tmp_path):
    path = shop_csv(tmp_path / "shop.csv")
    keys = {
        load_eventlog(path, options, cache_dir=tmp_path / "c").source["cache_key"]
        for options in (ONE, EventLogOptions(min_item_support=1, test_days=1.5))
    }
    assert len(keys) == 2 and len(list((tmp_path / "c" / "events").iterdir())) == 2


def test_item_support_filter_is_applied(tmp_path):
    # with the default support 5 nothing survives: a clear error, no cache entry
    from datasets.errors import DataError

    path = shop_csv(tmp_path / "shop.csv")
    with pytest.raises(
        DataError, match=r"shop\.csv: nothing is left after the filters.*fewer than 5"
    ):
        load_eventlog(path, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("meta.json"))


@pytest.mark.parametrize(
    ("name", "sep", "unit", "time_unit"),
    [
        ("shop.tsv", "\t", 1, None),
        ("shop.csv.gz", ",", 1_000_000, None),
        ("shop.csv", ",", 1_000_000_000, "ns"),
    ],
)
def test_tsv_gzip_and_units_give_the_same_dataset(tmp_path, name, sep, unit, time_unit):
    reference = load_eventlog(shop_csv(tmp_path / "ref.csv"), ONE, cache_dir=None)
    path = shop_csv(tmp_path / "plain", sep=sep, unit=unit)
    if name.endswith(".gz"):
        (tmp_path / name).write_bytes(gzip.compress(path.read_bytes()))
    else:
        path.rename(tmp_path / name)
    options = EventLogOptions(min_item_support=1, time_unit=time_unit)
    data = load_eventlog(tmp_path / name, options, cache_dir=None)
    assert data.fingerprint() == reference.fingerprint()
    np.testing.assert_array_equal(data.train.times, reference.train.times)


def test_iso_times_with_and_without_a_zone(tmp_path):
    path = write(
        tmp_path / "iso.csv",
        "session_id,item_id,timestamp\n"
        "1,5,2014-04-01T10:00:00Z\n1,6,2014-04-01 12:00:01\n2,5,2014-04-01T10:00:00+02:00\n",
    )
    clicks, report = read_events(path, eventlog.CSV_FORMAT, EventLogOptions())
    assert report.time_unit == "iso"
    expected = [T0 + 10 * 3600, T0 + 12 * 3600 + 1, T0 + 8 * 3600]
    assert (clicks.time // 1_000_000).tolist() == expected


def test_parquet_with_text_ids_and_a_timestamp_column(tmp_path):
    frame = pd.DataFrame(
        {
            "visit": ["b", "b", "a", "a"],
            "sku": ["x", "y", "x", "z"],
            "at": pd.to_datetime([T0, T0 + 5, T0 + 9, T0 + 10], unit="s"),
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    options = EventLogOptions(columns=(("session", "visit"), ("item", "sku"), ("time", "at")))
    clicks, report = read_events(tmp_path / "log.parquet", "parquet", options)
    assert clicks.session_id.tolist() == [1, 1, 0, 0]  # text ids numbered in sorted order
    assert clicks.item_id.tolist() == [0, 1, 0, 2]
    assert (clicks.time // 1_000_000).tolist() == [T0, T0 + 5, T0 + 9, T0 + 10]
    assert report.text_ids == ["session", "item"] and report.time_unit == "native"


def test_users_are_cut_into_sessions_by_the_gap(tmp_path):
    rows = [
        ("u1", 1, 0),
        ("u2", 1, 5),
        ("u1", 2, 30 * MIN),  # exactly 30 min after the previous: same session
        ("u1", 3, 60 * MIN + 1),  # 30 min + 1 s: a new session
        ("u2", 4, 10),
    ]
    path = write(
        tmp_path / "users.csv",
        "uid,item_id,timestamp\n" + "".join(f"{u},{i},{T0 + t}\n" for u, i, t in rows),
    )
    options = EventLogOptions(columns=(("user", "uid"),))
    clicks, report = read_events(path, eventlog.CSV_FORMAT, options)
    assert clicks.session_id.tolist() == [1, 1, 2, 3, 3]
    assert clicks.item_id.tolist() == [1, 2, 3, 1, 4]
    assert (report.users, report.sessions) == (2, 3)
    shorter = EventLogOptions(columns=(("user", "uid"),), session_gap=29.99)
    assert read_events(path, eventlog.CSV_FORMAT, shorter)[0].session_id.tolist() == [1, 2, 3, 4, 4]


def test_a_utf8_bom_is_accepted(tmp_path):
    path = shop_csv(tmp_path / "shop.csv")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert (
        load_eventlog(bom, ONE, cache_dir=None).fingerprint()
        == load_eventlog(path, ONE, cache_dir=None).fingerprint()
    )
    raw = tmp_path / "raw.dat"
    raw.write_bytes(b"\xef\xbb\xbf1,2014-04-01T10:00:00.000Z,5,0\n")
    assert rsc15.read_clicks(raw).session_id.tolist() == [1]


def test_a_headerless_csv_of_raw_rsc15_rows_is_read_as_rsc15(tmp_path, shared_data):
    sample = shared_data / "rsc15-sample" / "yoochoose-clicks-sample.dat"
    csv = tmp_path / "sample.csv"
    csv.write_bytes(sample.read_bytes())
    assert (
        load_eventlog(csv, cache_dir=None).fingerprint()
        == rsc15.load_rsc15(sample, cache_dir=None).fingerprint()
    )


def _assert_same(a, b) -> None:
    for part in ("train", "test", "valid_train", "valid_test"):
        x, y = getattr(a, part), getattr(b, part)
        np.testing.assert_array_equal(x.items, y.items, err_msg=part)
        np.testing.assert_array_equal(x.offsets, y.offsets, err_msg=part)
        np.testing.assert_array_equal(x.times, y.times, err_msg=part)
        np.testing.assert_array_equal(x.session_ids, y.session_ids, err_msg=part)
        assert x.n_items == y.n_items
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("time_as", ["iso", "epoch-ms"])
def test_raw_rsc15_and_the_same_clicks_as_a_renamed_csv_give_identical_datasets(tmp_path, time_as):
    from datasets.generate_rsc15 import generate

    raw = generate(tmp_path / "clicks.dat", fraction=0.0005, seed=5, progress=False).path
    frame = pd.read_csv(raw, header=None, names=["sid", "when", "product", "cat"], dtype=str)
    if time_as == "epoch-ms":
        since = pd.to_datetime(frame["when"], utc=True) - pd.Timestamp(0, tz="UTC")
        frame["when"] = since // pd.Timedelta(milliseconds=1)
    frame = frame[["product", "cat", "when", "sid"]]  # other order, other names
    frame.to_csv(tmp_path / "renamed.csv", index=False)
    from_raw = rsc15.load_rsc15(raw, cache_dir=tmp_path / "cache")
    options = EventLogOptions(columns=(("session", "sid"), ("item", "product"), ("time", "when")))
    from_csv = load_eventlog(tmp_path / "renamed.csv", options, cache_dir=tmp_path / "cache")
    assert from_raw.test.n_sessions > 0 and from_raw.valid_test is not None
    _assert_same(from_raw, from_csv)
