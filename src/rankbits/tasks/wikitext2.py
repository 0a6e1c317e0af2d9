"""WikiText-2 causal language modelling (S1, S2: GPT-2).

Local layout: ``<data_root>/wikitext2/train.txt`` and ``test.txt`` (the names in pytorch/examples;
``wiki.train.tokens`` / ``wiki.test.raw`` and the like work too), one paragraph per line, raw or
tokenised text. Which file is which split is ``tasks.wikitext2.files``, e.g. ``{train: valid.txt}``
where only the validation and test files are at hand. Hub: ``Salesforce/wikitext``,
``wikitext-2-raw-v1`` (raw text).

Each split's lines (blank ones dropped) are joined with newlines, tokenised as one stream and cut
into blocks of ``max_length`` tokens (training: disjoint blocks). Perplexity is exp of the mean
token NLL over the dev (test) stream, scored in windows of ``max_length`` tokens that advance by
``eval_stride`` tokens, each token scored once with up to max_length - eval_stride tokens of
context (the sliding window of the transformers perplexity guide); ``eval_stride`` null: the
window's length, i.e. disjoint blocks. The units are the model's tokens.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import DataError, Task, register, text_frame, text_lines


def read_lines(path: Path) -> pd.DataFrame:
    with text_lines(path) as fh:
        lines = [line.rstrip("\r\n") for line in fh]
    rows = [{"idx": n, "text": line, "target": None} for n, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no text lines")
    return text_frame(rows)


def from_hub(ds) -> pd.DataFrame:
    return text_frame([{"idx": i, "text": t.rstrip("\n"), "target": None}
                       for i, t in enumerate(ds["text"]) if t.strip()])


register(Task(
    name="wikitext2", problem_type="causal_lm",
    local_files={"train": "train.txt", "dev": "test.txt"}, read_local=read_lines,
    hub=("Salesforce/wikitext", "wikitext-2-raw-v1"), hub_splits={"train": "train", "dev": "test"},
    from_hub=from_hub, primary_metric="perplexity", higher_is_better=False,
    defaults={"max_length": 512},
    description="WikiText-2 language modelling; perplexity per model token on the test split",
))
