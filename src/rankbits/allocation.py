"""Budget-matched rank allocation: turn per-module weights (a hand-made pattern, probe
importances, another run's ranks) into integer ranks whose LoRA parameter count matches uniform
LoRA at rank ``budget`` on the same modules.

A budget ``b`` is the trainable adapter parameters of uniform LoRA with r = b on every target
module, ``B = b * sum(in + out)``. Ranks are ``r_m = s * w_m`` with ``s`` chosen so that
``sum(r_m * (in_m + out_m)) = B``, rounded by largest remainder in parameter space: floor every
rank, then hand one more unit of rank to the modules with the largest remainders while that brings
the total closer to B.
"""
from __future__ import annotations

import math

TOLERANCE = 0.02  # allowed relative deviation from the uniform run's parameter count


class BudgetError(ValueError):
    pass


def cost(dims: tuple[int, int]) -> int:
    """LoRA parameters one unit of rank costs on a module of (in_features, out_features)."""
    return int(dims[0]) + int(dims[1])


def uniform_params(budget: int, dims: dict[str, tuple[int, int]]) -> int:
    return budget * sum(cost(d) for d in dims.values())


def lora_params(ranks: dict[str, int], dims: dict[str, tuple[int, int]]) -> int:
    return sum(r * cost(dims[m]) for m, r in ranks.items())


def allocate(weights: dict[str, float], dims: dict[str, tuple[int, int]], budget: int,
             tolerance: float = TOLERANCE) -> dict[str, int]:
    """Integer rank per module (0: not adapted) in proportion to ``weights``, matching the
    parameter count of uniform LoRA at ``budget`` within ``tolerance``."""
    missing = sorted(set(dims) - set(weights))
    if missing:
        raise BudgetError(f"no weight for module(s) {missing[:3]}")
    if any(w < 0 or not math.isfinite(w) for w in weights.values()):
        raise BudgetError("weights must be finite and >= 0")
    target = uniform_params(budget, dims)
    weighted = sum(weights[m] * cost(dims[m]) for m in dims)
    if weighted <= 0:
        raise BudgetError("every module has weight 0: nothing to allocate")
    scale = target / weighted
    exact = {m: weights[m] * scale for m in dims}
    ranks = {m: math.floor(x) for m, x in exact.items()}
    short = target - lora_params(ranks, dims)
    for m in sorted(dims, key=lambda m: (-(exact[m] - ranks[m]), m)):
        if exact[m] > ranks[m] and cost(dims[m]) < 2 * short:  # one more unit brings us closer
            ranks[m] += 1
            short -= cost(dims[m])
    dev = deviation(ranks, dims, budget)
    if abs(dev) > tolerance:
        raise BudgetError(f"budget {budget}: allocation is {dev:+.1%} off uniform LoRA's "
                          f"{target} parameters (tolerance {tolerance:.0%}); the budget is too small "
                          f"for this pattern's granularity")
    return ranks


def deviation(ranks: dict[str, int], dims: dict[str, tuple[int, int]], budget: int) -> float:
    """Relative deviation of an allocation's LoRA parameters from uniform LoRA at ``budget``."""
    target = uniform_params(budget, dims)
    return (lora_params(ranks, dims) - target) / target


def budget_record(adapter_params: int, dims: dict[str, tuple[int, int]], budget: int) -> dict:
    """What metrics.json says about budget matching: a run's adapter parameters against uniform
    LoRA's at its budget on the same target modules."""
    target = uniform_params(budget, dims)
    return {"uniform_lora_params": target, "adapter_params": int(adapter_params),
            "deviation": (adapter_params - target) / target, "target_modules": len(dims)}
