"""Fair comparisons: hyperparameter levels, learning-rate selection on a selection split that
is disjoint from train, and a test split nobody chooses on."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from rankbits.config import ConfigError, Run, lr_grid, lr_tag, point_spec, resolve_training, run_spec
from rankbits.selection import choose, selection_record

from conftest import SHARED_DATA, needs_shared_data, rejects, small_spec


def test_lr_grid_resolves_by_level_and_each_level_is_validated(validated):
    cfg = validated
    cfg["training"]["lr_grid"] = [1e-3]
    cfg["tasks"]["sst2"]["training"] = {"lr_grid": [1e-3, 2e-3]}
    cfg["methods"]["adalora"]["training"] = {"lr_grid": [2e-3, 4e-3, 8e-3]}
    cfg["overrides"] = [{"task": "sst2", "method": "adalora", "training": {"lr_grid": [5e-3, 6e-3]}}]
    assert resolve_training(cfg, "cola", "lora")["lr_grid"] == [1e-3]
    assert resolve_training(cfg, "sst2", "lora")["lr_grid"] == [1e-3, 2e-3]
    assert resolve_training(cfg, "cola", "adalora")["lr_grid"] == [2e-3, 4e-3, 8e-3]
    assert resolve_training(cfg, "sst2", "adalora")["lr_grid"] == [5e-3, 6e-3]
    for where, patch in [("methods.adalora.training.lr_grid", {"methods": {"adalora": {"training": {"lr_grid": [0]}}}}),
                         ("tasks.sst2.training.lr_grid", {"tasks": {"sst2": {"training": {"lr_grid": "1e-3"}}}}),
                         ("overrides.0.training.lr_grid", {"overrides": [{"method": "lora", "training": {"lr_grid": []}}]})]:
        bad = {"study": cfg["study"], **patch}
        rejects(bad, rf"^{where}(\.0)?: ")


def test_a_grid_needs_a_selection_split(base_config):
    base_config["tasks"]["sst2"]["selection_samples"] = 0
    rejects(base_config, r"tasks.sst2.selection_samples: lora on sst2 has an lr_grid of 3 points")


def test_grid_points_are_runs_of_their_own(validated):
    spec = run_spec(validated, Run("sst2", "minilm", "lora", 8, "32", 0))
    assert lr_grid(spec) == [1e-3, 2e-3, 4e-3] and [lr_tag(x) for x in lr_grid(spec)] == ["0.001", "0.002", "0.004"]
    p = point_spec(spec, 2e-3)
    assert p["training"]["lr"] == 2e-3 and p["training"]["lr_grid"] is None
    assert p["training"]["lr_search"] is None  # a point's result depends on its own settings only
    assert spec["training"]["lr_grid"] == [1e-3, 2e-3, 4e-3]  # the run's spec is untouched
    assert point_spec(spec, 8e-3)["training"]["lr"] == 8e-3  # one step beyond the edge (x2)
    assert point_spec(spec, 5e-4)["training"]["lr"] == 5e-4  # one step below
    for lr in (1.6e-2, 0.5):  # two steps: lr_max_extensions is 1
        with pytest.raises(ConfigError, match=rf"lr {lr} is not in its grid .* nor a rate its search can add"):
            point_spec(spec, lr)


def point(lr, value, loss, higher=True):
    return {"lr": lr, "selection": {"primary_value": value, "loss": loss, "higher_is_better": higher,
                                    "primary_metric": "accuracy", "n": 500}}


def test_selection_rule_picks_the_best_and_breaks_ties_deterministically():
    assert choose([point(1e-3, 0.80, 0.5), point(3e-3, 0.85, 0.6), point(1e-2, 0.70, 0.4)]) == 1
    assert choose([point(1e-3, 0.85, 0.5), point(3e-3, 0.85, 0.4)]) == 1  # tie: lower loss
    assert choose([point(3e-3, 0.85, 0.4), point(1e-3, 0.85, 0.4)]) == 1  # then the smaller lr
    assert choose([point(1e-3, 0.3, 0.5, higher=False), point(3e-3, 0.2, 0.9, higher=False)]) == 1
    assert choose([point(1e-3, float("nan"), 0.5), point(3e-3, 0.1, 0.9)]) == 1  # NaN never wins
    with pytest.raises(ValueError, match="no selection-split score"):
        choose([point(1e-3, 0.8, 0.5), {"lr": 3e-3, "selection": None}])


@needs_shared_data("sst2")
def test_the_three_splits_are_disjoint(tmp_path):
    from rankbits.data import prepare_task, text_keys

    from rankbits.data import inside, normalised

    m = prepare_task("sst2", str(SHARED_DATA), {"selection_samples": 500, "max_eval_samples": None}, str(tmp_path))
    train, sel, dev = (pd.read_parquet(tmp_path / f"{s}.parquet") for s in ("train", "selection", "dev"))
    assert len(sel) == 500 and len(dev) == m["splits"]["dev"]["rows_available"]
    held = set(text_keys(sel)) | set(text_keys(dev))
    assert not text_keys(train).isin(held).any()  # no sentence of selection or test in train
    # token-aligned containment: no training row lies inside a selection row or contains one
    tr, se = normalised(train), normalised(sel)
    assert inside(se, set(tr), proper=True).empty and inside(tr, set(se), proper=True).empty
    t = m["splits"]["train"]
    assert t["dropped_as_containing_or_inside_selection"] > 1000  # SST-2: phrases of the sentences
    assert m["splits"]["selection"]["whole_sentences"] == 500
    assert (len(train) + len(sel) + t["dropped_as_in_selection_or_dev"]
            + t["dropped_as_containing_or_inside_selection"] == t["rows_available"])


@needs_shared_data("sst2")
@pytest.mark.slow
def test_only_the_chosen_point_is_ever_evaluated_on_test(sst2_tokens, tmp_path, monkeypatch):
    import peft

    from rankbits.evaluate import evaluate_run
    from rankbits.train import train_run

    spec = small_spec("lora", steps=4)
    spec["training"]["lr_grid"] = [1e-4, 5e-3]
    dirs = []
    for lr in lr_grid(spec):
        d = tmp_path / f"lr{lr_tag(lr)}"
        info = train_run(point_spec(spec, lr), str(sst2_tokens / "tok_train.parquet"), str(d),
                         selection_path=str(sst2_tokens / "tok_dev.parquet"))
        assert info["selection"]["n"] == 64 and info["training"]["lr"] == lr
        dirs.append(str(d))
    loaded = []
    real = peft.PeftModel.from_pretrained
    monkeypatch.setattr(peft.PeftModel, "from_pretrained",
                        lambda base, path, **kw: loaded.append(path) or real(base, path, **kw))
    m = evaluate_run(spec, dirs, str(sst2_tokens / "tok_dev.parquet"), str(tmp_path / "run"))
    sel = m["eval_info"]["lr_selection"]
    infos = [json.loads((tmp_path / d / "train_info.json").read_text()) for d in dirs]
    chosen, _ = selection_record(infos)
    assert sel["chosen_lr"] == lr_grid(spec)[chosen] == m["train_info"]["training"]["lr"]
    assert loaded == [f"{dirs[chosen]}/adapter"]  # the other point never saw the test split
    assert [g["lr"] for g in sel["grid"]] == [1e-4, 5e-3]
    assert sel["total_optimizer_steps"] == 8 and sel["total_train_seconds"] > 0


def fake_point(root, lr, value, loss=0.5):
    from rankbits.io import write_json

    d = root / f"lr{lr:g}"
    d.mkdir()
    write_json(d / "train_info.json", {
        "training": {"lr": lr}, "steps": 10, "timing": {"train_seconds": 1.0, "train_cpu_seconds": 1.0},
        "selection": {"primary_value": value, "loss": loss, "higher_is_better": True,
                      "primary_metric": "accuracy", "n": 100}})
    return str(d)


def test_the_search_extends_past_an_edge_until_the_optimum_is_inside(tmp_path):
    """Selection accuracy peaks at 4e-3, outside the first grid [5e-4, 1e-3, 2e-3]: round 0 asks
    for 4e-3 (the edge pair's ratio, 2), round 1 for 8e-3, round 2 finds the best inside."""
    from rankbits.config import next_rate
    from rankbits.selection import select_round

    curve = {5e-4: 0.70, 1e-3: 0.75, 2e-3: 0.80, 4e-3: 0.84, 8e-3: 0.82}
    spec = {"training": {"lr_search": "extend", "lr_max_extensions": 3}}
    points = [fake_point(tmp_path, lr, curve[lr]) for lr in (5e-4, 1e-3, 2e-3)]
    r0 = select_round(spec, points, 0, str(tmp_path / "r0.json"))
    assert r0["status"] == "extend" and r0["next_lr"] == 4e-3 and r0["at_edge"]
    points.append(fake_point(tmp_path, 4e-3, curve[4e-3]))
    r1 = select_round(spec, points, 1, str(tmp_path / "r1.json"))
    assert r1["status"] == "extend" and r1["next_lr"] == 8e-3
    points.append(fake_point(tmp_path, 8e-3, curve[8e-3]))
    r2 = select_round(spec, points, 2, str(tmp_path / "r2.json"))
    assert r2 == {"round": 2, "rates": [5e-4, 1e-3, 2e-3, 4e-3, 8e-3], "chosen_lr": 4e-3, "at_edge": False,
                  "status": "done"}
    assert json.loads((tmp_path / "r2.json").read_text()) == r2
    # out of extensions, a choice at the edge is kept and flagged; the low edge steps down
    capped = select_round({"training": {"lr_search": "extend", "lr_max_extensions": 0}}, points[:3], 0,
                          str(tmp_path / "c.json"))
    assert capped["status"] == "done" and capped["at_edge"] and capped["chosen_lr"] == 2e-3
    assert next_rate([1e-3, 3e-3, 1e-2], 1e-3) == 3.33e-4 and next_rate([1e-3, 3e-3], 2e-3) is None
