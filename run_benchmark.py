"""Command line: ``python run_benchmark.py --dataset rsc15`` (see ``--help``), the same as
``sessionbench run``; the code is :mod:`benchmark.run_cli`."""

import sys

from benchmark.run_cli import main

if __name__ == "__main__":
    sys.exit(main())
