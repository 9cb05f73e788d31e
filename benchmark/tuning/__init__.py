"""Hyperparameter tuning on the validation split: search spaces (``space``), Optuna studies that
many workers share (``study``), exact grids (``grid``), study pictures (``picture``), the state of
every committed study (``summary``, run as ``python -m benchmark.tuning.summary``) and the command
line (``cli``, run as ``python -m benchmark.tune``)."""
