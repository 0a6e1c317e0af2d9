"""An explorer page for one study or several: every run and every arm on axes the reader picks,
filtered by task, model, method, budget, bits, seed and study, the frontier drawn, each point's
run, rate, interval and verdict on hover. One self-contained HTML file (the data inline, plain
JavaScript and SVG, no library and no network), written beside the verdict by the aggregate job
(``tables/explorer.html``, in the report under *Answer*) and by ``rankbits compare``.

Inputs are ``tables/runs.csv`` and ``tables/verdict.csv`` of each study, the files the verdict
is made from.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import METRIC_RANGE, arm_name, clip_interval
from .record import (COLLAPSED, HIGHER, LR, METRIC, PRIMARY, PRIMARY_METRIC, SEARCH_CPU, STEP_SECONDS, TRAIN_CPU,
                     TRAINABLE, TRAINING_MEMORY)
from .io import atomic_file

MiB = 2**20
# axes a reader can pick: (label, run column, arm column)
AXES = {
    "metric": ("test metric (primary)", PRIMARY, "mean"),
    "memory": ("training memory (MiB)", "training_mib", "training_mib"),
    "params": ("trainable parameters", TRAINABLE, "trainable_params"),
    "cpu": ("training CPU seconds (chosen rate)", TRAIN_CPU, "train_cpu_seconds"),
    "step": ("ms per optimizer step (median)", "step_ms", "step_ms_median"),
    "search_cpu": ("CPU seconds of the whole rate search", SEARCH_CPU, None),
    "forgetting": ("forgetting (loss on general text minus the base's)", METRIC + "forgetting", None),
    "lr": ("learning rate chosen", LR, None),
}
FILTERS = ("study", "task", "model", "method", "budget", "bits", "seed")


def _clean(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def records(results: str | Path, study: str | None = None) -> tuple[list[dict], list[dict]]:
    """(runs, arms) of one study as the page needs them, from its tables."""
    tables = Path(results) / "tables"
    name = study or Path(results).name
    runs = pd.read_csv(tables / "runs.csv")
    if PRIMARY not in runs:
        raise ValueError(f"{tables / 'runs.csv'} was written by an older rankbits (its columns are not the "
                         f"record's paths, docs/record.md): rebuild the study's tables with snakemake")
    verdict = pd.read_csv(tables / "verdict.csv", keep_default_na=False, na_values=[""])
    runs["training_mib"] = runs[TRAINING_MEMORY] / MiB
    runs["step_ms"] = 1000 * runs[STEP_SECONDS]
    out_runs = []
    for _, r in runs.iterrows():
        rec = {"study": name, "task": r["task"], "model": r["model"], "method": r["method"],
               "budget": str(r["budget"]), "bits": str(r["bits"]), "seed": str(r["seed"]),
               "arm": arm_name(r["method"], str(r["bits"]), r["budget"]), "metric_name": r[PRIMARY_METRIC],
               "path": str(r["run_dir"]), "collapsed": bool(r[COLLAPSED]),
               "higher_is_better": bool(r[HIGHER])}
        rec.update({k: _clean(r[col]) if col in r else None for k, (_, col, _) in AXES.items()})
        out_runs.append(rec)
    out_arms = []
    for _, a in verdict.iterrows():
        lo, hi, clipped = clip_interval(a["metric"], a["ci_low"], a["ci_high"]) if pd.notna(a["ci_low"]) \
            else (None, None, False)
        rec = {"study": name, "task": a["task"], "model": a["model"], "method": a["method"],
               "budget": str(a["budget"]), "bits": str(a["bits"]), "seed": "all", "arm": a["arm"],
               "metric_name": a["metric"], "seeds": int(a["seeds"]), "ci": [_clean(lo), _clean(hi)],
               "clipped": clipped, "vs_best": str(a["vs_best"]), "best": str(a["best_within_memory"]),
               "collapsed": a["collapsed"] if isinstance(a["collapsed"], str) else "",
               "frontier": bool(a["memory_frontier"]), "higher_is_better": bool(a["higher_is_better"])}
        rec.update({k: _clean(a[col]) if col and col in a else None for k, (_, _, col) in AXES.items()})
        mine = runs[(runs["task"] == a["task"]) & (runs["model"] == a["model"]) & (runs["method"] == a["method"])
                    & (runs["budget"] == a["budget"]) & (runs["bits"].astype(str) == str(a["bits"]))]
        rec["rates"] = sorted({_clean(x) for x in mine[LR]})  # the rate(s) its seeds trained at
        rec["paths"] = [str(x) for x in mine["run_dir"]]
        out_arms.append(rec)
    return out_runs, out_arms


def page(studies: list[tuple[str | Path, str | None]], title: str) -> str:
    """The explorer over ``studies`` ((results folder, name or None) each)."""
    runs, arms = [], []
    for results, name in studies:
        r, a = records(results, name)
        runs += r
        arms += a
    ranges = {m: [None if not np.isfinite(a) else a for a in r] for m, r in METRIC_RANGE.items()}
    data = {"runs": runs, "arms": arms, "axes": {k: v[0] for k, v in AXES.items()}, "filters": FILTERS,
            "ranges": ranges}
    blob = json.dumps(data).replace("</", "<\\/")
    return TEMPLATE.replace("__TITLE__", title).replace("__DATA__", blob)


def write(studies: list[tuple[str | Path, str | None]], out: str | Path, title: str) -> None:
    with atomic_file(str(out)) as tmp:
        Path(tmp).write_text(page(studies, title))


TEMPLATE = r"""<!doctype html><html><head><meta charset="utf-8"><title>__TITLE__</title><style>
body { font-family: sans-serif; font-size: 13px; margin: 12px; color: #222; }
#controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; margin-bottom: 8px; }
fieldset { border: 1px solid #ccc; padding: 4px 8px; } legend { font-weight: bold; }
label { margin-right: 6px; white-space: nowrap; }
#tip { position: absolute; display: none; background: #fff; border: 1px solid #888; padding: 6px 8px;
       box-shadow: 2px 2px 6px rgba(0,0,0,.2); max-width: 420px; pointer-events: none; font-size: 12px; }
svg text { font-size: 11px; } .axis line, .axis path { stroke: #999; }
#note { color: #555; margin: 4px 0 0 0; }
</style></head><body>
<h3>__TITLE__</h3>
<div id="controls">
  <fieldset><legend>axes</legend>
    <label>x <select id="x"></select></label> <label>y <select id="y"></select></label>
    <label><input type="checkbox" id="logx"> log x</label></fieldset>
  <fieldset><legend>points</legend>
    <label><input type="radio" name="level" value="arms" checked> arms (mean, 95% interval)</label>
    <label><input type="radio" name="level" value="runs"> runs (one per seed)</label>
    <label><input type="checkbox" id="front" checked> frontier</label></fieldset>
  <div id="filters" style="display:flex; gap:8px; flex-wrap:wrap"></div>
</div>
<svg id="plot" width="980" height="560"></svg>
<p id="note"></p>
<div id="tip"></div>
<script>
const D = __DATA__;
const W = 980, H = 560, M = {l: 70, r: 200, t: 14, b: 46};
const $ = id => document.getElementById(id);
const palette = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
const shapes = {"32": "circle", "16": "diamond", "8": "square", "4": "triangle"};
for (const [k, label] of Object.entries(D.axes)) {
  for (const s of ["x", "y"]) { const o = document.createElement("option"); o.value = k; o.textContent = label; $(s).appendChild(o); }
}
$("x").value = "memory"; $("y").value = "metric";
const selected = {};
for (const f of D.filters) {
  const values = [...new Set(D.runs.map(r => r[f]).concat(f === "seed" ? [] : D.arms.map(a => a[f])))].sort();
  selected[f] = new Set(values);
  if (values.length < 2 && f !== "study") continue;
  const fs = document.createElement("fieldset"); fs.innerHTML = `<legend>${f}</legend>`;
  for (const v of values) {
    const l = document.createElement("label"), c = document.createElement("input");
    c.type = "checkbox"; c.checked = true; c.dataset.filter = f; c.value = v;
    c.onchange = () => { c.checked ? selected[f].add(v) : selected[f].delete(v); draw(); };
    l.appendChild(c); l.append(" " + v); fs.appendChild(l);
  }
  $("filters").appendChild(fs);
}
for (const el of document.querySelectorAll("select, input[name=level], #logx, #front")) el.onchange = draw;
// tasks scored by different metrics (accuracy, perplexity) do not share a y axis: start on the first
const metricOf = {}; for (const r of D.runs) metricOf[r.task] = r.metric_name;
if (new Set(Object.values(metricOf)).size > 1) {
  for (const c of document.querySelectorAll("input[data-filter=task]"))
    if (c.value !== Object.keys(metricOf).sort()[0]) { c.checked = false; selected.task.delete(c.value); }
}
const colorOf = {}; let nColors = 0;
function color(method) { if (!(method in colorOf)) colorOf[method] = palette[nColors++ % palette.length]; return colorOf[method]; }
function fmt(v) { if (v === null || v === undefined) return "—"; if (Math.abs(v) >= 1000) return v.toLocaleString(undefined, {maximumFractionDigits: 0}); return +v.toPrecision(4) + ""; }
function mark(g, shape, x, y, c, r) {
  const ns = "http://www.w3.org/2000/svg"; let e;
  if (shape === "circle") { e = document.createElementNS(ns, "circle"); e.setAttribute("cx", x); e.setAttribute("cy", y); e.setAttribute("r", r); }
  else { e = document.createElementNS(ns, "polygon");
    const p = shape === "square" ? [[-r,-r],[r,-r],[r,r],[-r,r]] : shape === "diamond" ? [[0,-r-1],[r+1,0],[0,r+1],[-r-1,0]] : [[0,-r-1],[r+1,r],[-r-1,r]];
    e.setAttribute("points", p.map(([a, b]) => `${x + a},${y + b}`).join(" ")); }
  e.setAttribute("fill", c); e.setAttribute("fill-opacity", .8); e.setAttribute("stroke", "#333"); e.setAttribute("stroke-width", .6);
  g.appendChild(e); return e;
}
function draw() {
  const level = document.querySelector("input[name=level]:checked").value;
  const xs = $("x").value, ys = $("y").value, logx = $("logx").checked;
  const pts = (level === "arms" ? D.arms : D.runs).filter(p => D.filters.every(f => f === "seed" && level === "arms" || selected[f].has(p[f])))
    .filter(p => p[xs] !== null && p[ys] !== null && (!logx || p[xs] > 0));
  const svg = $("plot"); svg.innerHTML = "";
  const ns = "http://www.w3.org/2000/svg";
  if (!pts.length) { $("note").textContent = "no point has both values (or every point is filtered out)"; return; }
  const lo = v => Math.min(...v), hi = v => Math.max(...v);
  const tx = v => logx ? Math.log10(v) : v;
  let yv = pts.map(p => p[ys]);
  if (level === "arms" && ys === "metric") yv = yv.concat(pts.flatMap(p => p.ci.filter(c => c !== null)));
  let [x0, x1] = [lo(pts.map(p => tx(p[xs]))), hi(pts.map(p => tx(p[xs])))], [y0, y1] = [lo(yv), hi(yv)];
  const px = (x1 - x0) * .06 || 1, py = (y1 - y0) * .08 || 1; x0 -= px; x1 += px; y0 -= py; y1 += py;
  const names = new Set(pts.map(p => p.metric_name)), range = names.size === 1 && D.ranges[[...names][0]];
  if ((xs === "metric" || ys === "metric") && names.size > 1) {
    $("note").textContent = `the tasks shown are scored by different metrics (${[...names].join(", ")}): tick one task at a time`;
    return;
  }
  if (ys === "metric" && range) { if (range[0] !== null) y0 = Math.max(y0, range[0]); if (range[1] !== null) y1 = Math.min(y1, range[1]); }
  const X = v => M.l + (tx(v) - x0) / (x1 - x0) * (W - M.l - M.r), Y = v => H - M.b - (v - y0) / (y1 - y0) * (H - M.t - M.b);
  const g = document.createElementNS(ns, "g"); svg.appendChild(g);
  const line = (a, b, c, d, s) => { const l = document.createElementNS(ns, "line"); l.setAttribute("x1", a); l.setAttribute("y1", b); l.setAttribute("x2", c); l.setAttribute("y2", d); l.setAttribute("stroke", s || "#999"); g.appendChild(l); return l; };
  const text = (x, y, s, anchor, rot) => { const t = document.createElementNS(ns, "text"); t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor || "middle"); if (rot) t.setAttribute("transform", `rotate(-90 ${x} ${y})`); t.textContent = s; g.appendChild(t); };
  line(M.l, H - M.b, W - M.r, H - M.b); line(M.l, M.t, M.l, H - M.b);
  for (let i = 0; i <= 5; i++) {
    const vx = x0 + (x1 - x0) * i / 5, vy = y0 + (y1 - y0) * i / 5, sx = M.l + (W - M.l - M.r) * i / 5, sy = Y(vy);
    line(sx, H - M.b, sx, H - M.b + 4); text(sx, H - M.b + 16, fmt(logx ? 10 ** vx : vx));
    line(M.l - 4, sy, M.l, sy); text(M.l - 7, sy + 4, fmt(vy), "end");
    line(M.l, sy, W - M.r, sy, "#eee");
  }
  text((M.l + W - M.r) / 2, H - 8, D.axes[xs] + (logx ? " (log)" : ""));
  text(16, (M.t + H - M.b) / 2, D.axes[ys], "middle", true);
  if ($("front").checked) {
    // the frontier: points no other point beats on both axes (less x, better y), per task and model
    const groups = {};
    for (const p of pts) (groups[p.study + "|" + p.task + "|" + p.model] ||= []).push(p);
    for (const ps of Object.values(groups)) {
      const better = ys === "metric" ? (ps[0].higher_is_better ? 1 : -1) : -1;
      const sorted = [...ps].sort((a, b) => a[xs] - b[xs] || better * (b[ys] - a[ys]));
      let best = -Infinity; const front = [];
      for (const p of sorted) { if (better * p[ys] > best) { best = better * p[ys]; front.push(p); } }
      const pl = document.createElementNS(ns, "polyline");
      pl.setAttribute("points", front.map(p => `${X(p[xs])},${Y(p[ys])}`).join(" "));
      pl.setAttribute("fill", "none"); pl.setAttribute("stroke", "#444"); pl.setAttribute("stroke-dasharray", "4 3"); g.appendChild(pl);
    }
  }
  for (const p of pts) {
    const cx = X(p[xs]), cy = Y(p[ys]), c = color(p.method);
    if (level === "arms" && ys === "metric" && p.ci[0] !== null) line(cx, Y(p.ci[0]), cx, Y(p.ci[1]), c);
    const e = mark(g, shapes[p.bits] || "circle", cx, cy, c, level === "arms" ? 6 : 4);
    if (p.collapsed) { e.setAttribute("stroke", "#d00"); e.setAttribute("stroke-width", 2); }
    e.onmousemove = ev => {
      const tip = $("tip"); tip.style.display = "block"; tip.style.left = (ev.pageX + 14) + "px"; tip.style.top = (ev.pageY + 10) + "px";
      const rows = [["study", p.study], ["task / model", p.task + " / " + p.model], ["arm", p.arm]];
      if (level === "runs") rows.push(["seed", p.seed], ["run", p.path], ["learning rate", fmt(p.lr)]);
      rows.push([p.metric_name, fmt(p.metric)]);
      if (level === "arms") rows.push(["learning rate", p.rates.map(fmt).join(", ") + " (chosen by the search)"], ["runs", p.paths.join("<br>")], ["95% interval", p.ci[0] === null ? "— (1 seed)" : `[${fmt(p.ci[0])}, ${fmt(p.ci[1])}]` + (p.clipped ? " (clipped to the metric's range)" : "")],
                                      ["seeds", p.seeds], ["vs the best within its memory", p.vs_best + (p.best && p.vs_best !== "is the best" ? " (" + p.best + ")" : "")]);
      rows.push(["training MiB", fmt(p.memory)], ["trainable parameters", fmt(p.params)]);
      if (p.collapsed) rows.push(["collapsed", p.collapsed === true ? "yes" : p.collapsed]);
      tip.innerHTML = rows.map(([k, v]) => `<b>${k}</b>: ${k === "runs" ? v : String(v).replace(/</g, "&lt;")}`).join("<br>");
    };
    e.onmouseleave = () => { $("tip").style.display = "none"; };
  }
  let ly = M.t + 10;
  for (const [m, c] of Object.entries(colorOf)) { mark(g, "circle", W - M.r + 20, ly, c, 5); text(W - M.r + 30, ly + 4, m, "start"); ly += 16; }
  ly += 6;
  for (const [b, s] of Object.entries(shapes)) { mark(g, s, W - M.r + 20, ly, "#ccc", 5); text(W - M.r + 30, ly + 4, "bits " + b, "start"); ly += 16; }
  text(W - M.r + 10, ly + 8, "red outline: collapsed", "start");
  $("note").textContent = `${pts.length} ${level} shown; hover a point for its run, rate, interval and verdict. ` +
    (level === "arms" ? "Bars: 95% interval over seeds (clipped to the metric's range)." : "");
}
draw();
</script></body></html>
"""
