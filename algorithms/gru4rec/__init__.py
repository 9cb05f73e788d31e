"""GRU4Rec: session-based recommendations with recurrent neural networks (see ``recommender``).

Modules: ``recommender`` (the benchmark-facing class), ``model`` (parameters and inference),
``gru`` (the cell and its backward pass), ``losses``, ``sampling``, ``optimizer`` (sparse
Adagrad with classic momentum), ``batching`` (session-parallel mini-batches), ``trainer`` (the
training loop), ``threads`` (the CPU thread policy), ``checkpoint``, and ``reference`` (the
training step written plainly with autograd, which the tests hold ``trainer`` to).
"""

from algorithms.gru4rec.recommender import GRU4Rec

__all__ = ["GRU4Rec"]
