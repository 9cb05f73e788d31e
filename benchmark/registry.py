"""Name -> algorithm class. Adding an algorithm is one file in ``algorithms/`` plus one line here.

Classes are imported lazily, so running POP does not import torch or implicit.
"""

from __future__ import annotations

import importlib

from algorithms.base import SessionRecommender

ALGORITHMS: dict[str, str] = {
    "pop": "algorithms.pop:Pop",
    "spop": "algorithms.spop:SPop",
    "item-knn": "algorithms.item_knn:ItemKNN",
    "bpr-mf": "algorithms.bpr_mf:BPRMF",
    "gru4rec": "algorithms.gru4rec:GRU4Rec",
    "sknn": "algorithms.sknn:SKNN",
    "vsknn": "algorithms.sknn:VSKNN",
    "stan": "algorithms.stan:STAN",
    "vstan": "algorithms.stan:VSTAN",
    "sr": "algorithms.rules:SequentialRules",
    "ar": "algorithms.rules:AssociationRules",
    "markov": "algorithms.rules:Markov",
    "gru4rec-keras": "algorithms.gru4rec_variants.keras:GRU4RecKeras",
    "gru4rec-tf": "algorithms.gru4rec_variants.tf:GRU4RecTF",
    "gru4rec-recbole": "algorithms.gru4rec_variants.recbole:GRU4RecRecBole",
    "narm": "algorithms.neural.narm:NARM",
    "stamp": "algorithms.neural.stamp:STAMP",
    "sr-gnn": "algorithms.neural.srgnn:SRGNN",
    "sasrec": "algorithms.neural.sasrec:SASRec",
}


def get_algorithm(name: str) -> type[SessionRecommender]:
    """The class registered under ``name``; a clear error listing the valid names otherwise."""
    try:
        target = ALGORITHMS[name]
    except KeyError:
        raise KeyError(
            f"unknown algorithm {name!r}; valid: {', '.join(sorted(ALGORITHMS))}"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
