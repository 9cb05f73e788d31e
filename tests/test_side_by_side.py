"""benchmark/perf/side_by_side.py: the authors' code against ours, without the authors' code.

The TSV written for their run.py, the parsing of what it prints, the ratio arithmetic, the
presets against their settings, the errors for a bad --official, and one whole run against a
stand-in run.py that prints what theirs prints.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from benchmark.config import load_preset
from benchmark.perf import side_by_side as sbs
from datasets import load_dataset
from datasets.sessions import from_lists

# What their run.py prints for one epoch (the format strings of run.py and gru4rec_pytorch.py:
# 'Epoch{} --> loss: {:.6f} \t({:.2f}s) \t[{:.2f} mb/s | {:.0f} e/s]'), after our launcher's
# first line.
SAMPLE_STDOUT = (
    "SIDE_BY_SIDE torch_threads=1 torch=2.13.0+cpu\n"
    'Creating GRU4Rec model on device "cpu"\n'
    "SET   loss                    TO   cross-entropy   (type: <class 'str'>)\n"
    "SET   constrained_embedding   TO   True            (type: <class 'bool'>)\n"
    "SET   layers                  TO   [100]           (type: <class 'list'>)\n"
    "SET   n_epochs                TO   1               (type: <class 'int'>)\n"
    "SET   batch_size              TO   32              (type: <class 'int'>)\n"
    "SET   momentum                TO   0.2             (type: <class 'float'>)\n"
    "Loading training data...\n"
    "Loading data from TAB separated file: /tmp/side_by_side_x/rsc15-64_train.tsv\n"
    "Started training\n"
    "The dataframe is already sorted by SessionId, Time\n"
    "Created sample store with 4882 batches of samples (type=GPU)\n"
    "Epoch1 --> loss: 7.519830 \t(61.84s) \t[188.31 mb/s | 6026 e/s]\n"
    "Total training time: 66.47s\n"
)


def test_the_tsv_for_their_code_has_one_row_per_click_in_our_order(tmp_path):
    train = from_lists([[3, 1, 4], [5], [1, 5], [0, 0]], n_items=6)
    path = tmp_path / "train.tsv"
    assert sbs.write_official_tsv(train, path) == 4  # 2 + 1 + 1 pairs; [5] has none
    # SessionId: our session index; ItemId: our item index; Time: the click's position in our
    # data (so their first-click-time order is ours); the one-click session is left out.
    assert path.read_text().splitlines() == [
        "SessionId\tItemId\tTime",
        "0\t3\t0",
        "0\t1\t1",
        "0\t4\t2",
        "2\t1\t4",
        "2\t5\t5",
        "3\t0\t6",
        "3\t0\t7",
    ]


def test_their_printed_epoch_is_parsed():
    parsed = sbs.parse_official_output(SAMPLE_STDOUT)
    assert parsed["epochs"] == [
        {
            "epoch": 1,
            "loss": 7.51983,
            "seconds": 61.84,
            "minibatches_per_s": 188.31,
            "printed_events_per_s": 6026.0,
        }
    ]
    assert parsed["total_training_seconds"] == 66.47
    assert parsed["sample_store_batches"] == 4882
    assert parsed["torch_threads"] == 1 and parsed["torch"] == "2.13.0+cpu"


def test_a_failed_or_diverged_run_of_theirs_is_an_error():
    with pytest.raises(ValueError, match="printed no epoch line; its last lines: .*Started"):
        sbs.parse_official_output("Loading training data...\nStarted training\n")
    with pytest.raises(ValueError, match="NaN error"):
        sbs.parse_official_output("Started training\n0: NaN error!\n")


def test_ratios_are_medians_of_both_sides_and_of_the_rounds():
    summary = sbs.summarize([10.0, 30.0], [5.0, 10.0])
    assert summary["ours_median_events_per_s"] == 20.0
    assert summary["theirs_median_events_per_s"] == 7.5
    assert summary["ratio_of_medians"] == pytest.approx(20 / 7.5)
    assert summary["round_ratios"] == [2.0, 3.0]
    assert summary["median_round_ratio"] == 2.5
    odd = sbs.summarize([9.0, 1.0, 4.0], [3.0, 1.0, 1.0])
    assert odd["ours_median_events_per_s"] == 4.0 and odd["theirs_median_events_per_s"] == 1.0
    assert odd["round_ratios"] == [3.0, 1.0, 4.0] and odd["median_round_ratio"] == 3.0
    with pytest.raises(ValueError, match="same number"):
        sbs.summarize([1.0], [])


# Their rsc15_xe_shared_100_best parameter values (the file's literals, not their code).
PARAMFILE_TEXT = textwrap.dedent(
    """\
    from collections import OrderedDict
    gru4rec_params = OrderedDict([
    ('loss', 'cross-entropy'),
    ('constrained_embedding', True),
    ('embedding', 0),
    ('elu_param', 0),
    ('layers', [100]),
    ('n_epochs', 10),
    ('batch_size', 32),
    ('dropout_p_embed', 0.0),
    ('dropout_p_hidden', 0.4),
    ('learning_rate', 0.2),
    ('momentum', 0.2),
    ('n_sample', 2048),
    ('sample_alpha', 0.5),
    ('bpreg', 0.0),
    ('logq', 1.0)
    ])
    """
)


def _stand_in(tmp_path, run_py: str = ""):
    """A folder shaped like their checkout; its run.py prints what theirs prints."""
    root = tmp_path / "official"
    (root / "paramfiles").mkdir(parents=True)
    (root / sbs.PARAMFILE).write_text(PARAMFILE_TEXT)
    (root / "gru4rec_pytorch.py").write_text("class GRU4Rec:\n    pass\n")
    (root / "run.py").write_text(run_py)
    return root


def test_each_preset_is_their_setting(tmp_path):
    root = _stand_in(tmp_path)
    paramfile = sbs.their_params(root, "paramfile")
    assert paramfile["momentum"] == 0.2 and paramfile["dropout_p_hidden"] == 0.4
    assert sbs.preset_differences(load_preset("gru4rec", "rsc15-best-paramfile"), paramfile) == []
    readme = sbs.their_params(root, "readme")
    assert readme["momentum"] == 0.0 and readme["dropout_p_embed"] == 0.1
    assert sbs.preset_differences(load_preset("gru4rec", "rsc15-best"), readme) == []
    # ... and a difference is named
    assert sbs.preset_differences(load_preset("gru4rec", "rsc15-best"), paramfile)[0] == (
        "sample_alpha: ours 0.75, theirs 0.5"
    )
    assert sbs.param_string(paramfile) == (
        "loss=cross-entropy,constrained_embedding=True,embedding=0,elu_param=0,layers=100,"
        "n_epochs=1,batch_size=32,dropout_p_embed=0.0,dropout_p_hidden=0.4,learning_rate=0.2,"
        "momentum=0.2,n_sample=2048,sample_alpha=0.5,bpreg=0.0,logq=1.0"
    )


def test_a_bad_official_path_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert sbs.main(["--official", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --official {missing}: no such folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sbs.main(["--official", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(
        f"error: --official {empty}: not a checkout of the authors' GRU4Rec_PyTorch_Official "
        "(run.py, gru4rec_pytorch.py, paramfiles"
    )


# Prints one epoch line over the TSV it is given, in their format, after checking its arguments.
FAKE_RUN_PY = textwrap.dedent(
    """\
    import os, sys
    args = sys.argv[1:]
    assert args[1] == "-ps" and args[3:] == ["-d", "cpu"], args
    params = dict(kv.split("=") for kv in args[2].split(","))
    assert params["n_epochs"] == "1" and params["batch_size"] == "32", params
    assert os.environ["OMP_NUM_THREADS"] == "1"
    with open(args[0]) as f:
        header, *rows = f.read().splitlines()
    assert header == "SessionId\\tItemId\\tTime", header
    sessions = {row.split("\\t")[0] for row in rows}
    pairs = len(rows) - len(sessions)
    print("Started training")
    print("Epoch1 --> loss: 1.000000 \\t(0.50s) \\t[10.00 mb/s | %d e/s]" % (4 * pairs))
    print("Total training time: 0.60s")
    """
)


def test_a_whole_run_against_a_stand_in_for_their_code(shared_data, tmp_path, monkeypatch, capsys):
    # ours: the real speed script in its own process, on the first 40 rsc15-64 sessions
    root = _stand_in(tmp_path, FAKE_RUN_PY)
    monkeypatch.setattr(sbs, "check_official_python", lambda python, path: None)
    out = tmp_path / "side.json"
    argv = ["--official", str(root), "--data-dir", str(shared_data), "--max-sessions", "40"]
    argv += ["--settings", "readme", "--rounds", "2"]  # (one setting: each run costs seconds)
    assert sbs.main([*argv, "--out", str(out)]) == 0
    events = load_dataset("rsc15-64", data_dir=shared_data).train.subset(range(40)).n_predictions
    result = json.loads(out.read_text())
    assert result["train_events"] == events and result["threads"] == 1
    assert result["theirs"]["code"] == "unknown"  # not a git checkout
    assert set(result["settings"]) == {"readme"}
    for row in result["settings"].values():
        assert [r["round"] for r in row["ours"]] == [1, 2] == [r["round"] for r in row["theirs"]]
        for run in row["theirs"]:  # the stand-in prints twice the rate over 0.5 s
            assert run["events"] == events and run["events_per_s"] == pytest.approx(2 * events)
            assert run["printed_events_per_s"] == 4 * events and run["seconds"] == 0.5
            assert len(run["loadavg_before"]) == 3 and len(run["loadavg_after"]) == 3
        for run in row["ours"]:
            assert run["events"] == events and run["events_per_s"] > 0
            assert run["torch_threads"] == 1 and run["loss"] > 0
        summary = row["summary"]
        assert summary["theirs_median_events_per_s"] == pytest.approx(2 * events)
        assert summary["ratio_of_medians"] == pytest.approx(
            summary["ours_median_events_per_s"] / (2 * events)
        )
    assert result["settings"]["readme"]["their_params"]["n_epochs"] == 1
    assert result["settings"]["readme"]["our_preset"] == "rsc15-best"
    assert "readme: ours " in capsys.readouterr().out
