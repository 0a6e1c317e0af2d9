"""rankbits.health: a run that learned nothing is flagged; one that learned is not, however noisy
its short training log."""
from __future__ import annotations

import numpy as np

from rankbits.health import collapse

# the training log of a real 20-step SmolLM2 LoRA run on chat records (byo.yaml, seed 0): flat
# within noise, yet its test perplexity fell below its base's (6.56 against 6.71)
SMOLLM2_SEED0 = [1.750, 1.695, 1.593, 2.117, 1.749, 2.146, 1.924, 1.699, 1.550, 1.997,
                 1.718, 1.959, 1.904, 1.761, 2.166, 2.039, 1.590, 1.784, 1.663, 1.835]


def test_held_out_loss_decides_for_a_task_without_classes():
    learned = collapse(SMOLLM2_SEED0, test_loss=1.8810, base_loss=1.9041)
    assert not learned["collapsed"] and learned["own_base_test_loss"] == 1.9041
    nothing = collapse(SMOLLM2_SEED0, test_loss=1.9100, base_loss=1.9041)
    assert nothing["collapsed"] and "no lower than its base's without the adapter (1.904)" in nothing["reason"]


def test_one_noisy_last_batch_does_not_make_a_falling_run_collapsed():
    losses = [2.0] * 5 + [1.5] * 10 + [1.0] * 4 + [3.0]  # fell, then one bad batch at the end
    assert not collapse(losses)["collapsed"]  # (the mean of the last two was 2.0: it was flagged)
    rising = [0.69] * 10 + [0.83] * 10
    assert collapse(rising)["reason"] == "training loss did not fall (0.69 -> 0.83)"


def test_a_classifier_that_predicts_one_class_is_flagged():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    pred = np.where(rng.random(1000) < 0.96, 1, 0)
    out = collapse([0.7] * 10 + [0.6] * 10, pred, labels)
    assert out["collapsed"] and out["reason"].startswith("predicts class 1 for 96% of the test split")
    skewed = np.ones(1000, dtype=int)
    skewed[:30] = 0  # a test split that is itself 97% one class: predicting it is no flag
    assert not collapse([0.7] * 10 + [0.6] * 10, skewed.copy(), skewed)["collapsed"]
