"""Bytes per quantized parameter and whole-model memory for each bit-width, measured side by
side in one run on the same model (constants of bitsandbytes' quantization included).

    python bench/quant_footprint.py [--quick] [--model minilm] [--device cpu]
                                    [--calibration results/tokenized/sst2/minilm/dev.parquet]

Mixed per-layer presets are included; ``sensitive8:K`` only with --calibration (it ranks layers
by their measured error on that batch).

Goals: NF4+DQ <= 0.52 B per quantized weight (4.127 bits = 0.516 B, plus the per-layer code
tables); LLM.int8 about 1.0 B. Biases stay fp32 and are shown apart, not in the per-weight figure.
"""
from __future__ import annotations

import argparse

from rankbits.footprint import footprint
from rankbits.modeling import load_tokenizer
from rankbits.prepare import build_backbone, calibration_batch
from rankbits.runtime import pick_device, versions

MiB = 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only 32, 8 and 4 (NF4+DQ)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--calibration", help="tokenized parquet for sensitive8:K (e.g. a dev split)")
    args = ap.parse_args()
    device = pick_device(args.device)
    names = ["32", "8", "4"] if args.quick else ["32", "16", "8", "4", "nf4", "fp4", "fp4-dq",
                                                  "mixed:attn8-ffn4", "mixed:ffn8-attn4", "mixed:edges8"]
    batch = None
    if args.calibration:
        names.append("mixed:sensitive8:6")
        pad = load_tokenizer(args.model, {}).pad_token_id
        batch = calibration_batch(args.calibration, 32, pad, device)
    rows = {}
    for bits in names:
        model, info = build_backbone(args.model, bits, {}, device, batch)
        rows[bits] = footprint(model)
        del model
    full = rows["32"]["total_bytes"]
    print(f"model={args.model} device={device.type} torch={versions()['torch']} "
          f"bitsandbytes={versions()['bitsandbytes']}")
    print(f"{'bits':<20}{'B/quantized weight':>19}{'(no code tables)':>17}{'model MiB':>11}{'vs 32-bit':>11}"
          f"{'quantized W MiB':>17}{'constants MiB':>15}{'code tables MiB':>17}{'bias MiB':>10}")
    for bits, fp in rows.items():
        parts = fp["bytes_by_component"]
        bpp = fp["quantized_linear_bytes_per_param"]
        raw = fp["quantized_linear_bytes_per_param_without_code_tables"]
        print(f"{bits:<20}{(f'{bpp:.4f}' if bpp else '—'):>19}{(f'{raw:.4f}' if raw else '—'):>17}"
              f"{fp['total_bytes'] / MiB:>11.2f}"
              f"{fp['total_bytes'] / full:>11.3f}{parts.get('quantized_linear_weights', 0) / MiB:>17.2f}"
              f"{parts.get('quantization_constants', 0) / MiB:>15.3f}"
              f"{parts.get('quantization_code_tables', 0) / MiB:>17.4f}"
              f"{parts.get('quantized_linear_bias', 0) / MiB:>10.3f}")
    print(f"ratio 4-bit (NF4+DQ) / 32-bit memory: {rows['4']['total_bytes'] / full:.3f}")
    lin32 = rows["32"]["bytes_by_component"]["unquantized_linear"]  # the pooler is counted as head
    q4 = rows["4"]["bytes_by_component"]
    print(f"ratio 4-bit / 32-bit, adapted Linear layers only: "
          f"{(q4['quantized_linear_weights'] + q4['quantization_constants'] + q4['quantization_code_tables'] + q4['quantized_linear_bias']) / lin32:.3f}")


if __name__ == "__main__":
    main()
