"""Llama-style decoders (Llama, Mistral, Qwen2, ...): q/k/v/o projections and a gated FFN
(gate_proj, up_proj, down_proj)."""
from __future__ import annotations

from . import Family, ModelSpec, register

LLAMA = Family(
    name="llama",
    architecture="decoder",
    cls_head=("score",),
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    kind_suffixes={"self_attn.q_proj": "Wq", "self_attn.k_proj": "Wk", "self_attn.v_proj": "Wv",
                   "self_attn.o_proj": "Wo", "mlp.gate_proj": "Wg", "mlp.up_proj": "Wf1",
                   "mlp.down_proj": "Wf2"},
    layer_regex=r"\.layers\.(\d+)\.",
)

register(ModelSpec("tinyllama", LLAMA, "TinyLlama/TinyLlama-1.1B-Chat-v1.0"))
register(ModelSpec("llama-3.2-1b", LLAMA, "meta-llama/Llama-3.2-1B"))
