"""`rankbits plan`'s prediction against what each finished run measured of itself.

    python bench/plan_vs_measured.py results/default

For every arm of the study, its first seed's recorded spec is planned on the meta device (no
weights) at the batch shape the run measured its activations at, and each part is divided by the
run's own ``training_memory`` part. Also printed: the plan at its default batch (batch size x
``max_length``), the upper bound ``rankbits plan`` reports.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rankbits.config import Run
from rankbits.plan import MiB, predict

PARTS = ("base_weights", "trainable_weights", "optimizer_state", "activations")


def main(results: str) -> int:
    seen = set()
    print(f"{'arm':<34}" + "".join(f"{p.split('_')[0]:>12}" for p in PARTS) + f"{'total':>10}{'measured':>10}"
          f"{'default':>10}")
    for metrics in sorted(Path(results, "runs").rglob("metrics.json")):
        m = json.loads(metrics.read_text())
        ri = m["run_info"]
        arm = tuple(ri[k] for k in ("task", "model", "method", "budget", "bits"))
        if arm in seen or ri["status"] != "success":
            continue
        seen.add(arm)
        spec = ri["spec"]
        info = m["train_info"]  # what training wrote
        measured = info["training_memory"]
        run = Run(**spec["run"])
        shape = tuple(measured["activation_batch_shape"])
        p = predict(run, spec, info["device"]["type"], shape)
        default = predict(run, spec, "cpu")
        print(f"{'/'.join(str(a) for a in arm[2:]):<34}"
              + "".join(f"{p.parts[k] / measured[k]:>12.4f}" for k in PARTS)
              + f"{p.total_bytes / measured['total_bytes']:>10.4f}{measured['total_bytes'] / MiB:>10.1f}"
              + f"{default.total_bytes / MiB:>10.1f}")
    print("columns: predicted / measured per part at the measured batch shape; measured and default "
          "(batch size x max_length) totals in MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "results/default"))
