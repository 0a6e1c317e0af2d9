"""Data-driven allocation, ``probe``: a short run of uniform LoRA at the budget measures how much
each module matters, then plain LoRA is trained from scratch on ranks in proportion to it
(budget-matched, largest-remainder rounding; see ``allocation``).

Scores (``score``):
    sensitivity   mean over the probe's steps of mean |grad * weight| over the module's A and B
                  (AdaLoRA's importance, without its smoothing)
    delta_norm    ||s * B A||_F at the end of the probe: how far the module moved
The probe's steps and seconds are recorded in metrics.json (train_info.allocation.probe).
"""
from __future__ import annotations

import time

import torch

from . import adapted_modules, as_steps, register
from .lora import AllocatedLoRA
from ..errors import ConfigError


class Probe(AllocatedLoRA):
    name = "probe"
    label = "probe allocation"
    defaults = {"steps": 0.1, "score": "sensitivity"}  # steps: fraction of the run (< 1) or steps

    schema = {"steps": {"type": "number", "exclusiveMinimum": 0},
              "score": {"enum": ["sensitivity", "delta_norm"]}}

    def prepare(self, budget, opts, total_steps, where):
        o = dict(opts)
        if o["score"] not in ("sensitivity", "delta_norm"):
            raise ConfigError(f"{where}.score: {o['score']!r} is not one of sensitivity, delta_norm")
        o["steps"] = max(1, as_steps(o["steps"], total_steps))
        return o

    def weights(self, ctx):
        sums: dict[str, torch.Tensor] = {}

        def hook(model, step):
            for name, layer in adapted_modules(model):
                a = layer.active_adapters[0]
                s = torch.zeros((), device=layer.lora_A[a].weight.device)
                n = 0
                for w in (layer.lora_A[a].weight, layer.lora_B[a].weight):
                    if w.grad is not None:
                        s = s + (w.detach() * w.grad).abs().sum()
                    n += w.numel()
                sums[name] = sums.get(name, 0) + s / n

        t0 = time.perf_counter()
        model = ctx.probe(ctx.opts["steps"], hook if ctx.opts["score"] == "sensitivity" else None)
        if ctx.opts["score"] == "delta_norm":
            scores = {}
            for name, layer in adapted_modules(model):
                a = layer.active_adapters[0]
                delta = layer.lora_B[a].weight @ layer.lora_A[a].weight * layer.scaling[a]
                scores[name] = float(torch.linalg.norm(delta.detach().float()))
        else:
            scores = {k: float(v) / ctx.opts["steps"] for k, v in sums.items()}
        ctx.record["probe"] = {"steps": ctx.opts["steps"], "score": ctx.opts["score"],
                               "seconds": time.perf_counter() - t0, "importance": scores}
        return {m: scores.get(m, 0.0) for m in ctx.dims}


register(Probe())
