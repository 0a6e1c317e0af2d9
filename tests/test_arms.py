"""Rank-allocation arms trained for real (MiniLM, real SST-2 rows): patterns, probe,
adalora-transfer, grow; and the on_nan policy."""
from __future__ import annotations

import json

import pytest

from conftest import needs_shared_data, small_spec, train_and_evaluate

pytestmark = [needs_shared_data("sst2"), pytest.mark.slow]


@pytest.mark.parametrize("method", ["pattern:linear-decay", "pattern:attention-heavy", "probe"])
def test_allocated_arms_train_at_the_uniform_budget(method, sst2_tokens, tmp_path):
    spec = small_spec(method, budget=8, methods={"probe": {"steps": 3}} if method == "probe" else None)
    info, metrics = train_and_evaluate(spec, sst2_tokens, tmp_path)
    ranks = info["allocation"]["ranks"]
    assert len(ranks) == 36 and len(set(ranks.values())) > 1
    assert abs(info["budget_match"]["deviation"]) <= 0.02
    assert info["budget_match"]["uniform_lora_params"] == 8 * 41472  # 24 x 768 + 12 x 1920 per rank
    # what was trained is what the allocation said, and it reloads at those ranks
    trained = json.loads((tmp_path / method.replace(":", "_") / "rank_pattern.json").read_text())
    assert trained == {m: r for m, r in ranks.items() if r > 0}
    assert metrics["train_info"]["budget_match"]["deviation"] == info["budget_match"]["deviation"]
    if method == "probe":
        probe = info["allocation"]["probe"]
        assert probe["steps"] == 3 and probe["seconds"] > 0 and len(probe["importance"]) == 36


def test_adalora_transfer_trains_lora_on_adaloras_ranks(sst2_tokens, tmp_path):
    from rankbits.train import train_run

    ada = small_spec("adalora", budget=4, steps=12, methods={"adalora": {"tinit": 2, "tfinal": 3, "deltaT": 1}})
    ada_info = train_run(ada, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "ada"))
    info, _ = train_and_evaluate(small_spec("adalora-transfer", budget=4), sst2_tokens, tmp_path,
                                 upstream=str(tmp_path / "ada"))
    source = json.loads((tmp_path / "ada" / "rank_pattern.json").read_text())
    assert info["allocation"]["source"]["ranks"] == source
    ranks = info["allocation"]["ranks"]
    assert abs(info["budget_match"]["deviation"]) <= 0.02
    # the order of modules by rank is AdaLoRA's (rescaling keeps it, up to rounding)
    hi = max(source, key=source.get)
    lo = min(source, key=source.get)
    assert ranks[hi] >= ranks[lo]
    assert ada_info["total_rank"] == 4 * 36


def test_grow_expands_on_plateau_and_reloads_at_the_grown_rank(sst2_tokens, tmp_path):
    # epsilon 10: only the first evaluation counts as an improvement; patience 1: every later
    # evaluation grows, 2 -> 4 -> 6 -> 8 (r_max = budget)
    spec = small_spec("grow", budget=8, steps=12, methods={"grow": {
        "eval_every": 2, "patience": 1, "epsilon": 10.0, "val_samples": 16, "freeze_and_thaw": 1,
        "new_rank_lr_mult": 2.0}})
    info, metrics = train_and_evaluate(spec, sst2_tokens, tmp_path)
    events = info["allocation"]["growth_events"]
    assert [(e["old_r"], e["new_r"]) for e in events] == [(2, 4), (4, 6), (6, 8)]
    assert [e["step"] for e in events] == [4, 6, 8]
    assert len(info["allocation"]["validation"]) == 6
    assert info["total_rank"] == 8 * 36 and info["n_validation_held_out"] == 16 and info["n_train"] == 80
    assert info["params"]["trainable_final"] > info["params"]["trainable"]  # reported as they end
    assert metrics["train_info"]["params"]["trainable_final"] == info["params"]["trainable_final"]
    assert info["params"]["effective_adapter"] == 8 * 41472


def test_non_finite_loss_stops_or_skips(sst2_tokens, tmp_path):
    from rankbits.train import NonFiniteLoss, train_run

    with pytest.raises(NonFiniteLoss, match=r"non-finite loss .* at optimizer step \d+"):
        train_run(small_spec("lora", steps=8, lr=1e12), str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()  # nothing half-written
    info = train_run(small_spec("lora", steps=8, lr=1e12, on_nan="skip_batch"),
                     str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "b"))
    assert info["skipped_batches"] and info["skipped_batches"][-1] == 8


def test_joint_puts_high_rank_layers_in_4bit_and_evaluates_on_the_same_base(sst2_tokens, tmp_path):
    spec = small_spec("joint", budget=4, methods={"joint": {"steps": 3}})
    info, metrics = train_and_evaluate(spec, sst2_tokens, tmp_path)
    ranks, bit_map = info["allocation"]["ranks"], info["allocation"]["bit_map"]
    four = [m for m, b in bit_map.items() if b == 4]
    eight = [m for m, b in bit_map.items() if b == 8]
    assert len(four) == len(eight) == 18
    assert min(ranks[m] for m in four) >= max(ranks[m] for m in eight)
    fp = info["base"]["footprint"]
    assert 0.53 < fp["quantized_linear_bytes_per_param"] < 1.0  # between NF4+DQ and int8
    assert metrics["train_info"]["base"]["footprint"]["total_bytes"] == fp["total_bytes"]
    assert abs(info["budget_match"]["deviation"]) <= 0.02


def test_joint_refuses_a_quantized_bits_axis():
    from rankbits.config import ConfigError

    with pytest.raises(ConfigError, match=r"study.bits: method 'joint' sets per-layer precision itself"):
        small_spec("joint", bits="4")


def nan_on_forward(monkeypatch, calls: set[int]):
    """Make the training forward passes numbered in ``calls`` (0-based) return a NaN loss."""
    import rankbits.train as train_mod

    real = train_mod.attach_adapter
    count = [0]

    def attach(*args, **kwargs):
        model = real(*args, **kwargs)

        def hook(mod, inputs, out):
            if mod.training:
                if count[0] in calls:
                    out.loss = out.loss * float("nan")
                count[0] += 1
            return out
        model.register_forward_hook(hook)
        return model
    monkeypatch.setattr(train_mod, "attach_adapter", attach)


def test_adalora_skipping_its_final_allocation_step_still_ends_at_target_rank(sst2_tokens, tmp_path, monkeypatch):
    """12 steps, tfinal 3: the final allocation is at step index 9. Skipping that batch (and the
    first, before any mask exists) must neither crash nor leave the run above its target rank,
    and the schedule keeps its length (the last learning rate is 0)."""
    from rankbits.train import train_run

    nan_on_forward(monkeypatch, {1, 10})  # forward 0 measures training memory; 1..12 train
    spec = small_spec("adalora", budget=4, steps=12, on_nan="skip_batch",
                      methods={"adalora": {"tinit": 2, "tfinal": 3, "deltaT": 1}})
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "a"))
    assert info["skipped_batches"] == [1, 10]
    assert info["total_rank"] == info["target_total_rank"] == 4 * 36
    import pandas as pd
    log = pd.read_csv(tmp_path / "a" / "train_log.csv")
    assert log["lr"].iloc[-1] == 0.0 and log["total_rank"].iloc[-1] == 4 * 36


def test_grow_never_grows_when_too_few_steps_remain(sst2_tokens, tmp_path):
    """Evaluations at steps 4, 8 and 12: the plateau at 12 would add slices that never train."""
    from rankbits.train import train_run

    spec = small_spec("grow", budget=8, steps=12, methods={"grow": {
        "eval_every": 4, "patience": 1, "epsilon": 10.0, "val_samples": 16}})
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "g"))
    assert [(e["step"], e["old_r"], e["new_r"]) for e in info["allocation"]["growth_events"]] == [(8, 2, 4)]
    assert info["total_rank"] == 4 * 36


def test_evaluation_prepares_a_quantized_base_as_training_did(sst2_tokens, tmp_path, monkeypatch, tmp_path_factory):
    import peft

    from conftest import base_maker

    calls = []
    real = peft.prepare_model_for_kbit_training
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training",
                        lambda m, **kw: calls.append(type(m).__name__) or real(m, **kw))
    base = base_maker(tmp_path_factory, sst2_tokens, "cpu")("4")
    info, metrics = train_and_evaluate(small_spec("lora", "4"), sst2_tokens, tmp_path, base)
    assert info["base"]["kbit_prepared"] and len(calls) == 2  # once in training, once in evaluation
