"""Task registry: where a task's data comes from, how it is read, and how it is scored."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..registry import Registry


class DataError(ValueError):
    """Bad or missing task data; the message names the file (and line)."""


@dataclass(frozen=True)
class Task:
    name: str
    problem_type: str  # "classification" (more kinds come with their tasks)
    num_labels: int
    # file name under data_root/<name>/ for each split, and how to parse it
    local_files: dict[str, str]
    read_local: Callable[[Path], pd.DataFrame]
    # Hugging Face Hub source: (path, config name) and split names
    hub: tuple[str, str | None]
    hub_splits: dict[str, str]
    from_hub: Callable[[object], pd.DataFrame]
    metrics: Callable[[list[int], list[int]], dict[str, float]]
    primary_metric: str
    higher_is_better: bool = True
    splits: tuple[str, ...] = ("train", "dev")


TASKS: Registry[Task] = Registry("task", __name__)


def register(task: Task) -> Task:
    return TASKS.register(task.name, task)
