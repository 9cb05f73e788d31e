"""``python -m benchmark.tune``: the command line of :mod:`benchmark.tuning` (see its ``cli``)."""

import sys

from benchmark.tuning.cli import main

if __name__ == "__main__":
    sys.exit(main())
