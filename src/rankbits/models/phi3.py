"""Phi-3 decoders: a fused ``qkv_proj`` and a fused ``gate_up_proj`` (counted as the FFN's input,
Wf1), ``o_proj`` and ``down_proj``. No registered checkpoint: declare one in a study."""
from __future__ import annotations

from . import Family

PHI3 = Family(
    name="phi3",
    architecture="decoder",
    cls_head=("score",),
    target_modules=("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    kind_suffixes={"self_attn.qkv_proj": "Wqkv", "self_attn.o_proj": "Wo", "mlp.gate_up_proj": "Wf1",
                   "mlp.down_proj": "Wf2"},
    layer_regex=r"\.layers\.(\d+)\.",
)
