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


BITS: Registry[BitsSpec] = Registry("bits value", __name__)


def register(spec: BitsSpec) -> BitsSpec:
    return BITS.register(spec.name, spec)
