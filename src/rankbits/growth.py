"""Growing a LoRA adapter's rank in place, mid-training, without disturbing what it learned.

For a module with ``h = W x + s * B A x`` (``A``: r x in, ``B``: out x r, ``s`` = alpha / r):

- new rows of A are drawn like PEFT draws A (Kaiming uniform, a = sqrt(5)); new columns of B are
  zero, and ``s`` is kept, so the module's output is unchanged at the moment of growth;
- optimizer surgery on AdamW: the old slices keep their exact first and second moments; the new
  slices get a **momentum reset** (m = 0) and **variance grafting** (v = the mean of the tensor's
  old v), so their first steps are neither huge (v = 0) nor stale.

``SliceControl`` then steps the new slices with a learning-rate multiplier and, for a while after
a growth, can hold everything else still (freeze-and-thaw) — both by rescaling or undoing the
optimizer's update right after its step, so the one training loop stays as it is.
"""
from __future__ import annotations

import math

import torch

FIRST_MOMENT = ("exp_avg",)
SECOND_MOMENT = ("exp_avg_sq",)


def _pad(t: torch.Tensor, dim: int, n: int, value: float) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t, torch.full(shape, value, dtype=t.dtype, device=t.device)], dim=dim)


def replace_in_optimizer(optimizer: torch.optim.Optimizer, old: torch.nn.Parameter,
                         new: torch.nn.Parameter, dim: int, n_new: int) -> None:
    """Put ``new`` (``old`` plus ``n_new`` slices along ``dim``) where ``old`` was, moving its
    state: old slices exact, m = 0 and v = mean(old v) on the new ones."""
    found = False
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
                found = True
    if not found:
        raise KeyError("the grown parameter is not in the optimizer")
    state = optimizer.state.pop(old, None)
    if not state:
        return
    moved = {}
    for key, value in state.items():
        if key in FIRST_MOMENT:
            moved[key] = _pad(value, dim, n_new, 0.0)
        elif key in SECOND_MOMENT:
            moved[key] = _pad(value, dim, n_new, float(value.float().mean()))
        elif torch.is_tensor(value) and value.shape == old.shape:
            raise TypeError(f"optimizer state {key!r} has no growth rule (AdamW's exp_avg / "
                            f"exp_avg_sq only)")
        else:
            moved[key] = value  # e.g. the step count
    optimizer.state[new] = moved


def grow_layer(layer, adapter: str, delta: int, optimizer: torch.optim.Optimizer | None,
               generator: torch.Generator | None = None) -> tuple[int, int, list]:
    """Add ``delta`` units of rank to a PEFT LoRA layer; returns (old r, new r, [(old param,
    new param, dim)]) so callers can update their own parameter lists."""
    a_mod, b_mod = layer.lora_A[adapter], layer.lora_B[adapter]
    old_a, old_b = a_mod.weight, b_mod.weight
    r = int(layer.r[adapter])
    extra = torch.empty(delta, old_a.shape[1], dtype=old_a.dtype, device=old_a.device)
    _kaiming_uniform(extra, generator)
    new_a = torch.nn.Parameter(torch.cat([old_a.data, extra], dim=0), requires_grad=old_a.requires_grad)
    new_b = torch.nn.Parameter(_pad(old_b.data, 1, delta, 0.0), requires_grad=old_b.requires_grad)
    a_mod.weight, a_mod.out_features = new_a, r + delta
    b_mod.weight, b_mod.in_features = new_b, r + delta
    scaling = layer.scaling[adapter]
    layer.r[adapter] = r + delta
    layer.lora_alpha[adapter] = scaling * (r + delta)  # alpha / r, i.e. the scaling, is kept
    swaps = [(old_a, new_a, 0), (old_b, new_b, 1)]
    if optimizer is not None:
        for old, new, dim in swaps:
            replace_in_optimizer(optimizer, old, new, dim, delta)
    return r, r + delta, swaps


def _kaiming_uniform(t: torch.Tensor, generator: torch.Generator | None) -> None:
    """torch.nn.init.kaiming_uniform_(t, a=sqrt(5)) as PEFT initialises lora_A, from ``generator``
    (a CPU generator: drawn on the CPU and copied, so a run grows the same values on any device)."""
    fan_in = t.shape[1]
    gain = math.sqrt(2.0 / (1 + 5))
    bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
    with torch.no_grad():
        t.copy_(torch.empty(t.shape, dtype=t.dtype).uniform_(-bound, bound, generator=generator))


class SliceControl:
    """Per-slice step control for grown adapters, applied right after each optimizer step:

    - ``lr_mult``: the update of every slice added by growth is multiplied by it (a
      discriminative learning rate for the new rank; exact for AdamW, whose update is linear in lr);
    - ``freeze(steps)``: for that many steps only the newest slices move; every other trainable
      value and its AdamW moments are restored after the step."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr_mult: float = 1.0):
        self.optimizer, self.lr_mult = optimizer, lr_mult
        self.new: dict[int, tuple[torch.nn.Parameter, int, int]] = {}  # id -> (param, dim, first new)
        self.newest: dict[int, tuple[torch.nn.Parameter, int, int]] = {}
        self.freeze_left = 0
        self._snap: dict = {}
        optimizer.register_step_pre_hook(self._pre)
        optimizer.register_step_post_hook(self._post)

    def grown(self, swaps: list, old_rank: int, initial_rank: int) -> None:
        for old, new, dim in swaps:
            self.new.pop(id(old), None)
            self.newest.pop(id(old), None)
            self.new[id(new)] = (new, dim, initial_rank)
            self.newest[id(new)] = (new, dim, old_rank)

    def freeze(self, steps: int) -> None:
        self.freeze_left = steps

    def _params(self):
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def _pre(self, optimizer, args, kwargs):
        if self.freeze_left > 0:
            watched = list(self._params())
        elif self.lr_mult != 1.0:
            watched = [p for p, _, _ in self.new.values()]
        else:
            watched = []
        self._snap = {}
        for p in watched:
            st = optimizer.state.get(p, {})
            # a parameter held still entirely keeps AdamW's step count too (its bias correction)
            moments = {k: v.clone() for k, v in st.items()
                       if self.freeze_left > 0 and torch.is_tensor(v)
                       and (v.shape == p.shape or (k == "step" and id(p) not in self.newest))}
            self._snap[id(p)] = (p, p.detach().clone(), moments)

    def _post(self, optimizer, args, kwargs):
        with torch.no_grad():
            for key, (p, before, moments) in self._snap.items():
                if self.lr_mult != 1.0 and key in self.new:
                    _, dim, start = self.new[key]
                    n = p.shape[dim] - start
                    cur, old = p.narrow(dim, start, n), before.narrow(dim, start, n)
                    cur.copy_(old + self.lr_mult * (cur - old))
                if self.freeze_left > 0:
                    hold = torch.ones_like(p, dtype=torch.bool)
                    if key in self.newest:
                        _, dim, start = self.newest[key]
                        hold.narrow(dim, start, p.shape[dim] - start).fill_(False)
                    p.copy_(torch.where(hold, before, p))
                    for k, v in moments.items():
                        cur = optimizer.state[p][k]
                        cur.copy_(v if k == "step" else torch.where(hold, v, cur))
            if self.freeze_left > 0:
                self.freeze_left -= 1
        self._snap = {}
