"""The study through profiles/slurm on a real one-node SLURM cluster (slurmctld, slurmd, munge
from Debian, started by .ci/slurm/start.sh and stopped by PID afterwards), CPU-only resources;
its results equal a local run's. Needs root and apt (or the packages already installed)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, needs_shared_data
from test_faults import without_volatile
from test_workflow import snakemake, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow, needs_shared_data("sst2")]
SCRIPTS = REPO / ".ci" / "slurm"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (to start munged, slurmctld and slurmd)")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("neither SLURM nor apt-get (to install it) is available")
    env = {**os.environ, "SLURM_PIDFILE": str(tmp_path_factory.mktemp("slurm") / "pids")}
    proc = subprocess.run([str(SCRIPTS / "start.sh")], capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0 and not shutil.which("slurmctld"):
        pytest.skip(f"could not install SLURM: {proc.stderr[-500:]}")
    try:
        assert proc.returncode == 0, f"the local SLURM cluster did not start:\n{proc.stderr[-3000:]}"
        yield
    finally:
        subprocess.run([str(SCRIPTS / "stop.sh")], capture_output=True, text=True, timeout=120, env=env)


def slurm_args():
    """profiles/slurm (as the workflow profile, in place of profiles/default) with CPU-only
    resources sized for this machine; squeue for job status (no accounting here) and short
    polling so the test is quick."""
    return ["--workflow-profile", str(REPO / "profiles" / "slurm"),
            "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "3",
            "--set-threads", "train=1", "evaluate=1", "prepare_base=1",
            "--set-resources", *(f"{r}:{k}" for r in ("train", "evaluate", "prepare_base")
                                 for k in ("gpu=0", "mem_mb=3000", "runtime=20"))]


def test_study_through_slurm_matches_a_local_run(cluster, tmp_path):
    cfg = tiny_config()
    cfg["study"]["methods"] = ["lora"]
    cfg["tasks"]["sst2"].update(max_train_samples=160, max_eval_samples=64)
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir(), remote.mkdir()
    snakemake(local, config=cfg)

    (remote / "config.yaml").write_text(json.dumps(cfg))
    cmd = ["timeout", "-k", "10", "900", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
           "-d", str(remote), "--configfile", str(remote / "config.yaml"), *slurm_args()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=960)
    assert proc.returncode == 0, f"{proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    # the compute jobs went through sbatch; the rules that may download ran where Snakemake runs
    submitted = set(re.findall(r"has been submitted with SLURM jobid \d+ \(log: \S*?rule_(\w+)/",
                               proc.stderr + proc.stdout))
    assert {"prepare_base", "train", "evaluate", "aggregate"} <= submitted, proc.stderr[-3000:]
    assert not submitted & {"prepare_data", "tokenize"}

    run = "results/default/runs/sst2/minilm/lora/2/32/seed0/metrics.json"
    a, b = (json.loads((d / run).read_text()) for d in (local, remote))
    assert without_volatile(a) == without_volatile(b)
    tables = [pd.read_csv(d / "results/default/tables/summary.csv") for d in (local, remote)]
    same = [c for c in tables[0].columns if "seconds" not in c and "rss" not in c]  # clocks differ
    assert tables[0][same].equals(tables[1][same])
