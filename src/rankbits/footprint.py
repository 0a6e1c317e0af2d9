"""Where a prepared base model's bytes are, by component."""
from __future__ import annotations

import torch

from .modeling import load_base_backbone


def component(module: torch.nn.Module) -> str:
    if isinstance(module, torch.nn.Embedding):
        return "embeddings"
    if isinstance(module, torch.nn.LayerNorm):
        return "norms"
    if isinstance(module, torch.nn.Linear):
        return "linear"
    return "other"


def footprint(model: torch.nn.Module) -> dict:
    """Bytes of parameters and buffers per component; ``total_bytes`` equals transformers'
    ``get_memory_footprint()`` (checked)."""
    parts: dict[str, int] = {}
    params: dict[str, int] = {}
    for mod in model.modules():
        tensors = list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False))
        if not tensors:
            continue
        kind = component(mod)
        parts[kind] = parts.get(kind, 0) + sum(t.numel() * t.element_size() for t in tensors)
        params[kind] = params.get(kind, 0) + sum(p.numel() for p in mod.parameters(recurse=False))
    total = sum(parts.values())
    expected = model.get_memory_footprint()
    if total != expected:
        raise AssertionError(f"footprint components sum to {total} B, transformers says {expected} B")
    return {"total_bytes": total, "bytes_by_component": parts, "params_by_component": params}


def prepare_base(model: str, bits: str, options: dict, device: str) -> dict:
    from .runtime import pick_device, versions

    m, info = load_base_backbone(model, bits, options, pick_device(device))
    return {"model": model, "bits": bits, **info, **footprint(m), "versions": versions()}
