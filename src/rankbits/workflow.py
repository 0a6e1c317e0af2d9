"""Glue for the thin scripts under workflow/scripts/."""
from __future__ import annotations

import contextlib
import logging
import os
import resource
import sys
import traceback

# set by the Snakefile's onstart handler; jobs inherit it (locally and through sbatch)
KEEP_GOING = "RANKBITS_KEEP_GOING"
# the descriptor of the terminal snakemake runs in, inside a job whose output goes to its log
CONSOLE_FD = "RANKBITS_CONSOLE_FD"


def console(message: str) -> None:
    """One line for the job's log and, when the job's output goes to a log, for the terminal
    too (a job's start and result lines: a user sees progress without opening logs)."""
    print(message, flush=True)
    fd = os.environ.get(CONSOLE_FD)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(int(fd), (message + "\n").encode())


def finished_message(study: str, out: str, configfiles=()) -> str:
    """What the end of a successful run prints: where the answer is (the study's folder ``out``)
    and how to build the report."""
    cf = "".join(f" --configfile {os.path.relpath(f)}" for f in configfiles)
    brief = f"{out}/tables/answer.md" if os.path.exists(f"{out}/tables/answer.md") else f"{out}/tables/verdict.md"
    with open(brief) as fh:
        verdict = fh.read().rstrip()
    return (f"\nrankbits: study '{study}' done. The answer (in full: {out}/tables/verdict.md):\n\n"
            f"{verdict}\n\nAsk it for a memory budget:  rankbits recommend --results {out} "
            f"--memory-mb <MiB>\nBuild the report:            snakemake{cf} --report {out}/report.html\n")


def keep_going() -> bool:
    """Whether Snakemake runs with --keep-going (a diverged run is then recorded, not fatal)."""
    return os.environ.get(KEEP_GOING) == "1"


CPU_LINE = "rankbits cpu seconds"  # how a job's log ends: bench/study_profile.py reads it


def _cpu(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds() -> float:
    """User + system CPU of this process and of the children it waited for."""
    return _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)


def record_cpu(path: str | None, where: str) -> None:
    """Append this process's CPU to the job's log (``where``: "process" for the job's own
    process, "fork" for its fork of the job server)."""
    if path:
        with contextlib.suppress(OSError), open(path, "a") as fh:
            fh.write(f"{CPU_LINE} ({where}): {cpu_seconds():.3f}\n")


def record_snakemake_cpu(path: str) -> None:
    """Snakemake's own process CPU (``self``) and that of the job processes it waited for
    (``children``), at the end of a run."""
    import json

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"self": _cpu(resource.RUSAGE_SELF), "children": _cpu(resource.RUSAGE_CHILDREN)}, fh)


def local_scheduling(scheduler) -> None:
    """Drop Snakemake's job-submission rate limit (``--max-jobs-per-timespan``, default
    ``100/1s``) from a local run's scheduler (``workflow.scheduler``, at onstart).

    With the limit, every scheduling pass that finds jobs ready starts a timer that wakes the
    scheduler one timespan later for another pass, which starts another timer: each job that
    finishes begins one more such chain, so while jobs wait for a core the passes a second grow
    with the jobs finished, each checking every ready job's inputs again (``python
    bench/scheduler_poll.py``: a study's Snakemake spent its CPU there). A local run starts a
    job when a running one ends, which wakes the scheduler anyway; the limit is meant for
    submitting to a cluster, where it stays (call this for the local executor only)."""
    if getattr(scheduler, "job_rate_limiter", None) is not None:
        scheduler.job_rate_limiter = None


def logged(smk):
    """``logged_to`` the job's log file (Snakemake's ``log:``), if it has one."""
    return logged_to(smk.log[0] if smk.log else None)


@contextlib.contextmanager
def logged_to(path: str | None):
    """Send the job's output to its log file; on failure keep the traceback there and end the
    job with the error's one-line message (which Snakemake shows)."""
    if path is None:
        yield
        return
    os.environ.setdefault(CONSOLE_FD, "2")  # the descriptor still holds the terminal
    with open(path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        logging.getLogger().addHandler(handler)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield
        except Exception as exc:  # noqa: BLE001 — reported, then the job fails
            traceback.print_exc(file=fh)
            msg = f"{type(exc).__name__}: {exc}"
        else:
            msg = None
        finally:
            logging.getLogger().removeHandler(handler)
    record_cpu(path, "process")
    if msg is not None:
        sys.exit(f"rankbits job failed ({path}): {msg}")
