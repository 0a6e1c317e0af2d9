import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_adalora_overhead_bench_runs_quick():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "adalora_overhead.py"), "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratios = [float(line.split(":")[1].split()[0]) for line in proc.stdout.splitlines()
              if line.startswith("ratio")]
    assert len(ratios) == 3 and all(r > 0 for r in ratios)  # no timing assertion: machines are noisy


def bench(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / name), "--quick", *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def ratio(out: str) -> float:
    line = next(x for x in out.splitlines() if x.startswith("ratio"))
    return float(line.split(":")[1].split()[0])


@pytest.mark.slow
def test_throughput_bench_runs_quick():
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "sst2").is_dir():
        pytest.skip(f"{SHARED_DATA / 'sst2'} is absent")
    assert ratio(bench("throughput.py", "--data_root", str(SHARED_DATA))) > 0  # no timing assertion


@pytest.mark.slow
def test_dag_scale_bench_runs_quick():
    out = bench("dag_scale.py")
    assert "runs=100 " in out and ratio(out) > 0


@pytest.mark.slow
def test_job_overhead_bench_runs_quick(tmp_path):
    out = bench("job_overhead.py", "--results", str(tmp_path))
    assert "start-up per job in its own interpreter" in out and "no finished runs" in out
    if sys.platform == "linux":
        assert "through the job server" in out


@pytest.mark.slow
def test_method_cost_bench_runs_quick():
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "sst2").is_dir():
        pytest.skip(f"{SHARED_DATA / 'sst2'} is absent")
    out = bench("method_cost.py", "--data_root", str(SHARED_DATA))
    rows = [line for line in out.splitlines() if "ms/step" in line]
    assert len(rows) == 2 and "ratio 1.00" in rows[0]  # LoRA fp32 is the reference; no timing assertion


@pytest.mark.slow
def test_allocation_solve_bench_runs_quick():
    out = bench("allocation_solve.py")
    lines = [x for x in out.splitlines() if "proven optimal" in x]
    assert len(lines) == 3 and all("proven optimal: True" in x for x in lines)  # no timing assertion


@pytest.mark.slow
def test_local_runs_do_not_poll_the_scheduler():
    """Snakemake's job-rate limit wakes its scheduler every second per finished job; the workflow
    drops it on local runs (rankbits.workflow.local_scheduling): no timed wake-up at all."""
    out = bench("scheduler_poll.py")
    wakeups = {line.split("snakemake CPU")[0].strip(): float(line.rsplit(" ", 1)[1])
               for line in out.splitlines() if "timed wake-ups" in line}
    assert wakeups["Snakemake's default"] > 0  # the bench sees the wake-ups it counts
    assert wakeups["rankbits (local_scheduling)"] == 0
