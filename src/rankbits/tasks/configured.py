"""Tasks declared in a study's configuration, not in the registry:

    tasks:
      reviews:                        # a labelled CSV / TSV / JSONL / Parquet file per split
        problem: classification
        files: {train: /data/reviews/train.csv, dev: /data/reviews/test.csv}
        text: [review]                # one column, or two for sentence pairs
        label: sentiment              # strings or integers; the label set is read from train
      support-chat:                   # instruction tuning, loss on the responses only
        problem: instruction
        files: {train: /data/chat.jsonl}
        dev_samples: 200
        messages: messages            # chat records (the tokenizer's chat template renders them;
                                      # every assistant turn is a target), or prompt: / response:
      notes:
        problem: causal_lm
        files: {train: notes/train.txt, dev: notes/test.txt}

``files`` are absolute or relative to ``data_root/<task>/``; ``hub: {path, name, splits,
columns}`` reads a Hub dataset instead. Everything is checked before any job starts
(``declare``): a missing file, a column that is not there, a label column with one class, an
empty split, a chat record without an assistant turn — each one line naming the file (and line).
The declared tasks reach every job through the environment (``RANKBITS_TASKS``), with the label
set read from train, so a job never re-derives it.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pandas as pd

from .. import metrics
from ..errors import ConfigError
from . import TASKS, DataError, Task, read_text, text_frame

ENV = "RANKBITS_TASKS"
PROBLEMS = {"classification": "classification", "instruction": "seq2seq", "causal_lm": "causal_lm"}
TABLES = {".csv": ",", ".tsv": "\t"}


def is_declared(opts: dict) -> bool:
    return "problem" in opts


def split_path(name: str, opts: dict, data_root: str | None, split: str) -> Path | None:
    f = (opts.get("files") or {}).get(split)
    if f is None:
        return None
    p = Path(f).expanduser()
    if p.is_absolute():
        return p
    if not data_root:
        raise ConfigError(f"tasks.{name}.files.{split}: {f} is relative to data_root/{name}/, and data_root "
                          f"is null; give an absolute path or set data_root")
    return Path(data_root).expanduser() / name / p


def read_table(path: Path) -> pd.DataFrame:
    """A data file by its extension: .csv, .tsv, .jsonl / .json (JSON Lines), .parquet."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    ext = path.suffix.lower()
    try:
        if ext in TABLES:
            return pd.read_csv(path, sep=TABLES[ext], dtype=str, keep_default_na=False, encoding="utf-8")
        if ext == ".parquet":
            return pd.read_parquet(path)
        if ext in (".jsonl", ".json"):
            return pd.DataFrame([rec for _, rec in json_records(path)])
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as {ext[1:]} ({exc})") from None
    raise DataError(f"{path}: unknown file type {ext!r}; use .csv, .tsv, .jsonl or .parquet")


def json_records(path: Path) -> list[tuple[int, dict]]:
    """(line, record) of a JSON Lines file (a .json file holding one array is read too)."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            return [(i + 1, r) for i, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not a JSON object ({exc.msg})") from None
    return out


def columns_of(opts: dict) -> list[str]:
    if opts["problem"] == "classification":
        text = opts.get("text") or ["text"]
        return [*([text] if isinstance(text, str) else text), opts.get("label") or "label"]
    if opts["problem"] == "causal_lm":
        return []
    if opts.get("messages"):
        return [opts["messages"]]
    return [opts.get("prompt") or "prompt", opts.get("response") or "response"]


def need_columns(path: Path, df: pd.DataFrame, wanted: list[str], name: str) -> None:
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column(s) {missing} (tasks.{name}); columns found: {list(df.columns)}")


def frame_of(name: str, opts: dict, df: pd.DataFrame, path: Path, labels: list | None) -> pd.DataFrame:
    """A configured task's rows in the normalised columns (idx, text, text_pair, label / target)."""
    if df.empty:
        raise DataError(f"{path}: no data rows (tasks.{name})")
    problem = opts["problem"]
    if problem == "causal_lm":
        return text_frame([{"idx": i, "text": t, "target": None} for i, t in enumerate(df["text"])])
    need_columns(path, df, columns_of(opts), name)
    if problem == "classification":
        text = opts.get("text") or ["text"]
        text = [text] if isinstance(text, str) else list(text)
        label = opts.get("label") or "label"
        index = {str(v): i for i, v in enumerate(labels or [])}
        unknown = sorted({str(v) for v in df[label]} - set(index))
        if unknown and all(str(v).isdigit() and int(v) < len(index) for v in df[label]):
            index, unknown = {str(i): i for i in range(len(index))}, []  # class numbers (a Hub ClassLabel)
        if unknown:
            raise DataError(f"{path}: label(s) {unknown[:5]} in column {label!r} are not in train's label set "
                            f"{sorted(index)}")
        out = pd.DataFrame({"idx": range(len(df)), "text": df[text[0]].astype(str).str.strip(),
                            "text_pair": df[text[1]].astype(str).str.strip() if len(text) > 1 else None,
                            "label": [index[str(v)] for v in df[label]]})
        return out.astype({"idx": "int64", "label": "int64"})
    if opts.get("messages"):
        return chat_frame(name, opts, df, path)
    prompt, response = opts.get("prompt") or "prompt", opts.get("response") or "response"
    return text_frame([{"idx": i, "text": str(p), "target": str(r)}
                       for i, (p, r) in enumerate(zip(df[prompt], df[response]))])


def chat_frame(name: str, opts: dict, df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per assistant turn: the conversation before it (JSON messages, rendered by the
    model's chat template when tokenized) and the turn as the target: the loss falls on every
    assistant turn and nothing else."""
    rows, field = [], opts["messages"]
    lines = df["_line"] if "_line" in df else range(1, len(df) + 1)
    for lineno, msgs in zip(lines, df[field]):
        where = f"{path}:{lineno}"
        if not isinstance(msgs, (list, tuple)) or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                          and isinstance(m.get("content"), str) for m in msgs):
            raise DataError(f"{where}: {field!r} must be a list of {{role, content}} messages")
        turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        if not turns:
            raise DataError(f"{where}: chat record without an assistant turn (nothing to train on)")
        for i in turns:
            rows.append({"idx": len(rows), "text": json.dumps(list(msgs[:i])), "target": msgs[i]["content"]})
    return text_frame(rows)


def chat_prompt(tokenizer, text: str) -> str:
    """A chat task's source as the model reads it: its template, up to the assistant's turn."""
    return tokenizer.apply_chat_template(json.loads(text), tokenize=False, add_generation_prompt=True)


def read_file(name: str, opts: dict, path: Path, labels: list | None) -> pd.DataFrame:
    if opts["problem"] == "causal_lm":
        if path.suffix.lower() in (".txt", ".raw", ".tokens", ""):
            lines = [ln.strip() for ln in read_text(path).splitlines() if ln.strip()]
            return frame_of(name, opts, pd.DataFrame({"text": lines}), path, labels)
        df = read_table(path)
        need_columns(path, df, [opts.get("text") or "text"], name)
        return frame_of(name, opts, df.rename(columns={opts.get("text") or "text": "text"}), path, labels)
    if path.suffix.lower() in (".jsonl", ".json"):
        records = json_records(path)
        df = pd.DataFrame([r for _, r in records])
        df["_line"] = [n for n, _ in records]
    else:
        df = read_table(path)
    return frame_of(name, opts, df, path, labels)


def label_set(name: str, opts: dict, train: pd.DataFrame, path: Path) -> list:
    label = opts.get("label") or "label"
    need_columns(path, train, [label], name)
    values = sorted({str(v) for v in train[label]}, key=lambda v: (not v.lstrip("-").isdigit(),
                                                                  int(v) if v.lstrip("-").isdigit() else 0, v))
    if len(values) < 2:
        raise ConfigError(f"tasks.{name}.label: column {label!r} of {path} has one class ({values}); "
                          f"classification needs two or more")
    return values


def task_of(name: str, opts: dict, labels: list | None) -> Task:
    problem = opts["problem"]
    if problem == "classification":
        primary = opts.get("metric") or "accuracy"
        if primary not in ("accuracy", "f1_macro"):
            raise ConfigError(f"tasks.{name}.metric: {primary!r}; classification reports accuracy and f1_macro")
        score, higher = metrics.accuracy_and_macro_f1, True
    else:
        primary = opts.get("metric") or "perplexity"
        if primary != "perplexity":
            raise ConfigError(f"tasks.{name}.metric: {problem} tasks report perplexity")
        score, higher = None, False
    hub = opts.get("hub") or {}
    files = {k: str(v) for k, v in (opts.get("files") or {}).items()}
    return Task(
        name=name, problem_type=PROBLEMS[problem], local_files=files,
        read_local=lambda path: read_file(name, opts, Path(path), labels),
        hub=(hub.get("path", ""), hub.get("name")), hub_splits=hub.get("splits") or {"train": "train"},
        from_hub=lambda ds: frame_of(name, opts, ds.to_pandas().rename(
            columns={v: k for k, v in (hub.get("columns") or {}).items()}), Path(hub.get("path", "hub")), labels),
        primary_metric=primary, higher_is_better=higher, metrics=score,
        num_labels=len(labels or []), chat=bool(opts.get("messages")),
        defaults={"max_length": 128 if problem == "classification" else 512, "max_target_length": 256},
        description=f"declared in the study ({problem})")


@functools.lru_cache(maxsize=None)
def _task(name: str, entry_json: str) -> Task:
    entry = json.loads(entry_json)
    return task_of(name, entry["options"], entry.get("labels"))


def lookup(name: str) -> Task | None:
    """``TASKS``' fallback: a task this study declared (``declare``), else None."""
    entry = json.loads(os.environ.get(ENV) or "{}").get(name)
    return None if entry is None else _task(name, json.dumps(entry, sort_keys=True))


TASKS.fallback = lookup


def declare(tasks: dict, registered: set[str], data_root: str | None) -> None:
    """Check each declared task's data before any job starts, read the label set of a
    classification task from train, and hand the tasks to this process and its jobs."""
    out = {}
    for name, opts in (tasks or {}).items():
        if not is_declared(opts):
            continue
        if name in registered:
            raise ConfigError(f"tasks.{name}.problem: {name!r} is a registered task; declare yours under "
                              f"another name")
        check_keys(name, opts)
        labels = None
        try:
            labels = check_data(name, opts, data_root)
        except DataError as exc:
            raise ConfigError(f"tasks.{name}: {exc}") from None
        out[name] = {"options": {k: v for k, v in opts.items() if k != "training"}, "labels": labels}
    os.environ[ENV] = json.dumps(out, sort_keys=True)


def check_keys(name: str, opts: dict) -> None:
    problem = opts["problem"]
    if problem not in PROBLEMS:
        raise ConfigError(f"tasks.{name}.problem: {problem!r}; one of {', '.join(PROBLEMS)}")
    if not opts.get("files") and not opts.get("hub"):
        raise ConfigError(f"tasks.{name}: give files ({{train: ..., dev: ...}}) or hub")
    if not (opts.get("files") or {}).get("dev") and not opts.get("dev_samples") and not (
            (opts.get("hub") or {}).get("splits") or {}).get("dev"):
        raise ConfigError(f"tasks.{name}: no test split: set files.dev, or dev_samples (rows of train held out)")
    if problem == "instruction" and opts.get("messages") and (opts.get("prompt") or opts.get("response")):
        raise ConfigError(f"tasks.{name}: give messages, or prompt and response, not both")
    text = opts.get("text")
    if problem == "classification" and isinstance(text, list) and not 1 <= len(text) <= 2:
        raise ConfigError(f"tasks.{name}.text: one column, or two for sentence pairs (found {len(text)})")


def check_data(name: str, opts: dict, data_root: str | None) -> list | None:
    """Read every configured split once (what the data job will read), so bad input fails at
    start-up; returns the label set (classification)."""
    if not opts.get("files"):  # a Hub dataset: checked when prepared (no network at start-up)
        if opts["problem"] == "classification" and len(opts.get("labels") or []) < 2:
            raise ConfigError(f"tasks.{name}.labels: a classification task read from the Hub lists its "
                              f"label values (two or more), in the order of their class numbers")
        return [str(v) for v in opts["labels"]] if opts.get("labels") else None
    paths = {s: split_path(name, opts, data_root, s) for s in (opts.get("files") or {})}
    labels = None
    if opts["problem"] == "classification":
        train = read_table(paths["train"])
        labels = label_set(name, opts, train, paths["train"])
    for split, path in paths.items():
        read_file(name, opts, path, labels)
    return labels


def chat_template_error(task: str, model: str, tokenizer_has_template: bool | None) -> str | None:
    if tokenizer_has_template is False:
        return (f"tasks.{task}.messages: model {model}'s tokenizer has no chat template to render chat "
                f"records; give the records as prompt and response fields instead (tasks.{task}.prompt, "
                f"tasks.{task}.response)")
    return None
