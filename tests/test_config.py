import pytest
import yaml

from rankbits.config import (
    ConfigError, Run, config_hash, expand_runs, resolve_training, run_spec, validate_config,
)
from rankbits.methods import METHODS

from conftest import REPO, SCHEMA, SHARED_DATA, rejects


def test_default_study_expands_to_its_cross_product(validated):
    runs = expand_runs(validated)
    assert len(runs) == 24  # 8 arms x 3 seeds
    assert {(r.method, r.budget) for r in runs} == {("lora", 2), ("lora", 8), ("adalora", 2), ("adalora", 8)}
    assert {r.bits for r in runs} == {"32", "4"}
    assert all(r.task == "sst2" for r in runs) and {r.seed for r in runs} == {0, 1, 2}
    assert runs[0].path == "sst2/minilm/lora/2/32/seed0"


def test_integer_bits_are_normalised_to_strings(base_config):
    base_config["study"]["bits"] = [32]
    runs = expand_runs(validate_config(base_config, SCHEMA))
    assert {r.bits for r in runs} == {"32"}


@pytest.mark.parametrize("axis,bad,valid", [
    ("tasks", "sst3", "sst2"), ("methods", "loraa", "adalora"), ("models", "gpt9", "minilm"),
    ("bits", "3", "32"),
])
def test_unknown_names_fail_with_one_line_listing_valid_names(base_config, axis, bad, valid):
    base_config["study"][axis] = [bad]
    with pytest.raises(ConfigError) as err:
        validate_config(base_config, SCHEMA)
    msg = str(err.value)
    assert f"study.{axis}" in msg and repr(bad) in msg and valid in msg and "\n" not in msg


def test_schema_violation_names_the_key(base_config):
    base_config["training"]["lr"] = -1
    rejects(base_config, r"^training\.lr: -1 is less than or equal to the minimum of 0")
    base_config["training"]["lr"] = 1e-3
    base_config["study"]["typo_key"] = 1
    rejects(base_config, r"^study: .*'typo_key'")
    del base_config["study"]["typo_key"]
    base_config["training"]["batch_size"] = "sixteen"  # a wrong type
    rejects(base_config, r"^training\.batch_size: 'sixteen' is not of type 'integer'")
    base_config["training"]["batch_size"] = 16
    base_config["training"]["on_nan"] = "ignore"  # not an allowed value: they are listed
    rejects(base_config, r"^training\.on_nan: 'ignore' is not one of \['stop', 'skip_batch'\]")


def test_unknown_method_option_is_rejected_with_valid_options(base_config):
    base_config["methods"]["adalora"]["tinti"] = 0.1
    rejects(base_config, r"methods\.adalora.*tinti.*valid options: .*tinit")


def test_schema_fills_training_defaults(base_config):
    del base_config["training"]
    cfg = validate_config(base_config, SCHEMA)
    assert cfg["training"]["batch_size"] == 16 and cfg["training"]["max_grad_norm"] == 1.0


def test_hyperparameter_precedence(validated):
    cfg = validated
    cfg["training"]["lr"] = 1.0
    cfg["tasks"]["sst2"]["training"] = {"lr": 2.0, "epochs": 3}
    cfg["methods"]["adalora"]["training"] = {"lr": 3.0}
    cfg["overrides"] = [{"task": "sst2", "method": "adalora", "training": {"lr": 4.0}},
                        {"method": "lora", "training": {"weight_decay": 0.5}}]
    assert resolve_training(cfg, "cola", "lora")["lr"] == 1.0
    assert resolve_training(cfg, "sst2", "lora")["lr"] == 2.0
    assert resolve_training(cfg, "sst2", "lora")["weight_decay"] == 0.5
    assert resolve_training(cfg, "cola", "adalora")["lr"] == 3.0
    ada = resolve_training(cfg, "sst2", "adalora")
    assert ada["lr"] == 4.0 and ada["epochs"] == 3 and ada["weight_decay"] == 0.0


def test_run_spec_and_hash_change_only_with_what_determines_the_run(validated):
    run = Run("sst2", "minilm", "lora", 8, "32", 0)
    spec = run_spec(validated, run)
    h = config_hash(spec)
    assert h == config_hash(run_spec(validated, run))
    validated["methods"]["adalora"]["deltaT"] = 99  # another method's option
    assert config_hash(run_spec(validated, run)) == h
    validated["training"]["lr"] = 5e-4
    assert config_hash(run_spec(validated, run)) != h


def test_adalora_options_resolve_against_the_run_length(validated):
    ada = METHODS.get("adalora")
    opts = ada.options(validated["methods"]["adalora"], "methods.adalora")
    r = ada.prepare(8, opts, total_steps=500, where="methods.adalora")
    assert r["init_r"] == 12 and r["tinit"] == 50 and r["tfinal"] == 100 and r["deltaT"] == 5
    assert ada.prepare(2, opts, 500, "m")["init_r"] == 3
    with pytest.raises(ConfigError, match="tinit"):
        ada.prepare(8, {**opts, "tinit": 400, "tfinal": 100}, 500, "methods.adalora")
    with pytest.raises(ConfigError, match="init_r"):
        ada.prepare(8, {**opts, "init_r": 4}, 500, "methods.adalora")


@pytest.mark.parametrize("study", sorted((REPO / "config" / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_study_config_validates_over_the_default(study, base_config, tmp_path, monkeypatch):
    """Snakemake merges --configfile over config/config.yaml; the merged config must be valid. A
    study that declares its own files (byo*.yaml) is checked where ``rankbits example-data`` made
    them; a model file that could not be made (an optional package absent) is named in the error."""
    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k) or {}, v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    cfg = merge(base_config, yaml.safe_load(study.read_text()))
    if cfg.get("models") or cfg.get("tasks"):
        if not (SHARED_DATA / "sst2").is_dir():
            pytest.skip(f"{SHARED_DATA} is absent: {study.name}'s files are made from it")
        from rankbits.examples import make

        monkeypatch.chdir(tmp_path)
        make(str(SHARED_DATA), cfg["data_root"])
        missing = [str(v) for m in (cfg.get("models") or {}).values() for k, v in m.items()
                   if k in ("path", "gguf") and not (tmp_path / v).exists()]
        if missing:
            with pytest.raises(ConfigError, match=missing[0]):
                validate_config(cfg, SCHEMA)
            return
    validate_config(cfg, SCHEMA)


def test_config_strings_from_the_command_line_are_read_as_the_schema_types(base_config):
    """Snakemake hands --config values over as strings: job_server=false, data_root=null,
    training='{lr: 0.002}', budgets; a string the schema takes as a string stays one."""
    base_config.update(job_server="false", data_root="null")
    base_config["training"].update(lr="0.002", lora_alpha="2r", max_grad_norm="1")
    base_config["study"]["budgets"] = ["2", "8"]
    cfg = validate_config(base_config, SCHEMA)
    assert cfg["job_server"] is False and cfg["data_root"] is None
    assert cfg["training"]["lr"] == 0.002 and cfg["training"]["lora_alpha"] == "2r"
    assert cfg["study"]["budgets"] == [2, 8] and cfg["study"]["bits"] == ["32", "4"]
    base_config["training"]["lr"] = "fast"
    rejects(base_config, r"^training.lr: 'fast' is not of type 'number'")


@pytest.mark.parametrize("key, value, message", [
    ("tinit", "abc", r"^methods\.adalora\.tinit: 'abc' is not of type 'number'"),
    ("tinit", -1, r"^methods\.adalora\.tinit: -1 is less than the minimum of 0"),
    ("init_r", 2.5, r"^methods\.adalora\.init_r: 2\.5 is not of type 'integer', 'null'"),
    ("beta1", 1, r"^methods\.adalora\.beta1: 1 is greater than or equal to the maximum of 1"),
    ("init_r", 8, r"^methods\.adalora\.init_r: 8 must be above the target rank \(the budget, 8\)"),
    # 800 training rows / 16 per batch = 50 planned steps: 45 + 10 leaves no room to prune
    ("tinit", 45, r"^methods\.adalora: tinit \(45 steps\) must be below total steps minus tfinal"),
])
def test_method_options_are_checked_for_every_run_at_start_up(validated, key, value, message):
    """What a training job would reject fails before any job starts, naming the key: the type and
    range from the method's option schema, the rules across options, budget and run length from
    its ``prepare`` at the planned number of steps."""
    validated["methods"]["adalora"][key] = value
    runs = expand_runs(validated)
    with pytest.raises(ConfigError, match=message):
        for run in runs:
            run_spec(validated, run)


def test_method_options_from_the_command_line_are_read_as_their_types(validated):
    validated["methods"]["adalora"].update(tinit="0.2", init_r="null", deltaT="3")
    run = next(r for r in expand_runs(validated) if r.method == "adalora")
    opts = run_spec(validated, run)["method_options"]
    assert opts["tinit"] == 0.2 and opts["init_r"] is None and opts["deltaT"] == 3


def test_a_study_is_named_by_its_config_file_or_study_name():
    from rankbits.config import study_name

    assert study_name({}, []) == "default"
    assert study_name({}, ["config/config.yaml"]) == "default"
    assert study_name({}, ["/x/config/studies/rank-allocation.yaml"]) == "rank-allocation"
    assert study_name({"study_name": "mine"}, ["config/studies/lm.yaml"]) == "mine"
    for bad in ("cache", "../up", "a b"):
        with pytest.raises(ConfigError, match="^study_name: "):
            study_name({"study_name": bad})


def test_config_readme_lists_every_schema_key():
    readme = (REPO / "config" / "README.md").read_text()
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    keys = set(schema["properties"]) | set(schema["$defs"]["training"]["properties"])
    keys |= set(schema["$defs"]["task_entry"]["properties"])
    missing = sorted(k for k in keys if f"`{k}`" not in readme and f".{k}`" not in readme)
    assert not missing, f"config/README.md does not describe {missing}"


def test_config_readme_names_every_registered_method():
    """Its method list is the registry's (it missed rslora, dora, eva, pissa, loftq and optimal)."""
    from rankbits.methods import METHODS

    readme = (REPO / "config" / "README.md").read_text()
    missing = [n for n in METHODS.names() if f"`{n}`" not in readme]
    assert not missing, f"config/README.md does not name the registered method(s) {missing}"


def test_forgetting_and_scores_are_checked_at_start_up():
    base = {"study": {"tasks": ["alpaca"], "models": ["gpt2"], "methods": ["lora"], "budgets": [8],
                      "bits": ["32"], "seeds": [0]}}
    with pytest.raises(ConfigError, match=r"^tasks\.alpaca\.forgetting: 'sst2' is a classification task"):
        validate_config({**base, "tasks": {"alpaca": {"forgetting": "sst2"}}}, SCHEMA)
    with pytest.raises(ConfigError, match=r"^tasks\.alpaca\.forgetting: "):
        validate_config({**base, "tasks": {"alpaca": {"forgetting": "wikitext3"}}}, SCHEMA)
    adapter = {"task": "alpaca", "method": "lora", "budget": 2, "bits": "32", "seed": 0}
    with pytest.raises(ConfigError, match=r"^scores\[0\]\.adapters\[0\]: alpaca/gpt2/lora/2/32/seed0 is not a run"):
        validate_config({**base, "scores": [{"task": "cnn_dailymail", "models": ["gpt2"], "adapters": [adapter]}]},
                        SCHEMA)
    cfg = validate_config({**base, "tasks": {"alpaca": {"forgetting": "wikitext2"}},
                           "scores": [{"task": "cnn_dailymail", "models": ["gpt2"],
                                       "adapters": [{**adapter, "budget": 8}]}]}, SCHEMA)
    from rankbits.config import Run, expand_runs, scoring_plan

    plan = scoring_plan(cfg, expand_runs(cfg))
    assert plan == [("alpaca", "gpt2", None), ("wikitext2", "gpt2", None), ("cnn_dailymail", "gpt2", None),
                    ("cnn_dailymail", "gpt2", Run("alpaca", "gpt2", "lora", 8, "32", 0))]


def test_rslora_refuses_an_alpha_that_grows_with_rank():
    """alpha "2r" under rsLoRA's alpha / sqrt(r) is a scale of 2 sqrt(r) (2.83 at r=2, 5.66 at r=8):
    growing with rank, the opposite of rsLoRA. Refused at start-up, naming the key."""
    from conftest import small_spec

    with pytest.raises(ConfigError, match=r"^methods\.rslora\.training\.lora_alpha: '2r' makes rsLoRA's scale"):
        small_spec("rslora", budget=8)
    with pytest.raises(ConfigError, match=r"lora_scaling: rslora"):
        small_spec("lora", budget=8, lora_scaling="rslora")
    assert small_spec("rslora", budget=8, lora_alpha=2.83)["training"]["lora_alpha"] == 2.83
    assert small_spec("lora", budget=8)["training"]["lora_alpha"] == "2r"  # plain LoRA: unchanged
