"""Threads per job against jobs at once, on this machine's cores, side by side in one run.

    python bench/threads_vs_jobs.py [--cores 2] [--steps 20] [--model minilm] [--rounds 2]

A study's training jobs can share the cores as ``--cores`` jobs of one thread each (what
``snakemake --cores N`` does with ``threads: 1``) or fewer jobs of several threads. Both are run
here on the same training step (LoRA r=8, real pretrained weights, the step_efficiency shapes):
``cores`` worker processes of 1 thread each doing ``steps`` optimizer steps at once, and one
worker of ``cores`` threads doing ``cores x steps``; each worker imports and builds its model
first and starts its steps at a common moment, so start-up is left out. Printed: optimizer steps
per wall second of each layout (median over ``--rounds``, alternating) and their ratio. Run alone
on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPES = {"minilm": ("sst2", 16, 64), "smollm2-135m": ("wikitext2", 4, 64)}


def worker(model_name: str, threads: int, steps: int, start_at: float) -> float:
    """Wall seconds of ``steps`` optimizer steps on ``threads`` threads, from ``start_at``."""
    import torch

    from step_efficiency import build, step_fn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    task, rows, tokens = SHAPES[model_name]
    model = build(model_name, "32", task)
    model.train()
    ids = torch.randint(5, 1000, (rows, tokens))  # as step_efficiency.py builds its batch
    labels = torch.zeros(rows, dtype=torch.long) if task == "sst2" else ids.clone()
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    step = step_fn(model, batch, optimizer)
    step()
    step()  # warm-up
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


def layout(model: str, procs: int, threads: int, steps: int) -> float:
    """Steps per wall second of ``procs`` workers of ``threads`` threads, ``steps`` each, at once."""
    start_at = time.time() + 30.0  # every worker has imported and built its model by then
    ps = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps([model, threads, steps, start_at])],
                           stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    walls = [float(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
    if any(p.returncode for p in ps):
        raise RuntimeError("a worker failed")
    return procs * steps / max(walls)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--model", default="minilm", choices=sorted(SHAPES))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        model, threads, steps, start_at = json.loads(args.worker)
        print(worker(model, threads, steps, start_at))
        return 0
    rates = {"jobs": [], "threads": []}
    for _ in range(args.rounds):
        rates["jobs"].append(layout(args.model, args.cores, 1, args.steps))
        rates["threads"].append(layout(args.model, 1, args.cores, args.cores * args.steps))
    jobs, threads = statistics.median(rates["jobs"]), statistics.median(rates["threads"])
    print(f"{args.model}, {args.cores} cores: {args.cores} jobs x 1 thread {jobs:.2f} steps/s; "
          f"1 job x {args.cores} threads {threads:.2f} steps/s; ratio jobs / threads {jobs / threads:.2f} "
          f"(rounds: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(rates['jobs'], rates['threads']))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
