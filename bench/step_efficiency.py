"""How close a training step comes to this machine's matmul rate, in one run, side by side.

    python bench/step_efficiency.py [--threads 1] [--repeats 7]

For LoRA and QLoRA (NF4+DQ) at MiniLM size (batch 16 x 64 tokens, SST-2 shapes) and SmolLM2-135M
size (batch 4 x 64 tokens), with real pretrained weights built the way rankbits trains them:
- the step's FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward and
  backward of the fp32 model (the frozen base's input gradients, the adapter's weight gradients,
  attention); the QLoRA step is charged the same useful FLOPs (bitsandbytes' 4-bit matmul is
  invisible to the counter, and its dequantization is overhead, not useful work);
- the step's time: the median of ``--repeats`` optimizer steps after two warm-up steps;
- the machine's fp32 GEMM rate on the step's own largest matmul shape (tokens x in x out), median
  of the same number of repeats, same threads;
and prints achieved GFLOP/s, the GEMM's, and their ratio. Run alone on an idle machine for figures
worth recording; CPU time is used, not wall time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def cpu_time(fn, repeats: int) -> float:
    """Median process CPU seconds of ``fn()`` over ``repeats`` calls, after two warm-ups."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def build(model_name: str, bits: str, task: str):
    """The model as a rankbits training job builds it (LoRA r=8 on the family's targets)."""
    import tempfile

    from rankbits.methods import METHODS
    from rankbits.modeling import attach_adapter, load_base
    from rankbits.prepare import prepare_base

    device = torch.device("cpu")
    base_dir = None
    if bits != "32":
        base_dir = tempfile.mkdtemp(prefix="rankbits-eff-")
        prepare_base(model_name, bits, {}, "cpu", base_dir)
    model, _ = load_base(model_name, bits, task, {}, device, base_dir)
    hp = {"lora_alpha": "2r", "lora_dropout": 0.0}
    return attach_adapter(model, model_name, task, METHODS.get("lora"), 8, {}, hp, 100)


def step_fn(model, batch, optimizer):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    return step


def largest_linear(model) -> tuple[int, int]:
    dims = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return max(dims, key=lambda d: d[0] * d[1])


def main(argv=None) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases = [("minilm", "sst2", 16, 64), ("smollm2-135m", "wikitext2", 4, 64)]
    print(f"threads {args.threads}, median of {args.repeats} steps (process CPU time)")
    print(f"{'model':<14}{'bits':<6}{'batch':>8}{'GFLOP/step':>12}{'step s':>9}{'GFLOP/s':>9}"
          f"{'GEMM GFLOP/s':>14}{'achieved / GEMM':>17}")
    for model_name, task, rows, tokens in cases:
        for bits in ("32", "4"):
            try:
                model = build(model_name, bits, task)
            except Exception as exc:  # noqa: BLE001 — a missing optional model is reported, not fatal
                print(f"{model_name:<14}{bits:<6} not built: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            model.train()
            ids = torch.randint(5, 1000, (rows, tokens))
            labels = torch.zeros(rows, dtype=torch.long) if task == "sst2" else ids.clone()
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
            params = [p for p in model.parameters() if p.requires_grad]
            step = step_fn(model, batch, torch.optim.AdamW(params, lr=1e-4))
            if bits == "32":  # bitsandbytes' 4-bit matmul is invisible to the counter: the
                # 4-bit step is charged the fp32 step's FLOPs (its dequantization is overhead)
                with FlopCounterMode(display=False) as counter:
                    model(**batch).loss.backward()
                flops = counter.get_total_flops()
            seconds = cpu_time(step, args.repeats)
            n_in, n_out = largest_linear(model.get_base_model())
            a, w = torch.randn(rows * tokens, n_in), torch.randn(n_in, n_out)
            gemm = 2 * rows * tokens * n_in * n_out / cpu_time(lambda: a @ w, args.repeats)
            achieved = flops / seconds
            print(f"{model_name:<14}{bits:<6}{f'{rows}x{tokens}':>8}{flops / 1e9:>12.2f}{seconds:>9.3f}"
                  f"{achieved / 1e9:>9.1f}{gemm / 1e9:>14.1f}{achieved / gemm:>17.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
