"""LoRA with one fixed rank r = budget on every target module."""
from __future__ import annotations

from . import Method, register


class LoRA(Method):
    name = "lora"
    label = "LoRA"

    def peft_config(self, *, budget, opts, hp, target_modules, total_steps, task_type):
        from peft import LoraConfig

        return LoraConfig(
            r=budget, lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
            target_modules=list(target_modules), task_type=task_type,
        )


register(LoRA())
