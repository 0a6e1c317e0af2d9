"""Resumable training: a run's whole training state, saved every ``training.checkpoint_every``
optimizer steps and when the job is told it is about to be stopped (SIGTERM, SIGUSR1: SLURM sends
one before preemption or the time limit), and loaded by the next attempt of the same run.

A checkpoint holds the trainable parameters, optimizer and scheduler state, every RNG state, the
method's own state (e.g. AdaLoRA's importance scores), the step and the logs so far. Resuming
from it gives the same final adapter and metrics as an uninterrupted run, bit for bit on CPU
(tested). It is written atomically beside the run's outputs (never inside them, so Snakemake's
clean-up of a failed job leaves it) and is used only when its config hash matches the run's.
"""
from __future__ import annotations

import logging
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch

from .io import atomic_file

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
FILE = "checkpoint.pt"


class Stopped(SystemExit):
    """Raised (after a checkpoint is saved) when a stop signal arrived; exits 128 + signal."""

    def __init__(self, signum: int, step: int):
        super().__init__(128 + signum)
        self.signum, self.step = signum, step

    def __str__(self):
        return f"stopped by {signal.Signals(self.signum).name} after optimizer step {self.step}; " \
               f"checkpoint saved, a rerun resumes from it"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class Checkpointer:
    """Saves and loads one run's checkpoint in ``directory`` (None: checkpointing off) and turns
    SIGTERM / SIGUSR1 into a checkpoint at the end of the current step, then an exit."""

    def __init__(self, directory: str | None, config_hash: str, every: int):
        self.path = Path(directory) / FILE if directory else None
        self.config_hash, self.every = config_hash, int(every or 0)
        self.signum: int | None = None
        self._previous = {}

    def load(self, device) -> dict | None:
        """The saved state, tensors on ``device``; None if there is none for this config."""
        if self.path is None or not self.path.exists():
            return None
        state = torch.load(self.path, map_location=device, weights_only=False)
        if state.get("config_hash") != self.config_hash:
            log.warning("ignoring %s: it was written for another configuration", self.path)
            return None
        log.info("resuming from %s (optimizer step %d)", self.path, state["step"])
        return state

    def due(self, step: int) -> bool:
        """Whether to save after optimizer step ``step`` (counting from 1)."""
        return self.path is not None and (self.signum is not None
                                          or (self.every > 0 and step % self.every == 0))

    def save(self, state: dict) -> None:
        for attempt in (1, 2):  # a run finishing beside this one may remove an emptied parent
            try:
                with atomic_file(self.path) as tmp:
                    torch.save({**state, "config_hash": self.config_hash, "rng": rng_state()}, tmp)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if self.signum is not None:
            stop = Stopped(self.signum, state["step"])
            log.warning("%s", stop)
            raise stop

    def remove(self) -> None:
        """Remove the checkpoint, then every folder above it that is left empty, up to and
        including the study's ``checkpoints`` folder (a finished study leaves no empty tree)."""
        if self.path is None:
            return
        shutil.rmtree(self.path.parent, ignore_errors=True)
        for parent in self.path.parent.parents:
            try:
                parent.rmdir()  # only when empty: another run's checkpoint keeps it
            except OSError:
                break
            if parent.name == "checkpoints":
                break

    def _on_signal(self, signum, frame):
        log.warning("received %s: saving a checkpoint after this step", signal.Signals(signum).name)
        self.signum = signum

    def __enter__(self):
        if self.path is not None:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False
