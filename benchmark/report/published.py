"""Published Recall@20 / MRR@20 for the splits this benchmark can reproduce, with their sources.

Only numbers for *the same split* belong here: a published number is put next to ours only
when the run's dataset name matches a key of :data:`PUBLISHED` and the run's algorithm name
(the registry name, not the run label) matches a key of that dataset. Values are fractions
(0.6064), not percentages.

Caveats that travel with the numbers (repeated in the rendered tables):
- The ICLR 2016 GRU4Rec paper counted a hit when rank < 20 (an off-by-one the authors fixed
  in 2018), which flatters its numbers slightly relative to rank <= 20.
- The rsc15-64 and diginetica numbers come from the NARM / SR-GNN papers, which rank against
  all item ids and count targets unseen in training as misses, as our protocol does; their
  "GRU4Rec" is the 2016 version (TOP1/BPR loss, no extra negative samples), not the current
  implementation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published result.

    Attributes:
        recall20: Recall@20 as a fraction.
        mrr20: MRR@20 as a fraction.
        source: where the number is printed.
        method: the method as the source names it (when it differs from our algorithm name).
    """

    recall20: float
    mrr20: float
    source: str
    method: str = ""


_ICLR16 = "Hidasi et al., ICLR 2016 (GRU4Rec), Tables 1 and 3; hits counted as rank < 20"
_NARM_SRGNN = "NARM (Li et al., CIKM 2017) and SR-GNN (Wu et al., AAAI 2019) papers"
_SRGNN = "SR-GNN (Wu et al., AAAI 2019) paper"

PUBLISHED: dict[str, dict[str, Published]] = {
    # Full RSC15 with the GRU4Rec preprocessing and split (55,898 predictions).
    "rsc15": {
        "pop": Published(0.0050, 0.0012, _ICLR16),
        "spop": Published(0.2672, 0.1775, _ICLR16),
        "item-knn": Published(0.5065, 0.2048, _ICLR16),
        "bpr-mf": Published(0.2574, 0.0618, _ICLR16),
        "gru4rec": Published(
            0.7283,
            0.3205,
            "official GRU4Rec README (Theano implementation, best setting)",
            "GRU4Rec, current official code",
        ),
    },
    # YooChoose 1/64, the NARM / SR-GNN split (same 55,898 test targets as full RSC15).
    "rsc15-64": {
        "pop": Published(0.0671, 0.0165, _NARM_SRGNN),
        "spop": Published(0.3044, 0.1835, _NARM_SRGNN),
        "item-knn": Published(0.5160, 0.2181, _NARM_SRGNN),
        "bpr-mf": Published(0.3131, 0.1208, _NARM_SRGNN),
        "gru4rec": Published(0.6064, 0.2289, _NARM_SRGNN, "GRU4Rec (2016 version)"),
    },
    # Diginetica (CIKM Cup 2016), the SR-GNN / GCE-GNN split.
    "diginetica": {
        "pop": Published(0.0089, 0.0020, _SRGNN),
        "spop": Published(0.2106, 0.1368, _SRGNN),
        "item-knn": Published(0.3575, 0.1157, _SRGNN),
        "bpr-mf": Published(0.0524, 0.0198, _SRGNN),
        "gru4rec": Published(0.2945, 0.0833, _SRGNN, "GRU4Rec (2016 version)"),
    },
}
"""Dataset name -> algorithm (registry) name -> published result."""

REFERENCE_POINTS: dict[str, dict[str, Published]] = {
    "rsc15": {
        "gru4rec-top1-100": Published(0.5853, 0.2305, _ICLR16, "GRU4Rec TOP1, 100 units"),
        "gru4rec-bpr-1000": Published(0.6322, 0.2467, _ICLR16, "GRU4Rec BPR, 1000 units"),
        "gru4rec-bprmax": Published(
            0.7190, 0.3119, "Hidasi & Karatzoglou, CIKM 2018", "GRU4Rec BPR-max + extra samples"
        ),
    },
    "rsc15-64": {
        "narm": Published(0.6832, 0.2863, _NARM_SRGNN, "NARM"),
        "stamp": Published(0.6874, 0.2967, _NARM_SRGNN, "STAMP"),
        "sr-gnn": Published(0.7057, 0.3094, _NARM_SRGNN, "SR-GNN"),
    },
    "diginetica": {
        "narm": Published(0.4970, 0.1617, _SRGNN, "NARM"),
        "sr-gnn": Published(0.5073, 0.1759, _SRGNN, "SR-GNN"),
    },
}
"""Other published methods on the same splits, listed under the tables of runs that lack them
(keys that are registry names are the published figure of that algorithm's rows)."""


def other_data(record: dict) -> bool:
    """True when a run read a file other than the one the published numbers come from (the raw
    RSC15 loader records ``official_file``: whether the input's sha256 is the official file's),
    e.g. a simulated ``yoochoose-clicks.dat``: its results must not sit next to published ones.
    A dataset given by path (``--dataset PATH``, recorded as ``given_path``) never has any."""
    source = (record.get("data") or {}).get("source") or {}
    return source.get("official_file") is False or bool(source.get("given_path"))


def published_for(dataset: str, algorithm: str) -> Published | None:
    """The published result of ``algorithm`` (registry name) on ``dataset``, if there is one;
    a method of ``REFERENCE_POINTS`` that runs here as a row (NARM, STAMP, SR-GNN) gets its
    paper's figure beside that row."""
    return PUBLISHED.get(dataset, {}).get(algorithm) or REFERENCE_POINTS.get(dataset, {}).get(
        algorithm
    )
