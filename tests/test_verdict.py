"""The verdict and `rankbits recommend`, from metrics.json files alone."""
from __future__ import annotations

import json
import subprocess
import sys

from rankbits import aggregate as agg
from rankbits.verdict import display_verdict, recommend, verdict

MiB = 2**20
# arm: (method, budget, bits) -> (training MiB, accuracy per seed)
ARMS = {("lora", 8, "32"): (220, [0.86, 0.87, 0.88]),
        ("lora", 2, "32"): (215, [0.84, 0.85, 0.86]),
        ("lora", 8, "4"): (185, [0.855, 0.868, 0.877]),  # as good as fp32 within noise, cheaper
        ("lora", 2, "4"): (180, [0.80, 0.81, 0.82]),
        ("adalora", 8, "4"): (190, [0.83, 0.835, 0.84])}


def write_runs(root, arms=ARMS, edge=()):
    dirs = []
    for (method, budget, bits), (mib, accs) in arms.items():
        for seed, acc in enumerate(accs):
            d = root / "runs" / "sst2" / "minilm" / method / str(budget) / bits / f"seed{seed}"
            d.mkdir(parents=True)
            m = {"run_info": {"task": "sst2", "model": "minilm", "method": method, "budget": budget,
                              "bits": bits, "seed": seed, "status": "success"},
                 "train_info": {"trainable_params": 1000 * budget, "effective_adapter_params": 900 * budget,
                                "total_rank": 36 * budget, "target_total_rank": 36 * budget,
                                "adapter_bytes": 4000 * budget, "base_bytes": 90_000_000,
                                "peak_rss_bytes": 2**30, "cuda_max_allocated_bytes": None,
                                "cuda_max_reserved_bytes": None, "train_seconds": 10.0, "steps": 100,
                                "train_cpu_seconds": 9.0, "step_seconds_median": 0.1,
                                "training_memory": {"total_bytes": mib * MiB},
                                "lr_selection": {"at_edge": (method, budget, bits) in edge}},
                 "eval_info": {"metrics": {"accuracy": acc}, "primary_metric": "accuracy",
                               "higher_is_better": True, "primary_value": acc, "eval_seconds": 1.0}}
            (d / "metrics.json").write_text(json.dumps(m))
            dirs.append(str(d))
    return dirs


def test_verdict_marks_the_memory_frontier_and_ties(tmp_path):
    v = verdict(agg.load_runs(write_runs(tmp_path, edge={("lora", 2, "4")}))).set_index("arm")
    assert list(v["training_mib"]) == sorted(v["training_mib"])  # cheapest first
    front = set(v.index[v["memory_frontier"]])
    assert front == {"LoRA @ NF4+DQ r=2", "LoRA @ NF4+DQ r=8", "LoRA r=8"}
    # within 185 MiB the best is QLoRA r=8; at 220 MiB LoRA r=8 is best but QLoRA r=8 ties with it
    assert v.loc["LoRA @ NF4+DQ r=8", "best_within_memory"] == "LoRA @ NF4+DQ r=8"
    assert v.loc["LoRA r=8", "best_within_memory"] == "LoRA r=8"
    assert "LoRA @ NF4+DQ r=8" in v.loc["LoRA r=8", "tied_with_best"]
    assert "LoRA @ NF4+DQ r=2" not in v.loc["LoRA r=8", "tied_with_best"]  # 6 points worse, every seed
    assert v.loc["LoRA r=8", "ci_low"] < 0.87 < v.loc["LoRA r=8", "ci_high"]
    assert v.loc["LoRA @ NF4+DQ r=2", "lr_at_edge"] and not v.loc["LoRA r=8", "lr_at_edge"]
    shown = display_verdict(v.reset_index())
    assert "LoRA r=8 ★" in set(shown["arm"]) and "AdaLoRA @ NF4+DQ r=8" in set(shown["arm"])
    assert shown["evidence"].str.startswith("paired by seed").all()


def test_recommend_answers_for_a_budget(tmp_path):
    runs = agg.load_runs(write_runs(tmp_path))
    text = recommend(runs, 200)
    assert "use      LoRA @ NF4+DQ r=8: accuracy 0.8667 [" in text
    assert "runner-up AdaLoRA @ NF4+DQ r=8" in text and "differs from it" in text
    assert "fit):" in text and "(4 arm(s) fit)" not in text
    assert "no arm fits 100 MiB" in recommend(runs, 100) and "smallest needs 180.0 MiB" in recommend(runs, 100)


def test_rankbits_recommend_command_reads_results_only(tmp_path):
    write_runs(tmp_path)
    out = subprocess.run([sys.executable, "-m", "rankbits.cli", "recommend", "--results", str(tmp_path),
                          "--memory-mb", "230", "--task", "sst2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "use      LoRA r=8" in out.stdout and "is tied with it" in out.stdout
    helped = subprocess.run([sys.executable, "-m", "rankbits.cli", "--help"], capture_output=True, text=True)
    assert "recommend" in helped.stdout
    none = subprocess.run([sys.executable, "-m", "rankbits.cli", "recommend", "--results", str(tmp_path / "x"),
                           "--memory-mb", "1"], capture_output=True, text=True)
    assert none.returncode == 2 and "no finished runs" in none.stderr
