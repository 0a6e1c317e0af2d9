"""Models declared in a study's configuration, not in the registry:

    models:
      my-gemma: {gguf: /path/to/gemma-3-270m-q4_k_m.gguf}   # or path: /local/folder, or hub: org/name
      my-encoder: {path: /path/to/a/bert-like/folder, family: bert}   # family, target_modules,
                                                                      # kinds: optional

The family (adapter targets and the module-name -> (layer, kind) map) comes from the checkpoint's
own ``model_type`` (``config.json``, or a GGUF file's ``general.architecture``) through
``MODEL_TYPES``; ``family:`` names one outright. An unknown ``model_type`` falls back to
*discovery*: the model is built on the meta device from its config (no weights read), the
repeated block list is found, and its Linear layers' names give the kinds; ``kinds:`` (module
suffix -> kind) and ``target_modules:`` override what discovery finds. A checkpoint whose blocks
cannot be found is a ConfigError saying which keys to set.

The Snakefile declares the study's models once (``declare``); they travel to every job in the
environment (``RANKBITS_MODELS``), where ``MODELS.get`` finds them like registered ones.
"""
from __future__ import annotations

import functools
import json
import os
import re
import struct
from pathlib import Path

from ..errors import ConfigError
from . import ATTENTION, KINDS, MODELS, Family, ModelSpec
from .gguf import dequantized_folder

ENV = "RANKBITS_MODELS"
SOURCES = ("path", "gguf", "hub")


def _family(module: str, name: str) -> Family:
    import importlib

    return getattr(importlib.import_module(f"rankbits.models.{module}"), name)


# model_type (transformers' config.json) -> (module, Family) of the families rankbits knows
MODEL_TYPES = {
    **{t: ("bert", "BERT") for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
    "mpnet": ("mpnet", "MPNET"),
    "deberta-v2": ("deberta", "DEBERTA_V2"),
    "distilbert": ("distilbert", "DISTILBERT"),
    "gpt2": ("gpt2", "GPT2"),
    **{t: ("llama", "LLAMA") for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3",
                                       "gemma3_text")},
    "phi3": ("phi3", "PHI3"),
    "t5": ("t5", "T5"),
}


def source_of(name: str, opts: dict) -> tuple[str, str]:
    """(kind, value) of a configured model's one source: path, gguf or hub."""
    given = [k for k in SOURCES if opts.get(k)]
    if len(given) != 1:
        raise ConfigError(f"models.{name}: give exactly one of path, gguf, hub (found "
                          f"{', '.join(given) or 'none'})")
    kind = given[0]
    value = str(opts[kind])
    if kind in ("path", "gguf"):
        value = str(Path(value).expanduser())
        if kind == "path" and not Path(value, "config.json").is_file():
            raise ConfigError(f"models.{name}.path: {value} has no config.json (a folder that "
                              f"from_pretrained reads)")
        if kind == "gguf" and not Path(value).is_file():
            raise ConfigError(f"models.{name}.gguf: {value}: file not found")
    return kind, value


def model_config(name: str, opts: dict) -> dict | None:
    """The checkpoint's config.json as a dict (path; hub where cached), or for a GGUF file the
    architecture its metadata names ({"model_type": ...}); None when it cannot be read offline."""
    kind, value = source_of(name, opts)
    if kind == "path":
        return json.loads(Path(value, "config.json").read_text())
    if kind == "gguf":
        return {"model_type": gguf_field(value, "general.architecture")}
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(value, "config.json")
    except ImportError:
        cached = None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def gguf_field(path: str, key: str):
    """One metadata value of a GGUF file, read from its header (no tensor is touched)."""
    scalars = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as fh:
        def read(fmt):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, fh.read(size))[0]

        def string():
            return fh.read(read("Q")).decode("utf-8", errors="replace")

        def value(kind):
            if kind in scalars:
                return read(scalars[kind])
            if kind == 8:
                return string()
            if kind == 9:
                sub, n = read("I"), read("Q")
                return [value(sub) for _ in range(n)]
            raise ValueError(f"{path}: GGUF value type {kind} unknown")

        if fh.read(4) != b"GGUF":
            raise ConfigError(f"{path}: not a GGUF file (no GGUF magic)")
        read("I")  # version
        read("Q")  # tensors
        for _ in range(read("Q")):
            k, v = string(), value(read("I"))
            if k == key:
                return v
    raise ConfigError(f"{path}: GGUF metadata has no {key!r}")


def layer_count(name: str, opts: dict) -> int | None:
    """Blocks in the checkpoint, from its config (or the GGUF file's ``<arch>.block_count``)."""
    kind, value = source_of(name, opts)
    if kind == "gguf":
        try:
            return int(gguf_field(value, f"{gguf_field(value, 'general.architecture')}.block_count"))
        except ConfigError:
            return None
    cfg = model_config(name, opts) or {}
    cfg = cfg.get("text_config", cfg)
    n = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers")
    return int(n) if n else None


def chat_template(name: str, opts: dict) -> bool | None:
    """Whether the checkpoint's tokenizer has a chat template (None: cannot tell offline)."""
    kind, value = source_of(name, opts)
    if kind == "gguf":
        try:
            return bool(gguf_field(value, "tokenizer.chat_template"))
        except ConfigError:
            return False
    if kind == "path":
        folder = Path(value)
        if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
            return True
        cfg = folder / "tokenizer_config.json"
        return bool(json.loads(cfg.read_text()).get("chat_template")) if cfg.is_file() else False
    return None


def family_for(name: str, opts: dict) -> tuple[Family, str]:
    """(family, how it was found) for a configured model."""
    custom = {k: opts[k] for k in ("target_modules", "kinds") if opts.get(k)}
    if opts.get("family"):
        fam = opts["family"]
        if fam not in MODEL_TYPES:
            raise ConfigError(f"models.{name}.family: {fam!r} is not a family rankbits knows; "
                              f"known: {', '.join(sorted(MODEL_TYPES))}")
        return _custom(_family(*MODEL_TYPES[fam]), custom, name), f"family {fam} (configured)"
    cfg = model_config(name, opts)
    if cfg is None:
        raise ConfigError(f"models.{name}: cannot read {opts.get('hub')}'s config.json offline; set "
                          f"models.{name}.family (one of {', '.join(sorted(MODEL_TYPES))})")
    model_type = cfg.get("model_type")
    if model_type in MODEL_TYPES:
        fam = _family(*MODEL_TYPES[model_type])
        return _custom(fam, custom, name), f"model_type {model_type} -> family {fam.name}"
    return discover(name, opts, cfg, custom), f"model_type {model_type}: discovered"


def _custom(fam: Family, custom: dict, name: str) -> Family:
    if not custom:
        return fam
    kinds = {**({} if "kinds" in custom else fam.kind_suffixes), **custom.get("kinds", {})}
    bad = sorted(set(kinds.values()) - set(KINDS))
    if bad:
        raise ConfigError(f"models.{name}.kinds: {bad} are not kinds; use {', '.join(KINDS)}")
    targets = tuple(custom.get("target_modules") or sorted({s.rsplit('.', 1)[-1] for s in kinds}))
    return Family(name=f"{fam.name}+{name}", architecture=fam.architecture, target_modules=targets,
                  kind_suffixes=kinds, layer_regex=fam.layer_regex, stack_regex=fam.stack_regex,
                  cls_head=fam.cls_head)


# the last part of a Linear's name -> its kind, for discovery ("dense" and "c_proj" depend on
# whether they sit in the attention or the feed-forward part)
NAME_KINDS = {
    "Wq": {"q", "q_proj", "query", "q_lin", "query_proj", "wq"},
    "Wk": {"k", "k_proj", "key", "k_lin", "key_proj", "wk"},
    "Wv": {"v", "v_proj", "value", "v_lin", "value_proj", "wv"},
    "Wqkv": {"qkv", "qkv_proj", "c_attn", "wqkv", "query_key_value", "in_proj"},
    "Wo": {"o", "o_proj", "out_proj", "out_lin", "wo_attn"},
    "Wg": {"gate_proj", "gate", "w1"},
    "Wf1": {"up_proj", "fc1", "c_fc", "lin1", "wi", "w3", "fc_in", "dense_h_to_4h", "gate_up_proj"},
    "Wf2": {"down_proj", "fc2", "lin2", "w2", "fc_out", "dense_4h_to_h"},
}
ATTN_PART = re.compile(r"attn|attention", re.I)


def kind_of(rel: str) -> str | None:
    last = rel.rsplit(".", 1)[-1].lower()
    for kind, names in NAME_KINDS.items():
        if last in names:
            return kind
    if last in ("dense", "c_proj", "proj", "out", "wo"):
        return "Wo" if ATTN_PART.search(rel) else "Wf2"
    return None


def blocks_of(model):
    """(prefix, blocks) of the longest ModuleList whose members share one class: the repeated
    layer stack."""
    import torch

    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) > 1 and len({type(m) for m in mod}) == 1:
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    return best


def discover(name: str, opts: dict, cfg: dict, custom: dict) -> Family:
    """A family for an unknown model_type: its block stack and Linear layers, found on a model
    built from its config on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModel

    kind, value = source_of(name, opts)
    if kind == "gguf":
        raise ConfigError(f"models.{name}: GGUF architecture {cfg.get('model_type')!r} is not one rankbits "
                          f"maps; set models.{name}.family")
    try:
        config = AutoConfig.from_pretrained(value)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except Exception as exc:  # noqa: BLE001 — any failure to build it is the user's to fix
        raise ConfigError(f"models.{name}: model_type {cfg.get('model_type')!r} is unknown and transformers "
                          f"could not build it to look ({type(exc).__name__}: {str(exc).splitlines()[0]}); set "
                          f"models.{name}.family, or .kinds and .target_modules") from None
    found = blocks_of(model)
    if found is None:
        raise ConfigError(f"models.{name}: no repeated block list found in {type(model).__name__}; set "
                          f"models.{name}.kinds ({{module suffix: kind}}) and .target_modules")
    prefix, blocks = found
    linears = [n for n, m in blocks[0].named_modules() if isinstance(m, torch.nn.Linear)]
    kinds = dict(custom.get("kinds") or {})
    if not kinds:
        unknown = [n for n in linears if kind_of(n) is None]
        if unknown:
            raise ConfigError(f"models.{name}: cannot tell the kind of {unknown} in its blocks ({prefix}.N); "
                              f"set models.{name}.kinds, e.g. {{{unknown[0]}: Wq}} (kinds: {', '.join(KINDS)})")
        kinds = {n: kind_of(n) for n in linears}
        if len(set(kinds.values())) < len(kinds):
            raise ConfigError(f"models.{name}: two Linear layers of one block map to one kind ({kinds}); "
                              f"set models.{name}.kinds")
    targets = tuple(custom.get("target_modules") or sorted({n.rsplit('.', 1)[-1] for n in kinds}))
    arch = architecture_of(config)
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(f"models.{name}: discovery does not handle encoder-decoders; set models.{name}.family")
    last = prefix.rsplit(".", 1)[-1]
    return Family(name=f"discovered:{cfg.get('model_type')}", architecture=arch, target_modules=targets,
                  kind_suffixes=kinds, layer_regex=rf"\.{re.escape(last)}\.(\d+)\.",
                  cls_head=("classifier", "score"))


def architecture_of(config) -> str:
    """decoder or encoder: by the checkpoint's ``architectures`` when it names them, else by the
    heads transformers has for its config (a causal LM and no masked LM: a decoder)."""
    names = " ".join(getattr(config, "architectures", None) or []).lower()
    if names:
        return "decoder" if "causallm" in names or "lmhead" in names else "encoder"
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    kind = type(config)
    causal, masked = kind in MODEL_FOR_CAUSAL_LM_MAPPING, kind in MODEL_FOR_MASKED_LM_MAPPING
    return "decoder" if causal and not masked else "encoder"


@functools.lru_cache(maxsize=None)
def _spec(name: str, opts_json: str) -> tuple[ModelSpec, str]:
    opts = json.loads(opts_json)
    kind, value = source_of(name, opts)
    family, how = family_for(name, opts)
    if kind == "gguf":
        def default_path() -> str:
            return str(dequantized_folder(Path(value)))
        return ModelSpec(name, family, "", default_path), how
    if kind == "path":
        return ModelSpec(name, family, "", lambda: value), how
    return ModelSpec(name, family, value), how


def spec_for(name: str, opts: dict) -> ModelSpec:
    return _spec(name, json.dumps(opts, sort_keys=True))[0]


def declared() -> dict:
    return json.loads(os.environ.get(ENV) or "{}")


def lookup(name: str) -> ModelSpec | None:
    """``MODELS``' fallback: a model this study declared (``declare``), else None."""
    opts = declared().get(name)
    return None if opts is None else spec_for(name, opts)


MODELS.fallback = lookup


def declare(models: dict, registered: set[str]) -> list[str]:
    """Check the study's configured models (every ``models.<name>`` that is not a registered name)
    and hand them to this process and its jobs; one line per model saying what was found."""
    mine = {n: o for n, o in (models or {}).items() if n not in registered}
    for name, opts in (models or {}).items():
        if name in registered and any(opts.get(k) for k in ("gguf", "hub", "family", "kinds", "target_modules")):
            raise ConfigError(f"models.{name}: {name!r} is a registered model; only path may be set for it "
                              f"(declare your own under another name)")
    lines = []
    for name, opts in mine.items():
        spec, how = _spec(name, json.dumps(opts, sort_keys=True))
        fam = spec.family
        kinds = sorted(set(fam.kind_suffixes.values()), key=KINDS.index)
        attn = sum(k in ATTENTION for k in kinds)
        layers = layer_count(name, opts)
        lines.append(f"rankbits: model {name} ({source_of(name, opts)[0]}): {how}; {fam.architecture}, "
                     f"{layers or '?'} layers x {len(kinds)} kinds ({', '.join(kinds)}: {attn} attention, "
                     f"{len(kinds) - attn} feed-forward); targets {', '.join(fam.target_modules)}")
    os.environ[ENV] = json.dumps(mine, sort_keys=True)
    return lines
