"""Tables from the per-run ``metrics.json`` files alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from .io import atomic_file, read_json
from .bits import bits_label
from .methods import METHODS
from .record import (COLLAPSED, COSTS, EFFECTIVE, EVAL_CPU, HIGHER, METRIC, NOT_TABULATED, OWN_BASE, PRIMARY,
                     PRIMARY_METRIC, SEARCH_SECONDS, SEARCH_STEPS, STEP_SECONDS, TRAIN_CPU, TRAIN_SECONDS, TRAINABLE,
                     TRAINING_MEMORY)
from .stats import (DIFFERS, EQUIVALENT, LEVEL, POWER, detectable, equivalence_interval, format_p, holm,
                    mean_ci, outcome, paired_bootstrap, paired_test, resolve_margin, seeds_for)
from .tasks import TASKS

KEYS = ["task", "model", "method", "budget", "bits"]
MiB = 2**20


def run_records(run_dirs: list[str], status: str | None = "success"):
    """(run dir, its metrics.json, its identity: task, model, method, budget, bits, seed) of the
    runs with ``status`` ("success"; "failed": diverged, recorded under --keep-going; None: any)."""
    for d in run_dirs:
        m = read_json(Path(d) / "metrics.json")
        if status is None or m["run_info"]["status"] == status:
            yield d, m, {k: m["run_info"][k] for k in (*KEYS, "seed")}


def _dotted(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_dotted(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recorded_settings(run_dirs: list[str]) -> str:
    """The settings the finished runs were made with, as their metrics.json recorded them (the
    run's spec and where its data came from), not the ones a later command was given: a setting
    every run shares once; one that varies with each value and the methods that had it (or how
    many runs, where a method's runs disagree)."""
    import json

    seen: dict[str, dict[str, list[str]]] = {}  # key -> value -> the methods of its runs
    methods: list[str] = []
    for _, m, ident in run_records(run_dirs, None):
        methods.append(ident["method"])
        spec = {k: v for k, v in (m["run_info"].get("spec") or {}).items() if k != "run"}
        data = (m.get("meta_info") or {}).get("data")
        for key, value in _dotted({**({"data": data} if data else {}), **spec}).items():
            if value != {}:
                seen.setdefault(key, {}).setdefault(json.dumps(value, sort_keys=True, default=str), []).append(
                    ident["method"])
    if not methods:
        return ""
    lines = [f"# recorded by the {len(methods)} finished run(s); a setting that varies lists each value and "
             f"whose it is"]
    for key in sorted(seen):
        values = dict(seen[key])
        unset = list(methods)
        for ms in values.values():
            for x in ms:
                unset.remove(x)
        if unset:
            values["not set"] = unset
        if len(values) == 1:
            lines.append(f"{key}: {next(iter(values))}")
            continue
        groups = {v: set(ms) for v, ms in values.items()}
        disjoint = sum(len(g) for g in groups.values()) == len(set().union(*groups.values()))
        parts = [f"{v} ({', '.join(sorted(groups[v])) if disjoint else f'{len(ms)} runs'})" for v, ms in values.items()]
        lines.append(f"{key}: varies: " + "; ".join(parts))
    return "\n".join(lines)


def succeeded(run_dirs: list[str]) -> list[str]:
    return [d for d, _, _ in run_records(run_dirs)]


def failed_runs(run_dirs: list[str]) -> pd.DataFrame:
    """One row per failed grid point: the run, its learning rate, the step and the error. A run
    with a failed point but another that trained appears too (it was chosen among the rest)."""
    rows = []
    for _, m, ident in run_records(run_dirs, None):
        points = m.get("failure") or m["eval_info"]["lr_selection"]["failed"]
        rows += [{**ident, "run_status": m["run_info"]["status"], **p} for p in points]
    cols = [*KEYS, "seed", "run_status", "lr", "step", "error"]
    return pd.DataFrame(rows, columns=cols).sort_values(cols[:7], kind="stable", ignore_index=True)


def load_runs(run_dirs: list[str]) -> pd.DataFrame:
    """One row per finished run: its identity (task, model, method, budget, bits, seed), where it
    is (``run_dir``) and its record flattened by ``pandas.json_normalize``, each column named by
    its dotted path in metrics.json (``record.PRIMARY``, ``record.COSTS``, ...): no field renamed.
    A cost a run did not measure (CUDA peaks on CPU) is NaN."""
    found = list(run_records(run_dirs))
    flat = pd.json_normalize([m for _, m, _ in found])
    identity = [f"run_info.{k}" for k in (*KEYS, "seed")]
    flat = flat.drop(columns=[c for c in flat.columns if c.startswith(NOT_TABULATED) or c in identity])
    df = pd.concat([pd.DataFrame([ident for _, _, ident in found]), flat], axis=1)
    df["run_dir"] = [str(d) for d, _, _ in found]
    df["bits"] = df["bits"].astype(str)
    for col in COSTS:  # None (not measured here): NaN; counts stay integers
        df[col] = (df[col].astype("float64") if df[col].dtype == object else df[col]) if col in df else np.nan
    # a run that learned nothing (``health.collapse``): flagged, never hidden in an interval
    df[COLLAPSED] = df[COLLAPSED].fillna(False).astype(bool) if COLLAPSED in df else False
    return df.sort_values([*KEYS, "seed"], kind="stable").reset_index(drop=True)


def metric_names(frame: pd.DataFrame, suffix: str = "") -> list[str]:
    """The task metrics a runs frame (or, with ``suffix`` "_mean", a summary) holds."""
    return [c[len(METRIC):len(c) - len(suffix)] for c in frame.columns
            if c.startswith(METRIC) and c.endswith(suffix)]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed) and n over seeds per (task, model, method,
    budget, bits), for every metric and every cost in ``record.COSTS`` (columns ``<path>_mean``,
    ``<path>_std``), with the primary metric's t interval over seeds."""
    value_cols = [METRIC + name for name in metric_names(runs)] + [PRIMARY, *COSTS]
    g = runs.groupby(KEYS, sort=False, dropna=False)
    mean, std = g[value_cols].apply(lambda f: f.mean()), g[value_cols].std()  # the mean as Series.mean sums
    out = pd.concat([mean.add_suffix("_mean"), std.add_suffix("_std")], axis=1)
    out = out[[f"{c}_{stat}" for c in value_cols for stat in ("mean", "std")]]
    out["n"] = g.size()
    out[PRIMARY_METRIC] = g[PRIMARY_METRIC].first()
    out[HIGHER] = g[HIGHER].first()
    out["seeds"] = g["seed"].apply(lambda s: ",".join(map(str, sorted(s))))
    ci = g[PRIMARY].apply(lambda v: mean_ci(v.to_numpy()))
    out["primary_ci_low"] = [c[1] for c in ci]
    out["primary_ci_high"] = [c[2] for c in ci]
    return out.reset_index()


# each axis of the study's question, compared with everything else held fixed:
# axis -> (columns held fixed, the baseline among the axis' values)
AXES = {
    "method": (["budget", "bits"], lambda values: "lora" if "lora" in values else None),
    "bits": (["method", "budget"], lambda values: "32" if "32" in values else None),
    "budget": (["method", "bits"], lambda values: max(values)),
}
ONE_SEED = "evaluation noise only (1 seed): paired bootstrap over test examples"


def compare(runs_a: pd.DataFrame, runs_b: pd.DataFrame, n_boot: int = 2000, alpha: float = 1 - LEVEL) -> dict | None:
    """Arm a vs arm b on the primary metric (a - b), paired by seed. Two or more shared seeds:
    mean difference with its t interval, paired t-test p (``scipy.stats.ttest_rel``; the
    sign-flip p where the t-test is undefined: every pair differing by the same amount), the
    (1 - 2 alpha) interval for equivalence and the smallest difference these seeds detect
    (``stats.detectable``). One seed: a paired bootstrap over the test examples, which covers
    evaluation noise only, not the training noise that decides whether one arm beats another."""
    a, b = runs_a.set_index("seed"), runs_b.set_index("seed")
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        return None
    reference = float(b.loc[seeds, PRIMARY].mean())
    if len(seeds) >= 2:
        r = paired_test(a.loc[seeds, PRIMARY], b.loc[seeds, PRIMARY], 1 - alpha)
        d = a.loc[seeds, PRIMARY].to_numpy(float) - b.loc[seeds, PRIMARY].to_numpy(float)
        eq_low, eq_high = equivalence_interval(d, alpha)
        t_ok = np.isfinite(r["t_p"])
        return {"seeds": len(seeds), "diff": r["diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                "p": r["t_p"] if t_ok else r["sign_flip_p"], "p_resolution": None if t_ok else 2 ** len(seeds),
                "sign_flip_p": r["sign_flip_p"], "eq_low": eq_low, "eq_high": eq_high, "sd": r["sd"],
                "detectable": detectable(r["sd"], len(seeds), alpha), "reference": reference,
                "test": (f"paired by seed ({len(seeds)}): t-test (p, CI), sign-flip permutation" if t_ok else
                         f"paired by seed ({len(seeds)}): every seed differs by the same amount, "
                         f"sign-flip permutation p (the t-test is undefined)")}
    seed = seeds[0]
    pa, pb = (pd.read_parquet(Path(df.loc[seed, "run_dir"]) / "predictions.parquet") for df in (a, b))
    if not pa["idx"].equals(pb["idx"]):
        raise ValueError(f"predictions of {a['run_dir'].iloc[0]} and {b['run_dir'].iloc[0]} cover "
                         f"different examples")
    task, metric = a["task"].iloc[0], a[PRIMARY_METRIC].iloc[0]
    fast = (lambda y, p: y == p) if metric == "accuracy" else None  # a mean of per-example hits
    r = paired_bootstrap(*per_example(task, metric, pa, pb), n_boot=n_boot, per_example=fast, level=1 - alpha)
    return {"seeds": 1, "diff": r["diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"],
            "p_resolution": n_boot, "sign_flip_p": np.nan, "eq_low": r["eq_low"], "eq_high": r["eq_high"],
            "sd": np.nan, "detectable": float((norm.ppf(1 - alpha / 2) + norm.ppf(POWER)) * r["se"]),
            "reference": reference, "test": ONE_SEED}


# the equivalence margin per primary metric (``verdict.margin`` in the config): a number in the
# metric's units, or a percentage of the baseline arm's mean
MARGINS = {"default": 0.01, "perplexity": "2%", "loss": "2%"}

# the values a metric can take: a t interval over a few seeds can run past them, and is shown
# clipped with a mark (the tables keep the interval as computed)
METRIC_RANGE = {"accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "macro_f1": (0.0, 1.0), "mcc": (-1.0, 1.0),
                "rouge1": (0.0, 1.0), "rouge2": (0.0, 1.0), "rougeL": (0.0, 1.0),
                "perplexity": (1.0, np.inf), "loss": (0.0, np.inf)}
CLIPPED = "*"
CLIPPED_NOTE = (f"{CLIPPED} an end of the interval is clipped to the metric's range (the t interval "
                "over few, spread-out seeds ran past it)")


def clip_interval(metric: str, low: float, high: float) -> tuple[float, float, bool]:
    """(low, high, whether either end was clipped) within ``metric``'s range."""
    lo_bound, hi_bound = METRIC_RANGE.get(metric, (-np.inf, np.inf))
    clipped = bool(low < lo_bound or high > hi_bound)
    return max(low, lo_bound), min(high, hi_bound), clipped


def clipped_note(shown: pd.DataFrame) -> str:
    """``CLIPPED_NOTE`` where a shown table has a clipped interval, else nothing."""
    marked = shown.astype(str).apply(lambda c: c.str.contains("]" + CLIPPED, regex=False)).to_numpy().any()
    return CLIPPED_NOTE if marked else ""


def shown_interval(metric: str, low: float, high: float) -> str:
    """``[low, high]`` as the tables show it, clipped to the metric's range and marked."""
    lo, hi, clipped = clip_interval(metric, low, high)
    return f"[{lo:.4f}, {hi:.4f}]" + (CLIPPED if clipped else "")


def margin_of(metric: str, margins: dict | None = None) -> str | float:
    m = {**MARGINS, **(margins or {})}
    return m.get(metric, m["default"])


def judge(r: dict, p_adjusted: float, metric: str, margins: dict | None = None,
          alpha: float = 1 - LEVEL) -> dict:
    """What comparison ``r`` (``compare``) says, its (Holm-)adjusted p given: the outcome
    (differs / equivalent / unresolved), the margin in the metric's units, the smallest
    difference the study could detect and the seeds that would resolve a difference of the
    margin (seeds compared only; None with one seed)."""
    margin = resolve_margin(margin_of(metric, margins), r["reference"])
    p = r["p"] if r["seeds"] < 2 else p_adjusted
    word = outcome(p, r["eq_low"], r["eq_high"], margin, alpha)
    needed = seeds_for(margin, r["sd"], alpha) if r["seeds"] >= 2 else None
    return {"outcome": word, "margin": margin, "detectable": r["detectable"],
            "seeds_needed": needed, "p_holm": p_adjusted}


def outcome_text(j: dict, unit: str = "") -> str:
    """One comparison's outcome as a reader takes it in at a glance."""
    if j["outcome"] == DIFFERS:
        return DIFFERS
    if j["outcome"] == EQUIVALENT:
        return f"equivalent within ±{j['margin']:.3g}{unit}"
    mde = j["detectable"]
    can = (f"this study cannot tell differences under {mde:.3g}" if np.isfinite(mde)
           else "no seed variance to judge by")
    n = j.get("seeds_needed")
    more = f"; ~{int(n)} seeds would resolve ±{j['margin']:.3g}" if n is not None and pd.notna(n) else ""
    return f"unresolved ({can}{more})"


def comparisons(runs: pd.DataFrame, alpha: float = 0.05, n_boot: int = 2000,
                margins: dict | None = None) -> pd.DataFrame:
    """Along every axis of the question, on the primary metric: each method vs LoRA at the same
    budget and bits; each bit-width vs 32 at the same method and budget; each budget vs the
    largest at the same method and bits. Within a (task, model) the p-values are adjusted for
    the number of comparisons by Holm's method; each row's outcome is *differs* (two or more
    seeds and a Holm-adjusted p below ``alpha``), *equivalent* within the metric's margin, or
    *unresolved*, with the smallest difference the seeds could detect. With one seed the
    bootstrap covers evaluation noise only and the row says so; nothing is starred."""
    rows = []
    for (task, model), grp in runs.groupby(["task", "model"], sort=False):
        block = []
        for axis, (fixed, baseline_of) in AXES.items():
            for key, sub in grp.groupby(fixed, sort=False):
                values = list(dict.fromkeys(sub[axis]))
                base = baseline_of(values)
                if base is None:
                    continue
                for v in values:
                    if v == base:
                        continue
                    r = compare(sub[sub[axis] == v], sub[sub[axis] == base], n_boot, alpha)
                    if r is None:
                        continue
                    held = dict(zip(fixed, key))
                    block.append({"task": task, "model": model, "axis": axis, **held, axis: v,
                                  "baseline": base, "metric": grp[PRIMARY_METRIC].iloc[0], **r})
        adjusted = holm([b["p"] if b["seeds"] >= 2 else np.nan for b in block])
        for b, adj in zip(block, adjusted):
            b.update(judge(b, adj, b["metric"], margins, alpha))
            b["significant"] = bool(b["seeds"] >= 2 and b["outcome"] == DIFFERS)
        rows += block
    cols = ["task", "model", "axis", "method", "budget", "bits", "baseline", "metric", "seeds", "diff",
            "ci_low", "ci_high", "p", "p_holm", "sign_flip_p", "significant", "outcome", "margin",
            "eq_low", "eq_high", "sd", "detectable", "seeds_needed", "p_resolution", "test"]
    return pd.DataFrame(rows, columns=cols)


def per_example(task: str, metric: str, a: pd.DataFrame, b: pd.DataFrame) -> tuple:
    """(labels, a's per-example values, b's, metric of a resample) for the paired bootstrap, from
    two runs' predictions.parquet: classes for label metrics; summed NLL over scored tokens for
    perplexity; per-example ROUGE for generated text."""
    scoring = TASKS.get(task).scoring()
    if scoring == "labels":
        return a["label"], a["pred"], b["pred"], lambda y, p: TASKS.get(task).metrics(list(y), list(p))[metric]
    if metric == "perplexity":
        return a["tokens"], a["nll"], b["nll"], lambda y, p: float(np.exp(p.sum() / max(y.sum(), 1)))
    return np.zeros(len(a)), a[metric], b[metric], lambda y, p: float(np.mean(p))


def display_comparisons(comp: pd.DataFrame) -> pd.DataFrame:
    """As people read it: what is compared with what, the difference with its interval, p
    (raw and Holm-adjusted; never printed as 0) and a star only where seeds support one."""
    out = pd.DataFrame({
        "task": comp["task"], "model": comp["model"], "axis": comp["axis"],
        "arm": [arm_name(m, b, n) for m, b, n in zip(comp["method"], comp["bits"], comp["budget"])],
        "vs": [vs_label(r) for r in comp.to_dict("records")],
        "metric": comp["metric"], "seeds": comp["seeds"],
    })
    out["difference"] = [f"{d:+.4f}{' *' if s else ''}" for d, s in zip(comp["diff"], comp["significant"])]
    out[f"{LEVEL:.0%} CI"] = [f"[{lo:+.4f}, {hi:+.4f}]" if pd.notna(lo) else "—"
                             for lo, hi in zip(comp["ci_low"], comp["ci_high"])]
    res = [int(r) if pd.notna(r) else None for r in comp["p_resolution"]]
    out["p"] = [format_p(p, n) for p, n in zip(comp["p"], res)]
    out["p (Holm)"] = [format_p(p) if pd.notna(p) else "— (1 seed)" for p in comp["p_holm"]]
    out["outcome"] = [outcome_text(r) for r in comp.to_dict("records")]
    out["test"] = comp["test"]
    return out


def vs_label(row: dict) -> str:
    """The baseline arm of a comparison row, named like the arm."""
    other = {"method": row["method"], "budget": row["budget"], "bits": row["bits"], row["axis"]: row["baseline"]}
    return arm_name(other["method"], other["bits"], other["budget"])


def fmt(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "—"
    if std is None or np.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: one 'mean ± std' column per metric."""
    out = summary[KEYS].copy()
    for name in metric_names(summary, "_mean"):
        out[name] = [fmt(m, s) for m, s in zip(summary[f"{METRIC}{name}_mean"], summary[f"{METRIC}{name}_std"])]
    out["n"] = summary["n"]
    out[f"primary {LEVEL:.0%} CI (t, over seeds)"] = [
        shown_interval(metric, lo, hi) if pd.notna(lo) else "— (n = 1)"
        for metric, lo, hi in zip(summary[PRIMARY_METRIC], summary["primary_ci_low"], summary["primary_ci_high"])]
    out["trainable params"] = summary[f"{TRAINABLE}_mean"].round().astype("int64")
    out["effective adapter params"] = summary[f"{EFFECTIVE}_mean"].round().astype("int64")
    out["training MiB"] = (summary[f"{TRAINING_MEMORY}_mean"] / MiB).round(1)
    out["train CPU s"] = summary[f"{TRAIN_CPU}_mean"].round(1)
    out["train s (wall)"] = summary[f"{TRAIN_SECONDS}_mean"].round(1)
    out["optimizer steps, all grid points"] = summary[f"{SEARCH_STEPS}_mean"].round().astype("int64")
    out["train s, all grid points"] = summary[f"{SEARCH_SECONDS}_mean"].round(1)
    return out


def selection_table(run_dirs: list[str]) -> pd.DataFrame:
    """One row per run: the learning rate chosen on the selection split, every grid point's
    selection score, and the compute the arm spent (all grid points, probes included)."""
    rows = []
    for _, m, ident in run_records(run_dirs):
        sel = m["eval_info"]["lr_selection"]
        row = dict(ident)
        row.update({
            "selection metric": sel["selection_metric"] or "—", "selection rows": sel["selection_n"] or 0,
            "chosen lr": sel["chosen_lr"],
            "chosen at the grid's edge": bool(sel.get("at_edge")),
            "rates added by the search": len(search["rates"]) - len(m["run_info"]["spec"]["training"]["lr_grid"] or [0])
            if (search := sel.get("search")) else 0,
            "rate chosen on": (f"seed {search['file'].rsplit('/seed', 1)[1].split('/')[0]} (reused)"
                               if search and search.get("reused_by_this_seed") else "this seed"),
            "grid (lr: selection score)": "; ".join(
                f"{g['lr']:g}: {g['selection_value']:.4f}" if g["selection_value"] is not None
                else f"{g['lr']:g}: —" for g in sel["grid"]),
            "test " + m["eval_info"]["primary_metric"]: m["eval_info"]["primary_value"],
            "optimizer steps, all grid points": sel["total_optimizer_steps"],
            "train s, all grid points": round(sel["total_train_seconds"], 1),
            "train CPU s, all grid points": round(sel.get("total_train_cpu_seconds") or float("nan"), 1),
        })
        rows.append(row)
    df = pd.DataFrame(rows)
    df["bits"] = df["bits"].astype(str)
    return df.sort_values([*KEYS, "seed"], kind="stable").reset_index(drop=True)


def selection_curves(run_dirs: list[str]) -> pd.DataFrame:
    """Long form: (task, model, method, budget, bits, seed, lr, selection value, chosen)."""
    rows = []
    for _, m, ident in run_records(run_dirs):
        sel = m["eval_info"]["lr_selection"]
        for g in sel["grid"]:
            rows.append({**ident, "lr": g["lr"],
                         "selection_metric": sel["selection_metric"], "value": g["selection_value"],
                         "chosen": g["lr"] == sel["chosen_lr"]})
    return pd.DataFrame(rows)


def method_label(method: str) -> str:
    return METHODS.get(method).label or method


def arm_label(method: str, bits: str) -> str:
    """'LoRA' at fp32, else 'LoRA @ NF4+DQ' (QLoRA), 'AdaLoRA @ NF4+DQ' (QLoRA+AdaLoRA), ..."""
    return method_label(method) if str(bits) == "32" else f"{method_label(method)} @ {bits_label(bits)}"


def arm_name(method: str, bits: str, budget) -> str:
    """An arm as the verdict and comparisons name it: 'LoRA @ NF4+DQ r=8'."""
    return f"{arm_label(method, bits)} r={budget}"


def arms_table(summary: pd.DataFrame, methods: list[str], bits: list[str]) -> pd.DataFrame:
    """S0 Table 3/4 layout: one row per (task, model, budget, metric), one column per
    (method, bits) arm, e.g. LoRA | AdaLoRA | LoRA @ NF4+DQ | AdaLoRA @ NF4+DQ."""
    rows = []
    arms = [(m, str(b)) for b in bits for m in methods]
    for (task, model, budget), grp in summary.groupby(["task", "model", "budget"], sort=False):
        for name in metric_names(grp, "_mean"):
            c = f"{METRIC}{name}_mean"
            row = {"task": task, "model": model, "budget": budget, "metric": name}
            for m, b in arms:
                hit = grp[(grp["method"] == m) & (grp["bits"] == b)]
                row[arm_label(m, b)] = fmt(hit[c].iloc[0], hit[c[:-5] + "_std"].iloc[0]) if len(hit) else "—"
            rows.append(row)
    return pd.DataFrame(rows)


def budget_table(summary: pd.DataFrame, methods: list[str], budgets: list[int]) -> pd.DataFrame:
    """S0 Table 1 layout: one row per (task, model, bits, metric), one column per (budget, method)."""
    rows = []
    for (task, model, bits), grp in summary.groupby(["task", "model", "bits"], sort=False):
        for name in metric_names(grp, "_mean"):
            c = f"{METRIC}{name}_mean"
            row = {"task": task, "model": model, "bits": bits, "metric": name}
            for b in budgets:
                for m in methods:
                    hit = grp[(grp["method"] == m) & (grp["budget"] == b)]
                    row[f"{method_label(m)} r={b}"] = (
                        fmt(hit[c].iloc[0], hit[c[:-5] + "_std"].iloc[0]) if len(hit) else "—")
            rows.append(row)
    return pd.DataFrame(rows)


def cost_table(summary: pd.DataFrame) -> pd.DataFrame:
    """What each arm costs, and as ratios to LoRA on the fp32 base at the same budget: training
    memory, process CPU seconds of training and the median optimizer-step time (not wall time,
    which load on a shared machine moves by half); and the CPU seconds of evaluating it."""
    out = summary[KEYS].copy()
    out["training MiB"] = (summary[f"{TRAINING_MEMORY}_mean"] / MiB).round(1)
    out["train CPU s"] = summary[f"{TRAIN_CPU}_mean"].round(1)
    out["ms/step (median)"] = (1000 * summary[f"{STEP_SECONDS}_mean"]).round(1)
    out["eval CPU s"] = summary[f"{EVAL_CPU}_mean"].round(1)
    ref = summary[(summary["method"] == "lora") & (summary["bits"].astype(str) == "32")].set_index(
        ["task", "model", "budget"])
    for col, name in ((f"{TRAINING_MEMORY}_mean", "memory / LoRA fp32"),
                      (f"{TRAIN_CPU}_mean", "CPU time / LoRA fp32"),
                      (f"{STEP_SECONDS}_mean", "step time / LoRA fp32")):
        base = [ref[col].get((t, m, b), np.nan) if len(ref) else np.nan
                for t, m, b in zip(summary["task"], summary["model"], summary["budget"])]
        out[name] = (summary[col] / np.asarray(base, dtype=float)).round(3)
    return out


def memory_table(summary: pd.DataFrame, footprints: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """S0 Table 2 layout: base MiB (prepared base model without the task head, quantization
    constants included) / adapter MiB on disk / trainable and effective adapter parameters /
    optimizer state / peak process memory."""
    out = summary[KEYS].copy()
    own = summary[f"{OWN_BASE}_mean"]
    out["base MiB"] = [round((o if pd.notna(o) else footprints[(m, str(b))]["total_bytes"]) / MiB, 2)
                       for m, b, o in zip(summary["model"], summary["bits"], own.to_numpy())]
    out["adapter MiB"] = (summary["train_info.adapter_bytes_mean"] / MiB).round(3)
    out["trainable params"] = summary[f"{TRAINABLE}_mean"].round().astype("int64")
    out["effective adapter params"] = summary[f"{EFFECTIVE}_mean"].round().astype("int64")
    out["optimizer state MiB"] = (summary["train_info.memory.optimizer_state_bytes_mean"] / MiB).round(3)
    out["training MiB (budgeted)"] = (summary[f"{TRAINING_MEMORY}_mean"] / MiB).round(1)
    out["peak process RSS MiB (not budgetable)"] = (summary["train_info.memory.peak_rss_bytes_mean"] / MiB).round(1)
    return out


HTML_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; font-size: 13px; margin: 1em; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
td {{ white-space: nowrap; }} td.long {{ white-space: normal; min-width: 22em; }}
th {{ background: #f0f0f0; }} tr:nth-child(even) td {{ background: #fafafa; }}
</style></head><body><h3>{title}</h3>{table}{note}</body></html>
"""


def scores_table(paths: list[str]) -> pd.DataFrame:
    """Scores without training (``evaluate.score_only``): each task's full-precision base
    without adapter (what every run's number compares with) and finished runs' adapters on
    another task, with their metrics (one scoring each: no seeds, no interval)."""
    rows = []
    for p in paths:
        s = read_json(p)
        if s["adapter"] is None:
            what = "base, no adapter"
        else:
            task, _, method, budget, bits, seed = s["run"].split("/")
            what = f"adapter of {arm_name(method, bits, budget)} {seed}, trained on {task}"
        rows.append({"task": s["task"], "model": s["model"], "scored": what, "examples": s["n_eval"],
                     **{k: round(v, 4) for k, v in s["metrics"].items()}, "seconds": round(s["seconds"], 1)})
    df = pd.DataFrame(rows)
    return df[[c for c in df.columns if c != "seconds"] + ["seconds"]] if len(df) else df


def html_table(df: pd.DataFrame) -> str:
    """``df`` as an HTML table: numbers as the display tables format them, a cell on one line
    unless its text is long (lists of arms, setup notes), which wraps."""
    import re

    html = df.to_html(index=False, border=0, na_rep="—")
    return re.sub(r"<td>([^<]{48,})</td>", r'<td class="long">\1</td>', html)


def write_table(df: pd.DataFrame, stem: str, formats=("csv", "md", "tex"), note: str = "") -> None:
    """``df`` in each format; ``note`` (a line under the table) in the md and html ones."""
    import html

    writers = {
        "csv": lambda p: df.to_csv(p, index=False),
        "md": lambda p: Path(p).write_text(df.to_markdown(index=False) + "\n" + (f"\n{note}\n" if note else "")),
        "tex": lambda p: Path(p).write_text(df.to_latex(index=False, escape=True)),
        "html": lambda p: Path(p).write_text(HTML_PAGE.format(
            title=Path(stem).name.replace("_", " "), table=html_table(df),
            note=f"<p>{html.escape(note)}</p>" if note else "")),
    }
    for f in formats:
        with atomic_file(f"{stem}.{f}") as tmp:
            writers[f](tmp)
