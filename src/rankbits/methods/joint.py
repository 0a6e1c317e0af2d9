"""``joint`` (S1): decide rank and precision together. Ranks come from the probe (see
``probe``); then the half of the target Linear layers with the highest allocated rank is put in
4-bit (NF4 + double quantization) and the other half in 8-bit (LLM.int8): the adapter's capacity
goes where the base is coarsest. The run's ``bits`` must be ``32`` — the method sets per-layer
precision itself, from the fp32 base, before training; evaluation rebuilds the same base from the
recorded bit map (``train_info.allocation.bit_map``). Base bytes are measured after quantization.
"""
from __future__ import annotations

from . import register
from .probe import Probe
from ..errors import ConfigError
from ..bits.mixed import quantize_modules


class Joint(Probe):
    name = "joint"
    label = "joint rank + 4/8-bit"
    own_bits = True
    defaults = {**Probe.defaults, "four_bit_share": 0.5}  # share of target layers put in 4-bit

    schema = {**Probe.schema, "four_bit_share": {"type": "number", "minimum": 0, "maximum": 1}}

    def prepare(self, budget, opts, total_steps, where):
        o = super().prepare(budget, opts, total_steps, where)
        if not 0 <= o["four_bit_share"] <= 1:
            raise ConfigError(f"{where}.four_bit_share: {o['four_bit_share']} is not within [0, 1]")
        return o

    def allocate(self, ctx):
        ranks = super().allocate(ctx)
        order = sorted(ranks, key=lambda m: (-ranks[m], m))
        n4 = int(round(ctx.opts["four_bit_share"] * len(order)))
        ctx.record["bit_map"] = {m: (4 if i < n4 else 8) for i, m in enumerate(order)}
        return ranks

    def adapt_base(self, model, record: dict, device):
        return quantize_modules(model, record["bit_map"], device)


register(Joint())
