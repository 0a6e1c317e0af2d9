"""AdaLoRA vs LoRA optimizer-step time on the same model and batch, interleaved in one run.

Both arms go through rankbits' own step (``rankbits.train.optimizer_step``), so AdaLoRA pays for
its orthogonal regulariser and ``update_and_allocate`` (importance EMA every step, masking every
deltaT steps) exactly as in a study. Pairs:
  * study setting: LoRA r=B vs AdaLoRA init_r=ceil(1.5 B), target B
  * same init rank: LoRA r=ceil(1.5 B) vs AdaLoRA init_r=ceil(1.5 B), target B
  * the same AdaLoRA with PEFT's own per-step code (its regulariser loop, importance loop and
    SVDLinear.forward) instead of rankbits' batched versions (methods/adalora_fast.py)
Prints median ms/step per arm and the ratios (goal: AdaLoRA / LoRA at the same init rank <= 1.10).

    python bench/adalora_overhead.py [--quick] [--budget 8] [--batch 16] [--seq 64] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from types import SimpleNamespace

import torch
import transformers

from rankbits.methods import METHODS
from rankbits.modeling import attach_adapter, load_base
from rankbits.problems import problem
from rankbits.runtime import pick_device, versions
from rankbits.train import optimizer_step

PROBLEM = problem("sst2", "minilm")

HP = {"lora_alpha": 16, "lora_dropout": 0.0}


def peft_paths(model) -> None:
    """Undo rankbits' batched AdaLoRA bookkeeping (methods/adalora_fast.py): PEFT's own code."""
    from peft.tuners.adalora import AdaLoraModel, RankAllocator

    tuner = model.base_model
    tuner.forward = AdaLoraModel.forward.__get__(tuner)
    tuner.rankallocator.update_ipt = RankAllocator.update_ipt.__get__(tuner.rankallocator)
    for name in ("mask_using_rank_pattern", "mask_to_budget"):
        vars(tuner.rankallocator).pop(name, None)
    for mod in tuner.model.modules():
        vars(mod).pop("forward", None)


def arm(method: str, rank: int, budget: int, total: int, device, peft_only: bool = False):
    transformers.set_seed(0)
    model, _ = load_base("minilm", "32", "sst2", {}, device)
    m = METHODS.get(method)
    opts = m.options({"init_r": rank, "tinit": 0, "tfinal": 1, "deltaT": 10}
                     if method == "adalora" else {}, "bench")
    opts = m.prepare(budget if method == "adalora" else rank, opts, total, "bench")
    model = attach_adapter(model, "minilm", "sst2", m, budget if method == "adalora" else rank, opts, HP, total)
    if peft_only:
        peft_paths(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = transformers.get_linear_schedule_with_warmup(opt, 0, total)
    return {"name": f"{method} r={rank}" + (f"->{budget}" if method == "adalora" else "")
            + (" (PEFT's paths)" if peft_only else ""),
            "model": model, "params": params, "opt": opt, "sched": sched, "step": 0,
            "hook": lambda step: m.on_optimizer_step(SimpleNamespace(model=model), step),
            "times": []}


def run_steps(a, batch, n, device):
    for _ in range(n):
        t = time.perf_counter()
        optimizer_step(a["model"], batch, a["params"], a["opt"], a["sched"], a["hook"], a["step"], 1.0, PROBLEM)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        a["times"].append(time.perf_counter() - t)
        a["step"] += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps (CI smoke run; noisy)")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="steps per arm per round")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps = 2, 3
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    high = math.ceil(1.5 * args.budget)
    total = 10 * args.rounds * args.steps + 10  # AdaLoRA stays in its pruning phase throughout
    arms = [arm("lora", args.budget, args.budget, total, device),
            arm("adalora", high, args.budget, total, device),
            arm("lora", high, args.budget, total, device),
            arm("adalora", high, args.budget, total, device, peft_only=True)]
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 20000, (args.batch, args.seq), generator=g),
             "attention_mask": torch.ones(args.batch, args.seq, dtype=torch.long),
             "labels": torch.randint(0, 2, (args.batch,), generator=g)}
    batch = {k: v.to(device) for k, v in batch.items()}
    for a in arms:  # warm-up, not timed
        run_steps(a, batch, 2, device)
        a["times"].clear()
    for _ in range(args.rounds):
        for a in arms:
            run_steps(a, batch, args.steps, device)
    med = {a["name"]: statistics.median(a["times"]) * 1000 for a in arms}
    print(f"device={device.type} threads={args.threads} batch={args.batch} seq={args.seq} "
          f"rounds={args.rounds}x{args.steps} torch={versions()['torch']} peft={versions()['peft']}")
    for name, ms in med.items():
        print(f"  {name:<36} median {ms:8.1f} ms/step")
    names = list(med)
    print(f"ratio AdaLoRA/LoRA, study setting (init {high} vs r {args.budget}): "
          f"{med[names[1]] / med[names[0]]:.3f}")
    print(f"ratio AdaLoRA/LoRA, same init rank ({high}): {med[names[1]] / med[names[2]]:.3f} (goal <= 1.10)")
    print(f"ratio AdaLoRA with PEFT's own per-step code / LoRA, same init rank: "
          f"{med[names[3]] / med[names[2]]:.3f} (before rankbits' batched bookkeeping)")


if __name__ == "__main__":
    main()
