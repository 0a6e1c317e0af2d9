"""training.gradient_checkpointing: transformers' own switch, non-reentrant. The gradients are
the same as without it (dropout included); the training-memory model counts what it keeps —
what is saved outside the checkpointed layers, their inputs, and one layer's recompute — and
every arm trains with it on the CPU."""
from __future__ import annotations

import pytest
import torch

from conftest import base_maker, needs_shared_data, small_spec, train_and_evaluate

pytestmark = pytest.mark.slow  # loads MiniLM


def built(gc: bool):
    from rankbits.config import Run
    from rankbits.methods import METHODS
    from rankbits.modeling import attach_adapter, load_prepared_base

    torch.manual_seed(0)
    spec = small_spec("lora", "32", budget=8, gradient_checkpointing=gc, lora_dropout=0.1)
    m, info = load_prepared_base(Run(**spec["run"]), spec, torch.device("cpu"))
    assert info["gradient_checkpointing"] is gc
    return attach_adapter(m, "minilm", "sst2", METHODS.get("lora"), 8, {}, spec["training"], 10)


def test_same_gradients_and_the_memory_model_counts_what_checkpointing_keeps():
    from rankbits import memory

    batch = {"input_ids": torch.randint(1000, 2000, (16, 64)), "attention_mask": torch.ones(16, 64, dtype=torch.long),
             "labels": torch.randint(0, 2, (16,))}
    cpu = torch.device("cpu")
    grads, act = {}, {}
    for gc in (False, True):
        pm = built(gc)
        act[gc] = memory.activation_bytes(pm, batch, cpu)
        torch.manual_seed(1)
        pm.train()
        pm(**batch).loss.backward()
        grads[gc] = [p.grad for p in pm.parameters() if p.requires_grad]
        if gc:
            layers = memory.checkpointed_layers(pm)
            assert len(layers) == 6  # MiniLM's six BertLayers, not the model around them
            for layer in layers:  # each layer as it saves without checkpointing
                layer.gradient_checkpointing = False
            plain = memory._saved(pm, batch, cpu, layers, keep_inputs=False)
            for layer in layers:
                layer.gradient_checkpointing = True
            kept = memory._saved(pm, batch, cpu, layers, keep_inputs=True)  # checkpointing on
    # exactly the gradients of the plain backward: the recompute replays the dropout draws
    assert all(torch.equal(a, b) for a, b in zip(grads[False], grads[True]))
    off, on = act[False], act[True]
    assert on["without_checkpointing_bytes"] == off["bytes"]  # the same model, measured both ways
    assert on["recompute_bytes"] == max(plain["per_layer"]) > 0
    assert on["kept_outside_bytes"] == kept["outside"]
    # kept: what is saved outside the layers plus each layer's input (16 x 64 x 384 fp32 each,
    # the attention mask shared): more than the layers' inputs, far less than their activations
    hidden = 16 * 64 * 384 * 4
    assert 6 * hidden <= kept["outside"] - plain["outside"] < 7 * hidden
    assert on["bytes"] == kept["outside"] + on["recompute_bytes"]
    assert on["bytes"] < 0.25 * off["bytes"]


@needs_shared_data("sst2")
@pytest.mark.parametrize("method, bits", [("lora", "32"), ("adalora", "32"), ("lora", "4"), ("adalora", "4"),
                                          ("dora", "32"), ("pissa", "32"), ("eva", "32"), ("loftq", "4"),
                                          ("probe", "32"), ("grow", "32"), ("joint", "32"),
                                          ("pattern:linear-decay", "32"), ("rslora", "32")])
def test_every_arm_trains_with_gradient_checkpointing(method, bits, sst2_tokens, tmp_path, tmp_path_factory):
    base = base_maker(tmp_path_factory, sst2_tokens, "cpu")(bits) if bits != "32" else None
    extra = {"lora_alpha": 2.83} if method == "rslora" else {}
    methods = {"eva": {"batches": 2}, "probe": {"steps": 2}, "grow": {"patience": 1, "eval_every": 2, "val_samples": 16, "epsilon": 10.0}} if method in (
        "eva", "probe", "grow") else None
    spec = small_spec(method, bits, budget=4, steps=4, methods=methods, gradient_checkpointing=True, **extra)
    info, metrics = train_and_evaluate(spec, sst2_tokens, tmp_path, base=base)
    assert info["steps"] == 4 and info["base"]["gradient_checkpointing"]
    tm = info["training_memory"]
    assert tm["activations"] > 0 and "gradient checkpointing" in info["training_memory"].get("activation_method", "")
    assert metrics["eval_info"]["loss"] == metrics["eval_info"]["loss"]  # finite, evaluated
