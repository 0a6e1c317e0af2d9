"""Per-job start-up cost (interpreter, imports, model load) against the compute of a finished
study's jobs. Goal: <= 3 s per job; otherwise the study's wall / compute must stay <= 1.15.

Start-up is measured as a training job pays it, two ways side by side (median of ``--repeats``):
  * in its own interpreter (``job_server: false``): a fresh Python importing rankbits' train and
    evaluate paths and loading MiniLM;
  * through the job server (``rankbits.jobserver``, the default for local runs): a fresh Python
    that imports only the job server's client and hands the MiniLM load to a warm server's fork
    (the server is started, and its own start-up paid, once before the timed calls).
Neither includes Snakemake's own part (its script preamble), the same in both. Compute is each
run's measured train and eval seconds from ``results/<study>/runs/**/metrics.json``; the printed ratios
estimate (compute + jobs x start-up) / compute for that study on one core.

    python bench/job_overhead.py [--quick] [--results results/default/runs]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rankbits.io import read_json

STARTUP = "import rankbits.train, rankbits.evaluate\nfrom job_overhead import load_minilm\nload_minilm()\n"
CLIENT = "from rankbits.jobserver import run\nrun('job_overhead:load_minilm')\n"


def load_minilm() -> None:
    """A job's work before its own: in its own interpreter after the imports, or in a fork."""
    import torch

    from rankbits.modeling import load_base

    load_base("minilm", "32", "sst2", {}, torch.device("cpu"))


def timed(code: str, n: int, env: dict) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one start-up measurement (CI smoke run)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--results", default="results/default/runs")
    args = ap.parse_args()
    n = 1 if args.quick else args.repeats
    owner = subprocess.Popen(["sleep", "3600"])  # stands in for snakemake: the server's owner
    try:
        env = {**os.environ, "RANKBITS_JOBSERVER_OWNER": str(owner.pid),
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        server = {}
        if sys.platform == "linux":
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", CLIENT], check=True, capture_output=True, env=env)
            server["first"] = time.perf_counter() - t
        alone = timed(STARTUP, n, env)
        if server:
            server["warm"] = timed(CLIENT, n, env)
    finally:
        owner.kill()
        owner.wait()
    print(f"start-up per job in its own interpreter (imports + MiniLM load), median of {n}: "
          f"{alone:.2f} s (goal <= 3 s)")
    startup = alone
    if server:
        startup = server["warm"]
        print(f"start-up per job through the job server (client + fork + MiniLM load), median of {n}: "
              f"{server['warm']:.2f} s (goal <= 3 s); the first job, which starts the server: "
              f"{server['first']:.2f} s")
        print(f"ratio start-up own interpreter / job server: {alone / server['warm']:.2f}")
    runs = [read_json(p) for p in sorted(Path(args.results).glob("**/metrics.json"))]
    if not runs:
        print(f"no finished runs under {args.results}: run a study first for the compute ratio")
        return
    runs = [m for m in runs if m["run_info"]["status"] == "success"]
    compute = sum(m["eval_info"]["lr_selection"]["total_train_seconds"] for m in runs)
    compute += sum(m["eval_info"]["eval_seconds"] for m in runs)
    jobs = sum(len(m["eval_info"]["lr_selection"]["grid"]) + 1 for m in runs)
    print(f"study under {args.results}: {len(runs)} runs, {jobs} train/evaluate jobs, "
          f"{compute:.0f} s measured compute")
    for label, cost in [("own interpreters", alone)] + ([("job server", startup)] if server else []):
        print(f"ratio (compute + jobs x start-up) / compute, {label}: "
              f"{(compute + jobs * cost) / compute:.3f} (goal <= 1.15)")


if __name__ == "__main__":
    main()
