"""PiSSA (Meng et al. 2024), ``pissa``: LoRA r = budget whose A and B start at the top r
singular directions of each weight, W's principal part U_r S_r V_r^T, while the base keeps only
the residual W - U_r S_r V_r^T, so the model starts where the base was and training moves the
principal part (PEFT ``init_lora_weights="pissa"``: exact SVD; A = sqrt(S_r / s) V_r^T,
B = U_r sqrt(S_r / s), s = alpha / r). Same parameters as LoRA.

On a quantized base it is QPiSSA: the residual is computed from the original full-precision
weights and quantized again (NF4+DQ or int8, as the layer was), so the base's quantization error
is that of the residual, not of W — PiSSA's claim on the bits axis. PEFT refuses to initialise
PiSSA on a quantized layer and asks for exactly this.

Saving: the adapter is saved as trained (PiSSA form, rank r), and the base it belongs to is the
residual. Evaluation and scoring rebuild that residual base from the original weights
(``adapt_base``, the same exact SVD, deterministic up to the SVD's signs, which cancel in
U_r S_r V_r^T) before loading the adapter. PEFT's other route, converting the adapter into a
plain rank-2r LoRA of the original base on save (``path_initial_model_for_weight_conversion``),
is not taken: it doubles the saved rank and needs the initial adapter kept beside it.
"""
from __future__ import annotations

import time

import torch

from ..bits import BITS
from . import adapted_modules, register
from .lora import LoRA
from ..bits.mixed import linear_weight, set_module, to_int8, to_nf4
from ..footprint import quantized_params
from ..modeling import load_base
from ..models import is_conv1d


class PiSSA(LoRA):
    name = "pissa"
    label = "PiSSA"

    def bits_error(self, bits):
        if BITS.get(bits).quantized and bits not in ("4", "nf4-dq", "8") and not bits.startswith("mixed:"):
            return ("PiSSA quantizes the residual again as NF4+DQ or int8 layers; run it with bits "
                    "\"32\", \"16\", \"4\", \"8\" or a mixed:* preset")
        return None

    def initialize(self, ctx, model):
        t0 = time.perf_counter()
        originals = None
        names = []
        with torch.no_grad():
            for name, layer in adapted_modules(model):
                a = layer.active_adapters[0]
                base = layer.get_base_layer()
                if is_quantized(base) and originals is None:
                    originals = full_precision(ctx.run.model, ctx.run.task, ctx.model_options, base.weight.device)
                w = original_weight(base, originals, name)
                lora_a, lora_b, residual = principal_split(w, layer.r[a], layer.scaling[a])
                layer.lora_A[a].weight.data = lora_a.to(layer.lora_A[a].weight.dtype)
                layer.lora_B[a].weight.data = lora_b.to(layer.lora_B[a].weight.dtype)
                layer.base_layer = with_weight(base, residual)
                names.append(name)
        ctx.record["pissa"] = {"rank": ctx.run.budget, "modules": sorted(names), "model": ctx.run.model,
                               "task": ctx.run.task, "model_options": ctx.model_options}
        ctx.record["init"] = {"method": "pissa", "seconds": time.perf_counter() - t0, "rows": 0,
                              "modules": len(names), "svd": "exact (torch.linalg.svd, float64)"}

    def adapt_base(self, model, record, device):
        """The residual base the adapter was trained on, rebuilt from the original weights."""
        info = record.get("pissa")
        if not info:
            raise ValueError("a pissa run's train_info.allocation has no 'pissa' record: it cannot "
                             "rebuild the residual base its adapter belongs to")
        originals = None
        with torch.no_grad():
            for name in info["modules"]:
                base = model.get_submodule(name)  # the task model's own names, as training recorded them
                if is_quantized(base) and originals is None:
                    originals = full_precision(info["model"], info["task"], info["model_options"], base.weight.device)
                w = original_weight(base, originals, name)
                # the same scaling-free residual: W - U_r S_r V_r^T
                _, _, residual = principal_split(w, int(info["rank"]), 1.0)
                set_module(model, name, with_weight(base, residual))
        return model


def is_quantized(layer) -> bool:
    return quantized_params(layer) is not None


def full_precision(model: str, task: str, options: dict, device):
    """Name -> module of the model at full precision (the original weights of a quantized base)."""
    m, _ = load_base(model, "32", task, options, torch.device(device))
    return dict(m.named_modules())


def original_weight(base, originals: dict | None, name: str) -> torch.Tensor:
    """The layer's full-precision weight as out x in float64."""
    if not is_quantized(base):
        return linear_weight(base)[2].double()
    return linear_weight(originals[name])[2].double()


def principal_split(w: torch.Tensor, r: int, scaling: float):
    """(A, B, residual) of PEFT's PiSSA initialisation from ``w`` (out x in): s B A is the top-r
    part of the SVD, the residual the rest."""
    u, sv, vh = torch.linalg.svd(w, full_matrices=False)
    root = (sv[:r] / scaling).sqrt()
    lora_a = root[:, None] * vh[:r]
    lora_b = u[:, :r] * root
    residual = w - (u[:, :r] * sv[:r]) @ vh[:r]
    return lora_a.float(), lora_b.float(), residual


def with_weight(base, residual: torch.Tensor):
    """``base`` holding ``residual`` (out x in): in place at full precision; a new NF4+DQ or int8
    layer of the same kind when ``base`` is quantized."""
    if not is_quantized(base):
        w = residual.t() if is_conv1d(base) else residual
        base.weight.data = w.to(base.weight.dtype).contiguous()
        return base
    device = base.weight.device
    tmp = torch.nn.Linear(residual.shape[1], residual.shape[0], bias=base.bias is not None)
    tmp.weight.data = residual.float().cpu()
    if base.bias is not None:
        tmp.bias.data = base.bias.data.float().cpu()
    return (to_nf4 if getattr(base.weight, "quant_state", None) is not None else to_int8)(tmp, device)


register(PiSSA())
