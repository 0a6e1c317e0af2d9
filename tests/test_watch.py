"""logging: tensorboard — a training job's loss, rate, gradient norm, rank and memory as
TensorBoard events while it trains, read back with TensorBoard's own reader."""
from __future__ import annotations

import pytest

from conftest import needs_shared_data, small_spec

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard==2.21.0)")


@pytest.mark.slow
@needs_shared_data("sst2")
def test_a_training_job_writes_what_it_logs_as_tensorboard_events(sst2_tokens, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rankbits.train import train_run

    spec = small_spec("adalora", "32", budget=2, steps=6)  # log_every 2: three groups
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "t"),
                     watch_dir=str(tmp_path / "tb"))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/task_loss", "train/loss", "train/lr", "train/grad_norm", "train/total_rank"} <= tags
    loss = events.Scalars("train/task_loss")
    assert [e.step for e in loss] == list(range(1, 7))  # every step, as train_log.csv has them
    assert loss[-1].value == pytest.approx(info["final_task_loss"], rel=1e-6)
    total = events.Scalars("memory_mib/total")[0].value
    assert total == pytest.approx(info["training_memory"]["total_bytes"] / 2**20, rel=1e-6)


@pytest.mark.slow
def test_tensorboard_logging_through_the_workflow_dry_run(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(REPO), "-n",
                           "--config", "logging=tensorboard"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
