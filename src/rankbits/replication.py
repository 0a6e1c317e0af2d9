"""The replication table: published numbers (``config/published.yaml``) beside what the study
measured for the same (task, method, budget, bits), with the ways the setups differ."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from .models import MODELS

REQUIRED = ("source", "table", "model", "task", "method", "budget", "bits", "metric", "value")
FULL_PRECISION = {"16", "32"}


def load_published(path: str | Path) -> list[dict]:
    """The published entries, checked: each names every required key; errors say which entry."""
    entries = yaml.safe_load(Path(path).read_text()) or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of entries")
    for i, e in enumerate(entries):
        missing = [k for k in REQUIRED if k not in (e or {})]
        if missing:
            raise ValueError(f"{path}: entry {i} ({e.get('source', '?') if e else '?'}) lacks {missing}")
        if not isinstance(e["value"], (int, float)):
            raise ValueError(f"{path}: entry {i}: value {e['value']!r} is not a number")
    return entries


def _precision(bits: str) -> str:
    return "full" if str(bits) in FULL_PRECISION else str(bits)


def replication_table(summary: pd.DataFrame, published: list[dict]) -> pd.DataFrame:
    """A row per (published entry, study arm) that match on task, method, budget and bits
    (16- and 32-bit both count as full precision): measured mean over seeds, published value,
    difference (measured − published), and what differs between the two setups."""
    rows = []
    for e in published:
        hits = summary[(summary["task"] == e["task"]) & (summary["method"] == e["method"])
                       & (summary["budget"] == int(e["budget"]))
                       & (summary["bits"].astype(str).map(_precision) == _precision(e["bits"]))]
        col = f"metric.{e['metric']}_mean"
        for _, r in hits.iterrows():
            if col not in r or pd.isna(r[col]):
                continue
            ours = MODELS.get(r["model"]).hub_id
            differs = []
            if ours.split("/")[-1].lower() != str(e["model"]).lower():
                differs.append(f"model: {e['model']} there, {r['model']} ({ours}) here")
            if str(e["bits"]) != str(r["bits"]):
                differs.append(f"bits: {e['bits']} there, {r['bits']} here")
            differs.append(f"seeds here: {int(r['n'])}")
            if e.get("note"):
                differs.append(e["note"])
            rows.append({"task": e["task"], "model": r["model"], "method": e["method"],
                         "budget": int(e["budget"]), "bits": str(r["bits"]), "metric": e["metric"],
                         "measured": round(float(r[col]), 4), "published": float(e["value"]),
                         "difference": round(float(r[col]) - float(e["value"]), 4),
                         "source": f"{e['source']}, {e['table']}", "setup differences": "; ".join(differs)})
    cols = ["task", "model", "method", "budget", "bits", "metric", "measured", "published", "difference",
            "source", "setup differences"]
    return pd.DataFrame(rows, columns=cols)
