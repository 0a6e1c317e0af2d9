"""AdaLoRA's per-step bookkeeping, computed as PEFT computes it but batched.

PEFT's ``AdaLoraModel.forward`` adds the orthogonal regulariser by looping over every A and B
matrix (a matmul, an identity and a norm each), and ``RankAllocator.update_ipt`` updates the
importance EMAs with five small ops per adapter tensor, every step. On a small model these loops,
not the arithmetic, are AdaLoRA's overhead over LoRA (bench/RESULTS.md). Here:

- ``update_ipt``: the same operations in the same order on lists of tensors (``torch._foreach_*``),
  so the scores are bit-identical to PEFT's;
- ``mask_to_budget`` (every deltaT steps): the threshold kept on the device, one host sync;
- ``mask_using_rank_pattern`` (every step after the final allocation): masks kept on the device;
- ``SVDLinear.forward``: the scale as a number and the last product fused (``svd_forward``);
- the regulariser: the r x r Gram matrices of all A (and B) matrices of one shape in one batched
  matmul, the Frobenius norms of (G - I) at once; the same value as PEFT's up to the order of a
  float sum (tests/test_adalora_fast.py).

``install(peft_model)`` swaps these in on one model; nothing else of PEFT's AdaLoRA changes.
"""
from __future__ import annotations

import types

import torch


def update_ipt(self, model) -> None:
    """``RankAllocator.update_ipt`` (sensitivity |p * grad|, its EMA, and the EMA of its deviation)
    with ``torch._foreach`` ops. ``self._rankbits_params``: the adapter parameters, by name."""
    named = self._rankbits_params
    with torch.no_grad():
        for n, p in named:
            if n not in self.ipt:
                self.ipt[n] = torch.zeros_like(p)
                self.exp_avg_ipt[n] = torch.zeros_like(p)
                self.exp_avg_unc[n] = torch.zeros_like(p)
        names = [n for n, _ in named]
        ipt = torch._foreach_mul([p for _, p in named], [p.grad for _, p in named])
        torch._foreach_abs_(ipt)
        # the EMAs in place (PEFT builds new tensors): the same operations in the same order
        avg = [self.exp_avg_ipt[n] for n in names]
        torch._foreach_mul_(avg, self.beta1)
        torch._foreach_add_(avg, torch._foreach_mul(ipt, 1 - self.beta1))
        dev = torch._foreach_sub(ipt, avg)
        torch._foreach_abs_(dev)
        torch._foreach_mul_(dev, 1 - self.beta2)
        unc = [self.exp_avg_unc[n] for n in names]
        torch._foreach_mul_(unc, self.beta2)
        torch._foreach_add_(unc, dev)
        for n, a in zip(names, ipt):
            self.ipt[n] = a


def orth_penalty(groups: list[tuple[list[torch.Tensor], bool]]) -> torch.Tensor:
    """Mean over matrices of ||G - I||_F, G = A A^T for an A (r x in), B^T B for a B (out x r);
    ``groups``: matrices of one shape and whether they are A matrices."""
    norms = []
    for mats, is_a in groups:
        m = torch.stack(mats)
        gram = m @ m.transpose(1, 2) if is_a else m.transpose(1, 2) @ m
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        norms.append(torch.linalg.matrix_norm(gram - eye, ord="fro"))
    norms = torch.cat(norms)
    return norms.sum() / len(norms)


def forward(self, *args, **kwargs):
    """``AdaLoraModel.forward`` with the regulariser batched (``orth_penalty``)."""
    outputs = self.model.forward(*args, **kwargs)
    if (getattr(outputs, "loss", None) is not None) and isinstance(outputs.loss, torch.Tensor):
        weight = self.peft_config[self.trainable_adapter_name].orth_reg_weight
        if weight < 0:
            raise ValueError("orth_reg_weight should be greater than or equal to 0. ")
        if self._rankbits_groups:
            outputs.loss += weight * orth_penalty(self._rankbits_groups)
    return outputs


def svd_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``SVDLinear.forward`` (and ``SVDLinear4bit``'s) with fewer kernels per call: the scale
    (alpha / ranknum, fixed in training) is a number taken once, and where the layer's output has
    the adapter's dtype, ``result + scale * (h @ B^T)`` is one ``addmm``; the same product up to
    float rounding."""
    if self.disable_adapters or self.merged:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x, *args, **kwargs)
    quantized = self._rankbits_quantized
    if quantized:
        result = result.clone()  # as PEFT does: backprop through a view of bnb's output can fail
    for active_adapter in self.active_adapters:
        if active_adapter not in self.lora_A.keys():
            continue
        lora_a, lora_e, lora_b = (self.lora_A[active_adapter], self.lora_E[active_adapter],
                                  self.lora_B[active_adapter])
        scale = self._rankbits_scale[active_adapter]
        x = self._cast_input_dtype(x, lora_a.dtype)
        h = self.lora_dropout[active_adapter](x) @ (lora_a * lora_e).T
        if result.dtype == h.dtype and not torch.is_autocast_enabled():
            shape = result.shape
            result = torch.addmm(result.reshape(-1, shape[-1]), h.reshape(-1, h.shape[-1]), lora_b.T,
                                 alpha=scale).view(shape)
        else:  # bf16 output of a 4-bit layer: the adapter product in its own dtype, then cast
            out = (h * scale) @ lora_b.T
            if quantized and not torch.is_autocast_enabled():
                out = out.to(result.dtype)
            result += out
    return result


def mask_to_budget(self, model, budget: int) -> dict:
    """``RankAllocator.mask_to_budget`` (every deltaT steps: prune the least important triplets
    down to ``budget``) with the same arithmetic per module, but one host sync instead of 37:
    the threshold stays on the device and the rank pattern is read back in one ``tolist``."""
    named = dict(self._rankbits_params)
    keys = [n.replace("lora_A", "%s") for n in named if f"lora_A.{self.adapter_name}" in n]
    element = dict(zip(named, torch._foreach_mul([self.exp_avg_ipt[n] for n in named],
                                                 [self.exp_avg_unc[n] for n in named])))
    scores = []
    for key in keys:  # PEFT's _combine_ipt of E's score and the means of A's rows and B's columns
        a = torch.mean(element[key % "lora_A"], dim=1, keepdim=True)
        b = torch.mean(element[key % "lora_B"], dim=0, keepdim=False).view(-1, 1)
        scores.append(element[key % "lora_E"].view(-1) + torch.cat([a, b], dim=1).sum(dim=1).view(-1))
    every = torch.cat(scores)
    threshold = torch.kthvalue(every, k=self.init_bgt - budget)[0]
    pruned = (every <= threshold).split([len(x) for x in scores])
    flags = (~torch.cat(pruned)).tolist()
    rank_pattern, start = {}, 0
    with torch.no_grad():
        for key, off in zip(keys, pruned):
            named[key % "lora_E"].masked_fill_(off.view(-1, 1), 0.0)
            rank_pattern[key % "lora_E"] = flags[start:start + len(off)]
            start += len(off)
    return rank_pattern


def mask_using_rank_pattern(self, model, rank_pattern) -> None:
    """``RankAllocator.mask_using_rank_pattern`` (re-zeroes pruned singular values every step
    after the final allocation) with the masks built once per pattern and kept on the device,
    instead of 36 host-to-device copies of Python lists a step."""
    if self._rankbits_masks is None or self._rankbits_masks[0] is not rank_pattern:
        truncated = self.adapter_name not in next(iter(rank_pattern))
        masks = []
        for n, p in self._rankbits_params:
            if f"lora_E.{self.adapter_name}" in n:
                key = n.replace(f".{self.adapter_name}", "") if truncated else n
                masks.append((p, ~torch.tensor(rank_pattern[key], dtype=torch.bool, device=p.device).unsqueeze(-1)))
        self._rankbits_masks = (rank_pattern, masks)
    with torch.no_grad():
        for p, pruned in self._rankbits_masks[1]:
            p.masked_fill_(pruned, 0.0)


def install(peft_model) -> None:
    """Use the batched bookkeeping on ``peft_model`` (a PEFT model with an AdaLoRA adapter in
    training). Parameter shapes never change in AdaLoRA training (pruning masks lora_E), so the
    parameter lists are taken once."""
    tuner = peft_model.base_model
    alloc = tuner.rankallocator
    adapter = tuner.trainable_adapter_name  # the allocator's adapter too
    named = [(n, p) for n, p in tuner.model.named_parameters() if "lora_" in n and adapter in n]
    if any(p.numel() == 0 for _, p in named):  # sharded (ZeRO-3) parameters: keep PEFT's own paths
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for n, p in named:
        if "lora_A" in n or "lora_B" in n:
            groups.setdefault((tuple(p.shape), "lora_A" in n), []).append(p)
    tuner._rankbits_groups = [(mats, is_a) for (_, is_a), mats in groups.items()]
    tuner.forward = types.MethodType(forward, tuner)
    alloc._rankbits_params, alloc._rankbits_masks = named, None
    alloc.update_ipt = types.MethodType(update_ipt, alloc)
    alloc.mask_using_rank_pattern = types.MethodType(mask_using_rank_pattern, alloc)
    alloc.mask_to_budget = types.MethodType(mask_to_budget, alloc)
    for mod in tuner.model.modules():
        if type(mod).__name__ in ("SVDLinear", "SVDLinear4bit"):  # LLM.int8 layers keep PEFT's
            # PEFT's scale, scaling / (ranknum + 1e-5), in float32 as PEFT computes it; ranknum
            # (init_r) does not change while training
            mod._rankbits_quantized = type(mod).__name__ == "SVDLinear4bit"
            # (on the meta device, where ``rankbits plan`` builds it, ranknum holds no value: it
            # is PEFT's r, which it was filled with)
            mod._rankbits_scale = {
                a: float(torch.tensor(mod.scaling[a], dtype=torch.float32)
                         / ((torch.tensor(float(mod.r[a])) if mod.ranknum[a].is_meta
                             else mod.ranknum[a].detach().float().cpu()) + 1e-5))
                for a in mod.lora_A.keys()}
            mod.forward = types.MethodType(svd_forward, mod)
