"""Rank and precision chosen jointly under a memory budget: a multiple-choice knapsack with a
chain, solved exactly as an integer program (``scipy.optimize.milp``, HiGHS).

Each group (an adapted module) takes exactly one of its options; option ``k`` of group ``g``
costs ``cost[g][k]`` bytes, is worth ``utility[g][k]`` and may be *active* (the module gets an
adapter). Autograd keeps a layer's activations once any module at or below that layer trains, so
``stage_cost[s]`` bytes are paid for stage ``s`` when an active option sits in a stage ``<= s``
(binary ``z_s >= active options of groups in stage s``, ``z_s <= z_{s+1}``). At least one option
must be active (an adapter needs a module). Maximise total utility with
``fixed + sum(cost) + sum(stage_cost * z) <= budget``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


class Infeasible(ValueError):
    """No configuration fits the budget; ``minimum`` is the cheapest one's bytes."""

    def __init__(self, message: str, minimum: float):
        super().__init__(message)
        self.minimum = minimum


@dataclass
class Problem:
    cost: list[list[float]]  # bytes, per group and option
    utility: list[list[float]]
    active: list[list[bool]]  # the option trains an adapter on the group's module
    stage: list[int]  # each group's stage (its layer), 0 .. len(stage_cost) - 1
    stage_cost: list[float]  # bytes a stage costs once gradients flow through it
    fixed: float = 0.0  # bytes no choice changes


def _layout(p: Problem):
    offsets, n = [], 0
    for options in p.cost:
        offsets.append(n)
        n += len(options)
    return offsets, n, len(p.stage_cost)


def minimum_cost(p: Problem) -> float:
    """Bytes of the cheapest configuration with at least one adapted module (exact, by the same
    program with the cost as objective)."""
    return _solve(p, objective="cost", budget=None).total


def total_bytes(p: Problem, choice: list[int]) -> float:
    """Bytes of a configuration: fixed, each group's chosen option, and every stage from the
    lowest one holding an active option upwards (gradients flow on through each later stage)."""
    active = [p.stage[g] for g, k in enumerate(choice) if p.active[g][k]]
    first = min(active) if active else len(p.stage_cost)
    return p.fixed + sum(p.cost[g][k] for g, k in enumerate(choice)) + sum(p.stage_cost[first:])


@dataclass
class Solution:
    choice: list[int]  # option index per group
    total: float  # bytes, fixed included
    utility: float
    exact: bool  # proven optimal (gap 0); False: the best found within TIME_LIMIT seconds
    gap: float
    seconds: float  # process CPU seconds of the solve


TIME_LIMIT = 60.0


def solve(p: Problem, budget: float) -> Solution:
    """The best configuration within ``budget`` (proven optimal: HiGHS with a relative gap of
    0); ``Infeasible`` (with the minimum) if none fits."""
    return _solve(p, objective="utility", budget=budget)


def _solve(p: Problem, objective: str, budget: float | None):
    from scipy.optimize import Bounds, LinearConstraint, milp

    offsets, n_x, n_z = _layout(p)
    n = n_x + n_z
    cost = np.zeros(n)
    util = np.zeros(n)
    for g, (c, u) in enumerate(zip(p.cost, p.utility)):
        cost[offsets[g]:offsets[g] + len(c)] = c
        util[offsets[g]:offsets[g] + len(u)] = u
    cost[n_x:] = p.stage_cost
    rows, lo, hi = [], [], []

    def row(entries: dict[int, float], low: float, high: float) -> None:
        r = np.zeros(n)
        for i, v in entries.items():
            r[i] += v
        rows.append(r), lo.append(low), hi.append(high)

    for g, c in enumerate(p.cost):  # one option per group
        row({offsets[g] + k: 1.0 for k in range(len(c))}, 1, 1)
    for g, act in enumerate(p.active):  # z_stage >= the group's active options
        idx = {offsets[g] + k: 1.0 for k, a in enumerate(act) if a}
        if idx:
            row({**idx, n_x + p.stage[g]: -1.0}, -np.inf, 0)
    for s in range(n_z - 1):  # gradients flow on through every later stage
        row({n_x + s: 1.0, n_x + s + 1: -1.0}, -np.inf, 0)
    row({offsets[g] + k: 1.0 for g, act in enumerate(p.active) for k, a in enumerate(act) if a}, 1, np.inf)
    if budget is not None:
        row({i: cost[i] for i in range(n)}, -np.inf, budget - p.fixed)
    # bytes are large numbers; scale the budget row to keep HiGHS' tolerances meaningful
    a = np.array(rows)
    scale = np.maximum(np.abs(a).max(axis=1), 1.0)
    a, lo, hi = a / scale[:, None], np.array(lo) / scale, np.array(hi) / scale
    c = cost / max(cost.max(), 1.0) if objective == "cost" else -util
    # mip_rel_gap 0: HiGHS' default (1e-4) stops at solutions measurably short of the optimum
    t0 = time.process_time()
    res = milp(c, constraints=LinearConstraint(a, lo, hi), integrality=np.ones(n), bounds=Bounds(0, 1),
               options={"presolve": True, "mip_rel_gap": 0.0, "time_limit": TIME_LIMIT})
    if res.x is None:
        if objective == "cost":
            raise RuntimeError(f"knapsack: no configuration at all ({res.message})")
        floor = minimum_cost(p)
        raise Infeasible(f"no configuration fits {budget:.0f} bytes; the smallest needs {floor:.0f}", floor)
    x = np.round(res.x).astype(int)
    choice = [int(np.argmax(x[offsets[g]:offsets[g] + len(c)])) for g, c in enumerate(p.cost)]
    # the bytes of the choice itself: with slack in the budget the solver may set stage variables
    # below the first adapted layer to 1 at no loss of utility, which cost @ x would count
    return Solution(choice, total_bytes(p, choice), float(util @ x), res.status == 0,
                    float(getattr(res, "mip_gap", 0.0) or 0.0), time.process_time() - t0)

