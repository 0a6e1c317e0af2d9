"""Snakemake's own CPU while jobs wait for cores: its default scheduling against the workflow's
(``rankbits.workflow.local_scheduling``, no job-rate limit on a local run), side by side in one run.

    python bench/scheduler_poll.py [--jobs 120] [--seconds 1.0] [--inputs 6] [--cores 2] [--rounds 2]

Snakemake's ``--max-jobs-per-timespan`` (default ``100/1s``) makes every scheduling pass that
finds jobs ready start a timer for another pass a second later; each job that finishes begins one
more such chain, so while jobs wait for a core the passes a second grow with the jobs finished,
each checking every ready job's inputs. This runs a scratch workflow of ``--jobs`` jobs (each
sleeps ``--seconds`` and reads ``--inputs`` + 1 files, all ready at once) with ``--cores`` at a
time, once per setting per round, alternating, and prints the snakemake process' CPU seconds
(``os.wait4``), its wall seconds and the scheduler's timed wake-ups (``threading.Timer``s started).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """
import threading
from rankbits.workflow import local_scheduling

N = {jobs}
TIMERS = []
_Timer = threading.Timer


class Counted(_Timer):
    def __init__(self, *args, **kwargs):
        TIMERS.append(1)
        super().__init__(*args, **kwargs)


threading.Timer = Counted  # Snakemake's scheduler starts its timed wake-ups through it

rule all:
    input: expand("out/{{i}}.txt", i=range(N))
rule job:
    input: lambda w: [f"in/0_{{k}}.txt" for k in range({inputs})] + [f"in/{{w.i}}_x.txt"]
    output: "out/{{i}}.txt"
    shell: "sleep {seconds} && touch {{output}}"
onstart:
    if config.get("rankbits"):
        local_scheduling(workflow.scheduler)
onsuccess:
    with open("timers.txt", "w") as fh:
        fh.write(str(len(TIMERS)))
"""

SETTINGS = {"Snakemake's default": False, "rankbits (local_scheduling)": True}


def run(workdir: Path, ours: bool, cores: int) -> tuple[float, float, int]:
    """(snakemake's CPU seconds, wall seconds, timers started) of one run from scratch."""
    for sub in ("out", ".snakemake", "timers.txt"):
        subprocess.run(["rm", "-rf", str(workdir / sub)], check=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all", "-s", "Snakefile",
           "--config", f"rankbits={int(ours)}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"snakemake failed (rankbits={ours}): status {status}")
    return usage.ru_utime + usage.ru_stime, wall, int((workdir / "timers.txt").read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--inputs", type=int, default=6)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="12 jobs of 0.3 s, one round (the test suite's check)")
    args = ap.parse_args(argv)
    if args.quick:
        args.jobs, args.seconds, args.rounds = 12, 0.3, 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE.format(jobs=args.jobs, inputs=args.inputs, seconds=args.seconds))
        (work / "in").mkdir()
        for name in [f"{i}_x" for i in range(args.jobs)] + [f"0_{k}" for k in range(args.inputs)]:
            (work / "in" / f"{name}.txt").write_text(name)  # every input exists: every job is ready
        out = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, ours in SETTINGS.items():
                out[name].append(run(work, ours, args.cores))
    print(f"{args.jobs} jobs of {args.seconds:g} s, {args.inputs + 1} inputs each, {args.cores} at a time; "
          f"median of {args.rounds}:")
    for name, runs in out.items():
        print(f"  {name:<28} snakemake CPU {statistics.median(r[0] for r in runs):6.2f} s, "
              f"wall {statistics.median(r[1] for r in runs):6.1f} s, "
              f"timed wake-ups {statistics.median(r[2] for r in runs):6.0f}")
    a, b = (statistics.median(r[0] for r in runs) for runs in out.values())
    print(f"ratio snakemake CPU rankbits / default: {b / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
