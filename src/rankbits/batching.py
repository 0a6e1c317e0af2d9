"""Batches padded to their own longest sequence, optionally grouped by length."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

MEGABATCH = 50  # batches per length-sorted group, as transformers' LengthGroupedSampler


def batch_order(lengths: np.ndarray, batch_size: int, rng: np.random.RandomState | None,
                group_by_length: bool) -> list[np.ndarray]:
    """Index arrays, one per batch. No shuffling when ``rng`` is None (evaluation)."""
    idx = np.arange(len(lengths)) if rng is None else rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * MEGABATCH
        idx = np.concatenate([
            chunk[np.argsort(-lengths[chunk], kind="stable")]
            for chunk in np.array_split(idx, max(1, -(-len(idx) // mega)))
        ])
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if rng is not None and group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class Batches:
    """Rows of a tokenised split (``rankbits.problems.tokenize``): ``label`` is a class per row
    (``classes``) or a list of token labels, padded with -100 to the batch's longest."""

    def __init__(self, df: pd.DataFrame, batch_size: int, pad_id: int, group_by_length: bool = True):
        self.frame = df
        self.ids = df["input_ids"].tolist()
        self.types = df["token_type_ids"].tolist() if "token_type_ids" in df else None
        self.classes = df["label"].dtype.kind in "iu"
        if self.classes:
            self.labels = torch.as_tensor(df["label"].to_numpy(copy=True), dtype=torch.long)
        else:
            self.labels = None
            self.token_labels = df["label"].tolist()
        self.lengths = np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))
        self.batch_size, self.pad_id, self.group = batch_size, pad_id, group_by_length

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)

    def epoch(self, seed: int | None) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """(row indices, model inputs incl. labels); ``seed`` None keeps order (evaluation)."""
        rng = None if seed is None else np.random.RandomState(seed)
        for rows in batch_order(self.lengths, self.batch_size, rng, self.group):
            yield rows, self.collate(rows)

    def collate(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        width = int(self.lengths[rows].max())
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long) if self.types else None
        for j, r in enumerate(rows):
            n = int(self.lengths[r])
            ids[j, :n] = torch.from_numpy(np.array(self.ids[r]))
            mask[j, :n] = 1
            if types is not None:
                types[j, :n] = torch.from_numpy(np.array(self.types[r]))
        if self.classes:
            labels = self.labels[torch.as_tensor(rows)]
        else:
            lab = [self.token_labels[r] for r in rows]
            labels = torch.full((len(rows), max(len(x) for x in lab)), -100, dtype=torch.long)
            for j, x in enumerate(lab):
                labels[j, :len(x)] = torch.from_numpy(np.array(x, dtype=np.int64))
        out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if types is not None:
            out["token_type_ids"] = types
        return out
