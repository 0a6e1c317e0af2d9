"""How long the ``optimal`` arm's integer program takes on a 30-layer model (goal: well under a
second). The instance has SmolLM2-135M's shapes (30 layers; q, k, v, o, gate, up, down), each
module's options {NF4+DQ, int8, fp32} x ranks {0, 2, 4, 8, 16} priced by ``rankbits.memory``
(weight bytes, adapter training bytes, 4 bytes per token per unit of rank and a per-layer
activation cost, at 16 x 64 tokens), and a utility of the arm's form: importance x (explained
variance at rank - quantization error), with importances drawn at random, explained variance
1 - 0.85^r and errors 0.10 (NF4) / 0.01 (int8). Budgets: QLoRA r=2's and r=8's cost, fp32
LoRA r=8's. Prints the median process-CPU seconds of a solve per budget, and the chosen split.

    python bench/allocation_solve.py [--quick] [--repeats 5]
"""
from __future__ import annotations

import argparse
import random
import statistics

from rankbits.knapsack import Problem, solve
from rankbits.memory import adapter_bytes, linear_bytes

SHAPES = {"q": (576, 576), "k": (576, 192), "v": (576, 192), "o": (576, 576),
          "gate": (576, 1536), "up": (576, 1536), "down": (1536, 576)}
LAYERS, TOKENS, LAYER_ACT = 30, 16 * 64, 6.5e6
RANKS, PRECISIONS = (0, 2, 4, 8, 16), (4, 8, 32)
ERROR = {4: 0.10, 8: 0.01, 32: 0.0}


def instance(seed: int = 0) -> tuple[Problem, list, list]:
    rng = random.Random(seed)
    modules = [(layer, kind) for layer in range(LAYERS) for kind in SHAPES]
    options = [(p, r) for p in PRECISIONS for r in RANKS]
    weight = {m: rng.random() for m in modules}
    total = sum(weight.values())

    def cost(m, p, r):
        n_in, n_out = SHAPES[m[1]]
        act = 4 * TOKENS * (n_in + r) if r else 0
        return linear_bytes(n_in, n_out, p, False) + adapter_bytes(r, n_in, n_out) + act

    p = Problem(cost=[[cost(m, *o) for o in options] for m in modules],
                utility=[[weight[m] / total * ((1 - 0.85 ** r) - ERROR[pr]) for pr, r in options] for m in modules],
                active=[[r > 0 for _, r in options] for _ in modules], stage=[m[0] for m in modules],
                stage_cost=[LAYER_ACT] * LAYERS, fixed=1.1e8)
    return p, modules, options


def uniform_cost(p: Problem, options, bits: int, rank: int) -> float:
    k = options.index((bits, rank))
    return p.fixed + sum(c[k] for c in p.cost) + sum(p.stage_cost)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    p, modules, options = instance()
    print(f"instance: {len(modules)} modules x {len(options)} options, {LAYERS} layers")
    for label, bits, rank in (("QLoRA r=2", 4, 2), ("QLoRA r=8", 4, 8), ("fp32 LoRA r=8", 32, 8)):
        budget = uniform_cost(p, options, bits, rank)
        times = []
        for _ in range(repeats):
            sol = solve(p, budget)
            times.append(sol.seconds)
        chosen, total = [options[k] for k in sol.choice], sol.total
        split = {b: sum(1 for pr, _ in chosen if pr == b) for b in PRECISIONS}
        print(f"{label:14s} budget {budget / 2**20:8.1f} MiB  solve {statistics.median(times):.3f} CPU s "
              f"(median of {repeats}, proven optimal: {sol.exact})  uses {total / budget:.4f} of it  layers 4/8/32-bit {split[4]}/{split[8]}/{split[32]}"
              f"  adapted {sum(1 for _, r in chosen if r)}  total rank {sum(r for _, r in chosen)}")


if __name__ == "__main__":
    main()
