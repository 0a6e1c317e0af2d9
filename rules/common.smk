import functools
import json
import os
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from rankbits.config import (
    RUN_PATTERN,
    ConfigError,
    expand_runs,
    lr_grid,
    lr_tag,
    point_spec,
    run_spec,
    scoring_plan,
    scoring_spec,
    settings_key,
    study_name,
    study_values,
    task_options,
    upstream_run,
    validate_config,
)
from rankbits.bits import BITS
from rankbits.methods import METHODS
from rankbits.jobserver import OWNER as JOBSERVER_OWNER
from rankbits.aggregate import recorded_settings
from rankbits.verdict import answer_rst
from rankbits.watch import PACKAGE as WATCH_PACKAGE, available as watch_available
from rankbits.workflow import KEEP_GOING, finished_message, local_scheduling, record_snakemake_cpu


try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
    RUNS = expand_runs(config)
    # runs the study's runs build on (adalora-transfer reads the matching adalora run), too
    SPECS = {r.path: run_spec(config, r) for run in RUNS for r in (run, upstream_run(run)) if r}
    STUDY = study_name(config, workflow.overwrite_configfiles)
    # scoring without training: bases before any training, forgetting slices, adapters elsewhere
    SCORES = scoring_plan(config, RUNS)
except ConfigError as exc:
    sys.exit(f"rankbits: invalid configuration: {exc}")
if config["logging"] == "tensorboard" and not watch_available():
    sys.exit(f"rankbits: invalid configuration: logging: tensorboard needs the tensorboard package "
             f"(pip install {WATCH_PACKAGE}), or set logging: none")

# A study's runs, tables, plots and report live under results/<study>/ (logs under
# logs/<study>/); prepared data, tokenized inputs and prepared bases are caches under
# results/cache/ that every study shares, each keyed by the settings that made it, so studies
# side by side never prepare the same thing twice nor invalidate each other's.
OUT = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
CACHE = "results/cache"
TASKS_RUN = sorted({spec["run"]["task"] for spec in SPECS.values()} | {task for task, _, _ in SCORES}
                   | {config["quantization"]["calibration_task"]} - {None})
DATA_KEY = {task: settings_key(config["data_root"], task_options(config, task)) for task in TASKS_RUN}


def calibration_task(model):
    """The task whose training inputs calibrate ``model``'s quantized bases: the configured
    calibration task, else the first task the study runs on the model."""
    return config["quantization"]["calibration_task"] or next(run.task for run in RUNS if run.model == model)


def tokenized(task, model, split):
    return f"{CACHE}/tokenized/{task}/{DATA_KEY[task]}/{model}/{split}.parquet"


def base_key(model, bits):
    """A prepared base's settings: the model's options, the device and, for a quantized base,
    its calibration inputs (a full-precision base is the same whatever the study calibrates on)."""
    settings = [config["models"].get(model, {}), config["device"]]
    if BITS.get(bits).quantized:
        task = calibration_task(model)
        settings += [task, DATA_KEY[task], config["quantization"]["calibration_samples"]]
    return settings_key(*settings)


def base_dir(model, bits):
    return f"{CACHE}/base/{model}/{bits}/{base_key(model, bits)}"


# the report's landing page opens on the study's answer and ends with the settings as text
# (report/workflow.rst reads these keys; they are not settings: no run's spec holds them)
config["report_study"] = {
    "name": STUDY,
    "out": OUT,
    **{axis: ", ".join(str(v) for v in study_values(config, axis))
       for axis in ("tasks", "models", "methods", "budgets", "bits", "seeds")},
    # the settings the finished runs recorded (a report built with other --config values shows
    # what the runs were made with), read only when a report is built
    "recorded": "\n".join(f"    {line}" for line in recorded_settings(
        sorted(str(p.parent) for p in Path(OUT, "runs").rglob("metrics.json"))).splitlines())
    if "--report" in sys.argv else "",
    "config": "\n".join(f"    {line}" for line in yaml.safe_dump(
        {k: v for k, v in config.items() if not k.startswith("report_")}, sort_keys=False).splitlines()),
}
config["report_answer"] = answer_rst(f"{OUT}/tables/verdict.csv")

# published numbers for the replication table; config key 'published' may point elsewhere
PUBLISHED = config.get("published") or str(Path(workflow.basedir) / "config" / "published.yaml")
# the seeds' claimed directions (a better than b) for the directions table
DIRECTIONS = str(Path(workflow.basedir) / "config" / "directions.yaml")
# every job's conda environment under snakemake --use-conda is envs/<conda_env>.yaml
ENV = f"../envs/{config['conda_env']}.yaml"


# GPUs a job on CUDA holds: 1 (profiles/default caps the sum at the machine's GPUs), 0 on CPU
# or MPS. Only preparing a base takes a whole GPU; training, evaluation and scoring jobs instead
# ask for GPU memory, gpu_mib: their arm's predicted training memory (rankbits plan, from the
# model's config on the meta device) plus a margin, out of the GPU's (the gpu_mib setting, else
# the device's), so small runs share the GPU and a large run takes it whole.
GPUS = int(torch.cuda.is_available() if config["device"] == "auto" else config["device"].startswith("cuda"))
GPU_MIB, PLANNED_MIB = 0, {}
if GPUS:
    from rankbits.plan import gpu_budget, planned_jobs

    try:
        GPU_MIB = gpu_budget(config)
        PLANNED_MIB = planned_jobs(config, GPU_MIB)  # an arm that cannot fit stops here, named
    except ConfigError as exc:
        sys.exit(f"rankbits: {exc}")


def gpu_mib_for(w):
    """GPU memory a job of this arm asks for (0 off CUDA)."""
    return PLANNED_MIB[(w.task, w.model, w.method, int(w.budget), str(w.bits))] if GPUS else 0


def model_gpu_mib(w):
    """GPU memory a scoring job of this model asks for: its largest training job's."""
    return max((v for k, v in PLANNED_MIB.items() if k[1] == w.model), default=0) if GPUS else 0


wildcard_constraints:
    task="[^/]+",
    target="[^/]+",
    model="[^/]+",
    method="[^/]+",
    budget=r"\d+",
    bits="[^/]+",
    seed=r"\d+",
    lr=r"[0-9.e+-]+",
    round=r"\d+",
    split="[^/.]+",
    dkey="[0-9a-f]{8}",
    bkey="[0-9a-f]{8}",


def spec_for(wildcards):
    return SPECS[RUN_PATTERN.format(**wildcards)]


def point_spec_for(wildcards):
    """The spec of one learning-rate grid point of a run."""
    return point_spec(SPECS[RUN_PATTERN.format(**wildcards)], float(wildcards.lr))


def point_dirs(path, lrs):
    return [f"{OUT}/adapters/{path}/lr{lr_tag(lr)}" for lr in lrs]


def run_wildcards(wildcards):
    return {k: wildcards[k] for k in ("task", "model", "method", "budget", "bits", "seed")}


def selects(w):
    """A run with a grid of two or more rates selects one (select_lr rounds)."""
    return len(lr_grid(SPECS[RUN_PATTERN.format(**w)])) > 1


@functools.lru_cache(maxsize=None)
def read_round(path):
    """A finished select_lr round (written once, atomically; input functions ask again and again)."""
    with open(path) as fh:
        return json.load(fh)


def searched_rates(w, rounds=None):
    """(the run's grid plus the rates its search added, the path of the last select_lr round
    read, that round's record), reading the checkpoint's rounds (``rounds``: only those before
    it). A round not yet run makes Snakemake re-evaluate once its job has run."""
    lrs, k, path, last = list(lr_grid(SPECS[RUN_PATTERN.format(**w)])), 0, None, None
    while rounds is None or k < rounds:
        path = checkpoints.select_lr.get(**w, round=k).output[0]
        last = read_round(path)
        if last["status"] != "extend":
            break
        lrs.append(last["next_lr"])
        k += 1
    return lrs, path, last


def first_of(w, axis):
    """The smallest ``axis`` value (seed or budget) among the runs the study trains that match
    ``w`` on every other axis but the seed."""
    same = tuple(k for k in ("task", "model", "method", "budget", "bits") if k != axis)
    return FIRSTS[axis][tuple(str(w[k]) for k in same)]


def _firsts(axis):
    """For ``first_of``: (values of the other axes but the seed) -> smallest ``axis`` value, once
    at start-up rather than a scan of every spec per call (input functions run on every DAG
    update). SPECS, not RUNS: a run another method reads (adalora for adalora-transfer) counts."""
    same = [k for k in ("task", "model", "method", "budget", "bits") if k != axis]
    out = {}
    for spec in SPECS.values():
        key = tuple(str(spec["run"][k]) for k in same)
        out[key] = min(out.get(key, int(spec["run"][axis])), int(spec["run"][axis]))
    return out


FIRSTS = {axis: _firsts(axis) for axis in ("budget", "seed")}


def rate_source(w):
    """The run whose search decides ``w``'s rate: ``w`` itself; under ``lr_budgets: first`` the
    run at the smallest budget; under ``lr_seeds: first`` that run's first seed."""
    training = SPECS[RUN_PATTERN.format(**w)]["training"]
    source = dict(w)
    if training["lr_budgets"] == "first":
        source["budget"] = str(first_of(source, "budget"))
    if training["lr_seeds"] == "first":
        source["seed"] = str(first_of(source, "seed"))
    return w if all(str(source[k]) == str(w[k]) for k in w) else source


def grid_points(wildcards):
    """The trained points a run chooses among: its grid and every rate its search added; under
    ``lr_seeds: first`` a later seed trains only at the rate its first seed chose."""
    w = run_wildcards(wildcards)
    path = RUN_PATTERN.format(**w)
    if not selects(w):
        return point_dirs(path, lr_grid(SPECS[path]))
    source = rate_source(w)
    lrs, _, last = searched_rates(source)
    if source is w:
        return point_dirs(path, lrs)
    # every rate of the seed this one reuses diverged: nothing to train; evaluate records the run
    # as failed (naming that seed) instead of failing the whole DAG in this input function
    return [] if last["chosen_lr"] is None else point_dirs(path, [float(last["chosen_lr"])])


def select_points(wildcards):
    """Round k of a run's search scores the grid and the rates rounds 0..k-1 added."""
    w = run_wildcards(wildcards)
    return point_dirs(RUN_PATTERN.format(**w), searched_rates(w, rounds=int(wildcards.round))[0])


def rate_choice(wildcards):
    """The select_lr round a run's rate comes from: its own last round, or (a later seed under
    ``lr_seeds: first``) its first seed's; none for a run at one rate."""
    w = run_wildcards(wildcards)
    return {"choice": searched_rates(rate_source(w))[1]} if selects(w) else {}


def score_path(task, model, run=None):
    """Where a scoring without training is written: the base's, or a run's adapter's on ``task``."""
    return f"{OUT}/scores/{task}/{model}/base.json" if run is None else f"{OUT}/scores/{task}/{run.path}.json"


def forgetting_input(wildcards):
    """A run on a task with ``forgetting`` set is also scored on that task's dev split, against
    the full-precision base's score there."""
    forget = SPECS[RUN_PATTERN.format(**wildcards)]["task_options"].get("forgetting")
    if not forget:
        return {}
    return {"forget_dev": tokenized(forget, wildcards.model, "dev"),
            "forget_base": score_path(forget, wildcards.model)}


def upstream_input(wildcards):
    """The finished run this run's method builds on, if any (a DAG edge between runs; the
    upstream run's learning rate is chosen first, so it is read from results/runs)."""
    up = upstream_run(SPECS[RUN_PATTERN.format(**wildcards)]["run"])
    return {"upstream": f"{OUT}/runs/{up.path}"} if up else {}


def run_dirs(root):
    return [f"{root}/{run.path}" for run in RUNS]


def rank_heatmaps():
    """One heatmap per run whose ranks differ between modules or change while it trains."""
    return [
        f"{OUT}/plots/rank_heatmaps/{run.path}.png"
        for run in RUNS
        if METHODS.get(run.method).rank_map or METHODS.get(run.method).rank_adaptive
    ]


def calibration_input(wildcards):
    """Training inputs of the task that calibrates a quantized base; none for a full-precision
    one, which is the same whatever a study calibrates on (so studies share it)."""
    if not BITS.get(wildcards.bits).quantized:
        return {}
    return {"calibration": tokenized(calibration_task(wildcards.model), wildcards.model, "train")}


def quant_heatmaps():
    """One quantization-error heatmap per quantized (model, bits) base."""
    return sorted(
        {
            f"{OUT}/plots/quant_diagnostics/{run.model}/{run.bits}.png"
            for run in RUNS
            if BITS.get(run.bits).quantized
        }
    )


def report_table(name, category, label, subcategory=None):
    """The HTML table ``name`` of the study as a report item (caption: report/<name>.rst)."""
    return report(f"{OUT}/tables/{name}.html", caption=f"../report/{name}.rst", category=category,
                  subcategory=subcategory, labels={"table": label})


def final_outputs():
    return [
        *TABLES,
        *FIGURES,
        *rank_heatmaps(),
        *quant_heatmaps(),
    ]
