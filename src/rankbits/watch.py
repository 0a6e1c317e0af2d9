"""Watching a training job while it runs: with ``logging: tensorboard`` each job writes its loss,
learning rate, gradient norm and total rank every ``log_every`` steps, and its training memory at
the end, as TensorBoard event files under ``logs/<study>/tensorboard/<run>/lr<rate>/``.

    tensorboard --logdir logs/default/tensorboard

Off by default (``logging: none``); it changes no result and is not part of any run's settings.
"""
from __future__ import annotations
from .memory import PARTS

SCALARS = ("task_loss", "loss", "lr", "grad_norm", "total_rank")
PACKAGE = "tensorboard==2.21.0"


def available() -> bool:
    try:
        import tensorboard  # noqa: F401 (whether it is installed)
    except ImportError:
        return False
    return True


class Watch:
    """Writes a job's logged rows (``train.loop``'s groups) as they are flushed; does nothing
    without a folder."""

    def __init__(self, folder: str | None):
        self.writer = None
        if folder:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=folder)

    def rows(self, rows) -> None:
        if self.writer is None:
            return
        for step, *values in rows:
            for name, v in zip(SCALARS, values):
                self.writer.add_scalar(f"train/{name}", float(v), step)
        self.writer.flush()

    def close(self, step: int, training_memory: dict | None = None) -> None:
        if self.writer is None:
            return

        for part in (*PARTS, "total_bytes"):
            if part in (training_memory or {}):
                self.writer.add_scalar(f"memory_mib/{part.removesuffix('_bytes')}", training_memory[part] / 2**20, step)
        self.writer.close()
