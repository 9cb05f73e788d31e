"""``python -m benchmark.report RUN_DIR ...``: re-render runs from their saved files."""

from benchmark.report.render import main

main()
