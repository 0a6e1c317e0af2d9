"""Hand-made rank patterns, ``pattern:<name>``: plain LoRA whose per-module ranks follow a shape
over layers and module kinds, rescaled so the adapter has the parameters of uniform LoRA at the
budget (within 2%, see ``allocation``).

    linear-decay     high at the bottom, falling linearly to min_ratio x at the top (S4)
    linear-grow      the reverse: top layers get the most (S0's finding)
    attention-heavy  attention projections r, feed-forward r/2 (S4)
    ffn-heavy        feed-forward r, attention r/2 (S1)
    empirical        0.6 / 1.2 / 1.0 x r for the early / middle / late third of the layers (S4)
    attn6-ffn10      attention : feed-forward = 6 : 10 (S2, Joint-3)
"""
from __future__ import annotations

from ..models import ATTENTION as ATTN
from . import METHODS
from .lora import AllocatedLoRA


def _position(layer: int, n_layers: int) -> float:
    return layer / (n_layers - 1) if n_layers > 1 else 0.0


def _decay(layer, kind, n, o):
    return 1 - (1 - o["min_ratio"]) * _position(layer, n)


def _grow(layer, kind, n, o):
    return o["min_ratio"] + (1 - o["min_ratio"]) * _position(layer, n)


def _third(layer, kind, n, o):
    return (0.6, 1.2, 1.0)[min(2, 3 * layer // n)]


SHAPES = {
    "linear-decay": _decay,
    "linear-grow": _grow,
    "attention-heavy": lambda layer, kind, n, o: 1.0 if kind in ATTN else 0.5,
    "ffn-heavy": lambda layer, kind, n, o: 0.5 if kind in ATTN else 1.0,
    "empirical": _third,
    "attn6-ffn10": lambda layer, kind, n, o: 6.0 if kind in ATTN else 10.0,
}


class Pattern(AllocatedLoRA):
    defaults = {"min_ratio": 0.25}  # linear-decay / linear-grow: smallest rank / largest rank

    schema = {"min_ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}

    def __init__(self, shape: str):
        self.shape = shape
        self.name = f"pattern:{shape}"
        self.label = f"pattern {shape}"

    def weights(self, ctx):
        """Depth is counted within a module's stack (an encoder-decoder's encoder and decoder
        each run from their first layer to their last)."""
        located = {m: (ctx.family.stack(m), *ctx.family.locate(m)) for m in ctx.dims}
        layers = {s: sorted({layer for st, layer, _ in located.values() if st == s})
                  for s, _, _ in located.values()}
        return {m: SHAPES[self.shape](layers[s].index(layer), kind, len(layers[s]), ctx.opts)
                for m, (s, layer, kind) in located.items()}


def make(shape: str) -> Pattern:
    if shape not in SHAPES:
        raise ValueError(f"unknown pattern {shape!r}; patterns: {', '.join(SHAPES)}")
    return Pattern(shape)


METHODS.register_family("pattern", make, f"pattern:<{'|'.join(SHAPES)}>")
