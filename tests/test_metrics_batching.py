import numpy as np
import pandas as pd
import pytest
import torch

from rankbits import metrics
from rankbits.batching import Batches, batch_order
from rankbits.tasks import TASKS


def test_metrics_on_known_inputs():
    y, p = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert metrics.accuracy(y, p) == {"accuracy": 0.6}
    assert metrics.mcc([1, 0, 1, 0], [1, 0, 1, 0])["mcc"] == pytest.approx(1.0)
    assert metrics.mcc([1, 0, 1, 0], [0, 1, 0, 1])["mcc"] == pytest.approx(-1.0)
    f = metrics.f1_and_accuracy(y, p)  # tp=2, fp=1, fn=1
    assert f["f1"] == pytest.approx(2 / 3) and f["accuracy"] == 0.6


def test_task_registry_declares_primary_metrics():
    assert {t: TASKS.get(t).primary_metric for t in ("sst2", "cola", "mrpc", "rte")} == {
        "sst2": "accuracy", "cola": "mcc", "mrpc": "f1", "rte": "accuracy"}


def frame(lengths):
    return pd.DataFrame({"input_ids": [list(range(1, n + 1)) for n in lengths],
                         "label": [i % 2 for i in range(len(lengths))]})


def test_each_epoch_covers_every_row_once_and_batches_group_lengths():
    rng = np.random.RandomState(0)
    lengths = rng.randint(1, 60, size=1000)
    order = batch_order(lengths, 16, np.random.RandomState(1), group_by_length=True)
    flat = np.concatenate(order)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in order])
    random_spread = np.mean([lengths[b].max() - lengths[b].min()
                             for b in batch_order(lengths, 16, np.random.RandomState(1), False)])
    assert spread < random_spread / 3
    again = batch_order(lengths, 16, np.random.RandomState(1), group_by_length=True)
    assert all((a == b).all() for a, b in zip(order, again))


def test_collate_pads_to_the_longest_and_masks():
    b = Batches(frame([3, 1, 5]), batch_size=3, pad_id=0, group_by_length=False)
    (rows, batch), = list(b.epoch(None))
    assert rows.tolist() == [0, 1, 2]
    assert batch["input_ids"].shape == (3, 5)
    assert batch["attention_mask"].sum(1).tolist() == [3, 1, 5]
    assert batch["input_ids"][1].tolist() == [1, 0, 0, 0, 0]
    assert torch.equal(batch["labels"], torch.tensor([0, 1, 0]))
    assert "token_type_ids" not in batch


def test_rouge_lsum_scores_sentences_as_papers_do():
    """rougeL is one LCS over the whole text; rougeLsum (what CNN/DM papers quote) takes the
    union LCS over sentences, so the same sentences in another order score 1."""
    from rankbits.problems import rouge, sentences

    assert sentences("The cat sat. The dog ran!\nIt rained.") == "The cat sat.\nThe dog ran!\nIt rained."
    assert sentences("U.S. forces left at 3 p.m. today.") == "U.S. forces left at 3 p.m. today."
    r = rouge(["The dog ran fast. The cat sat down."], ["The cat sat down.\nThe dog ran fast."])
    assert r["rougeLsum"][0] == 1.0 and r["rouge1"][0] == 1.0 and r["rougeL"][0] < 0.6
