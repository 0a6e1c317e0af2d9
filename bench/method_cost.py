"""Step time and peak memory per (method, bits) for MiniLM on real SST-2, measured side by side
in one run through rankbits' own training job (``rankbits.train.train_run``: base load, kbit
preparation, allocation, adapter, optimizer and step exactly as in a study).

Each arm trains ``--steps`` optimizer steps on the same length-grouped batches; arms take turns
for ``--rounds`` rounds after one discarded warm-up round. Prints, per batch size, the median
ms/step, the peak GPU memory allocated during training (CUDA only: torch's
``max_memory_allocated``; a process-wide peak on the CPU says nothing per arm) and both as ratios
to LoRA on the fp32 base.

    python bench/method_cost.py [--quick] [--batch 32 128] [--steps 20] [--rounds 3] [--device cuda]
    (needs ../shared/data/sst2 or --data_root with sst2/train.tsv)
"""
from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
from pathlib import Path

import torch

from rankbits.config import Run, one_run_spec
from rankbits.data import prepare_task, tokenize_split
from rankbits.modeling import load_tokenizer
from rankbits.prepare import prepare_base
from rankbits.runtime import pick_device, versions
from rankbits.train import train_run

REPO = Path(__file__).resolve().parents[1]
ARMS = [("lora", "32"), ("lora", "16"), ("lora", "8"), ("lora", "4"),
        ("adalora", "32"), ("adalora", "4"), ("pattern:linear-decay", "32"), ("pattern:linear-decay", "4")]
MAX_LENGTH = 64
BUDGET = 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two arms, few steps (CI smoke run; noisy)")
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per arm per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data_root", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    arms = ARMS
    if args.quick:
        arms, args.batch, args.steps, args.rounds = [("lora", "32"), ("adalora", "4")], [8], 2, 1
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = max(args.batch) * args.steps
        prepare_task("sst2", args.data_root, {"max_train_samples": rows}, str(tmp))
        tokenize_split(str(tmp / "train.parquet"), str(tmp / "tok.parquet"), load_tokenizer("minilm", {}),
                       {"max_length": MAX_LENGTH}, "sst2", "encoder", "train")
        bases = {}
        for bits in sorted({b for _, b in arms}):
            bases[bits] = tmp / "base" / bits.replace(":", "_")
            prepare_base("minilm", bits, {}, device.type, str(bases[bits]))
        print(f"device={device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
              + f" threads={args.threads} budget={BUDGET} max_length={MAX_LENGTH} "
              f"rounds={args.rounds}x{args.steps} torch={versions()['torch']} peft={versions()['peft']} "
              f"bitsandbytes={versions().get('bitsandbytes')}")
        n = 0
        for batch in args.batch:
            ms = {arm: [] for arm in arms}
            peak = {}
            for r in range(args.rounds + 1):  # round 0 warms up and is discarded
                for method, bits in arms:
                    spec = one_run_spec(Run("sst2", "minilm", method, BUDGET, bits, 0), REPO / "config" / "schema.yaml",
                                        {"max_steps": args.steps if r else 2, "batch_size": batch, "log_every": 10},
                                        device=device.type)
                    n += 1
                    gc.collect()  # the last arm's model and optimizer are gone before this one's peak
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    info = train_run(spec, str(tmp / "tok.parquet"), str(tmp / f"out{n}"), args.threads,
                                     base_dir=str(bases[bits]))
                    if r:
                        ms[(method, bits)].append(1000 * info["timing"]["train_seconds"] / info["steps"])
                        peak[(method, bits)] = info["memory"]["cuda_max_allocated_bytes"]
            ref = ("lora", "32")
            print(f"batch {batch}:")
            med = {arm: statistics.median(v) for arm, v in ms.items()}
            for arm in arms:
                mem = (f"{peak[arm] / 2**20:8.1f} MiB  x{peak[arm] / peak[ref]:.2f}"
                       if peak[arm] is not None else "   (peak memory: CUDA only)")
                print(f"  {arm[0]:<22} bits {arm[1]:<3} median {med[arm]:8.2f} ms/step  "
                      f"ratio {med[arm] / med[ref]:.2f}  peak {mem}")


if __name__ == "__main__":
    main()
