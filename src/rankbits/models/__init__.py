"""Model registry: where a model's weights come from, which modules get adapters, and how a
module name maps to (layer, kind) for rank maps."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..registry import Registry

# The module kinds every family maps its adapted Linear layers to (rows of the heatmaps' x axis).
KINDS = ("Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2")


@dataclass(frozen=True)
class Family:
    """An architecture family: adapter targets and the module-name -> (layer, kind) map."""

    name: str
    target_modules: tuple[str, ...]
    kind_suffixes: dict[str, str]  # module-name suffix -> kind, tried longest first
    layer_regex: str = r"\.layer\.(\d+)\."

    def locate(self, module: str) -> tuple[int, str]:
        m = re.search(self.layer_regex, module)
        if m is None:
            raise ValueError(f"cannot find a layer index in module name {module!r}")
        for suffix in sorted(self.kind_suffixes, key=len, reverse=True):
            if module.endswith(suffix):
                return int(m.group(1)), self.kind_suffixes[suffix]
        raise ValueError(f"module {module!r} matches no {self.name} kind: {sorted(self.kind_suffixes)}")

    def target_dims(self, model) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of every Linear layer adapters target, by module name in
        ``model`` (plain or quantized Linear layers, before any adapter is attached)."""
        import torch

        out = {}
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and any(name.endswith(t) for t in self.target_modules):
                try:
                    self.locate(name)
                except ValueError:  # e.g. a pooler's dense layer: not part of the layer stack
                    continue
                out[name] = (int(mod.in_features), int(mod.out_features))
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
