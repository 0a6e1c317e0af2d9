"""Runs that learned nothing. A seed whose training collapsed (it predicts one class on the test
split, or ends with a training loss no lower than where it began — or, for a task without classes,
scores a test loss no lower than its own base's with the adapter off) is a different thing from a
seed that landed low by chance: averaged into an interval it hides (one QLoRA seed at 0.54 beside
two at 0.78 printed "0.7030 [0.3526, 1.0534]"). ``collapse`` finds it from what the run wrote; the
verdict, ``rankbits recommend`` and the report flag it by name."""
from __future__ import annotations

import math

import numpy as np

# a run predicts "one class" when that class takes at least this share of its test predictions
# and at least MARGIN more than the commonest true label takes (a skewed test set is not a flag)
ONE_CLASS_SHARE, MARGIN = 0.95, 0.05
WINDOW = 0.1  # the loss at the start and at the end: the mean over this share of logged steps
MIN_WINDOW = 5  # ... and over at least this many (a quarter of a short run's), so one noisy batch
                # cannot make a run that learned look as if it did not (20-step runs did)


def loss_ends(task_losses) -> tuple[float, float]:
    """(start, end): mean task loss over the first and the last ``WINDOW`` of the logged steps
    (at least ``MIN_WINDOW``, at most a quarter of them, at least one), finite values only; NaN
    without any."""
    x = np.asarray([v for v in task_losses if v is not None and math.isfinite(v)], dtype=float)
    if not len(x):
        return math.nan, math.nan
    k = max(1, int(len(x) * WINDOW), min(MIN_WINDOW, len(x) // 4))
    return float(x[:k].mean()), float(x[-k:].mean())


def collapse(task_losses, pred=None, labels=None, test_loss: float | None = None,
             base_loss: float | None = None) -> dict:
    """Whether a run collapsed, and in words why. ``task_losses``: the training log's task loss
    per logged step; ``pred`` / ``labels``: test-split predictions and labels (classification);
    ``test_loss`` / ``base_loss``: the test split's loss with the adapter and without it (tasks
    without classes: held-out evidence, which a short run's noisy batch losses are not)."""
    start, end = loss_ends(task_losses)
    reasons, out = [], {"loss_start": start, "loss_end": end}
    if base_loss is not None and test_loss is not None:
        out.update(test_loss=test_loss, own_base_test_loss=base_loss)
        if test_loss >= base_loss:
            reasons.append(f"its test loss ({test_loss:.4g}) is no lower than its base's without the adapter "
                           f"({base_loss:.4g})")
    elif len(task_losses) >= 2 and math.isfinite(start) and end >= start:
        reasons.append(f"training loss did not fall ({start:.3g} -> {end:.3g})")
    if pred is not None and len(pred):
        values, counts = np.unique(np.asarray(pred), return_counts=True)
        share = counts.max() / counts.sum()
        label_share = (np.unique(np.asarray(labels), return_counts=True)[1].max() / len(labels)
                       if labels is not None and len(labels) else 0.0)
        out.update(majority_prediction_share=float(share), majority_label_share=float(label_share))
        if share >= ONE_CLASS_SHARE and share - label_share >= MARGIN:
            reasons.append(f"predicts class {values[counts.argmax()]} for {share:.0%} of the test split")
    return {**out, "collapsed": bool(reasons), "reason": "; ".join(reasons) or None}
