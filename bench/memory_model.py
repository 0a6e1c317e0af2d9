"""The training-memory model (``rankbits.memory``) against what the CUDA allocator measures, per
bit-width and method, through rankbits' own training job on MiniLM and real SST-2 rows.

The model's total (base weights with quantization constants + trainable weights + gradients +
AdamW state + saved activations of the peak batch) is compared with
``torch.cuda.max_memory_allocated`` over the training loop, minus what was allocated before the
loop that the model does not count (nothing, when the job starts on an empty device). The goal:
agreement within 15%. Also checks, on a real bf16 base, that the trainable head stays fp32 and
AdaLoRA's ranknum is frozen.

    # here, with the data and model at hand: write the specs and inputs the device needs
    python bench/memory_model.py --make DIR [--model-path PATH]
    # on the GPU machine (no snakemake or jsonschema needed there)
    python bench/memory_model.py --run DIR [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = [(m, b) for b in ("32", "16", "8", "4") for m in ("lora", "adalora")]
STEPS, BUDGET = 63, 8  # one epoch of the 1,000 rows: the longest batch is among them


def make(out: Path, model_path: str | None) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import SCHEMA, SHARED_DATA

    from rankbits.config import Run, one_run_spec
    from rankbits.data import prepare_task, tokenize_split
    from rankbits.modeling import load_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    prepare_task("sst2", str(SHARED_DATA), {"max_train_samples": 1000, "max_eval_samples": 200}, str(out))
    tok = load_tokenizer("minilm", {})
    for split in ("train", "dev"):
        tokenize_split(str(out / f"{split}.parquet"), str(out / f"tok_{split}.parquet"), tok,
                       {"max_length": 64}, "sst2", "encoder", split)
        (out / f"{split}.parquet").unlink()
    specs = {}
    for method, bits in ARMS:
        spec = one_run_spec(Run("sst2", "minilm", method, BUDGET, bits, 0), SCHEMA,
                            {"max_steps": STEPS, "batch_size": 16, "log_every": 5}, None,
                            tasks={"sst2": {"max_length": 64}}, device="cuda")
        if model_path:
            spec["model_options"] = {"path": model_path}
        specs[f"{method}@{bits}"] = spec
    (out / "specs.json").write_text(json.dumps(specs, indent=1))
    print(f"wrote {len(specs)} specs and tokenized SST-2 rows to {out}")


def run(src: Path, out: str | None, device: str = "cuda", only: str | None = None) -> None:
    import torch

    from rankbits.prepare import prepare_base
    from rankbits.train import train_run

    specs = json.loads((src / "specs.json").read_text())
    if only is None and device == "cuda":  # each arm in a fresh process: peaks start from zero
        import subprocess

        rows = []
        for name in specs:
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                subprocess.run([sys.executable, __file__, "--run", str(src), "--only", name, "--out", f.name],
                               check=True)
                rows += json.loads(Path(f.name).read_text())["rows"]
        return report(rows, specs, src, out, device)
    specs = {k: v for k, v in specs.items() if only in (None, k)}
    for spec in specs.values():  # --device cpu: a smoke run of this script, no comparison
        spec["device"] = device
        if device == "cpu":
            spec["training"]["max_steps"] = 3
    cuda = device == "cuda"
    bases = Path("/tmp/rankbits-bases")
    rows = []
    for name, spec in specs.items():
        bits = spec["run"]["bits"]
        base = bases / bits
        if bits in ("8", "4") and not base.exists():
            prepare_base("minilm", bits, spec["model_options"], device, str(base), str(src / "tok_train.parquet"), 16)
        if cuda:
            torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated() if cuda else 0
        info = train_run(spec, str(src / "tok_train.parquet"), f"{tempfile.mkdtemp()}/run",
                         base_dir=str(base) if bits in ("8", "4") else None)
        tm, mem = info["training_memory"], info["memory"]
        peak = (mem["cuda_max_allocated_bytes"] - before) if cuda else tm["total_bytes"]
        rows.append({"arm": name, "model_MiB": tm["total_bytes"] / 2**20, "cuda_peak_MiB": peak / 2**20,
                     "ratio": tm["total_bytes"] / peak, "reserved_MiB": (mem["cuda_max_reserved_bytes"] or 0) / 2**20,
                     **{k: tm[k] / 2**20 for k in ("base_weights", "trainable_weights", "gradients",
                                                   "optimizer_state", "activations")},
                     "batch": tm["activation_batch_shape"], "optimizer": info["base"]["optimizer"],
                     "ms_step": 1000 * info["timing"]["step_seconds_median"]})
        print(json.dumps(rows[-1]), flush=True)
    if only is not None:
        Path(out).write_text(json.dumps({"rows": rows}))
        return
    report(rows, specs, src, out, device)


def report(rows: list[dict], specs: dict, src: Path, out: str | None, device: str) -> None:
    import torch

    from rankbits.runtime import versions

    cuda = device == "cuda"
    print(f"\n{torch.cuda.get_device_name() if cuda else 'CPU (smoke run)'} · torch {versions()['torch']} · "
          f"bitsandbytes {versions()['bitsandbytes']} · MiniLM, SST-2, budget {BUDGET}, batch 16, "
          f"max_length 64, {STEPS} steps")
    print(f"{'arm':<14}{'model MiB':>10}{'CUDA peak':>10}{'model/peak':>11}  base / train / grad / AdamW / act MiB")
    for r in rows:
        print(f"{r['arm']:<14}{r['model_MiB']:>10.1f}{r['cuda_peak_MiB']:>10.1f}{r['ratio']:>11.3f}  "
              f"{r['base_weights']:.1f} / {r['trainable_weights']:.2f} / {r['gradients']:.2f} / "
              f"{r['optimizer_state']:.2f} / {r['activations']:.1f}")
    within = [abs(r["ratio"] - 1) <= 0.15 for r in rows]
    print(f"within 15%: {sum(within)} of {len(rows)}; median ratio {statistics.median(r['ratio'] for r in rows):.3f}")
    checks = precision_checks(specs["lora@16"], specs["adalora@16"], src)
    print("bf16 base:", json.dumps(checks))
    if out:
        Path(out).write_text(json.dumps({"rows": rows, "precision": checks}, indent=1))


def precision_checks(lora_spec: dict, ada_spec: dict, src: Path) -> dict:
    """On a real bf16 base on CUDA: every trainable parameter fp32 (the head too), ranknum frozen,
    and a step of the head changes (almost) every entry."""
    import torch

    from rankbits.config import Run
    from rankbits.methods import METHODS
    from rankbits.modeling import attach_adapter, load_base

    out = {}
    for spec in (lora_spec, ada_spec):
        run = Run(**spec["run"])
        base, info = load_base(run.model, run.bits, run.task, spec["model_options"], torch.device(spec["device"]))
        m = METHODS.get(run.method)
        opts = m.prepare(run.budget, spec["method_options"], 100, f"methods.{run.method}")
        model = attach_adapter(base, run.model, run.task, m, run.budget, opts, spec["training"], 100)
        train = {n: p for n, p in model.named_parameters() if p.requires_grad}
        out[run.method] = {"base_dtype": info["weight_dtype"],
                           "trainable_dtypes": sorted({str(p.dtype) for p in train.values()}),
                           "trainable_ranknum": sum(".ranknum." in n for n in train)}
    return out


def profile(src: Path, arm: str, steps: int = 63) -> None:
    """Where the CUDA peak of one arm's training goes: the allocator's history replayed, the
    blocks alive at the peak grouped by the innermost frame of transformers / peft / torch.nn /
    rankbits code that allocated them."""
    import collections

    import torch

    from rankbits.train import train_run

    spec = json.loads((src / "specs.json").read_text())[arm]
    spec["training"]["max_steps"] = steps
    bits = spec["run"]["bits"]
    base = Path("/tmp/rankbits-bases") / bits
    torch.cuda.memory._record_memory_history(max_entries=400_000, stacks="python")
    train_run(spec, str(src / "tok_train.parquet"), f"/tmp/rankbits-prof/{arm}",
              base_dir=str(base) if bits in ("8", "4") else None)
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    live, cur, peak, at_peak = {}, 0, 0, {}
    for e in snap["device_traces"][0]:
        if e["action"] == "alloc":
            live[e["addr"]] = (e["size"], e.get("frames", []))
            cur += e["size"]
            if cur > peak:
                peak, at_peak = cur, dict(live)
        elif e["action"] in ("free_requested",) and e["addr"] in live:
            cur -= live.pop(e["addr"])[0]
    keep = ("transformers/", "peft/", "torch/nn/", "rankbits/", "bitsandbytes/", "torch/optim/", "torch/autograd")
    groups = collections.Counter()
    for size, frames in at_peak.values():
        where = next((f"{f['filename'].split('site-packages/')[-1]}:{f['line']} {f['name']}" for f in frames
                      if any(k in f["filename"] for k in keep)), "other")
        groups[where] += size
    print(f"{arm}: replayed peak {peak / 2**20:.1f} MiB; max_memory_allocated {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    for where, size in groups.most_common(25):
        print(f"  {size / 2**20:8.2f} MiB  {where}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make", type=Path)
    ap.add_argument("--model-path")
    ap.add_argument("--run", type=Path)
    ap.add_argument("--out")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run of the script (3 steps, no comparison)")
    ap.add_argument("--only", help="one arm, in this process (the parent runs each arm so)")
    ap.add_argument("--profile", nargs="*", help="arms (e.g. lora@32) whose CUDA peak to break down")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.make:
        make(a.make, a.model_path)
    elif a.profile:
        for arm in a.profile:
            profile(a.run, arm)
    else:
        run(a.run, a.out, a.device, a.only)
