"""evaluate.AdapterOff: a loss with the adapter switched off depends on the base alone, so the runs
on one base compute it once; a method that rebuilds its base (PiSSA) keeps its own."""
from __future__ import annotations

import contextlib

from rankbits.config import Run
from rankbits.evaluate import AdapterOff


class Model:
    """Counts the passes made with the adapter off."""

    def __init__(self):
        self.off = 0

    @contextlib.contextmanager
    def disable_adapter(self):
        self.off += 1
        yield


def test_the_adapter_off_loss_is_computed_once_per_base_and_split(tmp_path):
    base = tmp_path / "results" / "cache" / "base" / "m" / "4" / "abcd1234"
    base.mkdir(parents=True)
    split = tmp_path / "dev.parquet"
    split.write_bytes(b"rows")
    other = tmp_path / "other.parquet"
    other.write_bytes(b"more rows")
    losses = iter([2.5, 3.5, 4.5, 5.5])
    model = Model()

    def off(method, seed, allocation=None):
        return AdapterOff(model, Run("t", "m", method, 8, "4", seed), allocation, str(base), 64, "cpu",
                          str(tmp_path / "results" / "cache" / "adapter_off"))

    assert off("lora", 0).loss(str(split), lambda: next(losses)) == 2.5
    assert off("adalora", 1).loss(str(split), lambda: next(losses)) == 2.5  # the same base: kept
    assert model.off == 1
    assert off("lora", 1).loss(str(other), lambda: next(losses)) == 3.5  # another split
    assert off("pissa", 0, {"pissa": {"modules": 36}}).loss(str(split), lambda: next(losses)) == 4.5
    assert model.off == 3
    assert (tmp_path / "results" / "cache" / "adapter_off").is_dir()  # beside the bases, not in one
    assert [p.name for p in base.iterdir()] == []
    # no cache folder (a test's in-process evaluation): computed every time
    assert AdapterOff(model, Run("t", "m", "lora", 8, "4", 0), None, None, 64, "cpu").loss(
        str(split), lambda: next(losses)) == 5.5
    assert model.off == 4
