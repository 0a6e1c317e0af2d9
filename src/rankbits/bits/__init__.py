"""Bit-width registry: how the frozen base model's weights are held in memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


class UnsupportedOnDevice(RuntimeError):
    """This bit-width cannot run on the current device; the message says which and why."""


@dataclass(frozen=True)
class BitsSpec:
    name: str
    description: str
    # (device type, task's skip-module names) -> (from_pretrained kwargs, facts to record)
    load_kwargs: Callable[[str, list[str]], tuple[dict, dict]]
    label: str = ""  # how tables name it
    quantized: bool = False  # a prepared base is saved (and diagnosed) for quantized bits
    # For bases bitsandbytes' config cannot express (per-layer mixes):
    # build(model, options, device, calibration batch) -> (backbone, facts), used by prepare_base;
    # finish_load(loaded model, base_dir) -> model, applied after from_pretrained of the saved base.
    # save(backbone, base_dir) writes base_dir/model (default: save_pretrained).
    build: Callable | None = None
    finish_load: Callable | None = None
    save: Callable | None = None


BITS: Registry[BitsSpec] = Registry("bits value", __name__)


def bits_label(bits: str) -> str:
    """How tables and figures name a bit-width: 'fp32', 'NF4+DQ', 'int8', ... (the spec's label)."""
    return BITS.get(str(bits)).label or str(bits)


def register(spec: BitsSpec) -> BitsSpec:
    return BITS.register(spec.name, spec)
