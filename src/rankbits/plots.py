"""Figures for the report, drawn from the per-run result files alone."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .aggregate import clip_interval  # noqa: E402
from .bits import bits_label  # noqa: E402
from .io import atomic_file, read_json  # noqa: E402
from .methods import METHODS  # noqa: E402
from .models import KINDS, MODELS  # noqa: E402
from .record import EFFECTIVE, PRIMARY, PRIMARY_METRIC, TRAINABLE  # noqa: E402


def heatmap_panels(values: dict[str, float], model: str) -> list[tuple[str, list, list[str], np.ndarray]]:
    """Per stack of the model (one for an encoder or a decoder; "encoder" and "decoder" for an
    encoder-decoder): (stack, layer indices, kinds, layers x kinds array) from per-module values
    (ranks, errors); NaN where a module has no value."""
    family = MODELS.get(model).family
    by_stack: dict[str, dict] = {}
    for name, r in values.items():
        by_stack.setdefault(family.stack(name), {})[family.locate(name)] = r
    return [(stack, *heatmap_matrix(located)) for stack, located in sorted(by_stack.items())]


def heatmap_matrix(located: dict[tuple[int, str], float]) -> tuple[list[int], list[str], np.ndarray]:
    """(layer indices, kinds, layers x kinds array) from values by (layer, kind)."""
    layers = sorted({layer for layer, _ in located})
    kinds = [k for k in KINDS if any(kind == k for _, kind in located)]
    mat = np.full((len(layers), len(kinds)), np.nan)
    for (layer, kind), r in located.items():
        mat[layers.index(layer), kinds.index(kind)] = r
    return layers, kinds, mat


def stacked_matrix(values: dict[str, float], model: str) -> tuple[list[str], list[str], np.ndarray]:
    """One matrix for all of a model's stacks: an encoder-decoder's decoder layers above its
    encoder layers (rows labelled e0.., d0..), the kinds of both as columns."""
    panels = heatmap_panels(values, model)
    if len(panels) == 1:
        return panels[0][1:]
    kinds = [k for k in KINDS if any(k in p[2] for p in panels)]
    rows, blocks = [], []
    for stack, layers, pk, mat in panels:
        full = np.full((len(layers), len(kinds)), np.nan)
        full[:, [kinds.index(k) for k in pk]] = mat
        rows += [f"{stack[0]}{layer}" for layer in layers]
        blocks.append(full)
    return rows, kinds, np.vstack(blocks)


def quant_heatmap(base_dir: str, model: str, out: str) -> None:
    """Per-Linear quantization error of a prepared base (layers x module kinds): relative weight
    error and 1 - output cosine against full precision on the calibration batch; for per-layer
    mixes a third panel shows the bit map."""
    diag = pd.read_csv(Path(base_dir) / "quant_diagnostics.csv")
    fp = read_json(Path(base_dir) / "footprint.json")
    # error panels start at 0: a few percent between layers reads as the few percent it is, not
    # as the full colour range
    panels = [("relative weight error ‖Ŵ−W‖/‖W‖", dict(zip(diag["module"], diag["rel_weight_error"])), "Blues", "{:.3f}", 0),
              ("1 − output cosine (calibration batch)", dict(zip(diag["module"], 1 - diag["output_cosine"])),
               "Blues", "{:.3f}", 0)]
    if fp.get("bit_map"):
        panels.append(("bits per weight", fp["bit_map"], "viridis", "{:.0f}", None))
    stacks = heatmap_panels(panels[0][1], model)
    fig, axes = plt.subplots(len(stacks), len(panels), squeeze=False,
                             figsize=(5.5 * len(panels), 4.2 * len(stacks)))
    for j, (title, values, cmap, fmt, vmin) in enumerate(panels):
        for i, (stack, layers, kinds, mat) in enumerate(heatmap_panels(values, model)):
            ax = axes[i][j]
            lo, hi = (np.nanmin(mat) if vmin is None else vmin), np.nanmax(mat)
            # dark text on the light half of the scale, white on the dark half
            dark = (lambda v: v > (lo + hi) / 2) if cmap == "Blues" else (lambda v: v < (lo + hi) / 2)
            im = draw_heatmap(ax, mat, layers, kinds, cmap=cmap, vmin=lo, vmax=hi, fmt=fmt,
                              color=lambda v, dark=dark: "white" if dark(v) else "black")
            ax.set_xlabel("module")
            ax.set_ylabel(f"{stack} layer" if stack else "layer")
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax)
    fig.suptitle(f"{model} @ {bits_label(fp['bits'])} (weights {fp.get('weight_dtype')}): "
                 f"{fp['quantized_linear_bytes_per_param']:.3f} B per quantized parameter", fontsize=10)
    save(fig, out)


def save(fig, path: str) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def message_figure(text: str, out: str, figsize: tuple[float, float]) -> None:
    """A figure that only says why there is nothing to plot (the rule's output still exists)."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=8)
    save(fig, out)


def final_ranks(run_dir: str | Path, metrics: dict) -> dict[str, float]:
    """Final rank per target module; modules an allocation left out count as rank 0."""
    ranks = read_json(Path(run_dir) / "rank_pattern.json")
    allocation = (metrics["train_info"].get("allocation") or {}).get("ranks", {})
    return {**{m: 0 for m in allocation}, **ranks}


def draw_heatmap(ax, mat, layers, kinds, *, cmap="viridis", vmin=None, vmax=None, fmt="{:.0f}",
                 color=None, annotate=True, norm=None):
    """A layers x module-kinds matrix on ``ax``, each finite cell labelled with ``fmt``."""
    scale = {"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}
    im = ax.imshow(mat, cmap=cmap, aspect="auto", origin="lower", **scale)
    if annotate:
        for i in range(len(layers)):
            for j in range(len(kinds)):
                if not np.isnan(mat[i, j]):
                    ax.text(j, i, fmt.format(mat[i, j]), ha="center", va="center", fontsize=7,
                            color=color(mat[i, j]) if color else "black")
    ax.set_xticks(range(len(kinds)), kinds, fontsize=7, rotation=90 if len(kinds) > 6 else 0)
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    return im


def _draw_ranks(ax, mat, layers, kinds, vmax, annotate=True):
    return draw_heatmap(ax, mat, layers, kinds, vmin=0, vmax=vmax, annotate=annotate,
                        color=lambda v: "white" if v < vmax / 2 else "black")


BITS_CMAP = matplotlib.colors.ListedColormap(["#3b4cc0", "#8db0fe", "#f2f2f2"])
BITS_NORM = matplotlib.colors.BoundaryNorm([0, 6, 16, 64], 3)


def rank_heatmap(run_dir: str, out: str) -> None:
    """A run's final rank per module (layers x kinds); for an arm that also set each layer's
    precision (``joint``, ``optimal``: ``allocation.bit_map``), its bit map beside it."""
    m = read_json(Path(run_dir) / "metrics.json")
    ri = m["run_info"]
    if ri["status"] != "success":  # a failed run (see failed_runs): say so where its map would be
        return message_figure(f"{ri['run_path']}: training failed\n" + m["failure"][0]["error"][:160],
                              out, (6, 1.6))
    ti = m["train_info"]
    ranks = final_ranks(run_dir, m)
    panels = heatmap_panels(ranks, ri["model"])  # encoder-decoder: two
    vmax = max(ti["method_options"].get("init_r") or ri["budget"], max(np.nanmax(p[3]) for p in panels))
    bit_map = (ti.get("allocation") or {}).get("bit_map")
    bit_panels = heatmap_panels({k: bit_map.get(k, 32) for k in ranks}, ri["model"]) if bit_map else []
    columns = [("rank", p) for p in panels] + [("bits", p) for p in bit_panels]
    width = sum(1.6 + 0.9 * len(p[2]) for _, p in columns)
    fig, axes = plt.subplots(1, len(columns), squeeze=False,
                             figsize=(width, 0.9 + 0.45 * max(len(p[1]) for p in panels)))
    for ax, (what, (stack, layers, kinds, mat)) in zip(axes[0], columns):
        if what == "rank":
            im = _draw_ranks(ax, mat, layers, kinds, vmax)
        else:  # 4 / 8 / 32 in three fixed colours, so every run's bit map reads alike
            im = draw_heatmap(ax, mat, layers, kinds, cmap=BITS_CMAP, norm=BITS_NORM,
                              color=lambda v: "white" if v < 6 else "black")
        ax.set_xlabel("module")
        ax.set_ylabel(f"{stack} layer" if stack else "layer")
        if bit_panels:
            ax.set_title("rank per module" if what == "rank" else "bits per weight (32: full)", fontsize=9)
        bar = fig.colorbar(im, ax=ax, label=what)
        if what == "bits":
            bar.set_ticks([3, 11, 40], labels=["4 (NF4+DQ)", "8 (int8)", "32 (full)"])
    base = "bits per layer as mapped" if bit_map else bits_label(ri["bits"])
    fig.suptitle(f"{ri['task']} / {ri['model']} / {ri['method']}, budget {ri['budget']}, {base}, "
                 f"seed {ri['seed']}\nfinal rank {ti['total_rank']} (uniform: {ti['target_total_rank']}), "
                 f"{ti['params']['effective_adapter']:,} adapter params", fontsize=9, y=1.0 + 0.6 / fig.get_figheight())
    save(fig, out)


def rank_maps(run_dirs: list[str], out: str) -> None:
    """Final rank maps of every arm side by side: a row per (task, model, budget, bits), a column
    per method (first seed), one colour scale per row; an encoder-decoder's two stacks share a
    map (decoder layers d0.. above encoder layers e0..)."""
    runs = [(d, read_json(Path(d) / "metrics.json")) for d in run_dirs]
    first = {}
    for d, m in sorted(runs, key=lambda x: x[1]["run_info"]["seed"]):
        ri = m["run_info"]
        first.setdefault((ri["task"], ri["model"], ri["budget"], str(ri["bits"]), ri["method"]), (d, m))
    rows = sorted({k[:4] for k in first}, key=lambda k: (k[0], k[1], k[2], k[3]))
    methods = list(dict.fromkeys(m["run_info"]["method"] for _, m in runs))
    fig, axes = plt.subplots(len(rows), len(methods), squeeze=False,
                             figsize=(1.9 * len(methods) + 1, 2.7 * len(rows) + 0.5))
    fig.subplots_adjust(hspace=0.55, wspace=0.35)
    for i, row in enumerate(rows):
        mats = {}
        for method in methods:
            if (*row, method) in first:
                d, m = first[(*row, method)]
                mats[method] = stacked_matrix(final_ranks(d, m), row[1])
        vmax = max(np.nanmax(mat) for _, _, mat in mats.values())
        for j, method in enumerate(methods):
            ax = axes[i][j]
            if method not in mats:
                ax.axis("off")
                continue
            layers, kinds, mat = mats[method]
            im = _draw_ranks(ax, mat, layers, kinds, vmax, annotate=len(methods) <= 6)
            ax.set_title(f"{method}\n{row[0]}, budget {row[2]}, {bits_label(row[3])}", fontsize=7)
            if j == 0:
                ax.set_ylabel("layer", fontsize=7)
        fig.colorbar(im, ax=axes[i].tolist(), label="rank", shrink=0.8)
    save(fig, out)


def _facets(n: int, width: float = 5.0, height: float = 3.6):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def rank_vs_step(run_dirs: list[str], out: str) -> None:
    """Total effective rank over optimizer steps, with each method's scheduled budget."""
    runs = [(d, read_json(Path(d) / "metrics.json")) for d in run_dirs]
    runs = [(d, m) for d, m in runs if METHODS.get(m["run_info"]["method"]).rank_adaptive]
    tasks = sorted({m["run_info"]["task"] for _, m in runs}) or ["(no rank-adaptive runs)"]
    fig, axes = _facets(len(tasks))
    for ax, task in zip(axes, tasks):
        for d, m in runs:
            ri, ti = m["run_info"], m["train_info"]
            if ri["task"] != task:
                continue
            hist = pd.read_csv(Path(d) / "rank_history.csv").groupby("step")["rank"].sum()
            steps = list(hist.index) + [ti["steps"]]
            (line,) = ax.step(steps, list(hist.values) + [hist.values[-1]], where="post",
                              label=f"{ri['method']} b={ri['budget']} {ri['bits']}b s{ri['seed']}")
            info = {"method_options": ti["method_options"], "module_dims": ti["module_dims"],
                    "budget": ri["budget"], "steps": ti["steps"]}
            xs = np.arange(ti["steps"] + 1)
            ys = [METHODS.get(ri["method"]).budget_line(info, int(s)) for s in xs]
            if ys[0] is not None:
                ax.plot(xs, ys, ls="--", lw=1, color=line.get_color(), alpha=0.7)
        ax.set_title(task)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("total rank (solid: kept, dashed: scheduled budget)")
        if ax.lines:
            ax.legend(fontsize=7)
    save(fig, out)


def loss_curves(run_dirs: list[str], out: str, window: int = 25) -> None:
    """Task loss (cross-entropy only, no regulariser) per step, rolling mean over ``window``: a
    colour per arm, a line style per seed, the legend beside the axes."""
    runs = [(d, read_json(Path(d) / "metrics.json")["run_info"]) for d in run_dirs]
    tasks = sorted({ri["task"] for _, ri in runs})
    arms = list(dict.fromkeys((ri["method"], ri["budget"], str(ri["bits"])) for _, ri in runs))
    seeds = sorted({ri["seed"] for _, ri in runs})
    colours = {a: plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")(i % 20) for i, a in enumerate(arms)}
    styles = {s: ("-", "--", ":", "-.")[i % 4] for i, s in enumerate(seeds)}
    fig, axes = _facets(len(tasks), width=6.5, height=4.2)
    for ax, task in zip(axes, tasks):
        for d, ri in runs:
            if ri["task"] == task:
                arm = (ri["method"], ri["budget"], str(ri["bits"]))
                log = pd.read_csv(Path(d) / "train_log.csv")
                first = ri["seed"] == seeds[0]
                ax.plot(log["step"], log["task_loss"].rolling(window, min_periods=1).mean(), lw=1,
                        color=colours[arm], ls=styles[ri["seed"]],
                        label=f"{arm[0]}, budget {arm[1]}, {bits_label(arm[2])}" if first else None)
        ax.set_title(task)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"task loss (rolling mean, {window} steps)")
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95),
               title="arm (line style: seed " + ", ".join(f"{s} {styles[s]}" for s in seeds) + ")",
               title_fontsize=7)
    fig.text(0.0, -0.06, "Runs with the same seed see the same batches in the same order (a paired design), so a\n"
             "hard batch shows as a bump in every arm's curve at the same step.", fontsize=7, va="top")
    save(fig, out)


def metric_vs_params(summary: pd.DataFrame, out: str) -> None:
    """Primary metric against trainable parameters (top: everything the optimiser updates) and
    effective adapter parameters after pruning (bottom), one marker per method."""
    tasks = list(dict.fromkeys(summary["task"]))
    methods = list(dict.fromkeys(summary["method"]))
    axes_x = [(f"{TRAINABLE}_mean", "trainable parameters (adapters + head)"),
              (f"{EFFECTIVE}_mean", "effective adapter parameters (after pruning)")]
    fig, axes = plt.subplots(2, len(tasks), figsize=(5.0 * len(tasks), 7.2), squeeze=False)
    for col, task in enumerate(tasks):
        grp = summary[summary["task"] == task]
        for row, (xcol, xlabel) in enumerate(axes_x):
            ax = axes[row][col]
            for i, method in enumerate(methods):
                g = grp[grp["method"] == method]
                if len(g):
                    ax.errorbar(g[xcol], g[f"{PRIMARY}_mean"], yerr=g[f"{PRIMARY}_std"].fillna(0),
                                fmt="osD^v<>pP*X"[i % 11], capsize=3, label=method)
                    for _, r in g.iterrows():
                        ax.annotate(f"b={r['budget']},{r['bits']}b", (r[xcol], r[f"{PRIMARY}_mean"]),
                                    fontsize=7, xytext=(4, 4), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_title(task)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(grp[PRIMARY_METRIC].iloc[0])
            ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, out)


def lr_sensitivity(curves: pd.DataFrame, out: str) -> None:
    """Selection-split metric vs learning rate, a line per (method, bits) — mean over seeds —
    a panel per (task, budget); the chosen points are ringed."""
    curves = curves.dropna(subset=["value"]) if len(curves) else curves
    if not len(curves):
        return message_figure("no learning-rate grid scored on a selection split\n"
                              "(set training.lr_grid and tasks.<task>.selection_samples)", out, (5, 2))
    panels = list(dict.fromkeys(zip(curves["task"], curves["budget"])))
    fig, axes = _facets(len(panels), width=4.6, height=3.6)
    for ax, (task, budget) in zip(axes, panels):
        grp = curves[(curves["task"] == task) & (curves["budget"] == budget)]
        for (method, bits), g in grp.groupby(["method", "bits"], sort=False):
            mean = g.groupby("lr")["value"].mean()
            (line,) = ax.plot(mean.index, mean.values, marker="o", lw=1.2,
                              label=method if str(bits) == "32" else f"{method} @ {bits}")
            chosen = g[g["chosen"]].groupby("lr")["value"].mean()
            ax.scatter(chosen.index, chosen.values, s=110, facecolors="none",
                       edgecolors=line.get_color(), linewidths=1.5)
        ax.set_xscale("log")
        ax.set_title(f"{task}, budget {budget}", fontsize=9)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"selection-split {grp['selection_metric'].iloc[0]}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, out)


def pareto(verdict: pd.DataFrame, out: str) -> None:
    """The verdict drawn: primary metric (mean over seeds, 95% interval as a bar) against training
    memory (MiB, rankbits.memory) and against trainable parameters, a panel pair per (task,
    model). Frontier arms are filled and joined. Each point carries a number, and a key beside
    the panels names the arms, so no label sits on another; points at (nearly) the same place are
    drawn side by side."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    if not len(verdict):
        return message_figure("no finished runs with a training-memory record", out, (5, 2))
    groups = list(verdict.groupby(["task", "model"], sort=False))
    fig, axes = plt.subplots(len(groups), 3, figsize=(16, 4.8 * len(groups)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 0.55]})
    for row, ((task, model), g) in enumerate(groups):
        g = g.sort_values(["training_mib", "arm"], kind="stable").reset_index(drop=True)
        y = g["mean"].to_numpy(float)
        ends = [clip_interval(m, lo, hi) for m, lo, hi in zip(g["metric"], g["ci_low"], g["ci_high"])]
        err = np.vstack([y - np.array([e[0] for e in ends], float), np.array([e[1] for e in ends], float) - y])
        err = np.where(np.isnan(err), 0, err)
        for col, (xcol, front_col, xlabel) in enumerate([
                ("training_mib", "memory_frontier", "training memory (MiB)\nweights + trainable + gradients + AdamW + activations"),
                ("trainable_params", "params_frontier", "trainable parameters (adapters + head)")]):
            ax = axes[row][col]
            x = g[xcol].to_numpy(float)
            # points within 1.5% of the axis span of each other and close in value: spread sideways
            span = (np.nanmax(x) - np.nanmin(x)) or max(abs(np.nanmax(x)), 1.0)
            xs, dy = x.copy(), np.zeros(len(x))
            for i in range(len(x)):
                near = [j for j in range(i) if abs(x[j] - x[i]) < 0.015 * span and abs(y[j] - y[i]) < 0.01]
                if near:
                    xs[i] = x[i] * (1 + 0.02 * len(near)) if col == 1 else x[i] + 0.015 * span * len(near)
                    dy[i] = -10 * len(near)  # its number below the other's
            front = g[front_col].to_numpy(bool)
            for i in range(len(g)):
                color = "tab:red" if front[i] else "tab:gray"
                ax.errorbar(xs[i], y[i], yerr=err[:, i:i + 1], fmt="o", ms=6, capsize=3, color=color,
                            mfc=color if front[i] else "white", zorder=3)
                ax.annotate(str(i + 1), (xs[i], y[i]), xytext=(5, 3 + dy[i]), textcoords="offset points",
                            fontsize=8, color=color, fontweight="bold" if front[i] else "normal")
            order = np.argsort(xs[front])
            ax.plot(xs[front][order], y[front][order], color="tab:red", lw=1.2, zorder=2,
                    label="frontier: no cheaper arm as good")
            if col == 1:
                ax.set_xscale("log")
                # one tick per distinct count; counts within 2% of a tick (budget-matched
                # patterns differ by a few hundred) share it, so labels never overprint
                ticks = []
                for v in sorted(set(x)):
                    if not ticks or v > ticks[-1] * 1.02:
                        ticks.append(v)
                ax.xaxis.set_major_locator(FixedLocator(ticks))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.tick_params(axis="x", labelrotation=30)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(f"{g['metric'].iloc[0]} (mean, 95% CI over seeds)")
            ax.set_title(f"{task} / {model}: {g['metric'].iloc[0]} vs "
                         + ("training memory" if col == 0 else "trainable parameters"), fontsize=9)
            ax.legend(fontsize=7, loc="lower right")
            ax.margins(x=0.12, y=0.12)
        key = axes[row][2]
        key.axis("off")
        lines = [f"{i + 1:>2}  {r['arm']}{' *' if r['memory_frontier'] else ''}\n"
                 f"    {r['training_mib']:.1f} MiB, {r['mean']:.4f}" for i, r in g.iterrows()]
        key.text(0, 1, "\n".join(lines) + "\n\n* on the memory frontier", va="top", ha="left",
                 family="monospace", fontsize=8, transform=key.transAxes)
    fig.tight_layout()
    save(fig, out)
