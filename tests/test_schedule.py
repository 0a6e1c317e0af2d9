"""The budget line in rank_vs_step.png must be the schedule PEFT actually follows."""
import pytest
import torch
from peft import AdaLoraConfig
from peft.tuners.adalora.layer import RankAllocator

from rankbits.methods.adalora import budget_schedule


class FakeAdaLoRA(torch.nn.Module):
    def __init__(self, n_modules: int, init_r: int):
        super().__init__()
        for i in range(n_modules):
            m = torch.nn.Module()
            m.lora_A = torch.nn.ParameterDict({"default": torch.nn.Parameter(torch.zeros(init_r, 4))})
            self.add_module(f"m{i}", m)


@pytest.mark.parametrize("init_r,target_r,tinit,tfinal,total,n", [
    (12, 8, 50, 100, 500, 36), (3, 2, 10, 20, 125, 36), (12, 2, 0, 1, 40, 5),
])
def test_budget_schedule_matches_peft(init_r, target_r, tinit, tfinal, total, n):
    cfg = AdaLoraConfig(init_r=init_r, target_r=target_r, tinit=tinit, tfinal=tfinal,
                        total_step=total, target_modules=["x"])
    alloc = RankAllocator(FakeAdaLoRA(n, init_r), cfg, "default")
    assert alloc.init_bgt == init_r * n and alloc.target_bgt == target_r * n
    for step in range(total + 1):
        assert budget_schedule(step, init_r * n, target_r * n, tinit, tfinal, total) == \
            alloc.budget_schedule(step)[0], step


def test_budget_line_uses_the_run_record():
    from rankbits.methods import METHODS

    info = {"method_options": {"init_r": 12, "tinit": 10, "tfinal": 20}, "module_dims": {"a": 0, "b": 0},
            "budget": 8, "steps": 100}
    line = [METHODS.get("adalora").budget_line(info, s) for s in range(101)]
    assert line[0] == 24 and line[10] == 24 and line[-1] == 16
    assert all(a >= b for a, b in zip(line, line[1:]))  # never grows
    assert METHODS.get("lora").budget_line(info, 5) is None
