"""Hyperparameter tuning on the validation split: search spaces (``space``), Optuna studies that
many workers share (``study``), exact grids (``grid``), study pictures (``picture``) and the
command line (``cli``, run as ``python -m benchmark.tune``)."""
