"""The prepare_base step: quantize a model once per bit-width, save it, account for its bytes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .batching import Batches
from .bits import BITS
from .footprint import footprint
from .io import atomic_dir, write_json
from .modeling import load_base_backbone, load_tokenizer, one_4bit_layout
from .models import MODELS
from .quant import diagnostics
from .runtime import pick_device, versions


def calibration_batch(path: str, samples: int, pad_id: int, device, architecture: str = "encoder") -> dict:
    """The first ``samples`` rows of a tokenised split as model inputs (no labels); an
    encoder-decoder's decoder reads the same tokens."""
    df = pd.read_parquet(path).head(samples)
    batch = Batches(df, len(df), pad_id, group_by_length=False).collate(range(len(df)))
    batch.pop("labels")
    if architecture == "encoder-decoder":
        batch["decoder_input_ids"] = batch["input_ids"]
    return {k: v.to(device) for k, v in batch.items()}


def build_backbone(model: str, bits: str, options: dict, device, calibration: dict | None = None):
    """The quantized (or full-precision) backbone of ``model`` at ``bits`` and facts about it;
    per-layer mixes are built by their bits entry, the rest by bitsandbytes' config."""
    spec = BITS.get(bits)
    if spec.build is not None:
        m, info = spec.build(model, options, device, calibration)
        one_4bit_layout(m)  # the layers it swapped in: in the layout training uses
        return m, info
    return load_base_backbone(model, bits, options, device)


def prepare_base(model: str, bits: str, options: dict, device: str, out_dir: str,
                 calibration: str | None = None, calibration_samples: int = 32) -> dict:
    """Write ``out_dir``: ``footprint.json`` always; for quantized bits also ``model/`` (saved
    with bitsandbytes serialization, loaded by every training job of this model x bits) and
    ``quant_diagnostics.csv`` (per-Linear error against full precision on a calibration batch)."""
    dev = pick_device(device)
    spec = BITS.get(bits)
    batch = None
    if calibration and spec.quantized:
        pad = load_tokenizer(model, options).pad_token_id
        batch = calibration_batch(calibration, calibration_samples, pad, dev,
                                  MODELS.get(model).family.architecture)
    m, info = build_backbone(model, bits, options, dev, batch)
    record = {"model": model, "bits": bits, **info, **footprint(m), "versions": versions(),
              "weights": None, "calibration": None}
    with atomic_dir(out_dir) as tmp:
        if spec.quantized:
            (spec.save or (lambda mod, d: mod.save_pretrained(f"{d}/model")))(m, tmp)
            record["weights"] = "model"
            if batch is not None:
                ref, _ = load_base_backbone(model, "32", options, dev)
                rows = diagnostics(m, ref, batch, MODELS.get(model).family.locate)
                pd.DataFrame(rows).to_csv(tmp / "quant_diagnostics.csv", index=False)
                record["calibration"] = {"source": str(calibration), "samples": calibration_samples}
        write_json(Path(tmp) / "footprint.json", record)
    return record
