"""Learning-rate selection on the selection split. Every grid point of a run trains on train and
is scored on the selection split (``train_info.selection``); one is chosen by ``RULE``; only the
chosen point is ever evaluated on the test split. Nothing here reads a test metric."""
from __future__ import annotations

import math

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


def selection_record(infos: list[dict]) -> tuple[int, dict]:
    """(chosen index, what metrics.json records): every grid point's selection score and cost,
    the choice, and the compute the whole arm spent (all grid points, probes included)."""
    points = [{"lr": float(i["training"]["lr"]), "selection": i.get("selection")} for i in infos]
    chosen = choose(points)
    grid = []
    for p, info in zip(points, infos):
        probe = ((info.get("allocation") or {}).get("probe") or {})
        s = p["selection"] or {}
        grid.append({"lr": p["lr"], "selection_value": s.get("primary_value"),
                     "selection_loss": s.get("loss"), "steps": info["steps"],
                     "probe_steps": probe.get("steps", 0),
                     "train_seconds": info["timing"]["train_seconds"],
                     "probe_seconds": probe.get("seconds", 0.0)})
    return chosen, {
        "rule": RULE if len(points) > 1 else "single learning rate",
        "chosen_lr": points[chosen]["lr"],
        "selection_metric": (points[chosen]["selection"] or {}).get("primary_metric"),
        "selection_n": (points[chosen]["selection"] or {}).get("n"),
        "grid": grid,
        "total_optimizer_steps": sum(g["steps"] + g["probe_steps"] for g in grid),
        # a probe runs before its point's training clock starts: added here
        "total_train_seconds": sum(g["train_seconds"] + g["probe_seconds"] for g in grid),
    }
