"""rankbits.jobserver: jobs run as forks of one warm server, with the job's own cwd, environment,
stdio and signals, and fail the way an in-process job fails."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow,  # each test starts a server, which imports torch and transformers
              pytest.mark.skipif(sys.platform != "linux", reason="the job server is Linux-only")]


@pytest.fixture
def env(tmp_path):
    """A client environment with its own owner process (and so its own server) and temp dir."""
    owner = subprocess.Popen(["sleep", "600"])
    e = {**os.environ, "RANKBITS_JOBSERVER_OWNER": str(owner.pid), "TMPDIR": str(tmp_path),
         "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    e.pop("SLURM_JOB_ID", None)
    yield e
    owner.kill()
    owner.wait()


def waiting_job(env, cwd, *args) -> subprocess.Popen:
    """A client whose job waits for SIGTERM; returns once the job says it is ready."""
    proc = subprocess.Popen([sys.executable, "-c", "from rankbits.jobserver import run\n"
                             f"run('jobserver_targets:wait_for_term', *{args!r})"],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def assert_ends(pid: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(what)


def job(env, call, cwd, **kw):
    code = f"from rankbits.jobserver import run\n{call}"
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kw)


def test_jobs_run_in_forks_of_one_warm_server(env, tmp_path):
    outs = []
    for k in range(2):
        cwd = tmp_path / f"w{k}"
        cwd.mkdir()
        proc = job({**env, "FOO": str(k)}, "run('jobserver_targets:report', 'r.json')", cwd)
        assert proc.returncode == 0, proc.stderr
        assert "hello from the job" in proc.stdout  # the job's stdout is the client's
        outs.append(json.loads((cwd / "r.json").read_text()))
    assert outs[0]["ppid"] == outs[1]["ppid"]  # one server
    assert outs[0]["pid"] != outs[1]["pid"]  # a fork each
    assert [o["foo"] for o in outs] == ["0", "1"]  # each job's own environment and cwd
    assert outs[1]["cwd"].endswith("w1")
    assert outs[0]["torch_loaded"]  # imported by the server before the fork


def test_a_failing_job_fails_the_client_with_its_message_and_logs_the_traceback(env, tmp_path):
    log = tmp_path / "job.log"
    proc = job(env, f"run('jobserver_targets:fail', log={str(log)!r})", tmp_path)
    assert proc.returncode == 1
    assert f"rankbits job failed ({log}): ValueError: boom" in proc.stderr
    assert "Traceback" in log.read_text() and "boom" in log.read_text()


def test_everything_the_job_writes_goes_to_its_log(env, tmp_path):
    # transformers' handler was made by the server's import, bound to the server's stderr
    log = tmp_path / "job.log"
    proc = job(env, f"run('jobserver_targets:warn_through_transformers', log={str(log)!r})", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "a warning for the log" in log.read_text() and "a line for the log" in log.read_text()
    assert "for the log" not in proc.stderr + proc.stdout


def test_sigterm_reaches_the_job(env, tmp_path):
    proc = waiting_job(env, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM


def test_the_server_exits_with_its_owner(env, tmp_path):
    assert job(env, "run('jobserver_targets:report', 'r.json')", tmp_path).returncode == 0
    server = json.loads((tmp_path / "r.json").read_text())["ppid"]
    owner = int(env["RANKBITS_JOBSERVER_OWNER"])
    os.kill(owner, signal.SIGKILL)
    os.waitpid(owner, 0)  # (snakemake's own parent reaps it; here that is this test)
    assert_ends(server, "the job server outlived its snakemake")


def test_without_an_owner_the_job_runs_in_the_script_process(env, tmp_path):
    env = {k: v for k, v in env.items() if k != "RANKBITS_JOBSERVER_OWNER"}
    proc = job(env, "import os\nrun('jobserver_targets:report', 'r.json')\nprint('client', os.getpid())", tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = int(proc.stdout.split("client")[1])
    assert json.loads((tmp_path / "r.json").read_text())["pid"] == client


def test_a_job_whose_client_is_killed_is_stopped(env, tmp_path):
    proc = waiting_job(env, tmp_path, "pid.txt")
    child = int((tmp_path / "pid.txt").read_text())
    proc.kill()  # SIGKILL: nothing is forwarded
    proc.wait()
    assert_ends(child, "the job outlived its killed client")


LISTENER = """
import os, socket, sys
out = open(sys.argv[2], "w")
if len(sys.argv) > 3:  # become another user before listening (SO_PEERCRED is taken at listen)
    os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[3]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\\0" + sys.argv[1]); s.listen(4); s.settimeout(60)
print("listening", flush=True)
conn, _ = s.accept(); conn.settimeout(3)
got = b""
try:
    while chunk := conn.recv(1 << 16):
        got += chunk
except OSError:
    pass
out.write(str(len(got)))
"""


def impostor(env, tmp_path, *as_uid) -> tuple[subprocess.Popen, object]:
    """A listener on the address the client will use for its server; it writes how many bytes it
    was sent. ``as_uid``: the user it listens as."""
    name = subprocess.run([sys.executable, "-c", "from rankbits.jobserver import server_name; print(server_name())"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    got = tmp_path / "impostor_got.txt"
    (tmp_path / "impostor.py").write_text(LISTENER)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "impostor.py"), name, str(got), *map(str, as_uid)],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "listening"
    return proc, got


def refused_and_ran_here(env, tmp_path, proc, got, reason: str):
    out = job(env, "import os\nrun('jobserver_targets:report', 'r.json')\nprint('client', os.getpid())", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "rankbits: job server refused (" in out.stderr and reason in out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["pid"] == int(out.stdout.split("client")[1])
    proc.wait(timeout=30)
    assert got.read_text() == "0"  # not a byte of the request (environment, job) was sent


def test_a_listener_that_is_not_the_server_is_refused_before_anything_is_sent(env, tmp_path):
    proc, got = impostor(env, tmp_path)
    refused_and_ran_here(env, tmp_path, proc, got, "is not a rankbits job server")


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a listener as another user needs root")
def test_a_listener_of_another_user_is_refused(env, tmp_path):
    proc, got = impostor(env, tmp_path, 65534)
    refused_and_ran_here(env, tmp_path, proc, got, "runs as uid 65534")


def test_lock_and_log_files_stay_out_of_a_directory_another_user_could_hold(env, tmp_path):
    """<tmp>/rankbits-<uid> made by someone else (here: a link to elsewhere) is not used."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / f"rankbits-{os.getuid()}").symlink_to(target)
    out = job(env, "run('jobserver_targets:report', 'r.json')", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "is not a private directory of this user" in out.stderr
    assert not list(target.iterdir())


def test_a_job_that_dies_without_a_result_says_how_and_leaves_a_trace(env, tmp_path):
    log = tmp_path / "crash.log"
    proc = job(env, f"run('jobserver_targets:crash', log={str(log)!r})", tmp_path)
    assert proc.returncode == 1
    assert "ended without a result: killed by signal 11 (SIGSEGV)" in proc.stderr, proc.stderr
    assert str(log) in proc.stderr
    text = log.read_text()
    assert "about to crash" in text and "Fatal Python error: Segmentation fault" in text
    assert "jobserver_targets.py" in text  # the Python stack of the crash, by faulthandler
    proc = job(env, "run('jobserver_targets:killed')", tmp_path)
    assert proc.returncode == 1 and "killed by signal 9 (SIGKILL)" in proc.stderr, proc.stderr


STRESS_CLIENT = """
import sys
from concurrent.futures import ThreadPoolExecutor
import subprocess
n, out = int(sys.argv[1]), sys.argv[2]
code = "import sys\\nfrom rankbits.jobserver import run\\nrun('jobserver_targets:touch', sys.argv[1])"
def one(k):
    p = subprocess.run([sys.executable, "-c", code, f"{out}/{k}.txt"], capture_output=True, text=True)
    return k, p.returncode, p.stderr[-300:]
with ThreadPoolExecutor(12) as pool:
    bad = [r for r in pool.map(one, range(n)) if r[1] != 0]
print(len(bad)); print(bad[:3])
"""


def test_hundreds_of_short_jobs_on_a_busy_machine_all_report_their_result(env, tmp_path):
    """The failure a new user met: a short job's result arrived in the same read as its pid and
    was thrown away ("ended without a result"). 300 short jobs, 12 at a time, while two CPU
    burners keep the machine busy: every one must succeed."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        out = tmp_path / "out"
        out.mkdir()
        job(env, "run('jobserver_targets:touch', 'warm.txt')", tmp_path)  # the server's imports
        (tmp_path / "stress.py").write_text(STRESS_CLIENT)
        proc = subprocess.run([sys.executable, str(tmp_path / "stress.py"), "300", str(out)], env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        for b in burners:
            b.kill()
    assert proc.stdout.splitlines()[0] == "0", proc.stdout + proc.stderr
    assert len(list(out.glob("*.txt"))) == 300


def test_a_job_log_ends_with_the_cpu_it_used_in_its_fork_and_in_its_own_process(env, tmp_path):
    """bench/study_profile.py reads these lines: the fork's CPU is the job's work (about the
    second it burned), the process line the client stub's own."""
    sys.path.insert(0, str(REPO / "bench"))
    from study_profile import job_cpu

    log = tmp_path / "job.log"
    proc = job(env, f"run('jobserver_targets:burn', 1.0, log={str(log)!r})", tmp_path)
    assert proc.returncode == 0, proc.stderr
    cpu = job_cpu(log)
    assert 0.9 <= cpu["fork"] < 3 and 0 < cpu["process"], log.read_text()
    alone = {k: v for k, v in env.items() if k != "RANKBITS_JOBSERVER_OWNER"}  # in the script's process
    proc = job(alone, f"run('jobserver_targets:burn', 1.0, log={str(log)!r})", tmp_path)
    assert proc.returncode == 0, proc.stderr
    cpu = job_cpu(log)
    assert "fork" not in cpu and cpu["process"] >= 0.9  # the whole process: imports and the job
