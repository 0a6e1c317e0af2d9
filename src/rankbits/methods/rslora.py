"""rsLoRA (Kalajdzievski 2023), ``rslora``: uniform LoRA r = budget whose update is scaled by
alpha / sqrt(r) instead of alpha / r (PEFT ``LoraConfig(use_rslora=True)``), so larger ranks are
not damped. Same parameters as LoRA at the budget. Arms whose ranks differ per module get the
same scaling with ``training.lora_scaling: rslora``."""
from __future__ import annotations

from . import register
from .lora import LoRA


class RsLoRA(LoRA):
    name = "rslora"
    label = "rsLoRA"

    def lora_options(self, opts):
        return {"use_rslora": True}


register(RsLoRA())
