"""DoRA (Liu et al. 2024), ``dora``: LoRA r = budget on the direction of each weight plus a
trainable magnitude per output feature (PEFT ``LoraConfig(use_dora=True)``); on a 4-bit base it
is QDoRA. The magnitude vectors (out_features per adapted module) are trainable parameters
beyond uniform LoRA's at the budget: ``budget_match.deviation`` says by how much."""
from __future__ import annotations

from . import register
from .lora import LoRA


class DoRA(LoRA):
    name = "dora"
    label = "DoRA"

    def lora_options(self, opts):
        return {"use_dora": True}

    def adapter_params(self, in_features, out_features, rank):
        return super().adapter_params(in_features, out_features, rank) + out_features  # the magnitude vector


register(DoRA())
