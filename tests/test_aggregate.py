import json
import math

import pandas as pd
import pytest

from rankbits import aggregate as agg


def fake_run(root, task, method, budget, seed, acc, bits="32"):
    d = root / task / "minilm" / method / str(budget) / bits / f"seed{seed}"
    d.mkdir(parents=True)
    metrics = {
        "run_info": {"task": task, "model": "minilm", "method": method, "budget": budget,
                     "bits": bits, "seed": seed},
        "train_info": {"trainable_params": 1000 * budget, "effective_adapter_params": 900 * budget,
                       "total_rank": 36 * budget, "target_total_rank": 36 * budget,
                       "adapter_bytes": 4000 * budget, "base_bytes": 90_000_000,
                       "peak_rss_bytes": 2**30, "cuda_max_allocated_bytes": None,
                       "cuda_max_reserved_bytes": None, "train_seconds": 10.0, "steps": 100},
        "eval_info": {"metrics": {"accuracy": acc}, "primary_metric": "accuracy",
                      "primary_value": acc, "eval_seconds": 1.0},
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    return str(d)


@pytest.fixture
def runs(tmp_path):
    dirs = [fake_run(tmp_path, "sst2", m, b, s, acc)
            for m, b, s, acc in [("lora", 2, 0, 0.80), ("lora", 2, 1, 0.90), ("lora", 2, 2, 0.85),
                                 ("adalora", 2, 0, 0.70), ("lora", 8, 0, 0.88), ("adalora", 8, 0, 0.86)]]
    return agg.load_runs(dirs)


def test_summary_mean_std_n_over_seeds(runs):
    s = agg.summarize(runs)
    assert len(s) == 4
    row = s[(s.method == "lora") & (s.budget == 2)].iloc[0]
    assert row["n"] == 3 and row["seeds"] == "0,1,2"
    assert row["metric.accuracy_mean"] == pytest.approx(0.85)
    assert row["metric.accuracy_std"] == pytest.approx(0.05)  # sample std, ddof=1
    one = s[(s.method == "adalora") & (s.budget == 2)].iloc[0]
    assert one["n"] == 1 and math.isnan(one["metric.accuracy_std"])


def test_display_and_budget_table_layout(runs):
    s = agg.summarize(runs)
    shown = agg.display_summary(s)
    assert shown.loc[(shown.method == "lora") & (shown.budget == 2), "accuracy"].iloc[0] == "0.8500 ± 0.0500"
    assert shown.loc[(shown.method == "adalora") & (shown.budget == 2), "accuracy"].iloc[0] == "0.7000"
    t = agg.budget_table(s, ["lora", "adalora"], [2, 8])
    assert list(t.columns) == ["task", "model", "bits", "metric", "LoRA r=2", "AdaLoRA r=2",
                               "LoRA r=8", "AdaLoRA r=8"]
    assert len(t) == 1 and t.iloc[0]["AdaLoRA r=8"] == "0.8600"


def test_memory_table_reads_footprints(runs):
    s = agg.summarize(runs)
    m = agg.memory_table(s, {("minilm", "32"): {"total_bytes": 2**20 * 86.5}})
    assert (m["base MiB"] == 86.5).all()
    assert m.loc[(m.method == "lora") & (m.budget == 8), "trainable params"].iloc[0] == 8000


def test_write_table_formats(tmp_path, runs):
    agg.write_table(agg.display_summary(agg.summarize(runs)), str(tmp_path / "t"))
    assert pd.read_csv(tmp_path / "t.csv").shape[0] == 4
    assert "±" in (tmp_path / "t.md").read_text()
    assert "\\begin{tabular}" in (tmp_path / "t.tex").read_text()
