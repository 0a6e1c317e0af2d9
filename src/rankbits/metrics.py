"""Task metrics with scikit-learn (the Hub's `evaluate` scripts cannot load offline).

scikit-learn is imported on first use: registries (and so the DAG build) stay light.
"""
from __future__ import annotations


def accuracy(labels, preds) -> dict[str, float]:
    from sklearn.metrics import accuracy_score

    return {"accuracy": float(accuracy_score(labels, preds))}


def mcc(labels, preds) -> dict[str, float]:
    from sklearn.metrics import matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(labels, preds))}


def f1_and_accuracy(labels, preds) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {"f1": float(f1_score(labels, preds)), **accuracy(labels, preds)}


def accuracy_and_macro_f1(labels, preds) -> dict[str, float]:
    """Tasks declared in a study: accuracy and macro-averaged F1 (any number of classes)."""
    from sklearn.metrics import f1_score

    return {**accuracy(labels, preds), "f1_macro": float(f1_score(labels, preds, average="macro"))}
