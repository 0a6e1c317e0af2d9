"""The study's answer: per (task, model), which arm to use at a given training memory.

An *arm* is (method, budget, bits); its result is the mean of the primary metric over seeds with
a 95% t interval. Its cost is its training memory (``rankbits.memory``: base weights at their
bit-width, trainable weights, gradients, optimizer state, activations) and its trainable
parameters. For a memory budget M the candidates are the arms whose training memory is at most
M; the best is the candidate with the best mean, and the arms *tied* with it are the candidates
whose difference from it is not significant: paired by seed, t-test, Holm-adjusted over the
candidates compared (two or more seeds). With one seed the comparison is a bootstrap over test
examples, which covers evaluation noise only: the verdict says so.

The frontier (by memory, and by trainable parameters) holds the arms no cheaper arm matches or
beats. Everything here reads the runs' metrics.json (through ``aggregate.load_runs``) alone.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregate import KEYS, MiB, arm_name, compare
from .stats import LEVEL, format_p, holm, mean_ci


def pareto_mask(cost, value, higher_is_better: bool = True) -> np.ndarray:
    """True for points no other point dominates (cost no higher and value no worse, one strictly);
    equal points both stay."""
    c = np.asarray(cost, dtype=float)
    v = np.asarray(value, dtype=float) * (1 if higher_is_better else -1)
    out = np.ones(len(c), dtype=bool)
    for i in range(len(c)):
        dominated = (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        out[i] = not dominated.any()
    return out


def arm_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm of each (task, model): mean and interval over seeds, costs, flags."""
    rows = []
    for key, g in runs.groupby(KEYS, sort=False):
        mean, low, high = mean_ci(g["primary_value"].to_numpy())
        rows.append({
            **dict(zip(KEYS, key)), "arm": arm_name(key[2], key[4], key[3]),
            "metric": g["primary_metric"].iloc[0], "higher_is_better": bool(g["higher_is_better"].iloc[0]),
            "seeds": len(g), "mean": mean, "ci_low": low, "ci_high": high,
            "training_mib": g["training_memory_bytes"].mean() / MiB,
            "trainable_params": int(round(g["trainable_params"].mean())),
            "lr_at_edge": bool(g["lr_at_edge"].fillna(False).astype(bool).any()),
            "train_cpu_seconds": g["train_cpu_seconds"].mean(),
            "step_ms_median": 1000 * g["step_seconds_median"].median(),
        })
    return pd.DataFrame(rows)


def best_within(arms: pd.DataFrame, runs: pd.DataFrame, memory_mib: float, alpha: float = 0.05,
                cache: dict | None = None) -> dict | None:
    """For one (task, model): the best arm whose training memory is at most ``memory_mib``, the
    runner-up, and the candidates tied with the best (see the module's docstring)."""
    cand = arms[arms["training_mib"] <= memory_mib + 1e-9]
    if cand.empty:
        return None
    higher = bool(cand["higher_is_better"].iloc[0])
    cand = cand.sort_values(["mean", "training_mib"], ascending=[not higher, True], kind="stable")
    best = cand.iloc[0]
    tests = []
    cache = {} if cache is None else cache  # the same pair recurs at every memory level
    for _, other in cand.iloc[1:].iterrows():
        key = (other["arm"], best["arm"])
        if key not in cache:
            cache[key] = compare(select(runs, other), select(runs, best))
        tests.append((other, cache[key]))
    adj = holm([r["p"] if r and r["seeds"] >= 2 else np.nan for _, r in tests])
    tied, rows = [], []
    for (other, r), p_adj in zip(tests, adj):
        if r is None:
            continue
        one_seed = r["seeds"] < 2
        differs = (r["p"] < alpha) if one_seed else (p_adj < alpha)
        rows.append({"arm": other["arm"], "diff": r["diff"], "p": r["p"], "p_holm": p_adj,
                     "seeds": r["seeds"], "differs": bool(differs), "p_resolution": r["p_resolution"]})
        if not differs:
            tied.append(other["arm"])
    return {"best": best, "candidates": len(cand), "tied": tied, "tests": rows,
            "runner_up": cand.iloc[1] if len(cand) > 1 else None,
            "runner_up_test": rows[0] if rows else None,
            "evidence": ("evaluation noise only (1 seed)" if int(cand["seeds"].min()) < 2
                         else f"paired by seed (t-test, Holm over {len(tests)} comparison(s))")}


def select(runs: pd.DataFrame, arm: pd.Series) -> pd.DataFrame:
    return runs[np.logical_and.reduce([runs[k] == arm[k] for k in KEYS])]


def verdict(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per arm, cheapest training memory first within each (task, model): its result and
    costs, whether it is on the frontier by memory and by trainable parameters, and the verdict
    at its memory: the best arm within that memory, and the arms tied with that best."""
    out = []
    for (task, model), r in runs.groupby(["task", "model"], sort=False):
        arms = arm_table(r).sort_values(["training_mib", "arm"], kind="stable").reset_index(drop=True)
        higher = bool(arms["higher_is_better"].iloc[0])
        arms["memory_frontier"] = pareto_mask(arms["training_mib"], arms["mean"], higher)
        arms["params_frontier"] = pareto_mask(arms["trainable_params"], arms["mean"], higher)
        best, tied, evidence, cache = [], [], [], {}
        for _, a in arms.iterrows():
            v = best_within(arms, r, a["training_mib"], alpha, cache)
            best.append(v["best"]["arm"])
            tied.append(", ".join(v["tied"]) or "—")
            evidence.append(v["evidence"])
        arms["best_within_memory"], arms["tied_with_best"], arms["evidence"] = best, tied, evidence
        out.append(arms)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def display_verdict(v: pd.DataFrame) -> pd.DataFrame:
    """The verdict as people read it: metric ± interval, MiB, the frontier marked."""
    ci = [f"{m:.4f} [{lo:.4f}, {hi:.4f}]" if pd.notna(lo) else f"{m:.4f} (1 seed)"
          for m, lo, hi in zip(v["mean"], v["ci_low"], v["ci_high"])]
    return pd.DataFrame({
        "task": v["task"], "model": v["model"],
        "training MiB": v["training_mib"].round(1),
        "arm": [a + (" ★" if f else "") for a, f in zip(v["arm"], v["memory_frontier"])],
        f"{v['metric'].iloc[0] if len(v) else 'metric'} (mean, {LEVEL:.0%} CI over seeds)": ci,
        "seeds": v["seeds"],
        "trainable params": v["trainable_params"],
        "params frontier": ["yes" if f else "" for f in v["params_frontier"]],
        "best within this memory": v["best_within_memory"],
        "tied with it": v["tied_with_best"],
        "learning rate": ["at the grid's edge" if e else "inside its grid" for e in v["lr_at_edge"]],
        "CPU s (train)": v["train_cpu_seconds"].round(1),
        "ms/step (median)": v["step_ms_median"].round(1),
        "evidence": v["evidence"],
    })


def recommend(runs: pd.DataFrame, memory_mib: float, task: str | None = None, model: str | None = None,
              alpha: float = 0.05) -> str:
    """The verdict for one memory budget, as text (``rankbits recommend``)."""
    if task:
        runs = runs[runs["task"] == task]
    if model:
        runs = runs[runs["model"] == model]
    if runs.empty:
        raise ValueError(f"no finished runs for task={task or 'any'} model={model or 'any'}")
    lines = []
    for (t, m), r in runs.groupby(["task", "model"], sort=False):
        arms = arm_table(r)
        v = best_within(arms, r, memory_mib, alpha)
        if v is None:
            lines.append(f"{t} / {m}: no arm fits {memory_mib:g} MiB of training memory; the "
                         f"smallest needs {arms['training_mib'].min():.1f} MiB")
            continue
        b = v["best"]
        lines.append(f"{t} / {m}, training memory <= {memory_mib:g} MiB ({v['candidates']} arm(s) fit):")
        lines.append(f"  use      {b['arm']}: {b['metric']} {interval(b)}, {b['training_mib']:.1f} MiB, "
                     f"{b['trainable_params']:,} trainable parameters")
        if v["runner_up"] is not None:
            ru, test = v["runner_up"], v["runner_up_test"]
            verdict_word = "differs from it" if test["differs"] else "is tied with it"
            p = format_p(test["p_holm"] if test["seeds"] >= 2 else test["p"], test["p_resolution"])
            lines.append(f"  runner-up {ru['arm']}: {ru['metric']} {interval(ru)}, {ru['training_mib']:.1f} MiB; "
                         f"{verdict_word} ({test['diff']:+.4f}, p {p})")
        lines.append(f"  tied with the best: {', '.join(v['tied']) or 'none'}; evidence: {v['evidence']}")
        if b["lr_at_edge"]:
            lines.append("  note: its learning rate was chosen at the edge of its grid")
    return "\n".join(lines)


def interval(arm: pd.Series) -> str:
    if pd.isna(arm["ci_low"]):
        return f"{arm['mean']:.4f} (1 seed, no interval)"
    return f"{arm['mean']:.4f} [{arm['ci_low']:.4f}, {arm['ci_high']:.4f}] over {arm['seeds']} seeds"


def answer_rst(path: str = "results/default/tables/verdict.csv") -> str:
    """The verdict for the report's landing page (``report/workflow.rst``), as an RST list: one
    line per memory level on the frontier, the arm to use there, its interval and the arms tied
    with it; a line saying there is none yet when the study has not made one."""
    import os

    if not os.path.exists(path):
        return "*No verdict yet: run the study (``snakemake --cores 2``), then build the report.*"
    v = pd.read_csv(path)
    lines = []
    for (task, model), g in v.groupby(["task", "model"], sort=False):
        lo, hi = int(g["seeds"].min()), int(g["seeds"].max())
        seeds = f"{lo}" if lo == hi else f"{lo}–{hi}"
        lines.append(f"**{task} / {model}** ({g['metric'].iloc[0]}, mean and 95% interval over {seeds} seed(s)):")
        lines.append("")
        for _, a in g[g["memory_frontier"]].iterrows():
            tied = [t for t in str(a["tied_with_best"]).split(", ") if t not in ("—", "nan")]
            note = " (learning rate at its grid's edge)" if a["lr_at_edge"] else ""
            lines.append(f"- within **{a['training_mib']:.1f} MiB** of training memory: use "
                         f"**{a['arm']}**, {interval(a)}{note}; "
                         f"tied with it: {', '.join(tied) or 'none'}")
        lines.append("")
    return "\n".join(lines)
