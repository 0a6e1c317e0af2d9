"""Full precision: fp32 weights, no quantization."""
from __future__ import annotations

from . import BitsSpec, register


def _fp32(device: str, skip_modules: list[str]) -> tuple[dict, dict]:
    import torch

    return {"dtype": torch.float32}, {"weight_dtype": "float32", "quantized": False}


register(BitsSpec("32", "fp32 base weights", _fp32))
