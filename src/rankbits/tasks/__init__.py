"""Task registry: where a task's data comes from, how it is read, what kind of problem it is and
how it is scored.

Problem types:
    classification  text (and text_pair) -> label; scored by the task's label metrics
    causal_lm       a text stream cut into blocks of max_length tokens; scored by perplexity
    seq2seq         source text -> target text. On an encoder-decoder the source is encoded and
                    the target decoded; on a decoder-only model the prompt (source) is followed
                    by the target and the loss is taken on the target tokens only. Scored by
                    perplexity of the targets, or (``generate``) by ROUGE of generated text.

Normalised columns of a prepared split: ``idx``, ``text``, ``text_pair`` (classification, None
for single sentences), ``label`` (classification), ``target`` (seq2seq).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ..registry import Registry

PROBLEM_TYPES = ("classification", "causal_lm", "seq2seq")


class DataError(ValueError):
    """Bad or missing task data; the message names the file (and line)."""


@dataclass(frozen=True)
class Task:
    name: str
    problem_type: str
    # default file name under data_root/<name>/ for each split (tasks.<name>.files overrides),
    # and how to parse one
    local_files: dict[str, str]
    read_local: Callable[[Path], pd.DataFrame]
    # Hugging Face Hub source: (path, config name) and split names
    hub: tuple[str, str | None]
    hub_splits: dict[str, str]
    from_hub: Callable[[object], pd.DataFrame]
    primary_metric: str
    higher_is_better: bool = True
    # classification: (labels, predictions) -> {metric: value}
    metrics: Callable[[list[int], list[int]], dict[str, float]] | None = None
    num_labels: int = 0
    # seq2seq: score generated text (ROUGE) rather than the perplexity of the targets
    generate: bool = False
    # seq2seq: the source as the model reads it, by architecture ("decoder", "encoder-decoder");
    # "{text}" is the source column
    prompts: dict[str, str] = field(default_factory=lambda: {"decoder": "{text}", "encoder-decoder": "{text}"})
    # seq2seq on a decoder: the source is a conversation (JSON messages) that the model's chat
    # template renders, up to the assistant's turn (``tasks.configured``)
    chat: bool = False
    # option defaults for tasks.<name> (max_length, dev_samples, generation, ...)
    defaults: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"task {self.name}: problem_type must be one of {PROBLEM_TYPES}")

    def scoring(self) -> str:
        """"labels", "perplexity" or "rouge": what the evaluation computes."""
        if self.problem_type == "classification":
            return "labels"
        return "rouge" if self.generate else "perplexity"


TASKS: Registry[Task] = Registry("task", __name__)


def register(task: Task) -> Task:
    return TASKS.register(task.name, task)


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A data file's text; a byte that is not valid in ``encoding`` is a DataError naming the file,
    line and column (not a bare UnicodeDecodeError)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{path}:{line}: byte 0x{raw[exc.start]:02x} at column {column} is not valid "
                        f"{exc.encoding.upper()} (save the file as UTF-8)") from None


def text_lines(path: Path, encoding: str = "utf-8"):
    """The file's lines with their endings, as ``open(path, newline="")`` yields them."""
    import io

    return io.StringIO(read_text(path, encoding), newline="")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line of a JSON Lines file; each record must have
    the ``required`` string fields."""
    import json

    rows = []
    with text_lines(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not a JSON object ({exc.msg})") from None
            check_fields(path, lineno, rec, required)
            rows.append((lineno, rec))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def check_fields(path: Path, where, rec, required: tuple[str, ...]) -> None:
    if not isinstance(rec, dict):
        raise DataError(f"{path}:{where}: expected a JSON object, found {type(rec).__name__}")
    for key in required:
        if not isinstance(rec.get(key), str):
            raise DataError(f"{path}:{where}: field {key!r} is missing or not a string")


def text_frame(rows: list[dict]) -> pd.DataFrame:
    """A seq2seq or language-modelling split: idx, text, text_pair (None), target."""
    df = pd.DataFrame(rows, columns=["idx", "text", "target"])
    df.insert(2, "text_pair", None)
    return df.astype({"idx": "int64"})

# tasks a study declares (tasks.<name> in its config) are looked up by ``configured``, which the
# registry imports with every module here and which sets itself as TASKS.fallback
