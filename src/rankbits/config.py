"""Study configuration: validation beyond the schema, run expansion, hyperparameter resolution.

The JSON schema (``config/schema.yaml``) checks shapes and fills defaults; this module checks
what a schema cannot (names against the registries, per-method options) and turns a study into
its runs. Hyperparameters resolve with this precedence, later wins:

    training  <  tasks.<task>.training  <  methods.<method>.training  <  overrides[*] matching
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .bits import BITS
from .methods import METHODS
from .models import MODELS
from .registry import UnknownNameError
from .tasks import TASKS

AXES = ("task", "model", "method", "budget", "bits", "seed")


class ConfigError(ValueError):
    """A study configuration that cannot be run; the message names the key."""


@dataclass(frozen=True, order=True)
class Run:
    task: str
    model: str
    method: str
    budget: int
    bits: str
    seed: int

    @property
    def path(self) -> str:
        """Relative path of this run under ``results/runs`` (and ``results/adapters``)."""
        return f"{self.task}/{self.model}/{self.method}/{self.budget}/{self.bits}/seed{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def validate_config(cfg: dict, schema: str | Path) -> dict:
    """Validate ``cfg`` against the schema (filling defaults), then against the registries."""
    import jsonschema
    from snakemake.utils import validate

    with open(schema) as fh:
        validator = jsonschema.Draft202012Validator(yaml.safe_load(fh))
    error = jsonschema.exceptions.best_match(validator.iter_errors(cfg))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        raise ConfigError(f"{key}: {error.message} (schema: {schema})")
    validate(cfg, str(schema), set_default=True)  # fills the schema's defaults
    check_names(cfg)
    return cfg


def load_config(path: str | Path, schema: str | Path) -> dict:
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    return validate_config(cfg, schema)


def check_names(cfg: dict) -> None:
    registries = {"tasks": TASKS, "models": MODELS, "methods": METHODS, "bits": BITS}
    named = [(f"study.{key}", key, name) for key in registries for name in cfg["study"][key]]
    # option sections keyed by name (tasks:, models:, methods:) must name registered entries too
    named += [(f"{key}.{name}", key, name) for key in ("tasks", "models", "methods")
              for name in cfg.get(key, {})]
    for where, key, name in named:
        try:
            registries[key].get(str(name))
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    for method in cfg["study"]["methods"]:
        METHODS.get(method).options(cfg.get("methods", {}).get(method, {}), where=f"methods.{method}")
        if METHODS.get(method).own_bits and [str(b) for b in cfg["study"]["bits"]] != ["32"]:
            raise ConfigError(f"study.bits: method {method!r} sets per-layer precision itself from the "
                              f"fp32 base; run it in a study whose bits are [\"32\"] only")
    for task in cfg["study"]["tasks"]:
        for method in cfg["study"]["methods"]:
            for model in cfg["study"]["models"]:
                grid = resolve_training(cfg, task, method, model).get("lr_grid") or []
                if len(grid) > 1 and not task_options(cfg, task)["selection_samples"]:
                    raise ConfigError(
                        f"tasks.{task}.selection_samples: {method} on {task} has an lr_grid of "
                        f"{len(grid)} points, which needs a selection split to choose on (the test "
                        f"split is never used for choices); set selection_samples, e.g. 500")
    for i, ov in enumerate(cfg.get("overrides", [])):
        for key, registry in (("task", TASKS), ("method", METHODS), ("model", MODELS)):
            if key in ov:
                try:
                    registry.get(ov[key])
                except UnknownNameError as exc:
                    raise ConfigError(f"overrides[{i}].{key}: {exc}") from None


def expand_runs(cfg: dict) -> list[Run]:
    """Every run of the study: the cross product of its axes, in a stable order."""
    s = cfg["study"]
    runs = [
        Run(t, m, meth, int(b), str(bits), int(seed))
        for t, m, meth, b, bits, seed in itertools.product(
            s["tasks"], s["models"], s["methods"], s["budgets"], s["bits"], s["seeds"]
        )
    ]
    if len(set(runs)) != len(runs):
        raise ConfigError("study: an axis lists the same value twice")
    return runs


def upstream_run(run: Run | dict) -> Run | None:
    """The run ``run``'s method builds on (same task, model, budget, bits, seed), if any."""
    run = Run(**run) if isinstance(run, dict) else run
    method = METHODS.get(run.method).upstream
    return replace(run, method=method) if method else None


def resolve_training(cfg: dict, task: str, method: str, model: str | None = None) -> dict:
    """Training hyperparameters for one (task, method[, model]) by the documented precedence."""
    hp = copy.deepcopy(cfg["training"])
    hp.update(cfg.get("tasks", {}).get(task, {}).get("training", {}))
    hp.update(cfg.get("methods", {}).get(method, {}).get("training", {}))
    for ov in cfg.get("overrides", []):
        if all(ov.get(k, v) == v for k, v in (("task", task), ("method", method), ("model", model))):
            hp.update(ov["training"])
    return hp


def run_spec(cfg: dict, run: Run) -> dict:
    """Everything that determines a run's result, resolved; it is the train rule's params."""
    method = METHODS.get(run.method)
    return {
        "run": run.as_dict(),
        "training": resolve_training(cfg, run.task, run.method, run.model),
        "method_options": method.options(
            cfg.get("methods", {}).get(run.method, {}), where=f"methods.{run.method}"
        ),
        "task_options": task_options(cfg, run.task),
        "model_options": cfg.get("models", {}).get(run.model, {}),
        "device": cfg["device"],
    }


def task_options(cfg: dict, task: str) -> dict:
    opts = {k: v for k, v in cfg.get("tasks", {}).get(task, {}).items() if k != "training"}
    return {"max_train_samples": None, "max_eval_samples": None, "max_length": 128,
            "subset_seed": 0, "selection_samples": 0, **opts}


def lr_grid(spec: dict) -> list[float]:
    """The learning rates a run trains at: its lr_grid, or its lr alone."""
    return [float(x) for x in (spec["training"].get("lr_grid") or [spec["training"]["lr"]])]


def lr_tag(lr: float) -> str:
    """How a learning rate appears in paths (results/adapters/<run>/lr<tag>)."""
    return f"{lr:g}"


def point_spec(spec: dict, lr: float) -> dict:
    """The spec of one grid point: the run's spec at one learning rate, without the grid, so a
    grid point's result depends on nothing but its own settings."""
    if lr not in lr_grid(spec):
        raise ConfigError(f"{Run(**spec['run']).path}: lr {lr} is not in its grid {lr_grid(spec)}")
    out = copy.deepcopy(spec)
    out["training"]["lr"] = lr
    out["training"]["lr_grid"] = None
    return out


def config_hash(spec: dict) -> str:
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
