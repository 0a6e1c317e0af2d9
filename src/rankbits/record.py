"""A run's record (``metrics.json``) described by its schema, ``config/metrics.schema.yaml``:
``markdown`` writes the field reference (``docs/record.md``) from it, so the two cannot drift.

    python -m rankbits.record config/metrics.schema.yaml > docs/record.md
"""
from __future__ import annotations

import sys


def _type(spec: dict) -> str:
    t = spec.get("type") or ("one of " + ", ".join(map(str, spec["enum"])) if "enum" in spec else "")
    return " or ".join(t) if isinstance(t, list) else str(t)


def _rows(props: dict, required: set, prefix: str) -> list[str]:
    rows = []
    for name, spec in props.items():
        key = f"{prefix}{name}"
        need = "yes" if name in required else ""
        text = " ".join(str(spec.get("description", "")).split())
        rows.append(f"| `{key}` | {_type(spec)} | {need} | {text} |")
        if spec.get("properties"):
            rows += _rows(spec["properties"], set(spec.get("required", [])), key + ".")
    return rows


def markdown(schema: dict) -> str:
    """The record's fields as a table per block: dotted name, type, required, meaning."""
    out = ["# A run's record: `metrics.json`", "",
           "Made from `config/metrics.schema.yaml` by `python -m rankbits.record "
           "config/metrics.schema.yaml > docs/record.md`; a test keeps the two the same.", "",
           " ".join(schema["description"].split()), ""]
    for block, spec in schema["properties"].items():
        out += [f"## `{block}`", "", " ".join(str(spec.get("description", "")).split()), "",
                "| field | type | required | meaning |", "| --- | --- | --- | --- |"]
        if spec.get("properties"):
            out += _rows(spec["properties"], set(spec.get("required", [])), f"{block}.")
        else:
            out.append(f"| `{block}` | {_type(spec)} | | {' '.join(str(spec.get('description', '')).split())} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import yaml

    sys.stdout.write(markdown(yaml.safe_load(open(sys.argv[1]))))
