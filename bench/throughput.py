"""rankbits' training step vs a plain PEFT + torch loop on the same model, data and batch size,
interleaved in one run; prints samples/s of each and the ratio (goal >= 1.0).

The plain loop is what a PEFT tutorial writes: shuffled batches padded to max_length, loss.item()
every step. rankbits' loop: length-grouped batches padded to their own longest sequence, losses
checked every log_every steps (one host sync per group).

    python bench/throughput.py [--quick] [--rounds 4] [--steps 20] [--batch 16] [--device cpu]
    (needs ../shared/data/sst2 or --data_root with sst2/train.tsv)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers

from rankbits.batching import Batches
from rankbits.data import prepare_task, tokenize_split
from rankbits.methods import METHODS
from rankbits.modeling import attach_adapter, load_base, load_tokenizer
from rankbits.problems import problem
from rankbits.runtime import pick_device, versions
from rankbits.train import batch_stream, optimizer_step

PROBLEM = problem("sst2", "minilm")

HP = {"lora_alpha": "2r", "lora_dropout": 0.0}
MAX_LENGTH = 64


def model_and_opt(device, steps):
    transformers.set_seed(0)
    model, _ = load_base("minilm", "32", "sst2", {}, device)
    model = attach_adapter(model, "minilm", "sst2", METHODS.get("lora"), 8, {}, HP, steps)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = transformers.get_linear_schedule_with_warmup(opt, 0, steps)
    model.train()
    return model, params, opt, sched


def plain_batches(df: pd.DataFrame, batch: int, pad: int, seed: int):
    """Shuffled, padded to MAX_LENGTH (what a tokenizer(padding='max_length') loop feeds)."""
    rng = np.random.RandomState(seed)
    while True:
        for start in range(0, len(df) - batch + 1, batch):
            rows = rng.permutation(len(df))[:batch]
            ids = torch.full((batch, MAX_LENGTH), pad, dtype=torch.long)
            mask = torch.zeros((batch, MAX_LENGTH), dtype=torch.long)
            for j, r in enumerate(rows):
                seq = df["input_ids"].iloc[r]
                ids[j, :len(seq)] = torch.as_tensor(np.array(seq))
                mask[j, :len(seq)] = 1
            yield {"input_ids": ids, "attention_mask": mask,
                   "labels": torch.as_tensor(df["label"].to_numpy()[rows])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps (CI smoke run; noisy)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="steps per loop per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--data_root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.steps, args.samples = 1, 3, 200
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_task("sst2", args.data_root, {"max_train_samples": args.samples}, tmp)
        tok = load_tokenizer("minilm", {})
        tokenize_split(f"{tmp}/train.parquet", f"{tmp}/tok.parquet", tok, {"max_length": MAX_LENGTH}, "sst2",
                       "encoder", "train")
        df = pd.read_parquet(f"{tmp}/tok.parquet")
    total = 2 * args.rounds * args.steps + 10
    ours, plain = model_and_opt(device, total), model_and_opt(device, total)
    ours_stream = batch_stream(Batches(df, args.batch, tok.pad_token_id, True), 0)
    plain_stream = plain_batches(df, args.batch, tok.pad_token_id, 0)
    times = {"rankbits": [], "plain": []}

    def run_ours(n):
        model, params, opt, sched = ours
        pending = []
        t = time.perf_counter()
        for s in range(n):
            batch = {k: v.to(device) for k, v in next(ours_stream).items()}
            pending.append(optimizer_step(model, batch, params, opt, sched, None, s, 1.0, PROBLEM)[1])
            if len(pending) >= 10:
                torch.stack(pending).tolist()
                pending.clear()
        if pending:
            torch.stack(pending).tolist()
        return time.perf_counter() - t

    def run_plain(n):
        model, params, opt, sched = plain
        t = time.perf_counter()
        for _ in range(n):
            batch = {k: v.to(device) for k, v in next(plain_stream).items()}
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            loss.item()
        return time.perf_counter() - t

    run_ours(2), run_plain(2)  # warm-up
    for _ in range(args.rounds):
        times["rankbits"].append(args.steps * args.batch / run_ours(args.steps))
        times["plain"].append(args.steps * args.batch / run_plain(args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"device={device.type} threads={args.threads} batch={args.batch} max_length={MAX_LENGTH} "
          f"rounds={args.rounds}x{args.steps} torch={versions()['torch']} peft={versions()['peft']}")
    for k, v in med.items():
        print(f"  {k:<10} median {v:8.1f} samples/s")
    print(f"ratio rankbits/plain throughput: {med['rankbits'] / med['plain']:.3f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
