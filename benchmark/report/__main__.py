"""``python -m benchmark.report RUN_DIR ...``: re-render runs from their saved files;
``python -m benchmark.report summary``: the answer across datasets (:mod:`.summary`)."""

import sys

if sys.argv[1:2] == ["summary"]:
    from benchmark.report.summary import main as summary_main

    sys.exit(summary_main(sys.argv[2:]))

from benchmark.report.render import main  # noqa: E402

main()
