"""Dynamic rank growth, ``grow`` (S0's "expand on plateau"): LoRA starts small; every
``eval_every`` optimizer steps the loss on held-out training rows is measured, and when its best
value has not improved by ``epsilon`` for ``patience`` evaluations every module's rank grows by
``delta_r``, up to ``r_max``. Growth keeps the model's output unchanged at that step and moves
AdamW's state with the parameters (see ``rankbits.growth``). Trainable parameters are reported as
they end, so they grow with the rank.
"""
from __future__ import annotations

import torch

from . import adapted_modules, register
from .lora import LoRA
from ..errors import ConfigError
from ..growth import SliceControl, grow_layer


class Grow(LoRA):
    name = "grow"
    label = "grow on plateau"
    rank_adaptive = True
    paged_optimizer = False  # growth resizes torch AdamW's exp_avg / exp_avg_sq
    defaults = {
        "r_start": None,  # None: budget // 4, at least 1
        "delta_r": None,  # None: budget // 4, at least 1
        "r_max": None,  # None: the budget
        "eval_every": 50,  # optimizer steps between validation losses
        "patience": 2,  # evaluations without improvement before growing
        "epsilon": 0.001,  # improvement (absolute, in loss) that counts
        "val_samples": 256,  # training rows held out for ctx.val_loss() (train.prepare_data reads it)
        "freeze_and_thaw": 0,  # steps after a growth during which only the new slices train
        "new_rank_lr_mult": 1.0,  # learning-rate multiplier of the slices added by growth
    }

    schema = {
        "r_start": {"type": ["integer", "null"], "minimum": 1},
        "delta_r": {"type": ["integer", "null"], "minimum": 1},
        "r_max": {"type": ["integer", "null"], "minimum": 1},
        "eval_every": {"type": "integer", "minimum": 1},
        "patience": {"type": "integer", "minimum": 1},
        "epsilon": {"type": "number", "minimum": 0},
        "val_samples": {"type": "integer", "minimum": 1},
        "freeze_and_thaw": {"type": "integer", "minimum": 0},
        "new_rank_lr_mult": {"type": "number", "exclusiveMinimum": 0},
    }

    def prepare(self, budget, opts, total_steps, where):
        o = dict(opts)
        o["r_start"] = o["r_start"] or max(1, budget // 4)
        o["delta_r"] = o["delta_r"] or max(1, budget // 4)
        o["r_max"] = o["r_max"] or budget
        if not 1 <= o["r_start"] <= o["r_max"]:
            raise ConfigError(f"{where}: need 1 <= r_start ({o['r_start']}) <= r_max ({o['r_max']})")
        for key in ("eval_every", "patience", "val_samples"):
            if int(o[key]) < 1:
                raise ConfigError(f"{where}.{key}: must be at least 1, got {o[key]}")
        return o

    def scaling_rank(self, budget, opts):
        return opts["r_start"]

    def peft_config(self, *, budget, opts, hp, target_modules, total_steps, task_type, allocation):
        return super().peft_config(budget=opts["r_start"], opts=opts, hp=hp, target_modules=target_modules,
                                   total_steps=total_steps, task_type=task_type, allocation=None)

    def setup(self, ctx):
        assert isinstance(ctx.optimizer, torch.optim.AdamW), "paged_optimizer = False gives torch's AdamW"
        ctx.state.update(best=float("inf"), bad=0, rank=ctx.opts["r_start"],
                         control=SliceControl(ctx.optimizer, float(ctx.opts["new_rank_lr_mult"])),
                         generator=torch.Generator().manual_seed(ctx.run.seed))
        ctx.record.update(validation=[], growth_events=[])

    def checkpoint_state(self, ctx):
        st = ctx.state
        return {"best": st["best"], "bad": st["bad"], "generator": st["generator"].get_state(),
                "freeze_left": st["control"].freeze_left,
                "growth_events": list(ctx.record["growth_events"])}

    def restore_state(self, ctx, state):
        """Grow the fresh model as the saved attempt did (so parameter shapes and the optimizer's
        slices match the checkpoint, which is loaded next), then restore the plateau state."""
        for event in state["growth_events"]:
            grow_all(ctx, event["new_r"] - event["old_r"], event["step"])
        st = ctx.state
        st["best"], st["bad"] = state["best"], state["bad"]
        st["generator"].set_state(state["generator"])
        st["control"].freeze_left = state["freeze_left"]

    def on_optimizer_step(self, ctx, step):
        o, st = ctx.opts, ctx.state
        if (step + 1) % o["eval_every"]:
            return
        loss = ctx.val_loss()
        ctx.record["validation"].append({"step": step + 1, "loss": loss, "rank": st["rank"]})
        if loss < st["best"] - o["epsilon"]:
            st["best"], st["bad"] = loss, 0
        else:
            st["bad"] += 1
        if st["bad"] < o["patience"] or st["rank"] >= o["r_max"]:
            return
        if ctx.total_steps - (step + 1) < o["eval_every"]:  # new slices would hardly train
            return
        grow_all(ctx, min(o["delta_r"], o["r_max"] - st["rank"]), step + 1)
        st["bad"] = 0


def grow_all(ctx, delta: int, step: int) -> None:
    """Grow every adapted module by ``delta``; update the optimizer, the trainable list, the
    adapter's config (so it saves and reloads at the new rank) and the event log."""
    st = ctx.state
    swapped = {}
    old = new = None
    for _, layer in adapted_modules(ctx.model):
        adapter = layer.active_adapters[0]
        old, new, swaps = grow_layer(layer, adapter, delta, ctx.optimizer, st["generator"])
        st["control"].grown(swaps, old, ctx.opts["r_start"])
        swapped.update({id(a): b for a, b, _ in swaps})
    ctx.trainable[:] = [swapped.get(id(p), p) for p in ctx.trainable]
    cfg = ctx.model.peft_config[ctx.model.active_adapter]
    cfg.lora_alpha = cfg.lora_alpha / cfg.r * new
    cfg.r = new
    if ctx.opts["freeze_and_thaw"]:
        st["control"].freeze(int(ctx.opts["freeze_and_thaw"]))
    st["rank"] = new
    ctx.record["growth_events"].append({"step": step, "old_r": old, "new_r": new})


register(Grow())
