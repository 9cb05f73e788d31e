"""Faithful PyTorch re-implementations of third-party GRU4Rec versions (docs/gru4rec-variants.md).

- ``gru4rec-keras``: paxcema/KerasGRU4Rec (:mod:`.keras`);
- ``gru4rec-tf``: Songweiping/GRU4Rec_TensorFlow, ``gru4rec_BP`` (:mod:`.tf`);
- ``gru4rec-recbole``: RecBole's ``GRU4Rec`` (:mod:`.recbole`).
"""
