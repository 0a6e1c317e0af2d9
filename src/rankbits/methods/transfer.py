"""``adalora-transfer``: plain LoRA on the final rank pattern of the matching AdaLoRA run (same
task, model, budget, bits and seed; the workflow makes that run first). AdaLoRA's ranks are taken
as weights and rescaled to the budget, because AdaLoRA's equal total rank is not an equal
parameter count once it moves rank between modules of different shapes."""
from __future__ import annotations

from pathlib import Path

from . import register
from .lora import AllocatedLoRA
from ..io import read_json


class AdaLoRATransfer(AllocatedLoRA):
    name = "adalora-transfer"
    label = "AdaLoRA ranks → LoRA"
    upstream = "adalora"

    def weights(self, ctx):
        if ctx.upstream_dir is None:
            raise ValueError(f"{ctx.run.path}: adalora-transfer needs the matching adalora run's "
                             f"directory (upstream_dir)")
        source = Path(ctx.upstream_dir) / "rank_pattern.json"
        ranks = read_json(source)
        unknown = sorted(set(ranks) - set(ctx.dims))
        if unknown:
            raise ValueError(f"{source}: names modules this model does not have: {unknown[:3]}")
        ctx.record["source"] = {"rank_pattern": str(source), "ranks": ranks}
        return {m: float(ranks.get(m, 0)) for m in ctx.dims}


register(AdaLoRATransfer())
