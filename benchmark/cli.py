"""``sessionbench``: one console script over the benchmark's command lines.

    sessionbench run ARGS           # == python run_benchmark.py ARGS
    sessionbench tune ARGS          # == python -m benchmark.tune ARGS
    sessionbench report ARGS        # == python -m benchmark.report ARGS
    sessionbench perf NAME ARGS     # == python -m benchmark.perf.NAME ARGS

Each subcommand hands its arguments unchanged to that command's ``main`` (so ``sessionbench run
--help`` is the benchmark's own help); modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable

PROG = "sessionbench"


def perf_scripts() -> list[str]:
    """The NAMEs of ``sessionbench perf NAME``: the modules of :mod:`benchmark.perf`."""
    import benchmark.perf

    return sorted(
        m.name
        for m in pkgutil.iter_modules(benchmark.perf.__path__)
        if not m.ispkg and not m.name.startswith("_")
    )


def _run(argv: list[str]) -> int | None:
    from benchmark.run_cli import main

    return main(argv, prog=f"{PROG} run")


def _tune(argv: list[str]) -> int | None:
    from benchmark.tuning.cli import main

    return main(argv)


def _report(argv: list[str]) -> int | None:
    from benchmark.report.render import main

    return main(argv)


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int | None]]] = {
    "run": ("run the benchmark (python run_benchmark.py)", _run),
    "tune": ("tune one algorithm on the validation split (python -m benchmark.tune)", _tune),
    "report": ("re-render finished runs (python -m benchmark.report)", _report),
    "perf": ("run a speed/memory script: perf NAME ARGS (python -m benchmark.perf.NAME)", None),
}


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(perf_scripts())
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark GRU4Rec and session-based baselines. Each command takes the "
        "options of the command line it stands for; 'sessionbench COMMAND --help' "
        "lists them.",
        epilog=f"perf NAMEs: {names}",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, _) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    if not argv or argv[0] not in COMMANDS:  # --help, or a bad command: argparse says so
        p.parse_args(argv)
        return 2  # pragma: no cover (parse_args exits)
    command, rest = argv[0], argv[1:]
    if command == "perf":
        return _perf(rest)
    code = COMMANDS[command][1](rest)
    return int(code or 0)


def _perf(argv: list[str]) -> int:
    names = perf_scripts()
    usage = f"usage: {PROG} perf NAME [ARGS ...]\nNAME: one of {', '.join(names)}"
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    if not argv or argv[0] not in names:
        what = f"unknown perf script {argv[0]!r}" if argv else "give the NAME of a perf script"
        print(f"{usage}\n{PROG} perf: error: {what}; valid: {', '.join(names)}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"benchmark.perf.{name}")
    saved = sys.argv
    sys.argv = [f"{PROG} perf {name}", *rest]  # a parser without prog= takes its name from here
    try:
        return int(module.main(rest) or 0)
    finally:
        sys.argv = saved


if __name__ == "__main__":
    sys.exit(main())
