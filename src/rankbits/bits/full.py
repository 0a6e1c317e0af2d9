"""Unquantized base weights: fp32, and 16-bit where the device computes it well."""
from __future__ import annotations

from . import BitsSpec, register


def _fp32(device: str, skip_modules: list[str]) -> tuple[dict, dict]:
    import torch

    return {"dtype": torch.float32}, {"weight_dtype": "float32", "quantized": False}


def _half(device: str, skip_modules: list[str]) -> tuple[dict, dict]:
    import torch

    if device == "cuda":
        return {"dtype": torch.bfloat16}, {"weight_dtype": "bfloat16", "quantized": False}
    if device == "mps":
        return {"dtype": torch.float16}, {"weight_dtype": "float16", "quantized": False}
    kwargs, info = _fp32(device, skip_modules)
    return kwargs, {**info, "fallback": f"16-bit requested on {device}: fp32 used (no fast 16-bit path)"}


register(BitsSpec("32", "fp32 base weights", _fp32, label="fp32"))
register(BitsSpec("16", "bf16 on CUDA, fp16 on MPS, fp32 fallback on CPU", _half, label="16-bit"))
