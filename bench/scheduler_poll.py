"""Snakemake's own CPU while jobs wait for cores, at its default job-rate limit and at a longer
timespan (``--limit``), side by side in one run.

    python bench/scheduler_poll.py [--jobs 120] [--seconds 1.0] [--inputs 6] [--cores 2] [--rounds 2]

Snakemake's ``--max-jobs-per-timespan`` (default ``100/1s``) makes its scheduler wake every
timespan while jobs are running and select again among every ready job, checking each one's
input files; a job that finishes wakes it anyway. In a study most jobs wait for a core, so the
1-second wake-up costs CPU in proportion to the ready jobs and their inputs (measured: the LM
study's Snakemake spent its CPU there). A longer timespan wakes it less, but the scheduler also
waits for that wake-up between jobs: wall time is printed beside CPU. This runs a scratch
workflow of ``--jobs`` jobs (each sleeps ``--seconds`` and reads ``--inputs`` files, all ready
at once) with ``--cores`` at a time, once per setting per round, alternating, and prints the
snakemake process' CPU seconds (``os.wait4``) and wall seconds of each.
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
N = {jobs}
rule all:
    input: expand("out/{{i}}.txt", i=range(N))
rule job:
    input: lambda w: [f"in/0_{{k}}.txt" for k in range({inputs})] + [f"in/{{w.i}}_x.txt"]
    output: "out/{{i}}.txt"
    shell: "sleep {seconds} && touch {{output}}"
"""


def run(workdir: Path, limit: str | None, cores: int) -> tuple[float, float]:
    """(snakemake's CPU seconds, wall seconds) of one run from scratch in ``workdir``."""
    for sub in ("out", ".snakemake"):
        subprocess.run(["rm", "-rf", str(workdir / sub)], check=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all", "-s", "Snakefile"]
    if limit:
        cmd += ["--max-jobs-per-timespan", limit]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"snakemake failed ({limit or 'default'}): status {status}")
    return usage.ru_utime + usage.ru_stime, wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=120)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--inputs", type=int, default=6)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", default="1000/1m", help="the setting to compare with Snakemake's default")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "Snakefile").write_text(SNAKEFILE.format(jobs=args.jobs, inputs=args.inputs, seconds=args.seconds))
        (work / "in").mkdir()
        for name in [f"{i}_x" for i in range(args.jobs)] + [f"0_{k}" for k in range(args.inputs)]:
            (work / "in" / f"{name}.txt").write_text(name)  # every input exists: every job is ready
        out = {"default (100/1s)": [], args.limit: []}
        for _ in range(args.rounds):
            out["default (100/1s)"].append(run(work, None, args.cores))
            out[args.limit].append(run(work, args.limit, args.cores))
    print(f"{args.jobs} jobs of {args.seconds:g} s, {args.inputs + 1} inputs each, {args.cores} at a time; "
          f"median of {args.rounds}:")
    for name, runs in out.items():
        print(f"  --max-jobs-per-timespan {name:<18} snakemake CPU {statistics.median(c for c, _ in runs):6.2f} s, "
              f"wall {statistics.median(w for _, w in runs):6.1f} s")
    a, b = (statistics.median(c for c, _ in runs) for runs in out.values())
    print(f"ratio snakemake CPU {args.limit} / default: {b / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
