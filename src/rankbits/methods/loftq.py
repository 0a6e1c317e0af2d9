"""LoftQ (Li et al. 2023), ``loftq``: LoRA r = budget on a 4-bit base whose A and B start where
they cancel most of the quantization error, s B A ≈ W − dequant(quant(W)) (the rank-r SVD of the
residual), as PEFT's ``replace_lora_weights_loftq`` does for bitsandbytes 4-bit layers from the
original weights in the model's safetensors file. Same parameters as LoRA.

Two departures from PEFT 0.21's function, both measured by tests/test_peft_arms.py: it computes
on CUDA or XPU only (``_loftq_init_new`` hard-codes the device), so the decomposition runs here
on the base's own device; and it writes B A without the adapter's scaling s = alpha / r, which
overshoots the residual s-fold whenever alpha != r, so here B carries 1 / s.

Bases: 4-bit (NF4/FP4, with or without double quantization) and the mixed 8/4 presets, whose
4-bit layers are initialised this way and whose 8-bit layers keep LoRA's (B = 0) — PEFT's
function handles bitsandbytes 4-bit layers only. A full-precision base has no quantization
error to start from, and an int8 base would need ``LoftQConfig(loftq_bits=8)`` on an
unquantized model, whose base is then not the study's int8 one: both are start-up errors.
"""
from __future__ import annotations

import os
import time

from ..bits import BITS
from . import register
from .lora import LoRA
from ..models import MODELS


class LoftQ(LoRA):
    name = "loftq"
    label = "LoftQ"

    def bits_error(self, bits):
        if not BITS.get(bits).quantized:
            return "LoftQ starts from a quantized base's error; run it with bits \"4\" (or nf4, fp4, mixed:*)"
        if bits == "8":
            return ("PEFT's LoftQ for a bitsandbytes base (replace_lora_weights_loftq) handles 4-bit layers "
                    "only; use bits \"4\" or a mixed:* preset")
        return None

    def initialize(self, ctx, model):
        import torch
        from bitsandbytes.functional import dequantize_4bit
        from peft.tuners.lora.bnb import Linear4bit
        # PEFT's own reader of the original weights by the adapted model's module names (what its
        # replace_lora_weights_loftq uses); private in PEFT 0.21, pinned, so kept rather than redone
        from peft.utils.loftq_utils import _SafetensorLoader

        # the original weights, not the prepared (quantized) base's
        source = MODELS.get(ctx.run.model).source(ctx.model_options)
        if not os.path.isdir(source):
            from huggingface_hub import snapshot_download

            source = snapshot_download(source, local_files_only=True)
        if not os.path.isfile(os.path.join(source, "model.safetensors")):
            raise FileNotFoundError(f"loftq reads the original weights from {source}/model.safetensors, which "
                                    f"is not there; set models.{ctx.run.model}.path to a local folder with it")
        t0 = time.perf_counter()
        weights, prefix, done = _SafetensorLoader(model, source), "base_model.model.", 0
        with torch.no_grad():
            for name, layer in model.named_modules():
                if not isinstance(layer, Linear4bit):
                    continue  # a mixed base's 8-bit layers keep LoRA's own start (B = 0)
                a = layer.active_adapters[0]
                q = layer.get_base_layer().weight
                original = weights.get_tensor(name[len(prefix):] + ".weight").to(q.device, torch.float32)
                residual = original - dequantize_4bit(q.data, q.quant_state).float()
                u, sv, vh = torch.linalg.svd(residual, full_matrices=False)
                r = layer.r[a]
                root = sv[:r].sqrt()
                layer.lora_A[a].weight.data = (root[:, None] * vh[:r]).to(layer.lora_A[a].weight.dtype)
                layer.lora_B[a].weight.data = (u[:, :r] * root / layer.scaling[a]).to(layer.lora_B[a].weight.dtype)
                done += 1
        ctx.record["init"] = {"method": "loftq", "seconds": time.perf_counter() - t0, "rows": 0, "modules": done,
                              "weights": os.path.join(source, "model.safetensors")}


register(LoftQ())
