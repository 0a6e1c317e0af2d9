"""MPNet encoders (all-mpnet-base-v2): attention's q/k/v/o under ``attention.attn``, a BERT-style
feed-forward (``intermediate.dense``, ``output.dense``). No registered checkpoint: declare one
in a study (``models.<name>.path``); its ``model_type`` mpnet picks this family."""
from __future__ import annotations

from . import Family

MPNET = Family(
    name="mpnet",
    architecture="encoder",
    target_modules=("attn.q", "attn.k", "attn.v", "attn.o", "intermediate.dense", "output.dense"),
    kind_suffixes={"attn.q": "Wq", "attn.k": "Wk", "attn.v": "Wv", "attn.o": "Wo",
                   "intermediate.dense": "Wf1", "output.dense": "Wf2"},
)
