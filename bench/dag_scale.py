"""Time for ``snakemake -n`` (building the DAG) on a study of N runs (default 1,000; goal
<= 10 s), in a scratch directory; prints seconds and the job count.

    python bench/dag_scale.py [--quick] [--runs 1000]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def study(runs: int) -> dict:
    """A study of about ``runs`` runs: 4 tasks x 5 methods x budgets x seeds."""
    methods = ["lora", "adalora", "pattern:linear-decay", "pattern:ffn-heavy", "probe"]
    budgets = [2, 4, 8, 16, 32]
    seeds = max(1, runs // (4 * len(methods) * len(budgets)))
    return {"data_root": str(REPO.parent / "shared" / "data"),
            "study": {"tasks": ["sst2", "cola", "mrpc", "rte"], "models": ["minilm"], "methods": methods,
                      "budgets": budgets, "bits": ["32"], "seeds": list(range(seeds))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 runs (CI smoke run)")
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    runs = 100 if args.quick else args.runs
    cfg = study(runs)
    n = 4 * len(cfg["study"]["methods"]) * len(cfg["study"]["budgets"]) * len(cfg["study"]["seeds"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", tmp, "-n",
               "--cores", "1", "--configfile", str(path), "--quiet", "rules"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    total = re.search(r"^total\s+(\d+)$", proc.stdout, re.M)
    jobs = int(total.group(1)) if total else 0
    print(f"runs={n} jobs={jobs} snakemake -n: {seconds:.2f} s (goal <= 10 s for 1,000 runs)")
    print(f"ratio seconds/goal: {seconds / 10:.3f}")


if __name__ == "__main__":
    main()
