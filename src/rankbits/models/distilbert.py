"""DistilBERT encoders."""
from __future__ import annotations

from . import Family, ModelSpec, register

DISTILBERT = Family(
    name="distilbert",
    architecture="encoder",
    cls_head=("pre_classifier", "classifier"),
    target_modules=("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    kind_suffixes={"attention.q_lin": "Wq", "attention.k_lin": "Wk", "attention.v_lin": "Wv",
                   "attention.out_lin": "Wo", "ffn.lin1": "Wf1", "ffn.lin2": "Wf2"},
)

register(ModelSpec("distilbert-base", DISTILBERT, "distilbert/distilbert-base-uncased"))
