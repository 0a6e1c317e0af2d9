"""Per-layer mixed 8/4-bit bases: ``mixed:<preset>``. bitsandbytes' config applies one
precision to a whole model, so the 8-bit layers are left out of the 4-bit (NF4+DQ) load and then
replaced by LLM.int8 layers here. Presets:

    attn8-ffn4     attention projections (Wq Wk Wv Wo) 8-bit, feed-forward (Wf1 Wf2) 4-bit
    ffn8-attn4     the reverse
    edges8         every module of the first and last layer 8-bit, the rest 4-bit
    sensitive8:K   the K Linear layers whose output error NF4 raises most over int8 (measured on
                   the calibration batch) 8-bit, the rest 4-bit

The prepared base saves both kinds of layers; loading it rebuilds the int8 layers from their
stored int8 weights and row scales, so nothing is quantized twice.
"""
from __future__ import annotations

import torch

from ..models import ATTENTION as ATTN
from ..models import FFN, HEAD_MODULES, MODELS, is_conv1d, linear_dims
from . import BITS, BitsSpec
from .bnb import four_bit
from ..modeling import backbone_class, load_base_backbone
from ..quant import diagnostics
from ..io import read_json
INT8_FILE = "int8_layers.safetensors"


def eight_bit_set(preset: str, k: int | None, linears: dict[str, tuple[int, str]],
                  sensitivity: dict[str, float] | None = None) -> set[str]:
    if preset == "attn8-ffn4":
        return {n for n, (_, kind) in linears.items() if kind in ATTN}
    if preset == "ffn8-attn4":
        return {n for n, (_, kind) in linears.items() if kind in FFN}
    if preset == "edges8":
        layers = sorted({layer for layer, _ in linears.values()})
        return {n for n, (layer, _) in linears.items() if layer in (layers[0], layers[-1])}
    if preset == "sensitive8":
        ranked = sorted(linears, key=lambda n: (-sensitivity[n], n))
        return set(ranked[:k])
    raise ValueError(f"unknown preset {preset!r}")


def linear_weight(layer: torch.nn.Module) -> tuple[int, int, torch.Tensor]:
    """(in, out, out x in fp32 weight on the CPU) of a Linear or a GPT-2 Conv1D (stored in x out)."""
    n_in, n_out = linear_dims(layer)
    w = layer.weight.data.float().cpu()
    return n_in, n_out, (w.t() if is_conv1d(layer) else w).contiguous().clone()


def to_int8(linear: torch.nn.Module, device) -> torch.nn.Module:
    """LLM.int8 copy of a full-precision Linear or Conv1D (quantized as it is moved to ``device``)."""
    import bitsandbytes as bnb

    n_in, n_out, w = linear_weight(linear)
    new = bnb.nn.Linear8bitLt(n_in, n_out, bias=linear.bias is not None,
                              has_fp16_weights=False, threshold=6.0)
    new.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
    if linear.bias is not None:
        new.bias = torch.nn.Parameter(linear.bias.data.float().cpu().clone(), requires_grad=False)
    return new.to(device)


def to_nf4(linear: torch.nn.Module, device) -> torch.nn.Module:
    """NF4 + double quantization copy of a full-precision Linear or Conv1D (quantized as it is
    moved to ``device``; compute dtype bf16 on CUDA, fp32 elsewhere, as the ``4`` bits entry)."""
    import bitsandbytes as bnb

    compute = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    n_in, n_out, w = linear_weight(linear)
    new = bnb.nn.Linear4bit(n_in, n_out, bias=linear.bias is not None,
                            compute_dtype=compute, compress_statistics=True, quant_type="nf4")
    new.weight = bnb.nn.Params4bit(w, requires_grad=False,
                                   compress_statistics=True, quant_type="nf4", module=new)
    if linear.bias is not None:
        new.bias = torch.nn.Parameter(linear.bias.data.float().cpu().clone(), requires_grad=False)
    return new.to(device)


def quantize_modules(model: torch.nn.Module, bit_map: dict[str, int], device) -> torch.nn.Module:
    """Replace each full-precision Linear (or Conv1D) named in ``bit_map`` by its int8 (8) or
    NF4+DQ (4) copy."""
    convert = {8: to_int8, 4: to_nf4}
    for name, bits in bit_map.items():
        linear = model.get_submodule(name)
        if type(linear) is not torch.nn.Linear and not is_conv1d(linear):
            raise TypeError(f"{name}: expected a full-precision Linear to quantize, found {type(linear).__name__}")
        set_module(model, name, convert[bits](linear, device))
    return model


def from_int8_state(weight: torch.Tensor, scb: torch.Tensor, bias: torch.Tensor | None, device):
    """Rebuild an LLM.int8 layer from its stored int8 weight and row scales (no quantization)."""
    import bitsandbytes as bnb

    new = bnb.nn.Linear8bitLt(weight.shape[1], weight.shape[0], bias=bias is not None,
                              has_fp16_weights=False, threshold=6.0)
    w = bnb.nn.Int8Params(weight.to(device), requires_grad=False, has_fp16_weights=False)
    w.CB, w.SCB = w.data, scb.to(device)
    new.weight = w
    if bias is not None:
        new.bias = torch.nn.Parameter(bias.to(device), requires_grad=False)
    return new


def set_module(root: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def make(arg: str) -> BitsSpec:
    preset, _, k_text = arg.partition(":")
    valid = ("attn8-ffn4", "ffn8-attn4", "edges8", "sensitive8")
    if preset not in valid:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(valid)}")
    if (preset == "sensitive8") != bool(k_text) or (k_text and not k_text.isdigit()):
        raise ValueError("sensitive8 takes a layer count (sensitive8:K); the other presets take none")
    k = int(k_text) if k_text else None
    name = f"mixed:{arg}"
    load4 = four_bit(name, "nf4", True)

    def load_kwargs(device: str, skip_modules: list[str]):
        kwargs, info = load4(device, skip_modules)
        return kwargs, {**info, "weight_dtype": f"mixed int8/nf4 ({arg})"}

    def build(model: str, options: dict, device, calibration: dict | None):
        family = MODELS.get(model).family
        ref, _ = load_base_backbone(model, "32", options, device)
        linears = {n: family.locate(n) for n in family.target_dims(ref)}
        sensitivity = None
        if preset == "sensitive8":
            if calibration is None:
                raise ValueError(f"bits {name!r} needs a calibration batch to rank layers")
            errors = {}
            for bits in ("4", "8"):
                q, _ = load_base_backbone(model, bits, options, device)
                errors[bits] = {r["module"]: r["rel_output_error"]
                                for r in diagnostics(q, ref, calibration, family.locate)}
            sensitivity = {n: errors["4"][n] - errors["8"][n] for n in linears}
        eight = eight_bit_set(preset, k, linears, sensitivity)
        kwargs, info = load_kwargs(device.type, [*HEAD_MODULES, *sorted(eight)])
        m = backbone_class(model).from_pretrained(ref.name_or_path, **kwargs, device_map={"": str(device)})
        ref_modules = dict(ref.named_modules())
        for n in eight:
            set_module(m, n, to_int8(ref_modules[n], device))
        info["bit_map"] = {n: (8 if n in eight else 4) for n in sorted(linears)}
        if sensitivity is not None:
            info["sensitivity"] = {n: round(v, 6) for n, v in sorted(sensitivity.items())}
        return m, info

    def finish_load(model: torch.nn.Module, base_dir: str) -> torch.nn.Module:
        from safetensors.torch import load_file

        bit_map = read_json(f"{base_dir}/footprint.json")["bit_map"]
        tensors = load_file(f"{base_dir}/{INT8_FILE}")
        device = next(model.parameters()).device
        names = {n for n, _ in model.named_modules()}
        for n, bits in bit_map.items():
            if bits != 8:
                continue
            full = next(m for m in names if m == n or m.endswith("." + n))
            set_module(model, full, from_int8_state(
                tensors[f"{n}.weight"], tensors[f"{n}.SCB"], tensors.get(f"{n}.bias"), device))
        return model

    def save(model: torch.nn.Module, base_dir) -> None:
        """int8 layers to their own file; the rest with transformers' bitsandbytes serialization
        (the int8 layers are swapped out meanwhile, so it neither saves nor expects them)."""
        from safetensors.torch import save_file

        int8 = {n: m for n, m in model.named_modules() if type(m).__name__ == "Linear8bitLt"}
        tensors = {}
        for n, m in int8.items():
            tensors[f"{n}.weight"] = m.weight.data.contiguous().cpu()
            tensors[f"{n}.SCB"] = m.weight.SCB.contiguous().cpu()
            if m.bias is not None:
                tensors[f"{n}.bias"] = m.bias.data.contiguous().cpu()
            set_module(model, n, torch.nn.Identity())
        try:
            model.save_pretrained(f"{base_dir}/model")
            save_file(tensors, f"{base_dir}/{INT8_FILE}")
        finally:
            for n, m in int8.items():
                set_module(model, n, m)

    return BitsSpec(name, f"mixed 8/4-bit per layer ({arg})", load_kwargs, label=f"mixed {arg}",
                    quantized=True, build=build, finish_load=finish_load, save=save)


BITS.register_family("mixed", make, "mixed:<attn8-ffn4|ffn8-attn4|edges8|sensitive8:K>")
