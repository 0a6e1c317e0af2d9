"""LoRA: one fixed rank r = budget on every target module, or, for methods that allocate ranks
(patterns, probe, adalora-transfer), a budget-matched rank per module."""
from __future__ import annotations

import re

from . import Method, register
from ..allocation import allocate


class LoRA(Method):
    name = "lora"
    label = "LoRA"

    def lora_options(self, opts: dict) -> dict:
        """LoraConfig arguments a LoRA variant adds (use_dora, init_lora_weights, ...)."""
        return {}

    def peft_config(self, *, budget, opts, hp, target_modules, total_steps, task_type, allocation):
        from peft import LoraConfig

        # training.lora_scaling: rslora scales every module by alpha / sqrt(its rank) (use_rslora)
        extra = {**self.lora_options(opts), **({"use_rslora": True} if hp.get("lora_scaling") == "rslora" else {})}
        if allocation is None:
            return LoraConfig(r=budget, lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
                              target_modules=list(target_modules), task_type=task_type, **extra)
        # Per-module ranks. Standard scaling: alpha follows the rank so every module keeps the
        # scaling alpha / r of the uniform run at this budget (hp["lora_alpha"] was resolved for
        # r = budget); rsLoRA: one alpha, so each module gets alpha / sqrt(r). Modules at rank 0
        # are left out. Pattern keys are regexes to PEFT: escape the module names.
        scaling = hp["lora_alpha"] / budget
        kept = sorted(m for m, r in allocation.items() if r > 0)
        alphas = {} if extra.get("use_rslora") else {re.escape(m): scaling * allocation[m] for m in kept}
        return LoraConfig(
            r=budget, lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
            target_modules=kept, task_type=task_type,
            rank_pattern={re.escape(m): allocation[m] for m in kept}, alpha_pattern=alphas, **extra,
        )


class AllocatedLoRA(LoRA):
    """Plain LoRA on ranks decided before training by ``weights(ctx)`` (rescaled to the budget)."""

    rank_map = True

    def weights(self, ctx) -> dict[str, float]:
        raise NotImplementedError

    def allocate(self, ctx):
        return allocate(self.weights(ctx), ctx.dims, ctx.run.budget)


register(LoRA())
