"""Seeded synthetic click streams with learnable sequential structure, and the ``synthetic`` dataset.

The generative model (shared with ``datasets.generate_rsc15``, which scales it to RSC15's size):

- **Items** have Zipf-Mandelbrot popularity, ``weight(rank) = (rank + offset) ** -exponent``, with
  ranks assigned to items at random, and belong to clusters (think categories), every cluster
  non-empty. Each item has one fixed *successor* in its own cluster, drawn by popularity.
- **Session lengths**: 1 with probability ``p_single``; otherwise ``2 + extra``, where ``extra``
  is geometric with mean ``short_mean`` or, with probability ``p_long``, ``long_mean`` (a long
  tail), capped at ``max_length``.
- **Clicks** are a Markov walk: the first item is drawn by global popularity; each next click
  repeats the current item (``p_repeat``), goes to its successor (``p_successor``), to a
  popularity-weighted item of the same cluster (``p_cluster``), or else to a globally popular one.
  The successor rule is the learnable sequential signal: a model that knows each item's
  successor predicts the next click exactly in at least ``p_successor`` of the cases.
- **Times**: sessions start on a day drawn in proportion to ``day_weights``, at an hour of the
  day drawn from a daily cycle (:data:`HOURLY_PROFILE`, UTC); gaps between clicks are log-normal
  (median ``gap_median_s``, log-sd ``gap_sigma``), rounded to milliseconds like the raw RSC15 file.

The ``synthetic`` dataset runs such a stream (8 days, 26,400 raw sessions, 2,000 items; after
the rules about 20k training sessions, 1.7k items and 2.8k test sessions) through the same RSC15
preprocessing as the real file, so the split code is exercised as well, and the whole pipeline
runs in about a minute with no download.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from datasets.clicks import Clicks
from datasets.rsc15 import preprocess, splits_to_dataset
from datasets.sessions import Dataset

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400
START = datetime(2014, 4, 1, tzinfo=UTC)
"""First day of RSC15 (and of the synthetic data)."""

HOURLY_PROFILE = np.array(
    [
        0.30,
        0.20,
        0.15,
        0.12,
        0.12,
        0.18,
        0.35,
        0.60,
        0.80,
        0.90,
        0.95,
        1.00,
        1.00,
        0.95,
        0.95,
        1.00,
        1.05,
        1.15,
        1.30,
        1.40,
        1.35,
        1.10,
        0.80,
        0.50,
    ]
)
"""Relative session starts per UTC hour: a stylised European e-shop day (quiet nights, evening
peak). Not measured on RSC15; it only makes the daily cycle present."""


@dataclass(frozen=True)
class ClickModel:
    """Parameters of the generative model (see the module docstring).

    Attributes:
        n_items: catalogue size (items never drawn do not appear in the data).
        n_clusters: number of item clusters.
        zipf_exponent: popularity exponent.
        zipf_offset: popularity rank offset; flattens the head.
        p_single: probability that a session has one click.
        p_long: probability that a longer session uses the long-tail length component.
        short_mean: mean extra clicks beyond 2 of the short component.
        long_mean: mean extra clicks beyond 2 of the long component.
        max_length: cap on session length.
        p_repeat: probability that the next click repeats the current item.
        p_successor: probability that the next click is the current item's successor.
        p_cluster: probability that the next click is drawn from the current item's cluster.
        gap_median_s: median seconds between two clicks of a session.
        gap_sigma: log-sd of the gap between clicks.
        item_id_base: raw item ids are ``item_id_base`` plus distinct offsets (RSC15-like ids).
    """

    n_items: int = 2_000
    n_clusters: int = 40
    zipf_exponent: float = 1.0
    zipf_offset: float = 10.0
    p_single: float = 0.13
    p_long: float = 0.2
    short_mean: float = 1.0
    long_mean: float = 5.75
    max_length: int = 200
    p_repeat: float = 0.1
    p_successor: float = 0.6
    p_cluster: float = 0.2
    gap_median_s: float = 45.0
    gap_sigma: float = 1.2
    item_id_base: int = 214_500_000

    def __post_init__(self) -> None:
        if self.n_items < self.n_clusters or self.n_clusters < 1:
            raise ValueError(
                f"need 1 <= n_clusters <= n_items, got {self.n_clusters}, {self.n_items}"
            )
        if self.p_repeat + self.p_successor + self.p_cluster > 1:
            raise ValueError("p_repeat + p_successor + p_cluster must be <= 1")
        if not 0 <= self.p_single <= 1 or not 0 <= self.p_long <= 1:
            raise ValueError("p_single and p_long must be probabilities")


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The item side of a model realisation.

    Attributes:
        item_ids: raw item id of each item.
        cluster: cluster of each item.
        successor: the successor item of each item (same cluster).
        global_cum: cumulative popularity over items, for global draws.
        by_cluster: item indices grouped by cluster.
        cluster_cum: cumulative popularity along ``by_cluster``.
        cluster_start: first position of each cluster in ``by_cluster`` (length n_clusters + 1).
    """

    item_ids: np.ndarray
    cluster: np.ndarray
    successor: np.ndarray
    global_cum: np.ndarray
    by_cluster: np.ndarray
    cluster_cum: np.ndarray
    cluster_start: np.ndarray


def make_catalogue(model: ClickModel, rng: np.random.Generator) -> Catalogue:
    """Draw item popularity, clusters, successors and raw ids."""
    n = model.n_items
    ranks = rng.permutation(n) + 1
    weight = (ranks + model.zipf_offset) ** -model.zipf_exponent
    cluster = rng.permutation(np.arange(n) % model.n_clusters)
    by_cluster = np.argsort(cluster, kind="stable")
    cluster_start = np.searchsorted(cluster[by_cluster], np.arange(model.n_clusters + 1))
    offsets = rng.choice(max(4 * n, 1_000_000), size=n, replace=False)
    catalogue = Catalogue(
        item_ids=model.item_id_base + offsets.astype(np.int64),
        cluster=cluster,
        successor=np.zeros(n, dtype=np.int64),
        global_cum=np.cumsum(weight),
        by_cluster=by_cluster,
        cluster_cum=np.cumsum(weight[by_cluster]),
        cluster_start=cluster_start,
    )
    catalogue.successor[:] = draw_in_cluster(catalogue, cluster, rng)
    return catalogue


def draw_global(catalogue: Catalogue, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` items drawn by popularity."""
    cum = catalogue.global_cum
    idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    return np.minimum(idx, len(cum) - 1)


def draw_in_cluster(
    catalogue: Catalogue, clusters: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One item per entry of ``clusters``, drawn by popularity within that cluster."""
    cum, start = catalogue.cluster_cum, catalogue.cluster_start
    first, last = start[clusters], start[clusters + 1] - 1
    lo = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    x = lo + rng.random(len(clusters)) * (cum[last] - lo)
    pos = np.clip(np.searchsorted(cum, x, side="right"), first, last)
    return catalogue.by_cluster[pos]


def sample_lengths(model: ClickModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """Session lengths (int64) from the length model."""
    mean = np.where(rng.random(n) < model.p_long, model.long_mean, model.short_mean)
    extra = rng.geometric(1.0 / (1.0 + mean)) - 1
    lengths = np.minimum(2 + extra, model.max_length)
    return np.where(rng.random(n) < model.p_single, 1, lengths).astype(np.int64)


def sample_items(
    catalogue: Catalogue, model: ClickModel, lengths: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Item indices of all clicks, sessions concatenated, one vectorised step per position."""
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    order = np.argsort(-lengths, kind="stable")  # the sessions still active at step k: a prefix
    base = offsets[:-1][order]
    active_until = np.searchsorted(
        -lengths[order], -np.arange(1, lengths.max(initial=0) + 1), side="right"
    )
    items = np.empty(offsets[-1], dtype=np.int64)
    current = draw_global(catalogue, len(lengths), rng)[order]
    items[base] = current
    for k in range(1, len(active_until)):
        n_active = active_until[k]
        current = next_items(catalogue, model, current[:n_active], rng)
        items[base[:n_active] + k] = current
    return items


def next_items(
    catalogue: Catalogue, model: ClickModel, current: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One Markov step for every session: repeat, successor, same cluster, or global."""
    u = rng.random(len(current))
    t1 = model.p_repeat
    t2 = t1 + model.p_successor
    t3 = t2 + model.p_cluster
    nxt = current.copy()
    succ = (u >= t1) & (u < t2)
    nxt[succ] = catalogue.successor[current[succ]]
    clu = (u >= t2) & (u < t3)
    nxt[clu] = draw_in_cluster(catalogue, catalogue.cluster[current[clu]], rng)
    glob = u >= t3
    nxt[glob] = draw_global(catalogue, int(glob.sum()), rng)
    return nxt


def sample_start_times(
    sessions_per_day: np.ndarray, first_day_s: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted session start times (µs, millisecond grid) for the given session counts per day."""
    day = np.repeat(np.arange(len(sessions_per_day)), sessions_per_day)
    hour = rng.choice(24, size=len(day), p=HOURLY_PROFILE / HOURLY_PROFILE.sum())
    ms_in_hour = rng.integers(0, 3_600_000, size=len(day))
    ms = (first_day_s + day * DAY_SECONDS + hour * 3600) * 1000 + ms_in_hour
    return np.sort(ms) * 1000


def sample_click_times(
    model: ClickModel, starts: np.ndarray, lengths: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Click times (µs): session start plus cumulated log-normal gaps (whole milliseconds)."""
    total = int(lengths.sum())
    gaps = np.rint(model.gap_median_s * 1000 * rng.lognormal(0.0, model.gap_sigma, total))
    gaps = np.maximum(gaps, 1).astype(np.int64)
    first = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    gaps[first[lengths > 0]] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first], lengths)
    return np.repeat(starts, lengths) + elapsed * 1000


def generate_clicks(
    catalogue: Catalogue,
    model: ClickModel,
    sessions_per_day: np.ndarray,
    rng: np.random.Generator,
    *,
    first_day_s: int = int(START.timestamp()),
    first_session_id: int = 1,
) -> tuple[Clicks, np.ndarray]:
    """Clicks of ``sessions_per_day.sum()`` sessions on consecutive days from ``first_day_s``.

    Session ids are consecutive from ``first_session_id`` in order of start time, and clicks
    come grouped by session in that order (the layout of the raw RSC15 file).

    Returns:
        The clicks (item ids are raw ids) and the item index of each click.
    """
    starts = sample_start_times(sessions_per_day, first_day_s, rng)
    lengths = sample_lengths(model, len(starts), rng)
    items = sample_items(catalogue, model, lengths, rng)
    ids = first_session_id + np.arange(len(starts), dtype=np.int64)
    clicks = Clicks(
        session_id=np.repeat(ids, lengths),
        time=sample_click_times(model, starts, lengths, rng),
        item_id=catalogue.item_ids[items],
    )
    return clicks, items


SYNTHETIC_MODEL = ClickModel()
SYNTHETIC_DAYS = 8
SYNTHETIC_SESSIONS_PER_DAY = 3_300


def load_synthetic(seed: int = 0, *, model: ClickModel = SYNTHETIC_MODEL) -> Dataset:
    """The ``synthetic`` dataset: 8 days of clicks through the RSC15 preprocessing."""
    rng = np.random.default_rng(seed)
    catalogue = make_catalogue(model, rng)
    per_day = np.full(SYNTHETIC_DAYS, SYNTHETIC_SESSIONS_PER_DAY)
    clicks, _ = generate_clicks(catalogue, model, per_day, rng)
    splits = preprocess(clicks, source=f"synthetic(seed={seed})")
    source = {
        "generator": "datasets.synthetic",
        "seed": seed,
        "days": SYNTHETIC_DAYS,
        "sessions_per_day": SYNTHETIC_SESSIONS_PER_DAY,
        "model": asdict(model),
        "raw_clicks": len(clicks),
    }
    policy = {
        "preprocessing": "synthetic clicks through the GRU4Rec RSC15 rules (docs/PROTOCOL.md 1-6)",
        "unseen_targets": "none: test clicks on items absent from training are dropped (rule 5)",
    }
    return splits_to_dataset(splits, name="synthetic", source=source, policy=policy)
