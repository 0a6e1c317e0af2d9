"""DeBERTa-v2 / v3 encoders (S0's backbone): disentangled attention with query_proj, key_proj,
value_proj; the relative-position projections are shared with key/query in v3 and not adapted."""
from __future__ import annotations

from . import Family, ModelSpec, register

DEBERTA_V2 = Family(
    name="deberta-v2",
    architecture="encoder",
    cls_head=("pooler", "classifier"),
    target_modules=("query_proj", "key_proj", "value_proj", "attention.output.dense",
                    "intermediate.dense", "output.dense"),
    kind_suffixes={
        "attention.self.query_proj": "Wq",
        "attention.self.key_proj": "Wk",
        "attention.self.value_proj": "Wv",
        "attention.output.dense": "Wo",
        "intermediate.dense": "Wf1",
        "output.dense": "Wf2",  # the FFN output; attention.output.dense is matched first
    },
)

register(ModelSpec("deberta-v3-base", DEBERTA_V2, "microsoft/deberta-v3-base"))
register(ModelSpec("deberta-v2-xlarge", DEBERTA_V2, "microsoft/deberta-v2-xlarge"))
