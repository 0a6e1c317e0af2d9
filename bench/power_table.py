"""What more seeds would buy: for every comparison a finished study's verdict draws (each arm
against the best within its memory, and the comparisons table), the paired seed-to-seed spread
of the difference, the smallest difference the study's seeds detect (80% power, alpha 0.05), what
twice the seeds would detect, and the seeds that would resolve the metric's margin. Decides
whether "seeds that grow where the verdict is unresolved" could pay at <= 2x the cost.

    python bench/power_table.py results/default [--margin 0.01]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from rankbits import aggregate as agg
from rankbits.cli import run_dirs
from rankbits.stats import detectable, seeds_for


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--margin", type=float, default=0.01)
    args = ap.parse_args(argv)
    runs = agg.load_runs(run_dirs(Path(args.results)))
    comp = agg.comparisons(runs)
    rows = []
    for r in comp.to_dict("records"):
        n = int(r["seeds"])
        rows.append({"arm": agg.arm_name(r["method"], r["bits"], r["budget"]), "vs": agg.vs_label(r),
                     "diff": round(r["diff"], 4), "sd of diff": round(r["sd"], 4), "outcome": r["outcome"],
                     f"detectable, {n} seeds": round(detectable(r["sd"], n), 4),
                     f"detectable, {2 * n} seeds": round(detectable(r["sd"], 2 * n), 4),
                     f"seeds for ±{args.margin:g}": seeds_for(args.margin, r["sd"])})
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    twice = table[f"detectable, {2 * int(comp['seeds'].max())} seeds"]
    print(f"\n{(twice <= args.margin).sum()} of {len(table)} comparisons would resolve ±{args.margin:g} "
          f"with twice the seeds (2x the study's training cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
