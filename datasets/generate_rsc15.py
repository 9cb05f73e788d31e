"""Write a simulated raw ``yoochoose-clicks.dat`` of RSC15's shape.

Usage::

    python -m datasets.generate_rsc15 OUT_FILE [--fraction F] [--seed N]

The output has the raw format (no header; ``SessionId,Timestamp,ItemId,Category`` with ISO-8601
UTC timestamps in milliseconds, e.g. ``832,2014-04-06T20:21:58.444Z,214717095,0``), sessions
grouped and numbered in order of their start, clicks in time order, like the real file. It is
written in weekly chunks (memory stays in the hundreds of MB at full scale), with the click model
of :mod:`datasets.synthetic`. ``--fraction`` scales the number of sessions; the catalogue and the
six-month span stay the same.

Shape parameters, and where each comes from (``RSC15_*`` constants and :data:`RSC15_MODEL`):

- **9,249,729 sessions / 33,003,944 clicks / 52,739 items** (raw file): the commonly quoted
  statistics of ``yoochoose-clicks.dat``; mean raw session length 3.568.
- **Span 2014-04-01 .. 2014-09-30** (183 days): the RecSys Challenge 2015 data period.
- **p_single = 0.13** (sessions of length 1): not published directly; derived from the counts.
  The rules remove 9.25M - 7.98M = 1.27M sessions and 33.00M - 31.71M = 1.30M clicks (docs/PROTOCOL.md:
  train + test after preprocessing), and rule 2/3 can account for only ~0.1M of either, so about
  1.2M sessions (13%) have a single click.
- **Lengths of the other sessions**: ``2 + extra``, ``extra`` geometric with mean 1.0 (80%) or
  5.75 (20%, the long tail), capped at 200: mean 3.95, matching the post-preprocessing mean
  31.7M / 7.98M = 3.97; overall mean 0.13 + 0.87 x 3.95 = 3.57 (raw: 3.568).
- **Items**: Zipf-Mandelbrot popularity with exponent 1.9 and rank offset 175 over a catalogue of
  54,000 items, calibrated at fraction 1.0, seed 0: 52,790 items are clicked at all (raw: 52,739)
  and 37,207 keep >= 5 clicks after rule 1 (docs/PROTOCOL.md: 37,483 training items). The top item
  takes 0.6% of all clicks, the top 20 about 10%. Real RSC15 popularity also drifts over the six
  months (one reason POP is so weak on it); this model is stationary, so POP does much better
  here than on the real data. At a smaller fraction fewer items are clicked.
- **Daily volume** declines linearly from 1.65x to 0.36x the mean over the six months: calibrated
  so that the last 24 h hold the ~15k test sessions of docs/PROTOCOL.md (15,324 after the rules; a
  flat profile would give ~44k). The hour of day follows :data:`datasets.synthetic.HOURLY_PROFILE`.
- **Sequential structure** (``p_repeat`` 0.15, ``p_successor`` 0.35, ``p_cluster`` 0.3, 300
  clusters) and click gaps (log-normal, median 45 s): chosen, not measured; they give
  algorithms something to learn and sessions a few minutes long.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from datasets.clicks import Clicks
from datasets.progress import bars_enabled
from datasets.synthetic import DAY_SECONDS, START, ClickModel, generate_clicks, make_catalogue

log = logging.getLogger(__name__)

RSC15_SESSIONS = 9_249_729
RSC15_CLICKS = 33_003_944
RSC15_ITEMS = 52_739
RSC15_DAYS = 183
RSC15_FIRST_DAY_WEIGHT = 1.65
RSC15_LAST_DAY_WEIGHT = 0.36
CHUNK_DAYS = 7

RSC15_MODEL = ClickModel(
    n_items=54_000,
    n_clusters=300,
    zipf_exponent=1.9,
    zipf_offset=175.0,
    p_single=0.13,
    p_long=0.2,
    short_mean=1.0,
    long_mean=5.75,
    max_length=200,
    p_repeat=0.15,
    p_successor=0.35,
    p_cluster=0.3,
    gap_median_s=45.0,
    gap_sigma=1.2,
    item_id_base=214_500_000,
)

_SCHEMA = pa.schema(
    [
        ("session_id", pa.int64()),
        ("time", pa.string()),
        ("item_id", pa.int64()),
        ("category", pa.string()),
    ]
)


@dataclass(frozen=True)
class Summary:
    """What a generation run wrote."""

    path: Path
    sessions: int
    clicks: int
    items: int
    bytes: int
    seconds: float


def day_weights(n_days: int = RSC15_DAYS) -> np.ndarray:
    """Relative session volume per day: a linear decline (see the module docstring)."""
    return np.linspace(RSC15_FIRST_DAY_WEIGHT, RSC15_LAST_DAY_WEIGHT, n_days)


def sessions_per_day(n_sessions: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``n_sessions`` over the days in proportion to :func:`day_weights`."""
    w = day_weights()
    return rng.multinomial(n_sessions, w / w.sum())


def format_timestamps(time_us: np.ndarray) -> pa.StringArray:
    """ISO-8601 UTC strings with milliseconds (``2014-04-06T20:21:58.444Z``), vectorised.

    Every string has 24 characters, so the bytes are laid out in an (n, 24) array and handed to
    Arrow without a per-row Python call.
    """
    ms = time_us // 1000
    day = ms // (DAY_SECONDS * 1000)
    ms_of_day = ms - day * (DAY_SECONDS * 1000)
    first = int(day.min()) if len(day) else 0
    dates = _date_table(first, int(day.max()) - first + 1 if len(day) else 0)
    buf = np.empty((len(ms), 24), dtype=np.uint8)
    buf[:, :10] = dates[day - first]
    for col, char in ((10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")):
        buf[:, col] = ord(char)
    fields = (
        (11, 2, ms_of_day // 3_600_000),
        (14, 2, ms_of_day // 60_000 % 60),
        (17, 2, ms_of_day // 1000 % 60),
        (20, 3, ms_of_day % 1000),
    )
    for col, width, value in fields:
        for k in range(width):
            buf[:, col + width - 1 - k] = 48 + value // 10**k % 10
    offsets = np.arange(0, 24 * (len(ms) + 1), 24, dtype=np.int32)
    return pa.StringArray.from_buffers(len(ms), pa.py_buffer(offsets), pa.py_buffer(buf))


def _date_table(first_day: int, n_days: int) -> np.ndarray:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    text = "".join(
        (epoch + timedelta(days=first_day + d)).strftime("%Y-%m-%d") for d in range(n_days)
    )
    return np.frombuffer(text.encode(), dtype=np.uint8).reshape(n_days, 10)


def clicks_table(clicks: Clicks) -> pa.Table:
    """The raw-file columns of ``clicks`` (category always ``0``)."""
    n = len(clicks)
    category = pa.StringArray.from_buffers(
        n, pa.py_buffer(np.arange(n + 1, dtype=np.int32)), pa.py_buffer(b"0" * n)
    )
    return pa.Table.from_arrays(
        [
            pa.array(clicks.session_id),
            format_timestamps(clicks.time),
            pa.array(clicks.item_id),
            category,
        ],
        schema=_SCHEMA,
    )


def generate(
    out: Path,
    *,
    fraction: float = 1.0,
    seed: int = 0,
    model: ClickModel = RSC15_MODEL,
    progress: bool = True,
) -> Summary:
    """Write a raw RSC15-format file of ``fraction`` x RSC15's sessions to ``out``."""
    if not 0 < fraction <= 10:
        raise ValueError(f"fraction must be in (0, 10], got {fraction}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    catalogue = make_catalogue(model, rng)
    per_day = sessions_per_day(max(1, round(RSC15_SESSIONS * fraction)), rng)
    seen = np.zeros(model.n_items, dtype=bool)
    next_id, n_clicks = 1, 0
    out.parent.mkdir(parents=True, exist_ok=True)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with (
        pacsv.CSVWriter(str(out), _SCHEMA, write_options=options) as writer,
        tqdm(
            total=int(RSC15_CLICKS * fraction),
            unit="click",
            unit_scale=True,
            desc=f"write {out.name}",
            disable=not (progress and bars_enabled()),
        ) as bar,
    ):
        for first in range(0, len(per_day), CHUNK_DAYS):
            counts = per_day[first : first + CHUNK_DAYS]
            first_day_s = int(START.timestamp()) + first * DAY_SECONDS
            clicks, items = generate_clicks(
                catalogue, model, counts, rng, first_day_s=first_day_s, first_session_id=next_id
            )
            writer.write_table(clicks_table(clicks))
            seen[items] = True
            next_id += int(counts.sum())
            n_clicks += len(clicks)
            bar.update(len(clicks))
    return Summary(
        out,
        next_id - 1,
        n_clicks,
        int(seen.sum()),
        out.stat().st_size,
        time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.generate_rsc15",
        description="Write a simulated raw yoochoose-clicks.dat of RSC15's shape.",
    )
    parser.add_argument("out", type=Path, metavar="OUT_FILE", help="file to write")
    parser.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="share of RSC15's 9.25M sessions to generate (default 1.0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not 0 < args.fraction <= 10:
        parser.error(f"--fraction must be in (0, 10], got {args.fraction}")
    s = generate(args.out, fraction=args.fraction, seed=args.seed)
    print(
        f"wrote {s.path}: {s.sessions:,} sessions, {s.clicks:,} clicks, {s.items:,} items, "
        f"{s.bytes:,} bytes in {s.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
