"""The neural successors of GRU4Rec as their authors' code runs them (see docs/neural.md):
NARM, STAMP, SR-GNN and SASRec, on one training harness (``harness.py``)."""

from algorithms.neural.narm import NARM
from algorithms.neural.sasrec import SASRec
from algorithms.neural.srgnn import SRGNN
from algorithms.neural.stamp import STAMP

__all__ = ["NARM", "SASRec", "SRGNN", "STAMP"]
