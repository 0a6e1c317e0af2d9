"""Per-job start-up cost (interpreter, imports, model load) against the compute of a finished
study's jobs. Goal: <= 3 s per job; otherwise the study's wall / compute must stay <= 1.15.

Start-up is measured as a training job pays it: a fresh interpreter importing rankbits' train and
evaluate paths and loading MiniLM, median of ``--repeats``. Compute is each run's measured train
and eval seconds from ``results/runs/**/metrics.json``; the printed ratio is the estimate
(compute + jobs x start-up) / compute for that study on one core.

    python bench/job_overhead.py [--quick] [--results results/runs]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rankbits.io import read_json

STARTUP = ("import torch, rankbits.train, rankbits.evaluate\n"
           "from rankbits.modeling import load_base\n"
           "load_base('minilm', '32', 'sst2', {}, torch.device('cpu'))\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one start-up measurement (CI smoke run)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--results", default="results/runs")
    args = ap.parse_args()
    times = []
    for _ in range(1 if args.quick else args.repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", STARTUP], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    startup = statistics.median(times)
    print(f"start-up per job (interpreter + imports + MiniLM load), median of {len(times)}: "
          f"{startup:.2f} s (goal <= 3 s)")
    runs = [read_json(p) for p in sorted(Path(args.results).glob("**/metrics.json"))]
    if not runs:
        print(f"no finished runs under {args.results}: run a study first for the compute ratio")
        return
    compute = sum((m["train_info"].get("lr_selection") or {}).get("total_train_seconds",
                                                                  m["train_info"]["train_seconds"])
                  for m in runs)
    compute += sum(m["eval_info"]["eval_seconds"] for m in runs)
    jobs = sum(len(m["train_info"].get("lr_selection", {}).get("grid", [0])) + 1 for m in runs)
    print(f"study under {args.results}: {len(runs)} runs, {jobs} train/evaluate jobs, "
          f"{compute:.0f} s measured compute")
    print(f"ratio (compute + jobs x start-up) / compute: {(compute + jobs * startup) / compute:.3f} "
          f"(goal <= 1.15)")


if __name__ == "__main__":
    main()
