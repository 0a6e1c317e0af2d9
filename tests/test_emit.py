"""`rankbits recommend --emit`: the recommended arm as PEFT code, an Axolotl or a LLaMA-Factory
fragment, read from the study's runs and the adapter configs they saved."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankbits import aggregate as agg
from rankbits.config import adapter_dir
from rankbits.emit import emit

from test_verdict import write_runs

TARGETS = ["query", "key", "value", "dense"]
TRAINING = {"lr": 0.004, "batch_size": 16, "epochs": 1, "warmup_ratio": 0.1, "kbit_prepare": True,
            "max_grad_norm": 1.0}


def study(root: Path, arms: dict, peft_configs: dict) -> list[str]:
    """Runs as the workflow leaves them: metrics.json with the run's spec, and each chosen
    adapter's adapter_config.json (written by PEFT itself)."""
    dirs = write_runs(root, arms)
    for d in dirs:
        m = json.loads(Path(d, "metrics.json").read_text())
        ri = m["run_info"]
        m["run_info"]["spec"] = {"training": TRAINING, "model_options": {}}
        Path(d, "metrics.json").write_text(json.dumps(m))
        peft_configs[(ri["method"], ri["budget"], ri["bits"])].save_pretrained(str(adapter_dir(d, 0.004)))
    return dirs


def configs():
    from peft import AdaLoraConfig, LoraConfig

    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=TARGETS, task_type="SEQ_CLS",
                      modules_to_save=["classifier"])
    uneven = LoraConfig(r=2, lora_alpha=4, target_modules=TARGETS, task_type="SEQ_CLS",
                        rank_pattern={"layer.0.attention.self.query": 6}, modules_to_save=["classifier"])
    ada = AdaLoraConfig(init_r=3, target_r=2, tinit=10, tfinal=20, deltaT=5, total_step=100,
                        target_modules=TARGETS, task_type="SEQ_CLS", modules_to_save=["classifier"])
    return lora, uneven, ada


ARMS = {("lora", 8, "4"): (185, [0.855, 0.868, 0.877]),  # the best within 200 MiB
        ("lora", 2, "32"): (150, [0.80, 0.81, 0.82]),     # the only arm within 160 MiB
        ("adalora", 2, "32"): (170, [0.83, 0.835, 0.84])}  # the best within 180 MiB


@pytest.fixture
def results(tmp_path):
    lora, uneven, ada = configs()
    study(tmp_path, ARMS, {("lora", 8, "4"): lora, ("lora", 2, "32"): uneven, ("adalora", 2, "32"): ada})
    return tmp_path


def test_emitted_peft_code_builds_the_recommended_model(results):
    """The snippet runs as printed (MiniLM from the pip package, NF4 on CPU) and builds the arm:
    LoRA r=8 with alpha 16 on the four kinds, the classifier trained in full."""
    from peft import PeftModel

    runs = agg.load_runs([str(p.parent) for p in results.rglob("metrics.json")])
    code = emit(runs, 200, "peft")
    assert "LoraConfig(" in code and "    r=8," in code and "load_in_4bit=True" in code and "'nf4'" in code
    assert "'learning_rate': 0.004" in code and "prepare_model_for_kbit_training" in code
    scope = {}
    exec(compile(code, "emitted.py", "exec"), scope)
    model = scope["model"]
    assert isinstance(model, PeftModel)
    cfg = model.peft_config["default"]
    assert cfg.r == 8 and cfg.lora_alpha == 16 and sorted(cfg.target_modules) == sorted(TARGETS)
    assert any("lora_A" in n for n, p in model.named_parameters() if p.requires_grad)
    assert type(model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer).__name__ == "Linear4bit"


def test_uneven_ranks_and_adalora_are_carried_or_said_to_be_missing(results):
    runs = agg.load_runs([str(p.parent) for p in results.rglob("metrics.json")])
    uneven = emit(runs, 160, "peft")
    assert "rank_pattern={'layer.0.attention.self.query': 6}" in uneven
    scope = {}
    exec(compile(uneven, "emitted.py", "exec"), scope)
    query = scope["model"].base_model.model.bert.encoder.layer[0].attention.self.query
    assert query.lora_A["default"].weight.shape[0] == 6
    fragment = yaml.safe_load(emit(runs, 160, "llama-factory"))
    assert fragment["lora_rank"] == 2 and fragment["lora_target"] == "dense,key,query,value"
    assert "quantization_bit" not in fragment
    assert "per-module ranks (rank_pattern, 1 modules) are not offered here" in emit(runs, 160, "llama-factory")
    ada = emit(runs, 180, "peft")
    assert "AdaLoraConfig(" in ada and "total_step=100" in ada and "update_and_allocate" in ada
    exec(compile(ada, "emitted.py", "exec"), {})
    axolotl = emit(runs, 180, "axolotl")
    assert "AdaLoRA is not offered here: the nearest is uniform LoRA at r=2" in axolotl
    assert yaml.safe_load(axolotl)["lora_r"] == 2


def test_yaml_fragments_name_the_bits_and_rate(results):
    runs = agg.load_runs([str(p.parent) for p in results.rglob("metrics.json")])
    ax = yaml.safe_load(emit(runs, 200, "axolotl"))
    assert ax["adapter"] == "qlora" and ax["load_in_4bit"] is True and ax["lora_r"] == 8
    assert ax["bnb_config_kwargs"] == {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    assert ax["learning_rate"] == 0.004 and ax["micro_batch_size"] == 16
    assert ax["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    lf = yaml.safe_load(emit(runs, 200, "llama-factory"))
    assert lf["quantization_bit"] == 4 and lf["quantization_type"] == "nf4" and lf["double_quantization"] is True
    assert lf["finetuning_type"] == "lora" and lf["lora_alpha"] == 16 and lf["per_device_train_batch_size"] == 16
    assert "classification" in emit(runs, 200, "llama-factory")  # says the head does not carry over
    out = subprocess.run([sys.executable, "-m", "rankbits.cli", "recommend", "--results", str(results),
                          "--memory-mb", "200", "--emit", "axolotl"], capture_output=True, text=True)
    assert out.returncode == 0 and yaml.safe_load(out.stdout)["lora_r"] == 8, out.stderr
