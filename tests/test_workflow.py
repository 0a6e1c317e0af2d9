"""The real workflow, through the Snakemake CLI, on real SST-2 data and the real MiniLM."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, SHARED_DATA, needs_shared_data, valid_records
from rankbits.config import adapter_dir
from rankbits.record import PRIMARY, PRIMARY_METRIC

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake(workdir: Path, *args: str, config: dict | None = None, check=True):
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--cores", "2"]
    if config is not None:
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(path)]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def tiny_config(data_root=str(SHARED_DATA)) -> dict:
    return {
        "data_root": data_root,
        "study": {"tasks": ["sst2"], "models": ["minilm"], "methods": ["lora", "adalora"],
                  "budgets": [2], "bits": ["32"], "seeds": [0]},
        "tasks": {"sst2": {"max_train_samples": 800, "max_eval_samples": 300, "max_length": 64}},
        # one rate per method, each where 50-step runs learn (bench/RESULTS.md's search)
        "training": {"lr_grid": None, "lr": 4e-3},
        "methods": {"adalora": {"tinit": 0.1, "tfinal": 0.2, "deltaT": 2,
                                "training": {"lr_grid": None, "lr": 1.6e-2}}},
    }


def test_default_config_dry_run():
    # --forceall: count every job of the study, whatever results/ already holds
    proc = subprocess.run([*SNAKEMAKE, "-d", str(REPO), "-n", "--forceall", "--cores", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    # 8 arms (2 methods x 2 budgets x 2 bits) x 3 seeds; before the search's first round the DAG
    # holds seed 0's three grid rates per arm and its select_lr round
    assert counts.get("train") == "24" and counts.get("select_lr") == "8", proc.stdout[-2000:]
    assert counts.get("evaluate") == "24", proc.stdout[-2000:]


def test_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "-d", str(REPO), "--lint"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_unknown_method_is_one_clear_line(tmp_path):
    cfg = tiny_config()
    cfg["study"]["methods"] = ["lora", "dora-ish"]
    proc = snakemake(tmp_path, "-n", config=cfg, check=False)
    assert proc.returncode != 0
    assert ("study.methods: unknown method 'dora-ish'; valid methods: adalora, adalora-transfer, dora, eva, grow, "
            "joint, loftq, lora, optimal, pissa, probe, rslora, optimal:<method@bits|Nmib>, "
            "pattern:<linear-decay|") in proc.stderr


def test_malformed_data_fails_naming_file_and_line_and_leaves_no_outputs(tmp_path):
    bad = tmp_path / "data_root" / "sst2"
    bad.mkdir(parents=True)
    (bad / "train.tsv").write_text("sentence\tlabel\nfine \t1\nbroken row without label\n")
    (bad / "dev.tsv").write_text("sentence\tlabel\nok \t0\n")
    proc = snakemake(tmp_path, config=tiny_config(str(tmp_path / "data_root")), check=False)
    assert proc.returncode != 0
    assert re.search(r"train\.tsv:3: expected 2 tab-separated fields", proc.stderr + proc.stdout)
    assert not list(tmp_path.rglob("train.parquet"))
    assert not (tmp_path / "results" / "default" / "runs").exists()


@pytest.mark.slow
@needs_shared_data("sst2")
def test_tiny_study_end_to_end(tmp_path):
    cfg = tiny_config()
    snakemake(tmp_path, config=cfg)
    runs = tmp_path / "results" / "default" / "runs" / "sst2" / "minilm"
    for method in ("lora", "adalora"):
        d = runs / method / "2" / "32" / "seed0"
        assert sorted(p.name for p in d.iterdir() if p.name != ".snakemake_timestamp") == [
            "metrics.json", "predictions.parquet", "rank_history.csv", "rank_pattern.json", "train_log.csv"]
        m = json.loads((d / "metrics.json").read_text())
        assert set(m) == {"run_info", "train_info", "eval_info", "meta_info"}
        acc = m["eval_info"]["metrics"]["accuracy"]
        assert 0.5 < acc <= 1.0, acc  # 50 steps on 800 sentences learn something
        assert m["eval_info"]["n_eval"] == 300 and m["train_info"]["steps"] == 50
        assert m["train_info"]["memory"]["peak_rss_bytes"] > m["train_info"]["base"]["base_bytes"] > 80 * 2**20
        assert m["train_info"]["versions"]["peft"] == "0.21.2"
        # the record's train_info is what training wrote at the chosen rate, nothing renamed
        written = adapter_dir(str(d), m["eval_info"]["lr_selection"]["chosen_lr"]).parent / "train_info.json"
        assert m["train_info"] == json.loads(written.read_text())
        assert m["meta_info"]["data"]["train"] == f"local:{SHARED_DATA}/sst2/train.tsv"  # the report shows it
        preds = pd.read_parquet(d / "predictions.parquet")
        assert len(preds) == 300 and (preds["pred"] == preds["label"]).mean() == pytest.approx(acc)
        log = pd.read_csv(d / "train_log.csv")
        assert len(log) == 50 and log["task_loss"].notna().all()
        ranks = json.loads((d / "rank_pattern.json").read_text())
        assert len(ranks) == 36
        assert sum(ranks.values()) == m["train_info"]["total_rank"] == 2 * 36  # target x modules
    assert valid_records(tmp_path / "results") == 2  # config/metrics.schema.yaml
    ada = json.loads((runs / "adalora/2/32/seed0/metrics.json").read_text())["train_info"]
    assert ada["params"]["effective_adapter"] < ada["params"]["adapter_initial"]  # pruned from init_r 3
    hist = pd.read_csv(runs / "adalora/2/32/seed0/rank_history.csv")
    totals = hist.groupby("step")["rank"].sum()
    assert totals.iloc[0] == 3 * 36 and totals.iloc[-1] == 2 * 36 and totals.is_monotonic_decreasing

    tables = tmp_path / "results" / "default" / "tables"
    summary = pd.read_csv(tables / "summary.csv")
    assert sorted(zip(summary["method"], summary["budget"])) == [("adalora", 2), ("lora", 2)]
    assert (summary["n"] == 1).all()
    budget = pd.read_csv(tables / "budget_table.csv")
    assert list(budget.columns[-2:]) == ["LoRA r=2", "AdaLoRA r=2"] and len(budget) == 1
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp*"))

    snakemake(tmp_path, "--report", "report.html", config=cfg)
    html = (tmp_path / "report.html").read_text()
    assert "rank_heatmaps/sst2/minilm/adalora/2/32/seed0.png" in html
    assert html.count("iVBORw0KGgo") >= 4  # heatmap + three study figures, embedded as PNG
    # the landing page opens on the answer: the verdict at each memory level on the frontier
    assert "the-answer" in html and "of training memory: use" in html
    # every table is in the report as an HTML table, numbers formatted
    import base64

    tables = {name: base64.b64decode(data).decode() for name, data in
              re.findall(r"filename=(\w+)\.html;base64,([A-Za-z0-9+/=]+)", html)}
    assert {"verdict", "summary", "budget_table", "arms_table", "memory", "costs", "lr_selection",
            "comparisons", "replication", "failed_runs"} <= set(tables)
    explorer = tables.pop("explorer")  # the interactive page: an SVG its script draws, the data inline
    assert "<svg" in explorer and "const D = " in explorer
    assert all("<table" in t for t in tables.values())
    assert re.search(r"<td>0\.\d{4}</td>", tables["budget_table"])  # one seed: no ± std

    # a finished study is up to date; a changed AdaLoRA option reruns AdaLoRA only
    assert "Nothing to be done" in snakemake(tmp_path, "-n", config=cfg).stdout
    cfg["methods"]["adalora"]["deltaT"] = 3
    dry = snakemake(tmp_path, "-n", config=cfg).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", dry, re.M))
    assert counts["train"] == "1" and counts["evaluate"] == "1"
    assert re.findall(r"output: results/default/adapters/(\S+)", dry) == ["sst2/minilm/adalora/2/32/seed0/lr0.016"]


@pytest.mark.slow
@needs_shared_data("sst2")
def test_allocation_arms_through_the_workflow(tmp_path):
    """adalora-transfer pulls in the AdaLoRA run it reads (not itself part of the study, its
    learning rate chosen first); every arm gets its rank heatmap and the all-arms rank map; each
    run's learning rate is chosen on the selection split."""
    cfg = tiny_config()
    cfg["study"]["methods"] = ["adalora-transfer", "pattern:linear-decay"]
    cfg["study"]["budgets"] = [4]
    cfg["tasks"]["sst2"].update(max_train_samples=400, max_eval_samples=100, selection_samples=100)
    cfg["training"] = {"lr_grid": [5e-4, 2e-3], "lr_search": "off"}
    cfg["methods"]["adalora"]["training"] = {"lr_grid": [5e-4, 2e-3]}
    snakemake(tmp_path, config=cfg)
    res = tmp_path / "results" / "default"
    for lr in ("0.0005", "0.002"):
        assert (res / f"adapters/sst2/minilm/adalora/4/32/seed0/lr{lr}/rank_pattern.json").is_file()
    assert (res / "runs/sst2/minilm/adalora/4/32/seed0/rank_pattern.json").is_file()  # what transfer read
    sel = pd.read_csv(res / "tables/lr_selection.csv")
    assert sorted(sel["method"]) == ["adalora-transfer", "pattern:linear-decay"]
    assert set(sel["chosen lr"]) <= {5e-4, 2e-3} and (sel["selection rows"] == 100).all()
    assert (sel["optimizer steps, all grid points"] == 2 * 25).all()  # 400 rows / 16 per batch, twice
    assert (res / "plots/lr_sensitivity.png").stat().st_size > 10_000
    for method in cfg["study"]["methods"]:
        m = json.loads((res / f"runs/sst2/minilm/{method}/4/32/seed0/metrics.json").read_text())
        assert abs(m["train_info"]["budget_match"]["deviation"]) <= 0.02
        assert (res / f"plots/rank_heatmaps/sst2/minilm/{method}/4/32/seed0.png").is_file()
    assert (res / "plots/rank_maps.png").stat().st_size > 10_000


def dry_outputs(*args: str) -> set[str]:
    proc = subprocess.run([*SNAKEMAKE, "-d", str(REPO), "-n", "--forceall", "--cores", "2", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {o for line in re.findall(r"output: (.+)", proc.stdout) for o in line.split(", ")}


def test_studies_live_side_by_side_and_share_their_caches():
    """The default study and rank-allocation.yaml: runs, tables and plots each under
    results/<study>/, the fp32 MiniLM base shared; SST-2 is prepared per its own settings (the
    two studies subsample it differently), so neither invalidates the other's."""
    default = dry_outputs()
    alloc = dry_outputs("--configfile", str(REPO / "config" / "studies" / "rank-allocation.yaml"))
    for outs, study in ((default, "default"), (alloc, "rank-allocation")):
        assert all(o.startswith((f"results/{study}/", "results/cache/")) for o in outs)
    bases = lambda outs: {o for o in outs if o.startswith("results/cache/base/minilm/32/")}  # noqa: E731
    assert len(bases(default)) == 1 and bases(default) == bases(alloc)
    sst2 = lambda outs: {o for o in outs if o.startswith("results/cache/data/sst2/")}  # noqa: E731
    assert sst2(default) and not sst2(default) & sst2(alloc)


def test_lm_study_dag_builds_offline():
    outs = dry_outputs("--configfile", str(REPO / "config" / "studies" / "lm.yaml"))
    assert any(o.startswith("results/lm/adapters/wikitext2/smollm2-135m/lora/8/mixed:attn8-ffn4/seed0/") for o in outs)
    assert any(o.startswith("results/lm/adapters/alpaca/smollm2-135m/pattern:empirical/16/32/seed0/") for o in outs)
    # lr_budgets: first: budget 16 reuses budget 8's rate, so only the patterns search at 16
    assert not any(o.startswith("results/lm/adapters/wikitext2/smollm2-135m/lora/16/") for o in outs)
    # bases before training, forgetting's base on WikiText-2, an Alpaca adapter on CNN/DM
    assert {"results/lm/scores/wikitext2/smollm2-135m/base.json", "results/lm/scores/alpaca/smollm2-135m/base.json",
            "results/lm/scores/cnn_dailymail/smollm2-135m/base.json",
            "results/lm/scores/cnn_dailymail/alpaca/smollm2-135m/lora/8/32/seed0.json"} <= outs


def test_arms_study_dag_builds_offline():
    outs = dry_outputs("--configfile", str(REPO / "config" / "studies" / "arms.yaml"))
    for arm in ("rslora/2/32", "dora/2/4", "eva/2/32", "loftq/2/4", "probe/2/4", "pissa/2/4"):
        assert any(o.startswith(f"results/arms/adapters/sst2/minilm/{arm}/seed0/") for o in outs), arm
    assert not any("/loftq/2/32/" in o for o in outs)


def test_budget_study_dag_builds_offline():
    outs = dry_outputs("--configfile", str(REPO / "config" / "studies" / "budget.yaml"))
    for arm in ("optimal/2/32", "optimal:lora@32/8/32", "joint/2/32", "lora/2/mixed:ffn8-attn4",
                "pattern:attention-heavy/2/4"):
        assert any(o.startswith(f"results/budget/adapters/sst2/minilm/{arm}/seed0/") for o in outs), arm


def test_seed_studies_dag_builds_offline():
    # from the repository, as a user runs it: Snakemake merges the file over config/config.yaml
    proc = subprocess.run([*SNAKEMAKE, "-d", str(REPO), "-n", "--forceall", "--cores", "2", "--configfile",
                           str(REPO / "config" / "studies" / "seeds.yaml")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    # S0: 4 GLUE tasks x 2 methods x 2 budgets x 2 bits + CNN/DM 8; S2: 2 x (2 + 3 + 1); S4: 4 x 2
    assert counts.get("train") == "60" and counts.get("evaluate") == "60", proc.stdout[-2000:]
    for run in ("mnli/deberta-v3-base/adalora/8/4", "cnn_dailymail/t5-small/lora/2/32",
                "wikitext2/gpt2/adalora/4/mixed:attn8-ffn4", "alpaca/dialogpt-medium/pattern:empirical/16/32"):
        assert f"results/seeds/runs/{run}/seed0" in proc.stdout


@needs_shared_data("wikitext2")
@pytest.mark.slow
def test_language_modelling_and_summarization_through_the_workflow(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    import tiny_models

    gpt2, t5 = (tiny_models.build(f, tmp_path / "models" / f) for f in ("gpt2", "t5"))
    cfg = {
        "data_root": str(SHARED_DATA),
        "study": [{"tasks": ["wikitext2"], "models": ["gpt2"], "methods": ["lora", "adalora"], "budgets": [2],
                   "bits": ["32"], "seeds": [0]},
                  {"tasks": ["cnn_dailymail"], "models": ["t5-small"], "methods": ["adalora"], "budgets": [2],
                   "bits": ["4"], "seeds": [0]}],
        "models": {"gpt2": {"path": gpt2}, "t5-small": {"path": t5}},
        "tasks": {"wikitext2": {"files": {"train": "valid.txt"}, "max_train_samples": 20, "max_eval_samples": 20,
                                "max_length": 64},
                  "cnn_dailymail": {"files": {"train": "validation_sample_15.jsonl"}, "dev_samples": 4,
                                    "max_length": 96, "max_target_length": 24,
                                    "generation": {"max_new_tokens": 6}}},
        "training": {"max_steps": 6, "batch_size": 4},
        "methods": {"adalora": {"tinit": 1, "tfinal": 2, "deltaT": 1}},
        "quantization": {"calibration_samples": 4},
    }
    snakemake(tmp_path, config=cfg)
    summary = pd.read_csv(tmp_path / "results/default/tables/summary.csv").set_index(["task", "method"])
    assert summary.loc[("wikitext2", "lora"), PRIMARY_METRIC] == "perplexity"
    assert summary.loc[("cnn_dailymail", "adalora"), PRIMARY_METRIC] == "rougeL"
    assert summary[f"{PRIMARY}_mean"].notna().all()
    comp = pd.read_csv(tmp_path / "results/default/tables/comparisons.csv")
    assert comp.loc[0, "metric"] == "perplexity" and comp.loc[0, "test"].startswith("evaluation noise only (1 seed)")
    assert valid_records(tmp_path / "results") > 0
    m = json.loads((tmp_path / "results/default/runs/cnn_dailymail/t5-small/adalora/2/4/seed0/metrics.json").read_text())
    assert m["train_info"]["base"]["quantized"] and m["eval_info"]["problem_type"] == "seq2seq"
    for png in ("rank_heatmaps/cnn_dailymail/t5-small/adalora/2/4/seed0.png", "quant_diagnostics/t5-small/4.png",
                "rank_maps.png", "pareto.png"):
        assert (tmp_path / "results/default/plots" / png).stat().st_size > 0


@pytest.mark.slow
@needs_shared_data("sst2")
def test_learning_rate_search_extends_the_grid_and_later_seeds_reuse_the_choice(tmp_path):
    """Rates far too small for 20 steps: the best is the grid's top, so the search trains beyond
    it (x3 each round, 2 rounds) and flags a choice still at the edge; seed 1 trains only at the
    rate seed 0 chose. The DAG grows as the select_lr checkpoint decides."""
    cfg = tiny_config()
    cfg["study"].update(methods=["lora"], seeds=[0, 1])
    cfg["tasks"]["sst2"].update(max_train_samples=320, max_eval_samples=100, selection_samples=100)
    cfg["training"] = {"lr_grid": [1e-6, 3e-6], "lr_max_extensions": 2, "max_steps": 20}
    snakemake(tmp_path, config=cfg)
    res = tmp_path / "results" / "default"
    seed0 = sorted(p.name for p in (res / "adapters/sst2/minilm/lora/2/32/seed0").iterdir() if p.name.startswith("lr"))
    assert seed0 == ["lr1e-06", "lr2.7e-05", "lr3e-06", "lr9e-06"]
    rounds = [json.loads((res / f"selection/sst2/minilm/lora/2/32/seed0/round{k}.json").read_text()) for k in range(3)]
    assert [r["status"] for r in rounds] == ["extend", "extend", "done"]
    m0 = json.loads((res / "runs/sst2/minilm/lora/2/32/seed0/metrics.json").read_text())
    assert m0["train_info"]["training"]["lr"] == 2.7e-5 and m0["eval_info"]["lr_selection"]["at_edge"]  # still the largest: flagged
    seed1 = [p.name for p in (res / "adapters/sst2/minilm/lora/2/32/seed1").iterdir() if p.name.startswith("lr")]
    assert seed1 == ["lr2.7e-05"]
    m1 = json.loads((res / "runs/sst2/minilm/lora/2/32/seed1/metrics.json").read_text())["eval_info"]
    assert m1["lr_selection"]["search"]["reused_by_this_seed"] and m1["lr_selection"]["at_edge"]
    sel = pd.read_csv(res / "tables/lr_selection.csv").set_index("seed")
    assert sel.loc[1, "rate chosen on"] == "seed 0 (reused)" and sel.loc[0, "rates added by the search"] == 2
    verdict = pd.read_csv(res / "tables/verdict.csv")
    assert verdict["lr_at_edge"].all() and (verdict["seeds"] == 2).all()
