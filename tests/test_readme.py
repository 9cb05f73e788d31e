"""The README and docs/: the generated results table, length, links, no machine paths, and the
main set-up command actually runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.report import readme

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "results" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _tracked_runs() -> set[Path] | None:
    """The run folders whose table.csv git tracks (None outside a git checkout): runs made by
    the README's first command in this checkout are not committed results."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "results/*/*/table.csv"],
            cwd=REPO_ROOT, capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return {(REPO_ROOT / f).parent for f in out.split("\0") if f}


def test_results_block_is_what_the_committed_runs_give():
    committed = readme.split_readme(README.read_text(encoding="utf-8"))[1]
    tracked = _tracked_runs()
    keep = None if tracked is None else tracked.__contains__
    assert committed == readme.build_block(REPO_ROOT / "results", keep=keep), (
        "README.md's results table is stale: run python -m benchmark.report.readme"
    )


def test_a_run_of_ones_own_is_left_out_by_keep(tmp_path):
    results = tmp_path / "results"
    _run(results, "synthetic", "20270101-000000-eeee", [("pop", 0.5, 0.1)])
    committed = _run(results, "rsc15-64", "20260102-000000-bbbb", [("pop", 0.1, 0.05)])
    assert set(readme.latest_runs(results)) == {"rsc15-64", "synthetic"}
    assert readme.latest_runs(results, keep={committed}.__contains__) == {"rsc15-64": committed}


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 140


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_paths_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for bad in ("../shared", "/work/", "/root/"):
        assert bad not in text, f"{page.name} names {bad!r}"


def _links(text: str) -> list[str]:
    """Relative link targets of markdown ``[..](target)``, outside code."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page):
    links = _links(page.read_text(encoding="utf-8"))
    broken = [t for t in links if not (page.parent / t.split("#")[0]).exists()]
    outside = [
        t for t in links if not (page.parent / t).resolve().is_relative_to(REPO_ROOT.resolve())
    ]
    assert not broken, f"{page.name}: broken links {broken}"
    assert not outside, f"{page.name}: links leave the repository {outside}"


def test_links_are_found_outside_code_only():
    text = "[a](x.md) `[b](y.md)` [`c`](z/) [d](https://e) [f](#g)\n```\n[h](i.md)\n```\n"
    assert _links(text) == ["x.md", "z/"]


def _run(root: Path, dataset: str, run_id: str, rows: list[tuple[str, float, float]]) -> Path:
    run = root / dataset / run_id
    run.mkdir(parents=True)
    lines = ["algorithm,tuning,recall@20,mrr@20"]
    lines += [f"{a},published setting,{r},{m}" for a, r, m in rows]
    (run / "table.csv").write_text("\n".join(lines) + "\n")
    return run


def test_block_of_a_small_results_tree(tmp_path):
    results = tmp_path / "results"
    # an older run of rsc15-64 that must not be picked, and a run still without its table
    _run(results, "rsc15-64", "20260101-000000-aaaa", [("pop", 0.9, 0.9)])
    (results / "rsc15-64" / "20270101-000000-ffff").mkdir()
    latest = _run(
        results,
        "rsc15-64",
        "20260102-000000-bbbb",
        [("pop", 0.1, 0.05), ("gru4rec", 0.70634, 0.2999), ("vsknn", 0.695, 0.31)],
    )
    (latest / "plots").mkdir()
    (latest / "plots" / "headline.png").write_bytes(b"")
    _run(results, "diginetica", "20260103-000000-cccc", [("pop", 0.01, 0.002), ("sr", 0.4, 0.1)])
    _run(results, "tune", "20260104-000000-dddd", [("pop", 1.0, 1.0)])  # not a dataset
    (results / "perf").mkdir()
    assert readme.build_block(results) == (
        "| algorithm | rsc15-64            | diginetica              |\n"
        "|-----------|---------------------|-------------------------|\n"
        "| pop       | 0.1000 / 0.0500     | 0.0100 / 0.0020         |\n"
        "| gru4rec   | **0.7063** / 0.2999 | –                       |\n"
        "| vsknn     | 0.6950 / **0.3100** | –                       |\n"
        "| sr        | –                   | **0.4000** / **0.1000** |\n"
        "\n"
        "Recall@20 / MRR@20 on the test split, best per dataset in bold; from "
        "[`results/rsc15-64/20260102-000000-bbbb`](results/rsc15-64/20260102-000000-bbbb/table.md), "
        "[`results/diginetica/20260103-000000-cccc`](results/diginetica/20260103-000000-cccc/table.md).\n"
        "\n"
        "![rsc15-64: Recall@20 and MRR@20 with 95% intervals; black diamonds: published numbers]"
        "(results/rsc15-64/20260102-000000-bbbb/plots/headline.png)"
    )


def test_third_party_rows_leave_the_main_table_for_the_runs_which_section(tmp_path):
    results = tmp_path / "results"
    run = results / "rsc15-64" / "20260102-000000-bbbb"
    run.mkdir(parents=True)
    (run / "table.csv").write_text(
        "algorithm,algorithm_name,recall@20,mrr@20\n"
        "gru4rec,gru4rec,0.7,0.3\ngru4rec-tf@fixed,gru4rec-tf,0.5,0.2\n"
    )
    (run / "table.md").write_text(
        "# run\n\n## Which GRU4Rec?\n\nChanges against `gru4rec`.\n\n| row |\n\n## Next\n\nx\n"
    )
    block = readme.build_block(results)
    assert "| gru4rec-tf@fixed" not in block and "| gru4rec   | **0.7000**" in block
    assert block.endswith("**Which GRU4Rec?** (rsc15-64) Changes against `gru4rec`.\n\n| row |")


def test_check_and_rewrite(tmp_path, capsys):
    results = tmp_path / "results"
    _run(results, "diginetica", "20260103-000000-cccc", [("pop", 0.01, 0.002)])
    page = tmp_path / "README.md"
    page.write_text(f"# title\n\n{readme.BEGIN}\nold table\n{readme.END}\n\nthe end\n")
    args = ["--readme", str(page), "--results", str(results)]
    assert readme.main([*args, "--check"]) == 1
    assert "-old table" in capsys.readouterr().err
    assert readme.main(args) == 0
    text = page.read_text()
    assert text.startswith(f"# title\n\n{readme.BEGIN}\n| algorithm |")
    assert text.endswith(f"diginetica/20260103-000000-cccc/table.md).\n{readme.END}\n\nthe end\n")
    assert readme.main([*args, "--check"]) == 0


def test_readme_main_command_runs(tmp_path):
    """The first bash block's last command, run on a temporary output folder (not pip)."""
    block = re.search(r"```bash\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S).group(1)
    command = block.split("&&")[-1].strip()
    assert command == ".venv/bin/python run_benchmark.py --dataset synthetic"
    argv = [
        sys.executable,
        *shlex.split(command)[1:],
        "--out",
        str(tmp_path),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "-q",
    ]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((tmp_path / "synthetic").glob("*/table.md"))
