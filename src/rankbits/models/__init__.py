"""Model registry: where a model's weights come from, how it is loaded for each problem type,
which modules get adapters, and how a module name maps to (layer, kind) for rank maps."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from ..registry import Registry

# The module kinds families map their adapted layers to, in the order heatmap columns show them:
# self-attention (Wqkv: GPT-2's fused projection), cross-attention (X*: an encoder-decoder's
# decoder), feed-forward (Wg: a gated FFN's gate, Wf1 its input, Wf2 its output).
KINDS = ("Wq", "Wk", "Wv", "Wqkv", "Wo", "Xq", "Xk", "Xv", "Xo", "Wg", "Wf1", "Wf2")
ATTENTION = {"Wq", "Wk", "Wv", "Wqkv", "Wo", "Xq", "Xk", "Xv", "Xo"}
FFN = {"Wg", "Wf1", "Wf2"}
ARCHITECTURES = ("encoder", "decoder", "encoder-decoder")
# Heads (created for a task, or an LM's output layer), by the names the families' models give
# them: never quantized, and counted apart in footprints. transformers matches these from the
# start of a module name or as its suffix: BERT's pooler is "pooler" in the backbone,
# "bert.pooler" under a task head.
HEAD_MODULES = ("classifier", "pre_classifier", "pooler", "bert.pooler", "score", "classification_head",
                "lm_head")


def is_conv1d(module) -> bool:
    """A ``transformers`` Conv1D (GPT-2's projections): a Linear with its weight stored in x out."""
    return type(module).__name__ == "Conv1D"


def linear_dims(module) -> tuple[int, int] | None:
    """(in_features, out_features) of a Linear layer (plain or quantized) or of a GPT-2-style
    Conv1D (weight stored transposed); None for anything else."""
    import torch

    if isinstance(module, torch.nn.Linear):
        return int(module.in_features), int(module.out_features)
    if is_conv1d(module) and getattr(module, "weight", None) is not None:
        return tuple(int(d) for d in module.weight.shape)  # (nx, nf)
    return None


@dataclass(frozen=True)
class Family:
    """An architecture family: its kind (encoder / decoder / encoder-decoder), adapter targets
    and the module-name -> (layer, kind) map; an encoder-decoder also names each module's stack."""

    name: str
    architecture: str
    target_modules: tuple[str, ...]
    kind_suffixes: dict[str, str]  # module-name suffix -> kind, tried longest first
    layer_regex: str = r"\.layer\.(\d+)\."
    stack_regex: str | None = None  # group 1: the stack ("encoder" / "decoder")
    # modules a sequence-classification model of this family creates for the task (trained in
    # full beside the adapters: PEFT's modules_to_save)
    cls_head: tuple[str, ...] = ("classifier",)
    _order: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"family {self.name}: architecture must be one of {ARCHITECTURES}")
        object.__setattr__(self, "_order", tuple(sorted(self.kind_suffixes, key=len, reverse=True)))

    def locate(self, module: str) -> tuple[int, str]:
        m = re.search(self.layer_regex, "." + module)
        if m is None:
            raise ValueError(f"cannot find a layer index in module name {module!r}")
        for suffix in self._order:
            if module.endswith(suffix):
                return int(m.group(1)), self.kind_suffixes[suffix]
        raise ValueError(f"module {module!r} matches no {self.name} kind: {sorted(self.kind_suffixes)}")

    def stack(self, module: str) -> str:
        """Which stack ``module`` belongs to: "encoder" / "decoder" for an encoder-decoder,
        else the family's one stack ("" )."""
        if self.stack_regex is None:
            return ""
        m = re.search(self.stack_regex, module)
        if m is None:
            raise ValueError(f"module {module!r}: cannot tell its stack ({self.stack_regex})")
        return m.group(1)

    def target_dims(self, model) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of every layer adapters target, by module name in
        ``model`` (plain or quantized Linear layers or Conv1D, before any adapter is attached)."""
        out = {}
        for name, mod in model.named_modules():
            dims = linear_dims(mod)
            if dims is None or not any(name == t or name.endswith("." + t) for t in self.target_modules):
                continue
            try:
                self.locate(name)
            except ValueError:  # e.g. a pooler's dense layer: not part of the layer stack
                continue
            out[name] = dims
        return out


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: Family
    hub_id: str
    # a local directory for from_pretrained when no path is configured (e.g. a pip package)
    default_path: Callable[[], str | None] = lambda: None

    def source(self, options: dict) -> str:
        return options.get("path") or self.default_path() or self.hub_id


MODELS: Registry[ModelSpec] = Registry("model", __name__)


def register(spec: ModelSpec) -> ModelSpec:
    return MODELS.register(spec.name, spec)

# models a study declares (models.<name> in its config) are looked up by ``configured``, which the
# registry imports with every module here and which sets itself as MODELS.fallback
