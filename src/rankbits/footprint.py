"""Where a prepared base model's bytes are, by component, counting what transformers'
``get_memory_footprint()`` leaves out: bitsandbytes' quantization constants (absmax per block,
double-quantized absmax and its scale, LLM.int8 row scales) and code tables, each apart. A
quantized Linear's bias stays fp32 and is its own component (``quantized_linear_bias``), not part
of the bytes per quantized weight."""
from __future__ import annotations

import torch

from .models import HEAD_MODULES, is_conv1d


def quantized_params(module: torch.nn.Module) -> int | None:
    """Parameters the module's weight had before quantization; None when it is not quantized."""
    w = getattr(module, "weight", None)
    if w is None:
        return None
    qs = getattr(w, "quant_state", None)
    if qs is not None:
        return int(torch.Size(qs.shape).numel())
    if w.dtype == torch.int8 and getattr(w, "SCB", None) is not None:
        return int(w.numel())
    return None


def quant_constants(module: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(per-block constants: absmax, double-quantized absmax, offset, LLM.int8 row scales;
    code tables: the 16- and 256-entry lookup tables each 4-bit layer carries)."""
    w = module.weight
    qs = getattr(w, "quant_state", None)
    if qs is None:
        return [w.SCB], []
    consts, codes = [qs.absmax], [qs.code]
    if getattr(qs, "offset", None) is not None and torch.is_tensor(qs.offset):
        consts.append(qs.offset)
    if qs.nested:
        consts.append(qs.state2.absmax)
        codes.append(qs.state2.code)
    return consts, codes


def component(name: str, module: torch.nn.Module) -> str:
    if name.startswith(HEAD_MODULES):
        return "head"
    if isinstance(module, torch.nn.Embedding):
        return "embeddings"
    if isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm")):
        return "norms"
    if quantized_params(module) is not None:
        return "quantized_linear_weights"
    if isinstance(module, torch.nn.Linear) or is_conv1d(module):
        return "unquantized_linear"
    return "other"


def footprint(model: torch.nn.Module) -> dict:
    parts: dict[str, int] = {}
    seen: set[int] = set()  # code tables are shared between layers: count each tensor once

    def add(kind: str, tensors) -> None:
        for t in tensors:
            if t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            parts[kind] = parts.get(kind, 0) + t.numel() * t.element_size()

    q_params = 0
    original_params = 0
    for name, mod in model.named_modules():
        own = list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False))
        if not own:
            continue
        kind = component(name, mod)
        n = quantized_params(mod)
        if n is not None:  # the weight; its (unquantized) bias is a component of its own
            add(kind, [mod.weight])
            add("quantized_linear_bias", [t for t in own if t is not mod.weight])
            q_params += n
            original_params += n + sum(p.numel() for p in own if p is not mod.weight)
            consts, codes = quant_constants(mod)
            add("quantization_constants", consts)
            add("quantization_code_tables", codes)
        else:
            add(kind, own)
            original_params += sum(p.numel() for p in mod.parameters(recurse=False))
    total = sum(parts.values())
    q_bytes = parts.get("quantized_linear_weights", 0) + parts.get("quantization_constants", 0)
    codes = parts.get("quantization_code_tables", 0)
    return {
        "total_bytes": total,
        "bytes_by_component": parts,
        "transformers_memory_footprint": int(model.get_memory_footprint()),
        "quantized_linear_params": q_params,
        # bytes per quantized weight: the weight and its per-block constants, code tables
        # included (and, apart, without them); biases stay fp32 and are not in it
        "quantized_linear_bytes_per_param": (q_bytes + codes) / q_params if q_params else None,
        "quantized_linear_bytes_per_param_without_code_tables": q_bytes / q_params if q_params else None,
        "params": original_params,
        "bytes_if_16bit": original_params * 2,
        "bytes_if_32bit": original_params * 4,
        "ratio_to_32bit": total / (original_params * 4),
    }
