"""The PEFT arms a practitioner expects (rsLoRA, DoRA/QDoRA, EVA, LoftQ, PiSSA/QPiSSA), each trained and
evaluated through the real jobs on MiniLM and real SST-2 rows, on fp32 and NF4+DQ bases: the
saved adapter reloads to the outputs it had at the end of training, and the parameters it
reports are the ones it trains."""
from __future__ import annotations

import pytest

from conftest import SCHEMA, base_maker, needs_shared_data, small_spec

pytestmark = [needs_shared_data("sst2"), pytest.mark.slow]

ARMS = {"rslora": ["32", "4"], "dora": ["32", "4"], "eva": ["32", "4"], "loftq": ["4"], "pissa": ["32", "4"]}


@pytest.mark.parametrize("method, bits", [(m, b) for m, bits in ARMS.items() for b in bits])
def test_arm_trains_evaluates_and_reloads(method, bits, sst2_tokens, tmp_path, tmp_path_factory):
    from rankbits.evaluate import evaluate_run
    from rankbits.train import train_run

    base = base_maker(tmp_path_factory, sst2_tokens, "cpu")(bits) if bits != "32" else None
    spec = small_spec(method, bits, budget=4, methods={"eva": {"batches": 2}} if method == "eva" else None,
                      **({"lora_alpha": 2.83} if method == "rslora" else {}))  # rsLoRA: a fixed alpha
    dev = str(sst2_tokens / "tok_dev.parquet")
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "t"), base_dir=base and str(base),
                     selection_path=dev)  # the test's dev rows, scored by the in-memory model at the end
    metrics = evaluate_run(spec, str(tmp_path / "t"), dev, str(tmp_path / "run"), base_dir=base and str(base))
    # the saved adapter, reloaded on a freshly loaded base, gives what training ended with
    assert metrics["eval_info"]["loss"] == pytest.approx(info["selection"]["loss"], rel=1e-5, abs=1e-6)
    # what it reports is what it trains: every adapter parameter (DoRA's magnitudes included)
    assert info["params"]["adapter_initial"] == info["params"]["effective_adapter"]
    match = info["budget_match"]
    if method == "dora":  # the magnitude vectors: one per output feature of each adapted module
        extra = sum(out for _, out in info["module_dims"].values())
        assert match["adapter_params"] == match["uniform_lora_params"] + extra and match["deviation"] > 0
    elif method == "eva":  # ranks moved between modules; the total rank is EVA's budget
        assert info["total_rank"] <= 4 * len(info["module_dims"])
        assert info["allocation"]["init"]["batches"] == 2 and info["allocation"]["init"]["rows"] == 16
    else:
        assert match["deviation"] == 0
    if method in ("loftq", "pissa"):
        assert info["allocation"]["init"]["seconds"] > 0


def test_loftq_starts_closer_to_the_full_precision_weights(sst2_tokens, tmp_path_factory):
    """LoftQ's point: at step 0, base + B A is nearer the original weights than the 4-bit base."""
    import torch
    from bitsandbytes.functional import dequantize_4bit

    from rankbits.methods import METHODS, adapted_modules
    from rankbits.modeling import attach_adapter, load_base, load_prepared_base
    from rankbits.train import Context

    base = str(base_maker(tmp_path_factory, sst2_tokens, "cpu")("4"))
    spec = small_spec("loftq", "4", budget=8)
    run = type("R", (), spec["run"])
    cpu = torch.device("cpu")
    model, _ = load_prepared_base(run, spec, cpu, base)
    model = attach_adapter(model, "minilm", "sst2", METHODS.get("loftq"), 8, {}, spec["training"], 4)
    full, _ = load_base("minilm", "32", "sst2", {}, cpu)
    originals = dict(full.named_modules())
    from rankbits.config import Run

    ctx = Context(run=Run(**spec["run"]), opts={}, hp=spec["training"], dims={}, family=None)
    errors = {}
    for stage in ("plain", "loftq"):
        if stage == "loftq":
            METHODS.get("loftq").initialize(ctx, model)
        err = []
        for name, layer in adapted_modules(model):
            w = dequantize_4bit(layer.base_layer.weight.data, layer.base_layer.weight.quant_state).float()
            delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]
            err.append(float(torch.linalg.norm(originals[name].weight - (w + delta.detach()))))
        errors[stage] = sum(err)
    assert errors["loftq"] < 0.97 * errors["plain"], errors


@pytest.mark.parametrize("bits", ["32", "4"])
def test_pissa_starts_at_the_model_and_quantizes_a_smaller_residual(bits, sst2_tokens, tmp_path_factory):
    """At step 0 residual + s B A is the original weight (fp32: exactly; NF4+DQ: up to the
    residual's quantization error, which is smaller than the plain 4-bit base's error)."""
    import torch

    from rankbits.bits.mixed import linear_weight
    from rankbits.config import Run
    from rankbits.methods import METHODS, adapted_modules
    from rankbits.modeling import attach_adapter, load_base, load_prepared_base
    from rankbits.quant import dequantized_weight
    from rankbits.train import Context

    base = str(base_maker(tmp_path_factory, sst2_tokens, "cpu")(bits)) if bits != "32" else None
    spec = small_spec("pissa", bits, budget=8)
    cpu = torch.device("cpu")
    model, _ = load_prepared_base(Run(**spec["run"]), spec, cpu, base)
    model = attach_adapter(model, "minilm", "sst2", METHODS.get("pissa"), 8, {}, spec["training"], 4)

    def weight(layer):
        b = layer.get_base_layer()
        return dequantized_weight(b) if bits != "32" else linear_weight(b)[2]

    plain = {name: weight(layer) for name, layer in adapted_modules(model)}
    ctx = Context(run=Run(**spec["run"]), opts={}, hp=spec["training"], dims={}, family=None)
    METHODS.get("pissa").initialize(ctx, model)
    originals = dict(load_base("minilm", "32", "sst2", {}, cpu)[0].named_modules())
    err_plain = err_pissa = 0.0
    for name, layer in adapted_modules(model):
        w = linear_weight(originals[name])[2]
        delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]).detach()
        err_pissa += float(torch.linalg.norm(w - (weight(layer) + delta)))
        err_plain += float(torch.linalg.norm(w - plain[name]))
    if bits == "32":
        assert err_pissa < 1e-3 * len(plain) and err_plain == 0
    else:
        assert err_pissa < 0.95 * err_plain, (err_pissa, err_plain)


def test_method_bits_pairs_peft_cannot_train_fail_at_start_up():
    from rankbits.config import ConfigError, validate_config

    for bits, why in (("32", "starts from a quantized base"), ("8", "4-bit layers only")):
        cfg = {"study": {"tasks": ["sst2"], "models": ["minilm"], "methods": ["loftq"], "budgets": [2],
                         "bits": [bits], "seeds": [0]}}
        with pytest.raises(ConfigError, match=rf"^study\.bits: loftq cannot train on bits '{bits}': .*{why}"):
            validate_config(cfg, SCHEMA)
