"""Task metrics with scikit-learn (the Hub's `evaluate` scripts cannot load offline)."""
from __future__ import annotations

from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def accuracy(labels, preds) -> dict[str, float]:
    return {"accuracy": float(accuracy_score(labels, preds))}


def mcc(labels, preds) -> dict[str, float]:
    return {"mcc": float(matthews_corrcoef(labels, preds))}


def f1_and_accuracy(labels, preds) -> dict[str, float]:
    return {"f1": float(f1_score(labels, preds)), **accuracy(labels, preds)}
