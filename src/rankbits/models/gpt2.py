"""GPT-2-style decoders (GPT-2, DialoGPT). Their projections are ``transformers`` Conv1D layers
(weights stored as in x out), so LoRA runs with ``fan_in_fan_out`` on a full-precision base;
bitsandbytes turns them into ordinary (quantized) Linear layers, where it is off. ``c_attn`` is
the fused q/k/v projection (kind Wqkv)."""
from __future__ import annotations

from . import Family, ModelSpec, register

GPT2 = Family(
    name="gpt2",
    architecture="decoder",
    cls_head=("score",),
    target_modules=("c_attn", "c_proj", "c_fc"),
    kind_suffixes={"attn.c_attn": "Wqkv", "attn.c_proj": "Wo", "mlp.c_fc": "Wf1", "mlp.c_proj": "Wf2"},
    layer_regex=r"\.h\.(\d+)\.",
)

register(ModelSpec("gpt2", GPT2, "gpt2"))
register(ModelSpec("gpt2-medium", GPT2, "gpt2-medium"))
register(ModelSpec("dialogpt-medium", GPT2, "microsoft/DialoGPT-medium"))
