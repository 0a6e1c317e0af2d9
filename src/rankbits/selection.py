"""Learning-rate selection on the selection split. Every grid point of a run trains on train and
is scored on the selection split (``train_info.selection``); one is chosen by ``RULE``; only the
chosen point is ever evaluated on the test split. Nothing here reads a test metric."""
from __future__ import annotations

import math
from pathlib import Path
from .config import next_rate
from .io import read_json, write_json

RULE = ("best primary metric on the selection split; ties: lower selection loss, then the "
        "smaller learning rate")


def _key(point: dict) -> tuple:
    s = point["selection"]
    value = s["primary_value"]
    if value is None or math.isnan(value):  # worst, whichever direction is better
        return (math.inf, s["loss"], point["lr"])
    return (-value if s["higher_is_better"] else value, s["loss"], point["lr"])


def choose(points: list[dict]) -> int:
    """Index of the chosen point. ``points``: {"lr", "selection": train_info["selection"]}."""
    if len(points) == 1:
        return 0
    missing = [p["lr"] for p in points if not p.get("selection")]
    if missing:
        raise ValueError(f"grid point(s) lr={missing} have no selection-split score; "
                         f"configure tasks.<task>.selection_samples")
    return min(range(len(points)), key=lambda i: _key(points[i]))


def selection_record(infos: list[dict], search: dict | None = None) -> tuple[int, dict]:
    """(chosen index, what metrics.json records): every grid point's selection score and cost,
    the choice, and the compute the whole arm spent (all grid points, probes included). With the
    search's last round (``select_round``'s file) the choice is the one it made, never made again."""
    points = [{"lr": float(i["training"]["lr"]), "selection": i.get("selection")} for i in infos]
    if search is None:
        chosen = choose(points)
    else:
        found = [k for k, p in enumerate(points) if math.isclose(p["lr"], float(search["chosen_lr"]), rel_tol=1e-12)]
        if not found:
            raise ValueError(f"the search chose lr {search['chosen_lr']:g}, which is not among the trained "
                             f"points {[p['lr'] for p in points]}")
        chosen = found[0]
    grid = []
    for p, info in zip(points, infos):
        probe = ((info.get("allocation") or {}).get("probe") or {})
        s = p["selection"] or {}
        grid.append({"lr": p["lr"], "selection_value": s.get("primary_value"),
                     "selection_loss": s.get("loss"), "steps": info["steps"],
                     "probe_steps": probe.get("steps", 0),
                     "train_seconds": info["timing"]["train_seconds"],
                     "train_cpu_seconds": info["timing"].get("train_cpu_seconds"),
                     "probe_seconds": probe.get("seconds", 0.0)})
    lrs = sorted(p["lr"] for p in points)
    at_edge = search["at_edge"] if search is not None else len(lrs) > 1 and points[chosen]["lr"] in (lrs[0], lrs[-1])
    return chosen, {
        "rule": RULE if len(points) > 1 else "single learning rate",
        "chosen_lr": points[chosen]["lr"],
        # the best rate is the smallest or largest tried: the optimum may lie beyond it
        "at_edge": at_edge,
        "selection_metric": (points[chosen]["selection"] or {}).get("primary_metric"),
        "selection_n": (points[chosen]["selection"] or {}).get("n"),
        "grid": grid,
        "total_optimizer_steps": sum(g["steps"] + g["probe_steps"] for g in grid),
        # a probe runs before its point's training clock starts: added here
        "total_train_seconds": sum(g["train_seconds"] + g["probe_seconds"] for g in grid),
        "total_train_cpu_seconds": sum(g["train_cpu_seconds"] or 0.0 for g in grid),
    }


def select_round(spec: dict, point_dirs: list[str], round_: int, out: str) -> dict:
    """One round of the learning-rate search (``lr_search: extend``): choose among the points
    trained so far; if the choice is at an edge of the rates tried and extensions are left, ask
    for one more rate beyond that edge (``status: extend``), else ``status: done``. Written to
    ``out`` (the workflow's checkpoint), which decides the DAG's next jobs."""
    # every rate tried counts for the edges, a diverged one too (recorded under --keep-going):
    # the search never steps past a rate that failed
    failed = [read_json(f"{d}/failed.json") for d in point_dirs if Path(d, "failed.json").exists()]
    infos = [read_json(f"{d}/train_info.json") for d in point_dirs if not Path(d, "failed.json").exists()]
    tried = sorted([float(f["lr"]) for f in failed] + [float(i["training"]["lr"]) for i in infos])
    if not infos:
        write_json(out, result := {"round": round_, "rates": tried, "chosen_lr": None, "at_edge": False,
                                   "status": "done"})
        return result
    _, rec = selection_record(infos)
    step = next_rate(tried, rec["chosen_lr"])
    more = (spec["training"].get("lr_search") == "extend"
            and round_ < int(spec["training"].get("lr_max_extensions") or 0))
    result = {"round": round_, "rates": tried, "chosen_lr": rec["chosen_lr"],
              "at_edge": rec["chosen_lr"] in (tried[0], tried[-1]),
              "status": "extend" if step is not None and more else "done"}
    if result["status"] == "extend":
        result["next_lr"] = step
    write_json(out, result)
    return result
