"""GLUE sentence(-pair) classification: SST-2, CoLA, MRPC, RTE, QNLI, MNLI.

Local layout (``data_root``): ``<data_root>/<task>/train.tsv`` and ``dev.tsv`` in the GLUE TSV
formats (CoLA: the raw, header-less ``in_domain_train`` format; MNLI: ``dev_matched.tsv``, read
by its header, label column ``gold_label``). Hub: ``nyu-mll/glue`` (MNLI: validation_matched).
Normalised columns: ``idx``, ``text``, ``text_pair`` (None for single sentences), ``label``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import metrics
from . import DataError, Task, register, text_lines

FILES = {"train": "train.tsv", "dev": "dev.tsv"}
HUB_SPLITS = {"train": "train", "dev": "validation"}


def read_tsv(path: Path, *, header: list[str] | None, ncols: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) for each data row; a row with the wrong field count is an error."""
    rows = []
    with text_lines(path, "utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if lineno == 1 and header is not None:
                got = line.split("\t")
                if [h.strip() for h in got] != header:
                    raise DataError(f"{path}:1: expected header {header}, found {got}")
                continue
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != ncols:
                raise DataError(
                    f"{path}:{lineno}: expected {ncols} tab-separated fields, found {len(parts)}"
                )
            rows.append((lineno, parts))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def read_named(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: field}) for a TSV file with a header that has at least ``columns``
    (in any order, others ignored); every row has as many fields as the header."""
    with text_lines(path, "utf-8-sig") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}:1: header lacks column(s) {missing}; found {header}")
    rows = read_tsv(path, header=[h.strip() for h in header], ncols=len(header))
    return [(n, dict(zip(header, f))) for n, f in rows]


def parse_label(path: Path, lineno: int, value: str, mapping: dict[str, int]) -> int:
    try:
        return mapping[value.strip()]
    except KeyError:
        raise DataError(
            f"{path}:{lineno}: label {value!r} is not one of {sorted(mapping)}"
        ) from None


BINARY = {"0": 0, "1": 1}


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["idx", "text", "text_pair", "label"])
    return df.astype({"idx": "int64", "label": "int64"})


def _read_sst2(path: Path) -> pd.DataFrame:
    rows = read_tsv(path, header=["sentence", "label"], ncols=2)
    return frame([
        {"idx": i, "text": f[0].strip(), "text_pair": None, "label": parse_label(path, n, f[1], BINARY)}
        for i, (n, f) in enumerate(rows)
    ])


def _read_cola(path: Path) -> pd.DataFrame:
    rows = read_tsv(path, header=None, ncols=4)  # source, label, original mark, sentence
    return frame([
        {"idx": i, "text": f[3].strip(), "text_pair": None, "label": parse_label(path, n, f[1], BINARY)}
        for i, (n, f) in enumerate(rows)
    ])


def _read_mrpc(path: Path) -> pd.DataFrame:
    rows = read_tsv(path, header=["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], ncols=5)
    return frame([
        {"idx": i, "text": f[3].strip(), "text_pair": f[4].strip(),
         "label": parse_label(path, n, f[0], BINARY)}
        for i, (n, f) in enumerate(rows)
    ])


RTE_LABELS = {"entailment": 0, "not_entailment": 1}  # as the Hub's glue/rte


def _read_rte(path: Path) -> pd.DataFrame:
    rows = read_tsv(path, header=["index", "sentence1", "sentence2", "label"], ncols=4)
    return frame([
        {"idx": i, "text": f[1].strip(), "text_pair": f[2].strip(),
         "label": parse_label(path, n, f[3], RTE_LABELS)}
        for i, (n, f) in enumerate(rows)
    ])


NLI2 = RTE_LABELS  # QNLI: entailment / not_entailment
NLI3 = {"entailment": 0, "neutral": 1, "contradiction": 2}  # as the Hub's glue/mnli


def _pairs(first: str, second: str, label: str, mapping: dict[str, int]):
    def read(path: Path) -> pd.DataFrame:
        rows = read_named(path, [first, second, label])
        return frame([
            {"idx": i, "text": r[first].strip(), "text_pair": r[second].strip(),
             "label": parse_label(path, n, r[label], mapping)}
            for i, (n, r) in enumerate(rows)
        ])
    return read


def _hub(text: str, pair: str | None, names: list[str]):
    """Rows of ``nyu-mll/glue``: the text column(s), and ``label`` as a ClassLabel whose names must
    be ours in our order (-1 marks GLUE's unlabelled test splits, which cannot be scored)."""
    def convert(ds) -> pd.DataFrame:
        feature = ds.features.get("label")
        if getattr(feature, "names", names) != names:
            raise DataError(f"Hub split {ds.split}: label names {feature.names}, expected {names}")
        df = ds.to_pandas()
        if (df["label"] < 0).any():
            raise DataError(f"Hub split {ds.split}: labels are -1 (an unlabelled GLUE test split); "
                            f"use the validation split as the test split")
        return frame([
            {"idx": i, "text": r[text], "text_pair": r[pair] if pair else None, "label": int(r["label"])}
            for i, r in enumerate(df.to_dict("records"))
        ])
    return convert


# label names of nyu-mll/glue's ClassLabel features, in the order of our integer labels
HUB_LABELS = {"sst2": ["negative", "positive"], "cola": ["unacceptable", "acceptable"],
              "mrpc": ["not_equivalent", "equivalent"], "rte": list(RTE_LABELS),
              "qnli": list(NLI2), "mnli": list(NLI3)}

for name, reader, pair_cols, metric_fn, primary in [
    ("sst2", _read_sst2, ("sentence", None), metrics.accuracy, "accuracy"),
    ("cola", _read_cola, ("sentence", None), metrics.mcc, "mcc"),
    ("mrpc", _read_mrpc, ("sentence1", "sentence2"), metrics.f1_and_accuracy, "f1"),
    ("rte", _read_rte, ("sentence1", "sentence2"), metrics.accuracy, "accuracy"),
    ("qnli", _pairs("question", "sentence", "label", NLI2), ("question", "sentence"), metrics.accuracy,
     "accuracy"),
    ("mnli", _pairs("sentence1", "sentence2", "gold_label", NLI3), ("premise", "hypothesis"),
     metrics.accuracy, "accuracy"),
]:
    register(Task(
        name=name, problem_type="classification", num_labels=len(HUB_LABELS[name]),
        local_files=FILES if name != "mnli" else {"train": "train.tsv", "dev": "dev_matched.tsv"},
        read_local=reader, hub=("nyu-mll/glue", name),
        hub_splits=HUB_SPLITS if name != "mnli" else {"train": "train", "dev": "validation_matched"},
        from_hub=_hub(*pair_cols, HUB_LABELS[name]), metrics=metric_fn, primary_metric=primary,
    ))
