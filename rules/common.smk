import os
import sys
from pathlib import Path

import pandas as pd
import torch

from rankbits.config import (
    ConfigError,
    expand_runs,
    lr_grid,
    lr_tag,
    point_spec,
    run_spec,
    study_values,
    task_options,
    upstream_run,
    validate_config,
)
from rankbits.bits import BITS
from rankbits.methods import METHODS
from rankbits.jobserver import OWNER as JOBSERVER_OWNER
from rankbits.workflow import KEEP_GOING


try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
    RUNS = expand_runs(config)
    # runs the study's runs build on (adalora-transfer reads the matching adalora run), too
    SPECS = {r.path: run_spec(config, r) for run in RUNS for r in (run, upstream_run(run)) if r}
except ConfigError as exc:
    sys.exit(f"rankbits: invalid configuration: {exc}")

RUN_PATTERN = "{task}/{model}/{method}/{budget}/{bits}/seed{seed}"
# published numbers for the replication table; config key 'published' may point elsewhere
PUBLISHED = config.get("published") or str(Path(workflow.basedir) / "config" / "published.yaml")
# every job's conda environment under snakemake --use-conda is envs/<conda_env>.yaml
ENV = f"../envs/{config['conda_env']}.yaml"


# GPUs a training/evaluation job holds: 1 on CUDA (profiles/default caps the sum at the
# machine's GPUs, so two runs never share one), 0 on CPU or MPS
GPUS = int(torch.cuda.is_available() if config["device"] == "auto" else config["device"].startswith("cuda"))


wildcard_constraints:
    task="[^/]+",
    model="[^/]+",
    method="[^/]+",
    budget=r"\d+",
    bits="[^/]+",
    seed=r"\d+",
    lr=r"[0-9.e+-]+",
    split="[^/.]+",


def spec_for(wildcards):
    return SPECS[RUN_PATTERN.format(**wildcards)]


def point_spec_for(wildcards):
    """The spec of one learning-rate grid point of a run."""
    return point_spec(SPECS[RUN_PATTERN.format(**wildcards)], float(wildcards.lr))


def grid_points(wildcards):
    """The trained grid points of a run, one per learning rate."""
    path = RUN_PATTERN.format(**wildcards)
    return [f"results/adapters/{path}/lr{lr_tag(lr)}" for lr in lr_grid(SPECS[path])]


def upstream_input(wildcards):
    """The finished run this run's method builds on, if any (a DAG edge between runs; the
    upstream run's learning rate is chosen first, so it is read from results/runs)."""
    up = upstream_run(SPECS[RUN_PATTERN.format(**wildcards)]["run"])
    return {"upstream": f"results/runs/{up.path}"} if up else {}


def run_dirs(root):
    return [f"{root}/{run.path}" for run in RUNS]


def rank_heatmaps():
    """One heatmap per run whose ranks differ between modules or change while it trains."""
    return [
        f"results/plots/rank_heatmaps/{run.path}.png"
        for run in RUNS
        if METHODS.get(run.method).rank_map or METHODS.get(run.method).rank_adaptive
    ]


def calibration_input(wildcards):
    """Training inputs of the configured calibration task, else of the first task run on the model."""
    task = config["quantization"]["calibration_task"] or next(
        run.task for run in RUNS if run.model == wildcards.model
    )
    return f"results/tokenized/{task}/{wildcards.model}/train.parquet"


def quant_heatmaps():
    """One quantization-error heatmap per quantized (model, bits) base."""
    return sorted(
        {
            f"results/plots/quant_diagnostics/{run.model}/{run.bits}.png"
            for run in RUNS
            if BITS.get(run.bits).quantized
        }
    )


def final_outputs():
    return [
        *TABLES,
        *FIGURES,
        *rank_heatmaps(),
        *quant_heatmaps(),
    ]
