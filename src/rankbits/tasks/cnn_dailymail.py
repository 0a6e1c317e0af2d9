"""CNN/DailyMail summarization (S0). A decoder-only model reads the article followed by
"TL;DR:" and continues it; an encoder-decoder (T5) reads "summarize: <article>". Metrics:
ROUGE-1/2/L F1 (``rouge-score``, Porter stemming on) of the generated summary against the
highlights, as fractions; generation settings are ``tasks.cnn_dailymail.generation``
(``max_new_tokens``, ``num_beams``; greedy or beam search, no sampling).

Local layout: ``<data_root>/cnn_dailymail/train.jsonl`` and ``test.jsonl``, JSON Lines with
``article`` and ``highlights`` (and ``id``), as the Hub's ``abisee/cnn_dailymail`` 3.0.0 rows.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import Task, read_jsonl, register, text_frame


def _frame(records) -> pd.DataFrame:
    return text_frame([{"idx": i, "text": r["article"].strip(), "target": r["highlights"].strip()}
                       for i, r in enumerate(records)])


def read_local(path: Path) -> pd.DataFrame:
    return _frame(rec for _, rec in read_jsonl(path, ("article", "highlights")))


register(Task(
    name="cnn_dailymail", problem_type="seq2seq",
    local_files={"train": "train.jsonl", "dev": "test.jsonl"}, read_local=read_local,
    hub=("abisee/cnn_dailymail", "3.0.0"), hub_splits={"train": "train", "dev": "test"},
    from_hub=lambda ds: _frame(ds.to_pandas().to_dict("records")),
    primary_metric="rougeL", generate=True,
    prompts={"decoder": "{text}\nTL;DR:", "encoder-decoder": "summarize: {text}"},
    defaults={"max_length": 512, "max_target_length": 128,
              "generation": {"max_new_tokens": 64, "num_beams": 1}},
    description="CNN/DailyMail summarization; ROUGE-1/2/L F1 of generated summaries",
))
