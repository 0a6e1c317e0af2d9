"""Alpaca instruction tuning (S4: DialoGPT-medium). Each record's instruction (and input) fills
the Stanford Alpaca prompt template; the response is the target, and the loss is taken on the
response tokens only (on a decoder: the prompt's labels are masked). Metric: perplexity of the
held-out responses given their prompts.

Local layout: ``<data_root>/alpaca/alpaca_data.json``, a JSON array of ``{"instruction", "input",
"output"}`` objects (the Alpaca schema; ``tasks.alpaca.files.train`` names another file). The
data has one split: ``dev_samples`` records (fixed seed) are held out of it as the test split.
Hub: ``tatsu-lab/alpaca``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import DataError, Task, check_fields, read_text, register, text_frame

PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                "further context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def prompt(rec: dict) -> str:
    return (PROMPT_INPUT if rec.get("input", "").strip() else PROMPT).format(**rec)


def records_frame(records: list[dict]) -> pd.DataFrame:
    return text_frame([{"idx": i, "text": prompt(r), "target": r["output"]} for i, r in enumerate(records)])


def read_json(path: Path) -> pd.DataFrame:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty JSON array of Alpaca records")
    for i, rec in enumerate(data):
        check_fields(path, f"record {i}", rec, ("instruction", "output"))
        if not isinstance(rec.get("input", ""), str):
            raise DataError(f"{path}:record {i}: field 'input' is not a string")
    return records_frame(data)


register(Task(
    name="alpaca", problem_type="seq2seq",
    local_files={"train": "alpaca_data.json"}, read_local=read_json,
    hub=("tatsu-lab/alpaca", None), hub_splits={"train": "train"},
    from_hub=lambda ds: records_frame(ds.to_pandas().to_dict("records")),
    primary_metric="perplexity", higher_is_better=False,
    defaults={"dev_samples": 200, "max_length": 512, "max_target_length": 256},
    description="Alpaca instruction following; perplexity of held-out responses",
))
