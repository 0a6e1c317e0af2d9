"""Resumable training: a run killed midway (SIGKILL: no warning; SIGTERM: SLURM's preemption
notice) and rerun ends with exactly the adapter, logs and metrics of an uninterrupted run."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, needs_shared_data, small_spec

pytestmark = [needs_shared_data("sst2"), pytest.mark.slow]

STEPS, EVERY = 40, 5
OPTIONS = {"adalora": {"tinit": 4, "tfinal": 8, "deltaT": 2},
           "grow": {"eval_every": 3, "patience": 1, "epsilon": 100.0, "val_samples": 16,
                    "freeze_and_thaw": 2, "new_rank_lr_mult": 0.5}}
TRAIN = """
import json, sys
from rankbits.train import train_run
spec, train, out, ckpt, every = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
train_run(spec, train, out, checkpoint_dir=ckpt, checkpoint_every=every)
"""


def train_in_subprocess(spec_file, train, out, ckpt, kill: signal.Signals | None):
    """Train in a child process; with ``kill``, send it once the first checkpoint exists."""
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(spec_file), str(train), str(out), str(ckpt),
                             str(EVERY)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if kill is not None:
        deadline = time.monotonic() + 120
        while not (ckpt / "checkpoint.pt").exists():
            assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        proc.send_signal(kill)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def comparable(info: dict) -> dict:
    """train_info without what legitimately differs between attempts: time and memory."""
    return {k: v for k, v in info.items() if k not in ("timing", "memory")}


def outputs(out: Path) -> dict:
    return {
        "train_info": comparable(json.loads((out / "train_info.json").read_text())),
        "log": (out / "train_log.csv").read_text(),
        "ranks": (out / "rank_history.csv").read_text(),
        "adapter": (out / "adapter" / "adapter_model.safetensors").read_bytes(),
    }


@pytest.mark.parametrize("method, kill", [("lora", signal.SIGKILL), ("adalora", signal.SIGKILL),
                                          ("adalora", signal.SIGTERM), ("grow", signal.SIGKILL)])
def test_a_killed_run_resumes_to_the_uninterrupted_result(method, kill, sst2_tokens, tmp_path):
    from rankbits.evaluate import evaluate_run
    from rankbits.train import train_run

    # AdaLoRA prunes between steps 4 and 32 of 40, so the kill lands inside its schedule; grow
    # (epsilon too large to ever count as improvement) grows 2 -> 4 -> 6 -> 8 at steps 3, 6, 9,
    # with new slices at half the learning rate and the old ones frozen for 2 steps after each
    spec = small_spec(method, budget=8 if method == "grow" else 2, steps=STEPS, lora_dropout=0.1,
                      methods={method: OPTIONS.get(method, {})})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    train = sst2_tokens / "tok_train.parquet"
    dev = str(sst2_tokens / "tok_dev.parquet")

    train_run(spec, str(train), str(tmp_path / "whole"))
    ckpt = tmp_path / "ckpt"
    code, err = train_in_subprocess(spec_file, train, tmp_path / "resumed", ckpt, kill)
    if kill == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:  # a checkpoint at the end of the current step, then exit 128 + 15
        assert code == 128 + signal.SIGTERM, err
        assert "stopped by SIGTERM" in err
    assert not (tmp_path / "resumed").exists()  # complete or absent
    import torch
    saved_at = torch.load(ckpt / "checkpoint.pt", weights_only=False)["step"]
    assert 0 < saved_at < STEPS

    code, err = train_in_subprocess(spec_file, train, tmp_path / "resumed", ckpt, None)
    assert code == 0, err
    assert not ckpt.exists()  # removed once the run is complete
    info = json.loads((tmp_path / "resumed" / "train_info.json").read_text())
    assert info["timing"]["resumed_at_step"] == saved_at

    whole, resumed = outputs(tmp_path / "whole"), outputs(tmp_path / "resumed")
    wi, ri = whole["train_info"], resumed["train_info"]
    assert {k: (wi[k], ri.get(k)) for k in wi if wi[k] != ri.get(k)} == {}
    assert resumed == whole
    m1 = evaluate_run(spec, str(tmp_path / "whole"), dev, str(tmp_path / "whole-run"))
    m2 = evaluate_run(spec, str(tmp_path / "resumed"), dev, str(tmp_path / "resumed-run"))
    assert m1["eval_info"]["metrics"] == m2["eval_info"]["metrics"]


def test_a_checkpoint_of_another_configuration_is_ignored(sst2_tokens, tmp_path):
    from rankbits.checkpoint import Checkpointer
    from rankbits.train import train_run

    spec = small_spec("lora", steps=6)
    ckpt = tmp_path / "ckpt"
    Checkpointer(str(ckpt), "some other config", 1).save({"step": 3})
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(tmp_path / "out"),
                     checkpoint_dir=str(ckpt), checkpoint_every=2)
    assert info["timing"]["resumed_at_step"] is None and info["steps"] == 6
    assert not ckpt.exists()


def test_a_finished_run_leaves_no_empty_checkpoint_folders(tmp_path):
    from rankbits.checkpoint import Checkpointer

    root = tmp_path / "results" / "default" / "checkpoints"
    a, b = (Checkpointer(str(root / "sst2/minilm/lora/2/32/seed0" / lr), "h", 1) for lr in ("lr0.001", "lr0.002"))
    for c in (a, b):
        c.save({"step": 1})
    a.remove()
    assert not (root / "sst2/minilm/lora/2/32/seed0/lr0.001").exists() and b.path.exists()
    b.remove()
    assert not root.exists() and (tmp_path / "results" / "default").is_dir()
