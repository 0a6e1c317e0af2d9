"""CPU a job spends in its job-server fork, with the server's imports as they were (torch, pandas,
transformers, peft, bitsandbytes, rankbits' job modules) and as they are (``jobserver.preload``:
also what every job imported for itself: scikit-learn's metrics, scipy.stats, the registries,
the plots). Side by side, alternating, in one run: each variant is a process that imports its
set, then forks one child per job; a child runs one real training job and its evaluation (the
first run of a finished study, retrained into a temporary folder) and its CPU is read from
``os.wait4``.

    python bench/fork_preload.py results/default [--repeats 3] [--run sst2/minilm/lora/8/4/seed0]
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = ("torch", "pandas", "transformers", "transformers.modeling_utils", "peft", "bitsandbytes",
          "rankbits.train", "rankbits.evaluate", "rankbits.prepare")


def variant(which: str, results: str, run: str, jobs: int) -> list[float]:
    """In this process: import ``which``'s set, then fork ``jobs`` children, one job each."""
    from rankbits import jobserver

    if which == "before":
        for module in BEFORE:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    else:
        jobserver.preload()
    root = Path(results)
    m = json.loads((root / "runs" / run / "metrics.json").read_text())
    spec = json.loads(json.dumps(m["run_info"]["spec"]))
    spec["training"]["lr"] = m["train_info"]["training"]["lr"]
    cache = root.parent / "cache"
    model, bits = spec["run"]["model"], spec["run"]["bits"]
    tok = {s: glob.glob(f"{cache}/tokenized/{spec['run']['task']}/*/{model}/{s}.parquet")[0]
           for s in ("train", "selection", "dev")}
    base = glob.glob(f"{cache}/base/{model}/{bits}/*")[0]
    out = []
    for _ in range(jobs):
        with tempfile.TemporaryDirectory() as tmp:
            pid = os.fork()
            if pid == 0:  # the job, as a fork of the warm server runs it
                code = 0
                try:
                    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), \
                            contextlib.redirect_stdout(null):
                        from rankbits.evaluate import evaluate_run
                        from rankbits.train import train_run

                        train_run(spec, tok["train"], f"{tmp}/point", 1, base, None, tok["selection"])
                        evaluate_run(spec, [f"{tmp}/point"], tok["dev"], f"{tmp}/run", 1, base)
                except BaseException:  # noqa: BLE001
                    code = 1
                os._exit(code)
            _, status, usage = os.wait4(pid, 0)
            if status != 0:
                raise RuntimeError(f"the {which} job failed (status {status})")
            out.append(usage.ru_utime + usage.ru_stime)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a finished study, results/<study>")
    ap.add_argument("--run", default="sst2/minilm/lora/8/4/seed0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:  # a child process of this benchmark: one variant, one job
        print(json.dumps(variant(args.variant, args.results, args.run, 1)))
        return 0
    cpu = {"before": [], "after": []}
    for _ in range(args.repeats):
        for which in cpu:  # alternating, each in a fresh process
            res = subprocess.run([sys.executable, __file__, args.results, "--run", args.run, "--variant", which],
                                 capture_output=True, text=True, check=True)
            cpu[which] += json.loads(res.stdout.strip().splitlines()[-1])
    for which, values in cpu.items():
        print(f"{which:>6} preload: a train + evaluate job's fork CPU s, median of {len(values)}: "
              f"{statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})")
    saved = statistics.median(cpu["before"]) - statistics.median(cpu["after"])
    print(f"saved per train + evaluate pair: {saved:.2f} CPU s "
          f"(ratio after / before {statistics.median(cpu['after']) / statistics.median(cpu['before']):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
