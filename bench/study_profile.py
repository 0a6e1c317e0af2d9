"""Where a study's CPU went: by rule, training loops against the rest, and Snakemake's own.

    python bench/study_profile.py results/default [--logs logs/default] [--cache-logs logs/cache]

Reads what a finished run left (nothing is re-run):
- every job's log ends with ``rankbits cpu seconds (process|fork): S`` (``rankbits.workflow``):
  the job's own process (interpreter, imports, and with the job server the wait) and, under the
  job server, its fork of the warm server (the job's work); a job's CPU is their sum;
- ``logs/<study>/snakemake_cpu.json``: Snakemake's own process (DAG evaluations included),
  written when the run succeeds;
- each trained grid point's ``train_info.json``: ``timing.train_cpu_seconds``, the process CPU of
  its training loop (optimizer steps and the loop's periodic validation).

The **training share** is the loops' CPU over all CPU the study's jobs and Snakemake used. Jobs of
the shared cache (data, tokenization, prepared bases under ``logs/cache``) count when their logs
are there; a cache another study filled costs this one nothing. Not counted: the job server's own
start-up imports (once per run) and the scheduler's idle waits.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^rankbits cpu seconds \((process|fork)\): ([0-9.]+)$")


def job_cpu(log: Path) -> dict[str, float]:
    """{'process': s, 'fork': s} from the last lines of one job's log (a retried job's log holds
    its last attempt only: Snakemake's log is rewritten)."""
    found = {}
    try:
        lines = log.read_text(errors="replace").splitlines()[-50:]
    except OSError:
        return found
    for line in lines:
        m = LINE.match(line.strip())
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def by_rule(log_root: Path) -> dict[str, dict]:
    """CPU per rule (a log's first folder under ``log_root``): jobs, seconds, jobs without a figure."""
    rules: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "cpu": 0.0, "fork": 0.0, "unmeasured": 0})
    for log in sorted(log_root.rglob("*.log")):
        rel = log.relative_to(log_root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem  # (a one-job rule logs to <rule>.log)
        cpu = job_cpu(log)
        r = rules[rule]
        r["jobs"] += 1
        if not cpu:
            r["unmeasured"] += 1
        r["cpu"] += sum(cpu.values())
        r["fork"] += cpu.get("fork", 0.0)
    return dict(rules)


def training_loops(results: Path) -> tuple[float, int, dict[str, float]]:
    """CPU seconds in training loops over every trained grid point, how many points, and the CPU
    of each phase of their jobs summed (``timing.phase_cpu_seconds``, with the selection-split
    scoring apart; points trained before rankbits recorded phases add nothing there)."""
    total, n, phases = 0.0, 0, defaultdict(float)
    for info in results.rglob("adapters/**/train_info.json"):
        t = json.loads(info.read_text()).get("timing") or {}
        if t.get("train_cpu_seconds") is not None:
            total += float(t["train_cpu_seconds"])
            n += 1
        for phase, s in (t.get("phase_cpu_seconds") or {}).items():
            phases[phase] += s
        if t.get("phase_cpu_seconds") and t.get("selection_cpu_seconds") is not None:
            phases["record"] -= t["selection_cpu_seconds"]
            phases["selection scoring"] += t["selection_cpu_seconds"]
    return total, n, dict(phases)


def test_scoring(results: Path) -> float:
    """CPU seconds the evaluations spent (``eval_info.eval_cpu_seconds``: load and score the test split)."""
    total = 0.0
    for path in results.rglob("runs/**/metrics.json"):
        total += (json.loads(path.read_text()).get("eval_info") or {}).get("eval_cpu_seconds") or 0.0
    return total


def profile(results: Path, logs: Path, cache_logs: Path | None) -> dict:
    rules = by_rule(logs)
    if cache_logs is not None and cache_logs.is_dir():
        rules.update({f"cache/{k}": v for k, v in by_rule(cache_logs).items()})
    smk_file = logs / "snakemake_cpu.json"
    smk = json.loads(smk_file.read_text()) if smk_file.exists() else None
    loops, points, phases = training_loops(results)
    jobs = sum(r["cpu"] for r in rules.values())
    total = jobs + (smk["self"] if smk else 0.0)
    return {"rules": rules, "snakemake": smk, "loops": loops, "points": points, "jobs": jobs, "total": total,
            "phases": phases, "test_scoring": test_scoring(results),
            "training_share": loops / total if total else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="results/<study>")
    ap.add_argument("--logs", help="the study's logs (default: logs/<study>)")
    ap.add_argument("--cache-logs", default="logs/cache", help="the shared cache's logs ('' to leave out)")
    args = ap.parse_args(argv)
    results = Path(args.results)
    logs = Path(args.logs or Path("logs") / results.name)
    p = profile(results, logs, Path(args.cache_logs) if args.cache_logs else None)
    print(f"{'rule':<28}{'jobs':>6}{'CPU s':>11}{'share':>8}  in the job server's forks")
    for rule, r in sorted(p["rules"].items(), key=lambda kv: -kv[1]["cpu"]):
        note = f"  ({r['unmeasured']} log(s) without a CPU line)" if r["unmeasured"] else ""
        print(f"{rule:<28}{r['jobs']:>6}{r['cpu']:>11.1f}{r['cpu'] / p['total']:>8.1%}  {r['fork']:.1f}{note}"
              if p["total"] else f"{rule:<28}{r['jobs']:>6}{r['cpu']:>11.1f}{note}")
    if p["snakemake"]:
        s = p["snakemake"]["self"]
        print(f"{'snakemake (own process)':<28}{'':>6}{s:>11.1f}{s / p['total']:>8.1%}")
    else:
        print(f"snakemake's own CPU: no {logs / 'snakemake_cpu.json'} (written when a run succeeds)")
    print(f"{'all':<28}{'':>6}{p['total']:>11.1f}")
    print(f"training loops: {p['loops']:.1f} CPU s over {p['points']} trained grid point(s)")
    if "train" in p["rules"]:
        outside = p["rules"]["train"]["cpu"] - p["loops"]
        print(f"training jobs outside their loops: {outside:.1f} CPU s ({outside / max(1, p['points']):.1f} s a job: "
              f"base load, model build, the activation count, selection-split scoring, saving)")
    if p["phases"]:
        print("inside the training jobs, by phase (CPU s over all grid points): " + ", ".join(
            f"{k} {v:.1f}" for k, v in p["phases"].items()))
    if p["training_share"] is not None:
        print(f"training share: {p['training_share']:.3f} (loops' CPU / all CPU above)")
    scoring = p["phases"].get("selection scoring", 0.0) + p["test_scoring"]
    if p["phases"] and p["test_scoring"]:
        print(f"scoring held-out rows: {scoring:.1f} CPU s (selection split {p['phases']['selection scoring']:.1f}, "
              f"test split {p['test_scoring']:.1f}); were everything else free, the share would be "
              f"{p['loops'] / (p['loops'] + scoring):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
