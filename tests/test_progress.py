"""One rule for every progress bar: a terminal only, and never after --no-progress."""

import io
import os
import sys

import pytest

from datasets import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal(monkeypatch):
    """Returns a function that makes stderr a terminal; call it in the test body (pytest's
    output capture re-installs its own stderr between fixture set-up and the test)."""
    monkeypatch.setenv("TQDM_DISABLE", "")  # recorded, so teardown undoes disable_bars() too
    monkeypatch.delenv("TQDM_DISABLE")
    return lambda: monkeypatch.setattr(sys, "stderr", _Terminal())


def test_bars_show_on_a_terminal(terminal):
    terminal()
    assert progress.bars_enabled()


def test_no_bars_in_a_log(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress.bars_enabled()


def test_disable_bars_wins_over_the_terminal_and_reaches_third_party_bars(terminal, monkeypatch):
    terminal()
    progress.disable_bars()
    assert not progress.bars_enabled()
    assert os.environ["TQDM_DISABLE"] == "1"  # tqdm bars that leave ``disable`` unset


@pytest.mark.parametrize(
    "value, enabled", [("0", True), ("false", True), ("1", False), ("True", False)]
)
def test_tqdm_disable_values(terminal, monkeypatch, value, enabled):
    monkeypatch.setenv("TQDM_DISABLE", value)
    terminal()
    assert progress.bars_enabled() is enabled


def test_cli_no_progress_switches_every_bar_off(terminal, monkeypatch, tmp_path):
    import benchmark.run_cli as run_benchmark

    (tmp_path / "table.md").write_text("table")
    monkeypatch.setattr(run_benchmark, "run", lambda *a, **k: tmp_path)  # no real run needed
    terminal()
    assert progress.bars_enabled()
    run_benchmark.main(["--dataset", "synthetic", "--no-progress"])
    assert not progress.bars_enabled()
