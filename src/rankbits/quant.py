"""Quantization diagnostics: how far each quantized Linear is from its full-precision self."""
from __future__ import annotations

import torch

from .footprint import quantized_params
from .models import is_conv1d


def dequantized_weight(module: torch.nn.Module) -> torch.Tensor:
    import bitsandbytes.functional as bnbf

    w = module.weight
    if getattr(w, "quant_state", None) is not None:
        return bnbf.dequantize_4bit(w.data, w.quant_state).float()
    return w.data.float() * w.SCB.float().unsqueeze(1) / 127.0  # LLM.int8 row-wise absmax


def real_tokens(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The rows of a layer input (batch x tokens x features) at unpadded positions."""
    if mask is None or x.dim() != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
        return x
    return x[mask.to(x.device).bool()]


@torch.no_grad()
def diagnostics(quantized: torch.nn.Module, reference: torch.nn.Module, batch: dict,
                locate) -> list[dict]:
    """Per quantized Linear: relative weight error ||Ŵ-W||/||W||, and on the calibration batch the
    cosine and relative error between the quantized and full-precision layer outputs (both fed
    the full-precision model's input to that layer), over the batch's real tokens only: padded
    positions (``attention_mask`` 0) are left out."""
    ref_modules = dict(reference.named_modules())
    inputs: dict[str, torch.Tensor] = {}
    hooks = []
    targets = [(n, m) for n, m in quantized.named_modules() if quantized_params(m) is not None]
    for name, _ in targets:
        hooks.append(ref_modules[name].register_forward_pre_hook(
            lambda mod, args, name=name: inputs.__setitem__(name, args[0].detach())))
    try:
        reference(**batch)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, qmod in targets:
        try:
            layer, kind = locate(name)
        except ValueError:  # a quantized layer outside the layer stack
            continue
        ref = ref_modules[name]
        w, wq = ref.weight.float(), dequantized_weight(qmod)
        if is_conv1d(ref):  # GPT-2 stores in x out
            w = w.t()
        x = real_tokens(inputs[name], batch.get("attention_mask"))
        y = ref(x).float().flatten()
        yq = qmod(x.to(next(iter(qmod.parameters())).device)).float().flatten().to(y.device)
        rows.append({
            "module": name, "layer": layer, "kind": kind,
            "rel_weight_error": float((wq - w).norm() / w.norm()),
            "output_cosine": float(torch.nn.functional.cosine_similarity(y, yq, dim=0)),
            "rel_output_error": float((yq - y).norm() / y.norm()),
        })
    return rows
