"""The study's answer: per (task, model), which arm to use at a given training memory.

An *arm* is (method, budget, bits); its result is the mean of the primary metric over seeds with
a 95% t interval. Its cost is its training memory (``rankbits.memory``: base weights at their
bit-width, trainable weights, gradients, optimizer state, activations) and its trainable
parameters. For a memory budget M the candidates are the arms whose training memory is at most
M, and ``RULE`` picks one. Every other candidate is compared with it, paired by seed (t-test,
Holm-adjusted over the candidates compared), and said to be one of three things
(``rankbits.stats.outcome``): it *differs*, it is *equivalent* within the metric's margin (the
90% interval of the difference inside ±m), or the study leaves it *unresolved* — with the
smallest difference the seeds could have detected, and how many seeds would resolve ±m. Never
"tied": a comparison three seeds fail to separate is not evidence that two arms are the same.
With one seed the comparison is a bootstrap over test examples, which covers evaluation noise
only: the verdict says so. A seed that collapsed (``rankbits.health``) is named wherever its arm
appears.

The frontier (by memory, and by trainable parameters) holds the arms no cheaper arm matches or
beats. Everything here reads the runs' metrics.json (through ``aggregate.load_runs``) alone.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from .aggregate import (KEYS, MiB, arm_name, clip_interval, compare, judge, margin_of, outcome_text,
                        shown_interval, summarize)
from .record import (AT_EDGE, COLLAPSE_REASON, COLLAPSED, HIGHER, LR, PRIMARY, PRIMARY_METRIC, STEP_SECONDS,
                     TRAIN_CPU, TRAINABLE, TRAINING_MEMORY)
from .stats import DIFFERS, EQUIVALENT, LEVEL, UNRESOLVED, format_p, holm

RULE = ("Within a memory budget, rankbits recommends the arm with the best mean over seeds among "
        "the arms that fit and have no collapsed seed (if every arm that fits has one, the best "
        "mean, flagged); each other arm that fits is then said to differ from it, to be "
        "equivalent to it within the metric's margin, or to be unresolved.")


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


def collapse_note(g: pd.DataFrame) -> str:
    """'1 of 3 seeds collapsed (seed 2 at lr 0.004: predicts class 1 for 97% of the test split)'."""
    bad = g[g[COLLAPSED]]
    if bad.empty:
        return ""
    what = "; ".join(f"seed {r['seed']}" + (f" at lr {r[LR]:g}" if pd.notna(r.get(LR)) else "")
                     + (f": {r[COLLAPSE_REASON]}" if r.get(COLLAPSE_REASON) else "")
                     for _, r in bad.iterrows())
    return f"{len(bad)} of {len(g)} seeds collapsed ({what})"


def arm_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per arm of each (task, model): its mean and interval over seeds and its costs as
    ``aggregate.summarize`` gives them, and what its seeds say one by one (collapses, rates)."""
    rows = []
    for _, arm in summarize(runs).iterrows():
        g = select(runs, arm)
        rows.append({
            **{k: arm[k] for k in KEYS}, "arm": arm_name(arm["method"], arm["bits"], arm["budget"]),
            "metric": arm[PRIMARY_METRIC], "higher_is_better": bool(arm[HIGHER]),
            "seeds": int(arm["n"]), "mean": arm[f"{PRIMARY}_mean"],
            "ci_low": arm["primary_ci_low"], "ci_high": arm["primary_ci_high"],
            "training_mib": arm[f"{TRAINING_MEMORY}_mean"] / MiB,
            "trainable_params": int(round(arm[f"{TRAINABLE}_mean"])),
            "lr_at_edge": bool(g[AT_EDGE].fillna(False).astype(bool).any()),
            "train_cpu_seconds": arm[f"{TRAIN_CPU}_mean"],
            "step_ms_median": 1000 * g[STEP_SECONDS].median(),  # the median of the seeds' medians
            "collapsed_seeds": int(g[COLLAPSED].sum()),
            "collapsed": collapse_note(g),
            # the rate(s) its seeds trained at, chosen on the selection split (never the test split)
            "rates": ", ".join(f"{x:g}" for x in sorted(set(g[LR].dropna()))),
        })
    return pd.DataFrame(rows)


def best_within(arms: pd.DataFrame, runs: pd.DataFrame, memory_mib: float, alpha: float = 0.05,
                cache: dict | None = None, margins: dict | None = None) -> dict | None:
    """For one (task, model): the arm ``RULE`` picks among those whose training memory is at
    most ``memory_mib``, the runner-up (the next best mean), and every other candidate's
    comparison with the pick, keyed by arm (see the module's docstring)."""
    cand = arms[arms["training_mib"] <= memory_mib + 1e-9]
    if cand.empty:
        return None
    higher = bool(cand["higher_is_better"].iloc[0])
    cand = cand.sort_values(["mean", "training_mib"], ascending=[not higher, True], kind="stable")
    healthy = cand[cand["collapsed_seeds"] == 0]
    best = (healthy if len(healthy) else cand).iloc[0]
    passed_over = list(cand["arm"].iloc[:list(cand["arm"]).index(best["arm"])])
    others = cand[cand["arm"] != best["arm"]]
    cache = {} if cache is None else cache  # the same pair recurs at every memory level
    raw = {}
    for _, other in others.iterrows():
        key = (other["arm"], best["arm"])
        if key not in cache:
            cache[key] = compare(select(runs, other), select(runs, best), alpha=alpha)
        if cache[key] is not None:
            raw[other["arm"]] = cache[key]
    names = list(raw)
    adj = holm([raw[a]["p"] if raw[a]["seeds"] >= 2 else np.nan for a in names])
    tests = {}
    for a, p_adj in zip(names, adj):
        r = raw[a]
        tests[a] = {"arm": a, "diff": r["diff"], "p": r["p"], "seeds": r["seeds"],
                    "p_resolution": r["p_resolution"], **judge(r, p_adj, best["metric"], margins, alpha)}
    by = {w: [a for a, t in tests.items() if t["outcome"] == w] for w in (DIFFERS, EQUIVALENT, UNRESOLVED)}
    runner_up = others.iloc[0] if len(others) else None
    return {"best": best, "candidates": len(cand), "tests": tests, **by,
            "no_shared_seed": [a for a in others["arm"] if a not in tests],
            "passed_over": passed_over, "best_collapsed": bool(best["collapsed_seeds"]),
            "runner_up": runner_up,
            "runner_up_test": tests.get(runner_up["arm"]) if runner_up is not None else None,
            "margin": margin_of(best["metric"], margins),
            "evidence": ("evaluation noise only (1 seed)" if int(cand["seeds"].min()) < 2
                         else f"paired by seed (t-test, Holm over {len(names)} comparison(s))")}


def select(runs: pd.DataFrame, arm: pd.Series) -> pd.DataFrame:
    return runs[np.logical_and.reduce([runs[k] == arm[k] for k in KEYS])]


def verdict(runs: pd.DataFrame, alpha: float = 0.05, margins: dict | None = None) -> pd.DataFrame:
    """One row per arm, cheapest training memory first within each (task, model): its result and
    costs, whether it is on the frontier by memory and by trainable parameters, and the verdict
    at its memory: the arm ``RULE`` picks within that memory, which arms differ from it, are
    equivalent to it or are unresolved, and what this arm's own comparison with it says."""
    out = []
    for (task, model), r in runs.groupby(["task", "model"], sort=False):
        arms = arm_table(r).sort_values(["training_mib", "arm"], kind="stable").reset_index(drop=True)
        higher = bool(arms["higher_is_better"].iloc[0])
        arms["memory_frontier"] = pareto_mask(arms["training_mib"], arms["mean"], higher)
        arms["params_frontier"] = pareto_mask(arms["trainable_params"], arms["mean"], higher)
        cols: dict[str, list] = {k: [] for k in ("best_within_memory", "vs_best", "detectable", "seeds_needed",
                                                 "equivalent_to_best", "unresolved_vs_best", "differs_from_best",
                                                 "evidence")}
        cache = {}
        for _, a in arms.iterrows():
            v = best_within(arms, r, a["training_mib"], alpha, cache, margins)
            mine = v["tests"].get(a["arm"])
            cols["best_within_memory"].append(v["best"]["arm"])
            cols["vs_best"].append("is the best" if a["arm"] == v["best"]["arm"] else
                                   outcome_text(mine) if mine else "no shared seed")
            cols["detectable"].append(mine["detectable"] if mine else np.nan)
            cols["seeds_needed"].append(mine["seeds_needed"] if mine else None)
            for w, col in ((EQUIVALENT, "equivalent_to_best"), (UNRESOLVED, "unresolved_vs_best"),
                           (DIFFERS, "differs_from_best")):
                cols[col].append(", ".join(v[w]) or "—")
            cols["evidence"].append(v["evidence"])
        for k, values in cols.items():
            arms[k] = values
        arms["margin"] = [margin_text(margin_of(m, margins)) for m in arms["metric"]]
        out.append(arms)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def margin_text(margin) -> str:
    return f"±{margin}" if isinstance(margin, str) else f"±{margin:g}"


def display_verdict(v: pd.DataFrame) -> pd.DataFrame:
    """The verdict as people read it: metric ± interval, MiB, the frontier marked."""
    mixed = v["metric"].nunique() > 1  # tasks with different metrics: each value names its own
    ci = [("{} ".format(metric) if mixed else "")
          + (f"{m:.4f} {shown_interval(metric, lo, hi)}" if pd.notna(lo) else f"{m:.4f} (1 seed)")
          for metric, m, lo, hi in zip(v["metric"], v["mean"], v["ci_low"], v["ci_high"])]
    metric_col = "primary metric" if mixed else (v["metric"].iloc[0] if len(v) else "metric")
    return pd.DataFrame({
        "task": v["task"], "model": v["model"],
        "training MiB": v["training_mib"].round(1),
        "arm": [a + (" ★" if f else "") for a, f in zip(v["arm"], v["memory_frontier"])],
        f"{metric_col} (mean, {LEVEL:.0%} CI over seeds)": ci,
        "seeds": v["seeds"],
        "collapsed seeds": [c or "—" for c in v["collapsed"]],
        "trainable params": v["trainable_params"],
        "params frontier": ["yes" if f else "" for f in v["params_frontier"]],
        "best within this memory": v["best_within_memory"],
        "this arm vs the best": v["vs_best"],
        "equivalent to the best": v["equivalent_to_best"],
        "unresolved vs the best": v["unresolved_vs_best"],
        "differs from the best": v["differs_from_best"],
        "margin": v["margin"],
        "learning rate": ["at the grid's edge" if e else "inside its grid" for e in v["lr_at_edge"]],
        "CPU s (train)": v["train_cpu_seconds"].round(1),
        "ms/step (median)": v["step_ms_median"].round(1),
        "evidence": v["evidence"],
    })


def brief_verdict(v: pd.DataFrame) -> pd.DataFrame:
    """The verdict as the end of a run prints it: one line per arm, what it scored and what the
    study can say of it against the best arm within its memory."""
    shown = display_verdict(v)
    keep = ["task", "model", "training MiB", "arm", shown.columns[4], "best within this memory",
            "this arm vs the best", "collapsed seeds"]
    return shown[keep]


def recommend(runs: pd.DataFrame, memory_mib: float, task: str | None = None, model: str | None = None,
              alpha: float = 0.05, margins: dict | None = None) -> str:
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
        v = best_within(arms, r, memory_mib, alpha, margins=margins)
        if v is None:
            lines.append(f"{t} / {m}: no arm fits {memory_mib:g} MiB of training memory; the "
                         f"smallest needs {arms['training_mib'].min():.1f} MiB")
            continue
        b = v["best"]
        lines.append(f"{t} / {m}, training memory <= {memory_mib:g} MiB ({v['candidates']} arm(s) fit):")
        lines.append(f"  use       {b['arm']}: {b['metric']} {interval(b)}, {b['training_mib']:.1f} MiB, "
                     f"{b['trainable_params']:,} trainable parameters"
                     + (f", lr {b['rates']} (chosen on the selection split)" if b.get("rates") else ""))
        if v["best_collapsed"]:
            lines.append(f"  WARNING   every arm that fits has a collapsed seed; this one too: {b['collapsed']}")
        if v["runner_up"] is not None:
            ru, test = v["runner_up"], v["runner_up_test"]
            if test is None:
                said = "no shared seed with it: not compared"
            else:
                p = format_p(test["p_holm"] if test["seeds"] >= 2 else test["p"], test["p_resolution"])
                said = f"{outcome_text(test)} ({test['diff']:+.4f}, p {p})"
            lines.append(f"  runner-up {ru['arm']}: {ru['metric']} {interval(ru)}, {ru['training_mib']:.1f} MiB; {said}")
        lines.append(f"  vs the best: equivalent within {margin_text(v['margin'])}: {', '.join(v[EQUIVALENT]) or 'none'}; "
                     f"differs: {', '.join(v[DIFFERS]) or 'none'}; unresolved: {', '.join(v[UNRESOLVED]) or 'none'}"
                     + (f"; no shared seed: {', '.join(v['no_shared_seed'])}" if v["no_shared_seed"] else ""))
        lines.append(f"  evidence: {v['evidence']}")
        for _, a in arms[arms["collapsed_seeds"] > 0].iterrows():
            passed = " (passed over for that)" if a["arm"] in v["passed_over"] else ""
            lines.append(f"  collapsed: {a['arm']}: {a['collapsed']}{passed}")
        if b["lr_at_edge"]:
            lines.append("  note: its learning rate was chosen at the edge of its grid")
    lines.append(f"rule: {RULE}")
    return "\n".join(lines)


def interval(arm: pd.Series) -> str:
    """The arm's mean and interval in words; an end past the metric's range is clipped and the
    interval as computed is given beside it."""
    if pd.isna(arm["ci_low"]):
        return f"{arm['mean']:.4f} (1 seed, no interval)"
    lo, hi, clipped = clip_interval(arm["metric"], arm["ci_low"], arm["ci_high"])
    note = (f" (clipped to {arm['metric']}'s range; the t interval is [{arm['ci_low']:.4f}, "
            f"{arm['ci_high']:.4f}])" if clipped else "")
    return f"{arm['mean']:.4f} [{lo:.4f}, {hi:.4f}] over {arm['seeds']} seeds{note}"


def answer_rst(path: str = "results/default/tables/verdict.csv") -> str:
    """The verdict for the report's landing page (``report/workflow.rst``), as an RST list: one
    line per memory level on the frontier, the arm to use there, its interval and what the
    study can say of the others; a line saying there is none yet when the study has not made one."""
    if not os.path.exists(path):
        return "*No verdict yet: run the study (``snakemake --cores 2``), then build the report.*"
    v = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"rates": str})
    lines = [f"*The rule:* {RULE}", ""]
    for (task, model), g in v.groupby(["task", "model"], sort=False):
        lo, hi = int(g["seeds"].min()), int(g["seeds"].max())
        seeds = f"{lo}" if lo == hi else f"{lo}–{hi}"
        lines.append(f"**{task} / {model}** ({g['metric'].iloc[0]}, mean and 95% interval over {seeds} "
                     f"seed(s); margin {g['margin'].iloc[0]}):")
        lines.append("")
        for _, a in g[g["memory_frontier"]].iterrows():
            note = " (learning rate at its grid's edge)" if a["lr_at_edge"] else ""
            best = g[g["arm"] == a["best_within_memory"]].iloc[0]
            said = "; ".join(f"{w}: {a[c]}" for w, c in (("equivalent", "equivalent_to_best"),
                                                         ("differs", "differs_from_best"),
                                                         ("unresolved", "unresolved_vs_best"))
                             if str(a[c]) not in ("—", "nan"))
            rate = f" at lr {best['rates']} (chosen on the selection split)" if best.get("rates") else ""
            lines.append(f"- within **{a['training_mib']:.1f} MiB** of training memory: use "
                         f"**{a['best_within_memory']}**, {interval(best)}{rate}{note}; "
                         f"{said or 'no other arm fits'}")
            if isinstance(best["collapsed"], str) and best["collapsed"]:  # its own paragraph in the item
                lines += ["", f"  **Warning:** {best['collapsed']}", ""]
        unresolved = g[g["vs_best"].astype(str).str.startswith(UNRESOLVED)]
        if len(unresolved):
            mde = unresolved["detectable"].astype(float).max()
            lines.append("")
            lines.append(f"*What this study cannot tell:* {len(unresolved)} arm(s) are unresolved against the "
                         f"best within their memory; differences under {mde:.3g} could not have been "
                         f"detected (80% power at alpha 0.05).")
        flagged = g[g["collapsed_seeds"] > 0]
        if len(flagged):
            lines.append("")  # a list of its own, not the paragraph's last line
        for _, a in flagged.iterrows():
            lines.append(f"- *collapsed:* {a['arm']}: {a['collapsed']}")
        lines.append("")
    return "\n".join(lines)


def write_settings(path: str, alpha: float, margins: dict | None) -> None:
    """What ``rankbits recommend`` reads beside the runs: the study's alpha and margins."""
    with open(path, "w") as fh:
        json.dump({"alpha": alpha, "margin": margins or {}}, fh, indent=1)
