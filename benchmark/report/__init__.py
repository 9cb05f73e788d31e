"""Reporting: what a run's saved files say, as tables (``tables``), plots (``plots``), intervals
and tests (``stats``, ``analysis``) next to the published numbers (``published``); ``render``
writes them into the run directory (``python -m benchmark.report RUN_DIR``). Nothing here sees a
model: everything is read from files the runner wrote."""
