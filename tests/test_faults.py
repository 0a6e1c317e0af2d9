"""Faults: a diverging run with and without --keep-going, CUDA out-of-memory advice, and
determinism (same seed twice: the same metrics.json, timings aside)."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from conftest import needs_shared_data, small_spec, valid_records
from test_workflow import snakemake, tiny_config

# what legitimately differs between two runs of the same seed: clocks and memory high-water marks
VOLATILE = {"created_at", "load_seconds", "train_seconds", "samples_per_second", "eval_seconds", "eval_cpu_seconds", "selection_cpu_seconds", "phase_cpu_seconds",
            "peak_rss_bytes", "eval_peak_rss_bytes", "total_train_seconds", "probe_seconds",
            "train_cpu_seconds", "total_train_cpu_seconds", "step_seconds_median",
            "peak_rss_of"}  # a job-server fork locally, its own process under SLURM


def without_volatile(obj):
    if isinstance(obj, dict):
        return {k: without_volatile(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


def diverging_config():
    cfg = tiny_config()
    cfg["tasks"]["sst2"].update(max_train_samples=160, max_eval_samples=64)
    cfg["methods"]["lora"] = {"training": {"lr": 1.0e12}}  # diverges within a few steps
    return cfg


@pytest.mark.slow
@needs_shared_data("sst2")
def test_a_diverging_run_fails_naming_its_step(tmp_path):
    proc = snakemake(tmp_path, config=diverging_config(), check=False)
    assert proc.returncode != 0
    assert re.search(r"sst2/minilm/lora/2/32/seed0: non-finite loss \(\S+\) at optimizer step \d+",
                     proc.stderr)
    assert not (tmp_path / "results" / "default" / "tables").exists()


@pytest.mark.slow
@needs_shared_data("sst2")
def test_keep_going_finishes_the_study_and_lists_the_failed_run(tmp_path):
    cfg = diverging_config()
    proc = snakemake(tmp_path, "--keep-going", config=cfg, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the study still says it failed
    assert "rankbits: some runs failed; see results/default/tables/failed_runs.csv" in proc.stderr
    tables = tmp_path / "results" / "default" / "tables"
    failed = pd.read_csv(tables / "failed_runs.csv")
    assert list(failed["method"]) == ["lora"] and failed["step"].iloc[0] >= 1
    assert "non-finite loss" in failed["error"].iloc[0] and failed["run_status"].iloc[0] == "failed"
    summary = pd.read_csv(tables / "summary.csv")
    assert list(summary["method"]) == ["adalora"]  # the failed run is in no other table
    m = json.loads((tmp_path / "results/default/runs/sst2/minilm/lora/2/32/seed0/metrics.json").read_text())
    assert m["run_info"]["status"] == "failed" and m["failure"][0]["step"] == failed["step"].iloc[0]
    assert valid_records(tmp_path / "results") == 2  # the failed record too (config/metrics.schema.yaml)
    snakemake(tmp_path, "--report", "report.html", config=cfg)
    assert "failed_runs.csv" in (tmp_path / "report.html").read_text()
    # the failure is the recorded outcome of these settings: nothing reruns until they change
    assert "Nothing to be done" in snakemake(tmp_path, "-n", config=cfg).stdout


def test_cuda_out_of_memory_names_the_knobs():
    from rankbits.runtime import OutOfMemory, oom_advice

    hp = {"batch_size": 32, "eval_batch_size": 64}
    with pytest.raises(OutOfMemory, match=r"training x: CUDA out of memory\. Lower "
                                          r"training\.batch_size \(now 32\).*max_length \(now 128\)"):
        with oom_advice("training x", hp, 128):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.slow
@needs_shared_data("sst2")
def test_same_seed_twice_gives_the_same_metrics(sst2_tokens, tmp_path):
    from rankbits.evaluate import evaluate_run
    from rankbits.train import train_run

    spec = small_spec("adalora", steps=12, lora_dropout=0.1,
                      methods={"adalora": {"tinit": 2, "tfinal": 2, "deltaT": 2}})
    texts = []
    for k in range(2):
        train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / f"t{k}"))
        evaluate_run(spec, str(tmp_path / f"t{k}"), str(sst2_tokens / "tok_dev.parquet"), str(tmp_path / f"r{k}"))
        m = json.loads((tmp_path / f"r{k}" / "metrics.json").read_text())
        texts.append(json.dumps(without_volatile(m), indent=2))
        assert (tmp_path / f"r{k}" / "predictions.parquet").exists()
    assert texts[0] == texts[1]
    assert (pd.read_parquet(tmp_path / "r0" / "predictions.parquet")
            .equals(pd.read_parquet(tmp_path / "r1" / "predictions.parquet")))


@pytest.mark.slow
@needs_shared_data("sst2")
def test_a_later_seed_whose_first_seed_never_trained_is_a_failed_run_not_a_broken_dag(tmp_path):
    """Under lr_seeds: first, seed 1 trains at the rate seed 0's search chose. When every rate
    of seed 0 diverged that rate is None: the input function raised on float(None) and the
    whole DAG failed, --keep-going or not. Now seed 1 is recorded as failed, naming why."""
    cfg = diverging_config()
    cfg["study"].update(seeds=[0, 1])  # adalora trains: the tables have a run to show
    cfg["tasks"]["sst2"]["selection_samples"] = 64
    cfg["methods"]["lora"] = {"training": {"lr_grid": [1.0e12, 2.0e12], "lr_search": "off",
                                           "lr_seeds": "first"}}
    proc = snakemake(tmp_path, "--keep-going", config=cfg, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    tables = tmp_path / "results/default/tables"
    assert tables.exists(), proc.stderr[-5000:]
    failed = pd.read_csv(tables / "failed_runs.csv")
    assert sorted(failed["seed"].unique()) == [0, 1]
    later = failed[failed["seed"] == 1]["error"].iloc[0]
    assert "not trained: its learning rate is chosen by" in later and "seed0" in later
