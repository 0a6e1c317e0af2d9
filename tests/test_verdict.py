"""The verdict and `rankbits recommend`, from metrics.json files alone."""
from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, fake_record
from rankbits import aggregate as agg
from rankbits.verdict import RULE, answer_rst, display_verdict, recommend, verdict

MiB = 2**20
# arm: (method, budget, bits) -> (training MiB, accuracy per seed)
ARMS = {("lora", 8, "32"): (220, [0.86, 0.87, 0.88]),
        ("lora", 2, "32"): (215, [0.84, 0.85, 0.86]),
        ("lora", 8, "4"): (185, [0.855, 0.868, 0.877]),  # as good as fp32 within noise, cheaper
        ("lora", 2, "4"): (180, [0.80, 0.81, 0.82]),
        ("adalora", 8, "4"): (190, [0.83, 0.835, 0.84])}


def write_runs(root, arms=ARMS, edge=(), collapsed=(), seeds=None):
    """``collapsed``: (method, budget, bits, seed) of runs that learned nothing; ``seeds``: arm ->
    the seeds its accuracies belong to (default 0, 1, ...)."""
    dirs = []
    for (method, budget, bits), (mib, accs) in arms.items():
        for seed, acc in zip((seeds or {}).get((method, budget, bits), range(len(accs))), accs):
            d = root / "runs" / "sst2" / "minilm" / method / str(budget) / bits / f"seed{seed}"
            d.mkdir(parents=True)
            m = fake_record("sst2", method, budget, bits, seed, acc, mib, at_edge=(method, budget, bits) in edge,
                            collapsed=(method, budget, bits, seed) in collapsed)
            (d / "metrics.json").write_text(json.dumps(m))
            dirs.append(str(d))
    return dirs


def test_verdict_marks_the_memory_frontier_and_says_what_it_knows(tmp_path):
    v = verdict(agg.load_runs(write_runs(tmp_path, edge={("lora", 2, "4")}))).set_index("arm")
    assert list(v["training_mib"]) == sorted(v["training_mib"])  # cheapest first
    front = set(v.index[v["memory_frontier"]])
    assert front == {"LoRA @ NF4+DQ r=2", "LoRA @ NF4+DQ r=8", "LoRA r=8"}
    # within 185 MiB the best is QLoRA r=8; at 220 MiB LoRA r=8 is best, and QLoRA r=8 is within
    # 0.005 of it on every seed: equivalent within ±0.01. LoRA r=2 is 0.02 below on every seed:
    # the t-test is undefined, the sign-flip p of 3 seeds is 0.25, so unresolved; never "tied"
    assert v.loc["LoRA @ NF4+DQ r=8", "best_within_memory"] == "LoRA @ NF4+DQ r=8"
    assert v.loc["LoRA r=8", "best_within_memory"] == "LoRA r=8"
    assert "LoRA @ NF4+DQ r=8" in v.loc["LoRA r=8", "equivalent_to_best"]
    assert "LoRA r=2" in v.loc["LoRA r=8", "unresolved_vs_best"]
    assert "LoRA @ NF4+DQ r=2" in v.loc["LoRA r=8", "unresolved_vs_best"]  # 0.06 below, every seed alike
    assert "AdaLoRA @ NF4+DQ r=8" in v.loc["LoRA r=8", "differs_from_best"]
    assert v.loc["LoRA @ NF4+DQ r=8", "vs_best"] == "is the best"  # within its own 185 MiB
    assert v.loc["LoRA r=2", "vs_best"] == "differs"  # from QLoRA r=8, the best within 215 MiB
    assert v.loc["LoRA r=8", "vs_best"] == "is the best"
    assert v.loc["LoRA r=8", "ci_low"] < 0.87 < v.loc["LoRA r=8", "ci_high"]
    assert v.loc["LoRA @ NF4+DQ r=2", "lr_at_edge"] and not v.loc["LoRA r=8", "lr_at_edge"]
    shown = display_verdict(v.reset_index())
    assert "LoRA r=8 ★" in set(shown["arm"]) and "AdaLoRA @ NF4+DQ r=8" in set(shown["arm"])
    assert shown["evidence"].str.startswith("paired by seed").all()
    text = shown.to_csv() + v.to_csv()
    assert "tied" not in text.lower()


def test_three_outcomes_differs_equivalent_unresolved(tmp_path):
    arms = {("lora", 8, "32"): (200, [0.800, 0.850, 0.900]),
            ("lora", 2, "32"): (150, [0.797, 0.851, 0.899]),  # within ±0.01 every seed: equivalent
            ("lora", 4, "32"): (160, [0.700, 0.760, 0.790]),  # 10 points worse every seed: differs
            ("lora", 1, "32"): (140, [0.90, 0.78, 0.85])}  # scattered: unresolved
    v = verdict(agg.load_runs(write_runs(tmp_path, arms))).set_index("arm")
    row = v.loc["LoRA r=8"]
    assert row["best_within_memory"] == "LoRA r=8"
    assert row["equivalent_to_best"] == "LoRA r=2"
    assert row["differs_from_best"] == "LoRA r=4"
    assert row["unresolved_vs_best"] == "LoRA r=1"
    assert v.loc["LoRA r=2", "vs_best"] == "is the best"  # at its own memory: LoRA r=2 beats r=1
    dearer = {("lora", 8, "32"): arms[("lora", 8, "32")], ("lora", 1, "32"): (210, arms[("lora", 1, "32")][1])}
    un = verdict(agg.load_runs(write_runs(tmp_path / "b", dearer)))
    un = un.set_index("arm").loc["LoRA r=1"]
    # paired sd of (0.10, -0.07, -0.05): 0.0929; (t(.975, 2) + t(.8, 2)) sd / sqrt 3
    assert un["detectable"] == pytest.approx((4.3027 + 1.0607) * 0.092916 / 3 ** 0.5, rel=1e-3)
    assert un["seeds_needed"] > 50
    assert "this study cannot tell differences under 0.288" in un["vs_best"]
    # a relative margin: perplexity 2% of the baseline's mean
    assert agg.judge({"reference": 50.0, "p": 0.5, "seeds": 3, "eq_low": -0.9, "eq_high": 0.9, "sd": 0.5,
                      "detectable": 1.0}, 0.5, "perplexity")["outcome"] == "equivalent"
    assert agg.judge({"reference": 50.0, "p": 0.5, "seeds": 3, "eq_low": -1.1, "eq_high": 0.9, "sd": 0.5,
                      "detectable": 1.0}, 0.5, "perplexity")["outcome"] == "unresolved"


def test_identical_nonzero_differences_are_not_infinitely_significant(tmp_path):
    """Two seeds both +0.001 on a fixed test set: the t-test is undefined (was p = 0 and a
    zero-width interval: 'differs, p < 1e-300'); the sign-flip p (0.5 with 2 seeds) stands in."""
    arms = {("lora", 8, "32"): (200, [0.801, 0.851]), ("lora", 2, "32"): (150, [0.800, 0.850])}
    runs = agg.load_runs(write_runs(tmp_path, arms))
    r = agg.compare(runs[runs["budget"] == 8], runs[runs["budget"] == 2])
    assert r["p"] == 0.5 and r["p_resolution"] == 4 and np.isnan(r["ci_low"])
    assert "sign-flip" in r["test"]
    v = verdict(runs).set_index("arm")
    assert v.loc["LoRA r=8", "unresolved_vs_best"] == "LoRA r=2"
    comp = agg.comparisons(runs)
    assert not comp["significant"].any() and comp["outcome"].tolist() == ["unresolved"]


def test_recommend_answers_for_a_budget_and_states_its_rule(tmp_path):
    runs = agg.load_runs(write_runs(tmp_path))
    text = recommend(runs, 200)
    assert "use       LoRA @ NF4+DQ r=8: accuracy 0.8667 [" in text
    assert "trainable parameters, lr 0.004 (chosen on the selection split)" in text
    assert "runner-up AdaLoRA @ NF4+DQ r=8" in text and "; differs (" in text
    assert "fit):" in text and "(4 arm(s) fit)" not in text
    assert f"rule: {RULE}" in text and "tied" not in text.lower()
    assert "no arm fits 100 MiB" in recommend(runs, 100) and "smallest needs 180.0 MiB" in recommend(runs, 100)


def test_runner_up_line_names_its_own_test_or_no_shared_seed(tmp_path):
    """The runner-up shares no seed with the best; another arm does. The line must not print the
    other arm's p under the runner-up's name; two arms must not crash (was TypeError)."""
    arms = {("lora", 8, "32"): (200, [0.86, 0.87, 0.88]),
            ("lora", 4, "32"): (190, [0.85, 0.86]),  # the runner-up, seeds 5 and 6 only
            ("lora", 2, "32"): (180, [0.70, 0.72, 0.71])}
    runs = agg.load_runs(write_runs(tmp_path, arms, seeds={("lora", 4, "32"): [5, 6]}))
    text = recommend(runs, 300)
    assert "runner-up LoRA r=4: accuracy" in text and "no shared seed with it: not compared" in text
    assert "no shared seed: LoRA r=4" in text and "differs: LoRA r=2" in text
    two = agg.load_runs(write_runs(tmp_path / "two", {k: arms[k] for k in list(arms)[:2]},
                                   seeds={("lora", 4, "32"): [5, 6]}))
    assert "no shared seed with it" in recommend(two, 300)


def test_a_collapsed_seed_is_flagged_and_never_recommended_silently(tmp_path):
    arms = {("lora", 2, "4"): (180, [0.78, 0.79, 0.54]),  # seed 2 collapsed; best mean below? no:
            ("lora", 2, "32"): (200, [0.70, 0.71, 0.69])}
    runs = agg.load_runs(write_runs(tmp_path, arms, collapsed={("lora", 2, "4", 2)}))
    v = verdict(runs).set_index("arm")
    assert v.loc["LoRA @ NF4+DQ r=2", "collapsed"] == ("1 of 3 seeds collapsed (seed 2 at lr 0.004: "
                                                        "predicts class 1 for 97% of the test split)")
    text = recommend(runs, 300)
    # the collapsed arm has the better mean (0.703 vs 0.700) but is passed over, and says so
    assert "use       LoRA r=2:" in text
    assert "collapsed: LoRA @ NF4+DQ r=2: 1 of 3 seeds collapsed (seed 2 at lr 0.004" in text
    assert "(passed over for that)" in text
    alone = recommend(runs, 190)  # only the collapsed arm fits: recommended, with a warning
    assert "use       LoRA @ NF4+DQ r=2" in alone and "WARNING" in alone and "collapsed" in alone


def test_rankbits_recommend_command_reads_results_only(tmp_path):
    write_runs(tmp_path)
    out = subprocess.run([sys.executable, "-m", "rankbits.cli", "recommend", "--results", str(tmp_path),
                          "--memory-mb", "230", "--task", "sst2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "use       LoRA r=8" in out.stdout and "unresolved" in out.stdout
    wide = subprocess.run([sys.executable, "-m", "rankbits.cli", "recommend", "--results", str(tmp_path),
                           "--memory-mb", "230", "--margin", "accuracy=0.5"], capture_output=True, text=True)
    assert "equivalent within ±0.5: LoRA @ NF4+DQ r=8" in wide.stdout, wide.stdout + wide.stderr
    helped = subprocess.run([sys.executable, "-m", "rankbits.cli", "--help"], capture_output=True, text=True)
    assert "recommend" in helped.stdout
    none = subprocess.run([sys.executable, "-m", "rankbits.cli", "recommend", "--results", str(tmp_path / "x"),
                           "--memory-mb", "1"], capture_output=True, text=True)
    assert none.returncode == 2 and "no finished runs" in none.stderr


def test_the_landing_page_says_what_the_study_cannot_tell(tmp_path):
    arms = {**ARMS, ("adalora", 2, "32"): (230, [0.90, 0.78, 0.85])}  # scattered, dearer than the best
    v = verdict(agg.load_runs(write_runs(tmp_path, arms, collapsed={("lora", 2, "4", 1)})))
    v.to_csv(tmp_path / "verdict.csv", index=False)
    page = answer_rst(str(tmp_path / "verdict.csv"))
    assert RULE in page and "tied" not in page.lower()
    assert "*What this study cannot tell:*" in page and "could not have been detected" in page
    assert "*collapsed:* LoRA @ NF4+DQ r=2: 1 of 3 seeds collapsed" in page
    assert "over 3 seeds at lr 0.004 (chosen on the selection split)" in page  # each line's evidence


def test_power_table_says_what_twice_the_seeds_would_detect(tmp_path, capsys):
    import importlib.util

    write_runs(tmp_path)
    spec = importlib.util.spec_from_file_location("power_table", REPO / "bench" / "power_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "detectable, 3 seeds" in out and "detectable, 6 seeds" in out and "seeds for ±0.01" in out
    assert "comparisons would resolve ±0.01 with twice the seeds" in out


def test_an_interval_past_the_metric_range_is_shown_clipped_and_says_so(tmp_path):
    """Three seeds at 0.78, 0.79 and 0.54 give a t interval past accuracy's 1 (the landing page
    printed "0.7030 [0.3526, 1.0534]"); shown clipped, marked, the computed one beside it."""
    arms = {("lora", 2, "4"): (180, [0.78, 0.79, 0.54]), ("lora", 2, "32"): (200, [0.70, 0.71, 0.69])}
    runs = agg.load_runs(write_runs(tmp_path, arms))
    v = verdict(runs)
    wide = v.set_index("arm").loc["LoRA @ NF4+DQ r=2"]
    assert wide["ci_high"] > 1  # the table keeps the interval as computed
    shown = display_verdict(v)
    cell = shown.loc[shown["arm"].str.startswith("LoRA @ NF4+DQ r=2"), shown.columns[4]].iloc[0]
    assert cell.endswith(", 1.0000]*") and agg.clipped_note(shown) == agg.CLIPPED_NOTE
    assert agg.clipped_note(display_verdict(verdict(agg.load_runs(write_runs(tmp_path / "ok"))))) == ""
    text = recommend(runs, 190)
    assert f"[{wide['ci_low']:.4f}, 1.0000] over 3 seeds (clipped to accuracy's range; the t interval is " \
           f"[{wide['ci_low']:.4f}, {wide['ci_high']:.4f}])" in text
    lo, hi, clipped = agg.clip_interval("perplexity", 0.5, 30.0)
    assert (lo, hi, clipped) == (1.0, 30.0, True)


def test_the_report_shows_the_settings_the_runs_recorded(tmp_path):
    """Runs made with data_root=/some/folder: the report built later with another data_root shows
    where the runs' data came from, and a setting that varies between runs says so."""
    dirs = write_runs(tmp_path, {("lora", 2, "32"): (200, [0.8, 0.81]), ("adalora", 2, "32"): (210, [0.8, 0.82])})
    for d in dirs:
        m = json.loads((Path(d) / "metrics.json").read_text())
        lr = [1e-3, 2e-3] if m["run_info"]["method"] == "lora" else [5e-3]
        m["run_info"]["spec"] = {"run": dict(m["run_info"]), "training": {"lr_grid": lr, "batch_size": 16}}
        m["meta_info"] = {"data": {"train": "local:/some/folder/sst2/train.tsv"}}
        (Path(d) / "metrics.json").write_text(json.dumps(m))
    text = agg.recorded_settings(dirs)
    assert "recorded by the 4 finished run(s)" in text
    assert 'data.train: "local:/some/folder/sst2/train.tsv"' in text and "training.batch_size: 16" in text
    assert "training.lr_grid: varies: [0.001, 0.002] (lora); [0.005] (adalora)" in text
    assert "run." not in text  # the run's identity is not a setting


def test_tasks_with_different_metrics_name_their_own_in_the_verdict(tmp_path):
    dirs = write_runs(tmp_path, {("lora", 2, "32"): (200, [0.80, 0.81])})
    lm = json.loads(Path(dirs[0], "metrics.json").read_text())
    for seed, ppl in ((0, 6.56), (1, 6.52)):
        d = tmp_path / "runs" / "chat" / "smol" / "lora" / "8" / "32" / f"seed{seed}"
        d.mkdir(parents=True)
        m = json.loads(json.dumps(lm))
        m["run_info"].update(task="chat", model="smol", budget=8, seed=seed)
        m["eval_info"].update(metrics={"perplexity": ppl}, primary_metric="perplexity", primary_value=ppl,
                              higher_is_better=False)
        (d / "metrics.json").write_text(json.dumps(m))
        dirs.append(str(d))
    shown = display_verdict(verdict(agg.load_runs(dirs)))
    col = "primary metric (mean, 95% CI over seeds)"
    assert col in shown.columns  # not the first row's metric for every row
    assert set(shown[col].str.split().str[0]) == {"accuracy", "perplexity"}
