"""What every layer shares without importing another (config, registries, methods): the
ConfigError they raise, and ``coerce``, which reads ``--config`` strings as the schema's types."""
from __future__ import annotations

import re

import yaml


class ConfigError(ValueError):
    """A study configuration that cannot be run; the message names the key."""


JSON_TYPES = {"boolean": bool, "integer": int, "number": (int, float), "null": type(None),
              "object": dict, "array": list}


def coerce(value, schema: dict, defs: dict):
    """``value`` with strings read as YAML where the schema wants another type: Snakemake hands
    ``--config`` values over as strings (``job_server=false``, ``training='{lr: 0.002}'``,
    ``data_root=null``). A string the schema accepts as a string stays one."""
    while "$ref" in schema:  # the referenced definition, with what sits beside the $ref merged in
        base = defs[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**base, **{k: v for k, v in schema.items() if k != "$ref" and k != "properties"},
                  "properties": {name: {**base.get("properties", {}).get(name, {}), **extra}
                                 for name, extra in {**{n: {} for n in base.get("properties", {})},
                                                     **schema.get("properties", {})}.items()}}
    if isinstance(value, str):
        branches = schema.get("oneOf") or schema.get("anyOf") or [schema]
        types_of = lambda b: [b["type"]] if isinstance(b.get("type"), str) else b.get("type", [])  # noqa: E731
        types = [t for b in branches for t in types_of(b)]
        as_string = any("string" in types_of(b) and re.search(b.get("pattern", ""), value) for b in branches)
        if value in ("null", "~") and "null" in types:  # data_root=null: no local copy
            return None
        if as_string or "enum" in schema and value in schema["enum"] or not types:
            return value
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if not any(isinstance(parsed, JSON_TYPES[t]) and not (t in ("integer", "number") and isinstance(parsed, bool))
                   for t in types if t in JSON_TYPES):
            return value
        value = parsed
    if isinstance(value, (dict, list)) and (schema.get("oneOf") or schema.get("anyOf")):
        want = "object" if isinstance(value, dict) else "array"
        for branch in schema.get("oneOf") or schema.get("anyOf"):
            resolved = defs.get(branch.get("$ref", "").rsplit("/", 1)[-1], branch)
            if resolved.get("type") == want:
                return coerce(value, branch, defs)
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {}), defs)
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"], defs) for v in value]
    return value


class NonFiniteLoss(FloatingPointError):
    """A training step's loss (or a method's allocation) is not finite: the grid point fails at
    ``step`` (recorded in failed.json under --keep-going)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
