"""AdaLoRA (Zhang et al. 2023) through PEFT: SVD-form adapters, importance-based pruning from
init_r to target_r = budget per module on average, on a cubic budget schedule."""
from __future__ import annotations

import math

from . import Method, as_steps, register
from ..errors import ConfigError, NonFiniteLoss
from .adalora_fast import install


def budget_schedule(step: int, init_bgt: int, target_bgt: int, tinit: int, tfinal: int,
                    total_step: int) -> int:
    """Total rank budget at ``step``, as PEFT's ``RankAllocator.budget_schedule`` computes it."""
    if step <= tinit:
        return init_bgt
    if step > total_step - tfinal:
        return target_bgt
    mul = 1 - (step - tinit) / (total_step - tfinal - tinit)
    return int((init_bgt - target_bgt) * mul**3 + target_bgt)


class AdaLoRA(Method):
    name = "adalora"
    label = "AdaLoRA"
    rank_adaptive = True
    rank_map = True
    defaults = {
        "init_r": None,  # None: ceil(1.5 * budget), as S0
        "tinit": 0.1,  # < 1: fraction of the run's optimizer steps; >= 1: steps
        "tfinal": 0.2,
        "deltaT": 10,
        "beta1": 0.85,
        "beta2": 0.85,
        "orth_reg_weight": 0.5,
    }

    schema = {
        "init_r": {"type": ["integer", "null"], "minimum": 1},
        "tinit": {"type": "number", "minimum": 0},
        "tfinal": {"type": "number", "minimum": 0},
        "deltaT": {"type": "number", "exclusiveMinimum": 0},
        "beta1": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "beta2": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "orth_reg_weight": {"type": "number", "minimum": 0},
    }

    def prepare(self, budget, opts, total_steps, where):
        o = dict(opts)
        o["init_r"] = o["init_r"] or math.ceil(1.5 * budget)
        if o["init_r"] <= budget:  # nothing to prune: PEFT's masking would ask for kthvalue(k=0)
            raise ConfigError(f"{where}.init_r: {o['init_r']} must be above the target rank "
                              f"(the budget, {budget})")
        o["tinit"] = as_steps(o["tinit"], total_steps)
        o["tfinal"] = max(1, as_steps(o["tfinal"], total_steps))
        o["deltaT"] = max(1, as_steps(o["deltaT"], total_steps))
        if o["tinit"] >= total_steps - o["tfinal"]:
            raise ConfigError(
                f"{where}: tinit ({o['tinit']} steps) must be below total steps minus tfinal "
                f"({total_steps} - {o['tfinal']}); lengthen training or shorten tinit/tfinal"
            )
        return o

    def peft_config(self, *, budget, opts, hp, target_modules, total_steps, task_type, allocation):
        from peft import AdaLoraConfig

        return AdaLoraConfig(
            init_r=opts["init_r"], target_r=budget, tinit=opts["tinit"], tfinal=opts["tfinal"],
            deltaT=opts["deltaT"], beta1=opts["beta1"], beta2=opts["beta2"],
            orth_reg_weight=opts["orth_reg_weight"], total_step=total_steps,
            lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
            target_modules=list(target_modules), task_type=task_type,
        )

    def on_attach(self, model):
        # PEFT's cast_adapter_dtype (16-bit base; 4-bit on CUDA) re-creates ``ranknum`` as a
        # trainable parameter: a scale that would train but is never saved
        for name, p in model.named_parameters():
            if ".ranknum." in name:
                p.requires_grad_(False)
        install(model)  # PEFT's per-step bookkeeping, batched (same values)

    def on_optimizer_step(self, ctx, step):
        ctx.model.base_model.update_and_allocate(step)

    def on_skipped_step(self, ctx, step):
        """No gradients, so no importance update; but a pruning due at this step (above all the
        final allocation at total_step - tfinal) happens on the scores so far, and after it the
        pruned singular values stay masked, as ``update_and_allocate`` does."""
        tuner = ctx.model.base_model
        cfg, alloc = tuner.peft_config[tuner.trainable_adapter_name], tuner.rankallocator
        final = cfg.total_step - cfg.tfinal
        if step > final:
            alloc.mask_using_rank_pattern(tuner.model, cfg.rank_pattern)
            return
        budget, due = alloc.budget_schedule(step)
        if not (due or step == final):
            return
        if not alloc.exp_avg_ipt:  # every step so far was skipped: nothing to rank by
            raise NonFiniteLoss(f"{ctx.run.path}: AdaLoRA reached its allocation at step {step} "
                                f"with every batch before it skipped (non-finite)", step)
        cfg.rank_pattern = alloc.mask_to_budget(tuner.model, budget)
        if step == final:
            alloc.reset_ipt()

    # PEFT's RankAllocator keeps smoothed importance scores between steps; the masks themselves
    # live in the lora_E parameters and the rank pattern in the adapter's config
    _allocator_state = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def checkpoint_state(self, ctx):
        alloc = ctx.model.base_model.rankallocator
        return {"allocator": {k: getattr(alloc, k) for k in self._allocator_state},
                "rank_pattern": ctx.model.peft_config[ctx.model.active_adapter].rank_pattern}

    def restore_state(self, ctx, state):
        alloc = ctx.model.base_model.rankallocator
        for key, value in state["allocator"].items():
            setattr(alloc, key, value)
        ctx.model.peft_config[ctx.model.active_adapter].rank_pattern = state["rank_pattern"]

    def ranks(self, model):
        pattern = model.peft_config[model.active_adapter].rank_pattern
        ranks = super().ranks(model)  # init_r until the first pruning step
        if pattern:
            for key, mask in pattern.items():
                name = key.split(".lora_E")[0]
                name = name.replace("base_model.model.", "", 1)
                if name not in ranks:
                    raise KeyError(f"rank_pattern names {key!r}, which is not an adapted module")
                ranks[name] = int(sum(bool(m) for m in mask))
        return ranks

    def adapter_params(self, in_features, out_features, rank):
        return rank * (in_features + out_features + 1)  # a column of P, a row of Q, one singular value

    def scaling_rank(self, budget, opts):
        return opts["init_r"]  # SVDLinear scales by lora_alpha / ranknum, ranknum = init_r

    def budget_line(self, info, step):
        o = info["method_options"]
        n = len(info["module_dims"])
        return budget_schedule(step, o["init_r"] * n, info["budget"] * n, o["tinit"], o["tfinal"],
                               info["steps"])


register(AdaLoRA())
