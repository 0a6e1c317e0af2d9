"""``rankbits recommend --emit TOOL``: the recommended arm written for the user's own tool — a
PEFT ``LoraConfig`` / ``AdaLoraConfig`` with its ``BitsAndBytesConfig`` (Python), an Axolotl
YAML fragment, a LLaMA-Factory YAML fragment.

Everything comes from the study's files: the arm's run (``metrics.json``: method, budget, bits,
the settings it trained with, the learning rate its search chose) and the adapter that run saved
(``adapter_config.json``, PEFT's own record of rank, alpha, target modules and ``rank_pattern``).
Where a tool cannot express the arm (per-layer bits, AdaLoRA or per-module ranks outside PEFT, a
classification head in a causal-LM trainer) the fragment says so in a comment and gives the
nearest it can.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import yaml

from .bits import BITS
from .config import adapter_dir
from .methods import METHODS
from .models import HEAD_MODULES, MODELS
from .problems import problem
from .record import COLLAPSED
from .verdict import arm_table, best_within, interval, select

TOOLS = ("peft", "axolotl", "llama-factory")
# PEFT config fields that describe where an adapter was saved, not how to train one
NOT_RECIPE = {"base_model_name_or_path", "revision", "inference_mode", "peft_type", "auto_mapping",
              "peft_version", "megatron_core", "runtime_config"}
# shown even at PEFT's default: what a reader looks for first
ALWAYS = {"r", "lora_alpha", "target_modules", "init_r", "target_r", "tinit", "tfinal", "deltaT", "total_step"}


@dataclasses.dataclass
class Recipe:
    """What one run of the recommended arm trained with."""
    task: str
    model: str
    method: str
    budget: int
    bits: str
    lr: float
    source: str  # the checkpoint the study loaded
    hub_id: str | None  # the registered model's name on the Hub, if it is registered
    training: dict
    peft_class: str
    peft: dict  # the adapter config's fields that differ from the class defaults
    headline: str  # what the study measured for the arm, one line


def recipe(run_dir: str, headline: str) -> Recipe:
    """The recipe of the run in ``run_dir`` (a finished run of a study)."""
    from peft import PeftConfig

    m = json.loads(Path(run_dir, "metrics.json").read_text())
    info, spec = m["run_info"], m["run_info"]["spec"]
    lr = float(m["train_info"]["training"]["lr"])
    cfg = PeftConfig.from_pretrained(str(adapter_dir(run_dir, lr)))
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(type(cfg))}
    fields = {k: v for k, v in dataclasses.asdict(cfg).items()
              if k not in NOT_RECIPE and (k in ALWAYS or (v != defaults.get(k) and v not in ({}, None)))}
    for key in ("target_modules", "modules_to_save"):  # (PEFT adds a head to modules_to_save twice)
        if isinstance(fields.get(key), (list, set, tuple)):
            fields[key] = sorted(set(fields[key]))
    if type(cfg).__name__ == "AdaLoraConfig":
        fields.pop("rank_pattern", None)  # where its pruning ended, not where a new run starts
    registered = info["model"] in MODELS.registered()
    spec_model = MODELS.get(info["model"])
    return Recipe(task=info["task"], model=info["model"], method=info["method"], budget=int(info["budget"]),
                  bits=str(info["bits"]), lr=lr, source=spec_model.source(spec.get("model_options") or {}),
                  hub_id=spec_model.hub_id if registered else None, training=spec["training"],
                  peft_class=type(cfg).__name__, peft=fields, headline=headline)


def per_layer_bits(r: Recipe) -> bool:
    """Whether the arm's base holds layers at different bit-widths (``mixed:*`` bits, or a method
    that sets the base's precision itself): no bitsandbytes config expresses it."""
    return BITS.get(r.bits).build is not None or METHODS.get(r.method).own_bits


def quantization(r: Recipe) -> dict:
    """The base's bitsandbytes settings as keyword arguments (empty for a full-precision base);
    for a per-layer mix, the single setting bitsandbytes can load (its 4-bit part)."""
    spec = BITS.get(r.bits)
    if not spec.quantized:
        return {}
    q = spec.load_kwargs("cuda", list(HEAD_MODULES))[0]["quantization_config"]
    out = {"load_in_8bit": True} if q.load_in_8bit else {
        "load_in_4bit": True, "bnb_4bit_quant_type": q.bnb_4bit_quant_type,
        "bnb_4bit_use_double_quant": bool(q.bnb_4bit_use_double_quant)}
    if q.llm_int8_skip_modules:
        out["llm_int8_skip_modules"] = list(q.llm_int8_skip_modules)
    return out


def caveats(r: Recipe, tool: str) -> list[str]:
    """What the emitted settings cannot carry over from the study, or must be done by hand."""
    notes = []
    if per_layer_bits(r):
        notes.append(f"the study's base held layers at different bit-widths ({r.bits if r.bits != '32' else r.method}); "
                     f"one BitsAndBytesConfig cannot express that: the nearest given here is "
                     f"{'4-bit everywhere' if BITS.get(r.bits).quantized else 'the full-precision base'}, "
                     f"which is not the memory the study measured")
    if tool != "peft":
        return notes
    if r.peft.get("init_lora_weights") == "eva":
        notes.append("EVA: after get_peft_model, call peft.initialize_lora_eva_weights(model, dataloader) on "
                     "your first batches, as the study did")
    if r.peft_class == "AdaLoraConfig":
        notes.append(f"AdaLoRA: total_step is the study's {r.peft.get('total_step')} steps; set it (and tinit/"
                     f"tfinal in proportion) to your run's; call model.base_model.update_and_allocate(step) "
                     f"after each optimizer step")
    return notes


def hyperparameters(r: Recipe) -> dict:
    """The training settings a user copies besides the adapter: the chosen rate first."""
    t = r.training
    keys = ("batch_size", "epochs", "max_steps", "warmup_ratio", "weight_decay", "max_grad_norm",
            "gradient_checkpointing")
    return {"learning_rate": r.lr, "lr_scheduler": "linear",  # train.py: linear decay after warmup
            **{k: t[k] for k in keys if t.get(k) is not None}}


def _py(value) -> str:
    return repr(value)


def emit_peft(r: Recipe) -> str:
    prob = problem(r.task, r.model)
    q = quantization(r)
    lines = [f"# rankbits recommend: {r.headline}", "import torch",
             f"from peft import {r.peft_class}, get_peft_model"
             + (", prepare_model_for_kbit_training" if q and r.training.get("kbit_prepare") else ""),
             f"from transformers import {prob.auto_class}" + (", BitsAndBytesConfig" if q else ""), ""]
    if r.hub_id:
        lines.append(f"# {r.model} is {r.hub_id} on the Hub; the study read it from the path below")
    kwargs = [f"num_labels={prob.task.num_labels}"] if prob.auto_class == "AutoModelForSequenceClassification" else []
    if q:
        bnb = ", ".join(f"{k}={_py(v)}" for k, v in q.items())
        if "load_in_4bit" in q:
            bnb += ", bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32"
        kwargs.append(f"quantization_config=BitsAndBytesConfig({bnb})")
        kwargs.append('device_map={"": "cuda" if torch.cuda.is_available() else "cpu"}')
    lines.append(f"model = {prob.auto_class}.from_pretrained(")
    lines.append(f"    {_py(r.source)},")
    lines += [f"    {k}," for k in kwargs]
    lines.append(")")
    if q and r.training.get("kbit_prepare"):
        lines.append("model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)")
    lines.append(f"config = {r.peft_class}(")
    lines += [f"    {k}={_py(v)}," for k, v in r.peft.items()]
    lines.append(")")
    lines.append("model = get_peft_model(model, config)")
    lines += [f"# {n}" for n in caveats(r, "peft")]
    lines.append("# trained in the study with AdamW and these settings (learning rate: chosen by its search):")
    lines.append(f"TRAINING = {_py(hyperparameters(r))}")
    return "\n".join(lines) + "\n"


def _yaml_fragment(header: list[str], body: dict) -> str:
    return "\n".join(f"# {h}" for h in header) + "\n" + yaml.safe_dump(body, sort_keys=False)


def _targets(r: Recipe):
    return r.peft.get("target_modules") or "all-linear"


def _uneven(r: Recipe) -> list[str]:
    """Per-module ranks neither YAML tool takes: the nearest is uniform LoRA at the budget."""
    out = []
    if r.peft_class == "AdaLoraConfig":
        out.append(f"AdaLoRA is not offered here: the nearest is uniform LoRA at r={r.budget} (the study's "
                   f"LoRA arm at this budget and bits, if it ran, is its measured equivalent)")
    elif r.peft.get("rank_pattern"):
        out.append(f"per-module ranks (rank_pattern, {len(r.peft['rank_pattern'])} modules) are not offered "
                   f"here: the nearest is uniform r={r.peft.get('r', 8)}; `--emit peft` carries them")
    return out


def _init(r: Recipe) -> str | None:
    init = r.peft.get("init_lora_weights")
    return init if isinstance(init, str) else None


def _axolotl_bits(q: dict) -> dict:
    if q.get("load_in_4bit"):
        return {"load_in_4bit": True, "bnb_config_kwargs": {"bnb_4bit_quant_type": q["bnb_4bit_quant_type"],
                                                            "bnb_4bit_use_double_quant": q["bnb_4bit_use_double_quant"]}}
    return {"load_in_8bit": True} if q.get("load_in_8bit") else {}


def _llama_factory_bits(q: dict) -> dict:
    if q.get("load_in_4bit"):
        return {"quantization_bit": 4, "quantization_type": q["bnb_4bit_quant_type"],
                "double_quantization": q["bnb_4bit_use_double_quant"]}
    return {"quantization_bit": 8} if q.get("load_in_8bit") else {}


# each YAML tool's documented keys for what rankbits knows of an arm
YAML_TOOLS = {
    "axolotl": {
        "name": "Axolotl", "trains": "causal LMs", "merge": "merge into your config",
        "head": lambda r, q: {"base_model": r.hub_id or r.source,
                              "adapter": "qlora" if q.get("load_in_4bit") else "lora"},
        "bits": _axolotl_bits, "rank": "lora_r", "targets": ("lora_target_modules", lambda t: t),
        "flags": {"use_rslora": "peft_use_rslora", "use_dora": "peft_use_dora"}, "inits": {},
        "fixed": {"optimizer": "adamw_torch"}, "batch": "micro_batch_size", "scheduler": "lr_scheduler"},
    "llama-factory": {
        "name": "LLaMA-Factory", "trains": "generative models", "merge": "merge into your training config",
        "head": lambda r, q: {"model_name_or_path": r.hub_id or r.source, "finetuning_type": "lora"},
        "bits": _llama_factory_bits, "rank": "lora_rank",
        "targets": ("lora_target", lambda t: ",".join(t) if isinstance(t, list) else "all"),
        "flags": {"use_rslora": "use_rslora", "use_dora": "use_dora"}, "inits": {"pissa": "pissa_init"},
        "fixed": {}, "batch": "per_device_train_batch_size", "scheduler": "lr_scheduler_type"},
}


def emit_yaml(r: Recipe, tool: str) -> str:
    """``tool``'s YAML fragment for the recipe, with a comment for each thing it cannot carry."""
    t, q = YAML_TOOLS[tool], quantization(r)
    notes = [f"rankbits recommend: {r.headline}", f"{t['name']} YAML fragment: {t['merge']}"]
    if problem(r.task, r.model).auto_class == "AutoModelForSequenceClassification":
        notes.append(f"{t['name']} trains {t['trains']}: this study's task is classification; the adapter "
                     f"settings below carry over, the task head does not")
    body = {**t["head"](r, q), **t["bits"](q)}
    key, shape = t["targets"]
    body.update({t["rank"]: int(r.peft.get("r", r.budget) if r.peft_class == "LoraConfig" else r.budget),
                 "lora_alpha": r.peft.get("lora_alpha", 8), "lora_dropout": r.peft.get("lora_dropout", 0.0),
                 key: shape(_targets(r))})
    body.update({theirs: True for ours, theirs in t["flags"].items() if r.peft.get(ours)})
    init = _init(r)
    if init in t["inits"]:
        body[t["inits"][init]] = True
    elif init:
        notes.append(f"init_lora_weights={init!r} ({r.method}): rankbits knows no {t['name']} key for it; "
                     f"the fragment starts from PEFT's default initialisation")
    h = hyperparameters(r)
    body.update({"learning_rate": h["learning_rate"], **t["fixed"]})
    for ours, theirs in (("batch_size", t["batch"]), ("warmup_ratio", "warmup_ratio"),
                         ("weight_decay", "weight_decay"), ("max_grad_norm", "max_grad_norm"),
                         ("lr_scheduler", t["scheduler"])):
        if ours in h:
            body[theirs] = h[ours]
    return _yaml_fragment(notes + _uneven(r) + caveats(r, tool), body)


EMITTERS = {"peft": emit_peft, **{tool: (lambda r, tool=tool: emit_yaml(r, tool)) for tool in YAML_TOOLS}}


def representative_run(runs: pd.DataFrame) -> str:
    """The arm's run to read the recipe from: its first seed that did not collapse (else its first)."""
    ok = runs[~runs[COLLAPSED]]
    return str((ok if len(ok) else runs).sort_values("seed").iloc[0]["run_dir"])


def emit(runs: pd.DataFrame, memory_mib: float, tool: str, task: str | None = None, model: str | None = None,
         alpha: float = 0.05, margins: dict | None = None) -> str:
    """For each (task, model) of ``runs``: the arm ``verdict.RULE`` recommends within
    ``memory_mib``, written for ``tool``."""
    if task:
        runs = runs[runs["task"] == task]
    if model:
        runs = runs[runs["model"] == model]
    out = []
    for (t, m), r in runs.groupby(["task", "model"], sort=False):
        v = best_within(arm_table(r), r, memory_mib, alpha, margins=margins)
        if v is None:
            out.append(f"# {t} / {m}: no arm fits {memory_mib:g} MiB of training memory: nothing to emit\n")
            continue
        b = v["best"]
        headline = (f"{t} / {m} within {memory_mib:g} MiB: {b['arm']}, {b['metric']} {interval(b)}, "
                    f"{b['training_mib']:.1f} MiB")
        out.append(EMITTERS[tool](recipe(representative_run(select(r, b)), headline)))
    return "\n".join(out)
