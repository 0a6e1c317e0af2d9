"""What the activation count missed before it counted the input bitsandbytes' 8-bit matmul keeps
on ``ctx`` (issue 26): MiniLM on an LLM.int8 base, training memory's activations for LoRA r=8 on
every module (lora_dropout 0 and 0.1) and for an adapter on layer 0's query only (every int8
module above it unadapted, its input needing a gradient). "hooks only" is the count as it was
(saved_tensors_hooks and the logits); "counted" adds what the matmul keeps.

    python bench/int8_activations.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from rankbits import memory
from rankbits.config import Run, one_run_spec
from rankbits.methods import METHODS
from rankbits.modeling import attach_adapter, load_prepared_base
from rankbits.prepare import prepare_base

MiB = 2**20
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"


def measure(base_dir: str, dropout: float, only: str | None) -> tuple[float, float]:
    spec = one_run_spec(Run("sst2", "minilm", "lora", 8, "8", 0), SCHEMA_PATH, {"lora_dropout": dropout})
    model, _ = load_prepared_base(Run(**spec["run"]), spec, torch.device("cpu"), base_dir)
    alloc = None
    if only:
        from rankbits.models import MODELS

        dims = MODELS.get("minilm").family.target_dims(model)
        alloc = {m: (8 if m.endswith(only) else 0) for m in dims}
    pm = attach_adapter(model, "minilm", "sst2", METHODS.get("lora"), 8, {}, spec["training"], 10, allocation=alloc)
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 2000, (16, 64)), "attention_mask": torch.ones(16, 64, dtype=torch.long),
             "labels": torch.randint(0, 2, (16,))}
    counted = memory.activation_bytes(pm, batch, torch.device("cpu"))["bytes"]
    original = memory.is_int8_linear
    memory.is_int8_linear = lambda m: False  # the count as it was: hooks and logits only
    try:
        hooks = memory.activation_bytes(pm, batch, torch.device("cpu"))["bytes"]
    finally:
        memory.is_int8_linear = original
    return hooks / MiB, counted / MiB


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        prepare_base("minilm", "8", {}, "cpu", d)
        print("| int8 base, LoRA r=8 | hooks only MiB | counted MiB | missed |\n| --- | --- | --- | --- |")
        for label, dropout, only in (("every module, dropout 0", 0.0, None), ("every module, dropout 0.1", 0.1, None),
                                     ("layer 0's query only, dropout 0", 0.0, "layer.0.attention.self.query")):
            h, c = measure(d, dropout, only)
            print(f"| {label} | {h:.1f} | {c:.1f} | +{100 * (c - h) / h:.0f}% |")


if __name__ == "__main__":
    main()
