"""T5 encoder-decoders. Encoder blocks: self-attention (q k v o) and FFN (wi wo; v1.1 and
Flan-T5: gated wi_0 wi_1); decoder blocks add cross-attention (EncDecAttention: kinds Xq..Xo).
Layer indices count within each stack, so rank maps draw the encoder and the decoder as two
panels."""
from __future__ import annotations

from . import Family, ModelSpec, register

T5 = Family(
    name="t5",
    architecture="encoder-decoder",
    cls_head=("classification_head",),
    target_modules=("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"),
    kind_suffixes={
        "SelfAttention.q": "Wq", "SelfAttention.k": "Wk", "SelfAttention.v": "Wv", "SelfAttention.o": "Wo",
        "EncDecAttention.q": "Xq", "EncDecAttention.k": "Xk", "EncDecAttention.v": "Xv",
        "EncDecAttention.o": "Xo",
        "DenseReluDense.wi": "Wf1", "DenseReluDense.wi_0": "Wg", "DenseReluDense.wi_1": "Wf1",
        "DenseReluDense.wo": "Wf2",
    },
    layer_regex=r"\.block\.(\d+)\.",
    stack_regex=r"(?:^|\.)(encoder|decoder)\.block\.",
)

register(ModelSpec("t5-small", T5, "t5-small"))
register(ModelSpec("t5-base", T5, "t5-base"))
