"""The replication table: published numbers (``config/published.yaml``) beside what the study
measured for the same (task, method, budget, bits), with the ways the setups differ."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from .models import MODELS
from .record import HIGHER, METRIC, PRIMARY_METRIC
from .stats import mean_ci

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
        col = f"{METRIC}{e['metric']}_mean"
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


RELATIONS = ("better", "equal")


def load_directions(path: str | Path) -> list[dict]:
    """The claimed directions (``config/directions.yaml``), checked; errors name the entry."""
    entries = yaml.safe_load(Path(path).read_text()) or []
    for i, e in enumerate(entries):
        missing = [k for k in ("source", "claim", "metric", "relation", "a", "b") if k not in (e or {})]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks {missing}")
        if e["relation"] not in RELATIONS:
            raise ValueError(f"{path}: entry {i}: relation {e['relation']!r} is not one of {RELATIONS}")
        if e["relation"] == "equal" and not isinstance(e.get("tolerance"), (int, float)):
            raise ValueError(f"{path}: entry {i}: relation equal needs a numeric tolerance")
    return entries


def direction_verdict(e: dict, low: float, high: float, scale: float) -> str:
    """Whether the interval [low, high] of the paired difference (a better than b when > 0)
    shows the claimed direction."""
    if e["relation"] == "better":
        return "held" if low > 0 else "reversed" if high < 0 else "not resolved (interval includes 0)"
    tol = e["tolerance"] * abs(scale)
    if -tol <= low and high <= tol:
        return "held"
    return "not held" if high < -tol or low > tol else f"not resolved (interval crosses ±{e['tolerance']:.0%})"


def directions_table(runs: pd.DataFrame, directions: list[dict]) -> pd.DataFrame:
    """A row per (claim, task, model, budget) the study ran both arms at: each arm's mean, the
    paired difference (by seed; > 0: a better than b) with its 95% interval, and whether the
    claimed direction held."""
    rows = []
    col = lambda e: f"{METRIC}{e['metric']}"  # noqa: E731
    for e in directions:
        if col(e) not in runs:
            continue
        pick = lambda arm: runs[(runs["method"] == arm["method"]) & (runs["bits"] == str(arm["bits"]))  # noqa: E731
                                & runs[col(e)].notna()
                                & ((runs["task"] == e["task"]) if "task" in e else True)
                                & ((runs["budget"] == int(e["budget"])) if "budget" in e else True)]
        a, b = pick(e["a"]), pick(e["b"])
        keys = ["task", "model", "budget", "seed"]
        paired = a[keys + [col(e), PRIMARY_METRIC, HIGHER]].merge(b[keys + [col(e)]], on=keys, suffixes=("_a", "_b"))
        for (task, model, budget), grp in paired.groupby(["task", "model", "budget"], sort=True):
            # the task's direction (its registry entry, as every run records it) is its primary metric's
            if grp[PRIMARY_METRIC].iloc[0] != e["metric"]:
                if "task" not in e:  # an entry for every task: this one reports the metric
                    continue  # beside another primary (CNN/DM: perplexity beside ROUGE-L)
                raise ValueError(f"direction {e['claim']!r}: {e['metric']} is not {task}'s primary metric "
                                 f"({grp[PRIMARY_METRIC].iloc[0]}), whose direction the runs record")
            sign = 1.0 if grp[HIGHER].iloc[0] else -1.0
            diff = sign * (grp[f"{col(e)}_a"] - grp[f"{col(e)}_b"]).to_numpy()
            mean, low, high = mean_ci(diff)
            scale = float(grp[f"{col(e)}_b"].mean())
            rows.append({
                "source": e["source"], "claim": e["claim"], "task": task, "model": model, "budget": int(budget),
                "a": f"{e['a']['method']} @ {e['a']['bits']}", "b": f"{e['b']['method']} @ {e['b']['bits']}",
                "metric": e["metric"], "a mean": round(float(grp[f"{col(e)}_a"].mean()), 4),
                "b mean": round(scale, 4), "a better by": round(float(mean), 4),
                "95% CI": f"[{low:.4g}, {high:.4g}]" if len(diff) > 1 else "— (1 seed)",
                "seeds": len(diff),
                "direction": direction_verdict(e, low, high, scale) if len(diff) > 1 else "not resolved (1 seed)",
            })
    cols = ["source", "claim", "task", "model", "budget", "a", "b", "metric", "a mean", "b mean", "a better by",
            "95% CI", "seeds", "direction"]
    return pd.DataFrame(rows, columns=cols)
