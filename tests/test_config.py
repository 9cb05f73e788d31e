"""Config files: validation against constructors, presets, inline NAME@PRESET."""

import pytest

from benchmark import config
from benchmark.config import ConfigError, load_tables, resolve


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown algorithm 'knn'.*item-knn.*pop"):
        resolve(["knn"], {})


def test_unknown_table_in_config_file_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[popular]\n")
    tables, _ = load_tables("no-such-dataset", path)
    with pytest.raises(ConfigError, match="popular"):
        resolve(["pop"], tables)


def test_unknown_hyperparameter_lists_valid_ones(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[item-knn]\nlambda = 3\n")
    tables, _ = load_tables("no-such-dataset", path)
    with pytest.raises(
        ConfigError, match=r"\[item-knn\] unknown hyperparameter\(s\) lambda.*valid: "
    ):
        resolve(["item-knn"], tables, source=str(path))


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[pop\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_tables("no-such-dataset", path)


def test_labels_presets_and_overrides(tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "item-knn.toml").write_text("[wide]\nn_sims = 500\nalpha = 0.75\n")
    monkeypatch.setattr(config, "PRESET_DIR", presets)
    path = tmp_path / "c.toml"
    path.write_text('[knn-wide]\nalgorithm = "item-knn"\npreset = "wide"\nalpha = 0.5\n')
    tables, _ = load_tables("no-such-dataset", path)
    (spec,) = resolve(["knn-wide"], tables)
    assert (spec.algorithm, spec.preset) == ("item-knn", "wide")
    assert spec.params == {"n_sims": 500, "alpha": 0.5}  # explicit keys beat the preset
    (inline,) = resolve(["item-knn@wide"], {})
    assert inline.params == {"n_sims": 500, "alpha": 0.75}
    model = inline.build(seed=0, device="cpu")
    assert model.get_params()["n_sims"] == 500
    with pytest.raises(ConfigError, match=r"unknown preset 'narrow'.*wide"):
        resolve(["item-knn@narrow"], {})


def test_seed_and_device_fill_only_where_taken():
    (pop,) = resolve(["pop"], {})
    assert pop.build(seed=5, device="cpu").get_params() == {}
    assert not pop.is_stochastic()


def test_declarations_name_constructor_arguments_and_admit_their_defaults():
    """Every registered algorithm: the declaration covers only constructor arguments, and each
    constructor default satisfies its own spec (so a run with no config is valid)."""
    import inspect

    from benchmark.registry import ALGORITHMS, get_algorithm

    for name in ALGORITHMS:
        cls = get_algorithm(name)
        assert set(cls.hyperparameters) <= set(cls.param_names()), name
        defaults = inspect.signature(cls.__init__).parameters
        for param, spec in cls.param_specs().items():
            assert spec.problem(defaults[param].default) is None, (name, param)


def test_gru4rec_declares_every_hyperparameter():
    from algorithms.gru4rec import GRU4Rec

    assert set(GRU4Rec.hyperparameters) == set(GRU4Rec.param_names())


@pytest.mark.parametrize("dataset", ["rsc15", "rsc15-100k", "rsc15-64", "diginetica", "synthetic"])
def test_shipped_configs_pass_the_declarations(dataset, tmp_path):
    from benchmark.options import RunOptions, plan

    ready = plan(RunOptions(dataset=dataset, out=tmp_path, device="cpu"))
    assert [s.label for s in ready.specs] == [
        "pop",
        "spop",
        "item-knn",
        "bpr-mf",
        "sknn",
        "vsknn",
        "stan",
        "vstan",
        "sr",
        "ar",
        "markov",
        "gru4rec",
    ]


def test_every_shipped_preset_passes_the_declarations():
    presets = config.read_toml(config.PRESET_DIR / "gru4rec.toml")
    specs = resolve([f"gru4rec@{name}" for name in presets], {})
    for spec in specs:
        config.check_buildable(spec, seed=0, device="cpu", source="presets")
    assert len(specs) == len(presets) >= 2


@pytest.mark.parametrize(
    "value, message",
    [
        ('"tuned"', 'must be "published" or a table'),
        ('{ trials = 0, objective = "mrr" }', r"trials = 0: must be an integer >= 1"),
        ('{ trials = 3, objective = "ndcg" }', "objective must be one of mrr, recall"),
        ('{ trials = 3, objective = "mrr", seed = 1 }', r"unknown key\(s\) seed"),
    ],
)
def test_a_bad_tuning_record_names_the_file_and_table(tmp_path, value, message):
    path = tmp_path / "c.toml"
    path.write_text(f"[item-knn]\ntuning = {value}\n")
    tables, _ = load_tables("no-such-dataset", path)
    with pytest.raises(ConfigError, match=message) as exc:
        resolve(["item-knn"], tables, source=str(path))
    assert f"{path}: [item-knn] tuning" in str(exc.value)


def test_the_tuning_record_is_not_a_hyperparameter(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[item-knn]\nn_sims = 50\ntuning = { method = "grid", trials = 48, objective = "recall" }\n'
    )
    tables, _ = load_tables("no-such-dataset", path)
    [spec] = resolve(["item-knn"], tables, source=str(path))
    assert spec.params == {"n_sims": 50}
    assert config.tuning_text(spec.tuning) == "grid: 48 settings, Recall@20"
