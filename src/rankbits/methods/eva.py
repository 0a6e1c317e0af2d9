"""EVA (Paischer et al. 2024), ``eva``: data-driven initialisation and rank redistribution. A few
training batches go through the base; each adapted module's input activations are decomposed
(incremental SVD) and its A matrix starts at their top right-singular vectors; ranks move to the
modules whose activations explain most variance, the total rank staying r x modules, no module
above rho x r (PEFT ``init_lora_weights="eva"``, ``EvaConfig``, ``initialize_lora_eva_weights``).

The budget is kept in rank units, as EVA defines it; its parameter count differs from uniform
LoRA's when ranks move between modules of different shapes (``budget_match.deviation``). The
batches, rows and seconds the initialisation took are in ``train_info.allocation.init``.
"""
from __future__ import annotations

import time

from . import register
from .lora import LoRA


class EVA(LoRA):
    name = "eva"
    label = "EVA"
    rank_map = True
    defaults = {"rho": 2.0, "tau": 0.99, "batches": 4}
    schema = {"rho": {"type": "number", "minimum": 1},
              "tau": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
              "batches": {"type": "integer", "minimum": 1}}

    def lora_options(self, opts):
        from peft import EvaConfig

        # use_label_mask: token labels mark what to decompose; classification labels are per row
        return {"init_lora_weights": "eva",
                "eva_config": EvaConfig(rho=float(opts["rho"]), tau=float(opts["tau"]), use_label_mask=False)}

    def initialize(self, ctx, model):
        from peft import initialize_lora_eva_weights

        t0 = time.perf_counter()
        batches = [{k: v for k, v in b.items() if k != "labels"} for b in ctx.init_batches(ctx.opts["batches"])]
        was_training = model.training
        model.eval()
        initialize_lora_eva_weights(model, dataloader=batches, show_progress_bar=False)
        model.train(was_training)
        ctx.record["init"] = {"method": "eva", "seconds": time.perf_counter() - t0, "batches": len(batches),
                              "rows": sum(len(b["input_ids"]) for b in batches)}


register(EVA())
