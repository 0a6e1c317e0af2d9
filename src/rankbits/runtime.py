"""Facts about where a run ran: device, versions, commit, memory, time."""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

from .jobserver import FORK
from .config import Run

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets",
            "scikit-learn", "pandas", "snakemake", "rankbits")


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device: 'cuda' was configured but torch sees no CUDA device")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("device: 'mps' was configured but torch sees no MPS device")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class OutOfMemory(MemoryError):
    pass


@contextlib.contextmanager
def oom_advice(what: str, hp: dict, max_length: int | None = None):
    """Turn a CUDA out-of-memory error into one line naming the settings that lower the peak."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        raise OutOfMemory(
            f"{what}: CUDA out of memory. Lower training.batch_size (now {hp['batch_size']}) or "
            f"training.eval_batch_size (now {hp['eval_batch_size']}), tasks.<task>.max_length "
            f"(now {max_length}), or use a lower bit-width (study.bits: \"4\"); on a cluster, ask "
            f"for a larger GPU (profiles/slurm: gpu_model). Original error: {str(exc).splitlines()[0]}"
        ) from exc


def advises_on_oom(doing: str):
    """Decorate ``f(spec, ...)`` (a training or evaluation of one run) with ``oom_advice``."""
    def wrap(f):
        @functools.wraps(f)
        def inner(spec: dict, *args, **kwargs):
            what = Run(**spec["run"]).path if "run" in spec else f"{spec['task']}/{spec['model']}"
            with oom_advice(f"{doing} {what}", spec["training"],
                            spec["task_options"]["max_length"]):
                return f(spec, *args, **kwargs)
        return inner
    return wrap


def versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def device_info(device: torch.device) -> dict:
    info = {"type": device.type, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def git_commit(path: str | os.PathLike = ".") -> str | None:
    """The workflow's commit, with ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb if sys.platform == "darwin" else kb * 1024)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, int | str | None]:
    """Peak memory so far. ``peak_rss_of``: in a fork of the job server (``rankbits.jobserver``)
    the RSS counts the shared library pages the job itself touched, not all the server mapped,
    so it reads lower than in a job's own interpreter; the two are not compared."""
    out = {"peak_rss_bytes": peak_rss_bytes(),
           "peak_rss_of": "job-server fork" if os.environ.get(FORK) else "own process",
           "cuda_max_allocated_bytes": None, "cuda_max_reserved_bytes": None}
    if device.type == "cuda":
        out["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
        out["cuda_max_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
    return out


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
