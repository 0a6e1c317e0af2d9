"""rankbits plan: training memory predicted from the model's config on the meta device (no
weights) against what a real run measured of itself, part by part, on CPU."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, base_maker, needs_shared_data, small_spec

from rankbits.config import Run
from rankbits.plan import job_mib, predict, too_big


@pytest.mark.slow
@needs_shared_data("sst2")
@pytest.mark.parametrize("method, bits, checkpointing", [("lora", "32", False), ("lora", "4", False),
                                                         ("lora", "8", False), ("adalora", "32", False),
                                                         ("lora", "32", True)])
def test_the_plan_matches_what_a_run_measures(method, bits, checkpointing, sst2_tokens, tmp_path, tmp_path_factory):
    """Every part within 1% (activations within 3%: the real batch is padded, the plan's is not)
    at the batch shape the run measured, and the plan's default batch (max_length) is an upper
    bound. LoRA dropout 0.1 (the default), so the 8-bit layers' kept inputs are extra tensors."""
    from rankbits.train import train_run

    base = base_maker(tmp_path_factory, sst2_tokens, "cpu")(bits) if bits != "32" else None
    spec = small_spec(method, bits, budget=4, steps=2, gradient_checkpointing=checkpointing)
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "t"), base_dir=base and str(base))
    measured = info["training_memory"]
    run = Run(**spec["run"])
    p = predict(run, spec, "cpu", tuple(measured["activation_batch_shape"]))
    for part in ("base_weights", "trainable_weights", "gradients"):
        assert p.parts[part] == pytest.approx(measured[part], rel=0.01), part
    assert p.parts["optimizer_state"] == pytest.approx(measured["optimizer_state"], rel=0.01)
    assert p.parts["activations"] == pytest.approx(measured["activations"], rel=0.03)
    assert predict(run, spec, "cpu").parts["activations"] >= 0.97 * measured["activations"]


def test_training_time_is_estimated_from_step_times_measured_before(tmp_path):
    import pandas as pd

    from rankbits.plan import Prediction, step_history, wall_estimate
    from rankbits.record import STEP_SECONDS

    pd.DataFrame({"task": ["sst2"] * 3, "model": ["minilm"] * 3, "method": ["lora"] * 3, "budget": [8] * 3,
                  "bits": [4] * 3, STEP_SECONDS: [0.4, 0.5, 0.6]}).to_csv(tmp_path / "runs.csv", index=False)
    history = step_history([str(tmp_path / "runs.csv")])
    assert history[("sst2", "minilm", "lora", 8, "4")][0] == 0.5
    known = Prediction(("sst2", "minilm", "lora", 8, "4"), {}, 0, [16, 64], [], jobs=5, steps=60)
    unknown = Prediction(("sst2", "minilm", "adalora", 8, "4"), {}, 0, [16, 64], [], jobs=5, steps=60)
    lines = wall_estimate([known, unknown], history, at_once=2)
    assert "5 job(s) x 60 steps x 500 ms = 2.5 min" in lines[1]
    assert "in all 2.5 min of training, about 1.2 min with 2 at once; 1 arm(s) never measured" in lines[-1]
    assert wall_estimate([unknown], history, 2) == []


@pytest.mark.slow
def test_a_job_that_cannot_fit_names_the_settings_to_change(validated):
    from rankbits.config import one_run_spec

    from conftest import SCHEMA

    spec = one_run_spec(Run("sst2", "minilm", "lora", 8, "32", 0), SCHEMA, {"batch_size": 16}, None)
    p = predict(Run(**spec["run"]), spec, "cuda")
    assert p.parts["base_weights"] > 80 * 2**20 and p.parts["activations"] > p.parts["base_weights"]
    assert too_big([p], job_mib(p) + 1) == []
    [line] = too_big([p], 700)
    assert "needs" in line and "of the GPU's 700" in line and "activations" in line
    assert "training.batch_size" in line and "training.gradient_checkpointing: true" in line
    out = subprocess.run([sys.executable, "-m", "rankbits.cli", "plan", "--gpu-mib", "700"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "DOES NOT FIT" in out.stdout and "lower training.batch_size" in out.stderr
    fits = subprocess.run([sys.executable, "-m", "rankbits.cli", "plan", "--gpu-mib", "81559"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert fits.returncode == 0 and "LoRA @ NF4+DQ r=8" in fits.stdout and "at once" in fits.stdout, fits.stderr
    from rankbits.plan import plan

    arms = plan(validated, "cpu")
    # the default study: 3 rates for seed 0, the chosen one for seeds 1 and 2
    assert len(arms) == 8 and {p.jobs for p in arms} == {5} and {p.steps for p in arms} == {50}


@pytest.mark.slow
def test_on_cuda_jobs_ask_for_their_predicted_gpu_memory_and_a_study_that_cannot_fit_stops_at_start_up(tmp_path):
    """A dry run with device=cuda (the plan needs no GPU): every training job asks for its arm's
    plan, a prepared base for the whole GPU; a GPU too small for an arm stops the study naming it."""
    def dry(gpu_mib):
        return subprocess.run(["snakemake", "-n", "--config", "device=cuda", f"gpu_mib={gpu_mib}"], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
    small = dry(700)
    assert small.returncode != 0 and "arms that cannot fit the GPU" in small.stdout + small.stderr
    assert "LoRA @ NF4+DQ r=8 needs" in small.stdout + small.stderr
    ok = dry(81559)
    assert ok.returncode == 0, ok.stderr[-2000:]
    asked = {int(x) for x in __import__("re").findall(r"gpu_mib=(\d+), mem_mb", ok.stdout)}
    assert asked and all(700 < x < 1000 for x in asked), asked  # MiniLM's jobs: well under 1 GiB each
    assert "gpu=1, gpu_mib=81559" in ok.stdout  # preparing a base takes the GPU whole


@pytest.mark.slow
@needs_shared_data("sst2")
def test_the_gpu_check_script_runs_dry_on_a_cpu(tmp_path):
    """bench/gpu_check.sh, ready before a GPU is: its dry mode plans config/studies/gpu.yaml for an
    80 GB GPU, dry-runs the study on CUDA settings and makes the memory model's inputs."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), str(out), "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    assert summary.count("rc=0") == 4 and "dry run: nothing trained" in summary, summary
    plan = (out / "plan.txt").read_text()
    assert "alpaca / smollm2-135m LoRA @ int8 r=8" in plan and "DOES NOT FIT" not in plan
    assert "train" in (out / "study_dry.log").read_text()
