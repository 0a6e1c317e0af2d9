"""bitsandbytes quantization of the base model: LLM.int8 and 4-bit NF4 / FP4 with or without
double quantization. Heads created for the task (classifier, pooler) are never quantized.

Names: ``8`` int8; ``4`` = ``nf4-dq`` (the QLoRA recipe); ``nf4``, ``fp4``, ``fp4-dq``.
Compute dtype: bf16 on CUDA, fp32 elsewhere (bf16 compute is about 2x slower on CPU).
"""
from __future__ import annotations

from . import BitsSpec, UnsupportedOnDevice, register

DEVICES = ("cpu", "cuda", "mps")  # bitsandbytes 0.50 ships backends for these


def _check(name: str, device: str) -> None:
    if device not in DEVICES:
        raise UnsupportedOnDevice(f"bits {name!r}: bitsandbytes has no backend for device {device!r}")


def _int8(device: str, skip_modules: list[str]) -> tuple[dict, dict]:
    from transformers import BitsAndBytesConfig

    _check("8", device)
    q = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(skip_modules))
    return {"quantization_config": q}, {"weight_dtype": "int8", "quantized": True, "scheme": "LLM.int8"}


def four_bit(name: str, quant_type: str, double_quant: bool):
    def load(device: str, skip_modules: list[str]) -> tuple[dict, dict]:
        import torch
        from transformers import BitsAndBytesConfig

        _check(name, device)
        compute = torch.bfloat16 if device == "cuda" else torch.float32
        q = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=list(skip_modules))
        return {"quantization_config": q}, {
            "weight_dtype": quant_type, "quantized": True, "double_quant": double_quant,
            "compute_dtype": str(compute).replace("torch.", "")}
    return load


register(BitsSpec("8", "LLM.int8 (bitsandbytes)", _int8, label="int8", quantized=True))
register(BitsSpec("4", "NF4 + double quantization (QLoRA)", four_bit("4", "nf4", True), label="NF4+DQ",
                  quantized=True))
for qt in ("nf4", "fp4"):
    register(BitsSpec(qt, f"{qt.upper()} without double quantization", four_bit(qt, qt, False),
                      label=qt.upper(), quantized=True))
    register(BitsSpec(f"{qt}-dq", f"{qt.upper()} + double quantization", four_bit(f"{qt}-dq", qt, True),
                      label=f"{qt.upper()}+DQ", quantized=True))
