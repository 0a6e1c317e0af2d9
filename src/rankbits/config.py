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
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .bits import BITS
from .errors import ConfigError, coerce  # noqa: F401 — ConfigError: users import it from here too
from .methods import METHODS
from .models import MODELS
from .problems import IncompatibleError, problem
from .registry import UnknownNameError
from .tasks import TASKS
from .models.configured import chat_template, declare as declare_models
from .tasks.configured import chat_template_error, declare as declare_tasks

AXES = ("task", "model", "method", "budget", "bits", "seed")


# a run's folder under results/<study>/runs and .../adapters: Run.path fills it, the rules use it
# as their wildcard pattern
RUN_PATTERN = "{task}/{model}/{method}/{budget}/{bits}/seed{seed}"


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
        """Relative path of this run under ``results/<study>/runs`` (and ``.../adapters``)."""
        return RUN_PATTERN.format(**self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def validate_config(cfg: dict, schema: str | Path) -> dict:
    """Validate ``cfg`` against the schema (filling defaults), then against the registries."""
    import jsonschema
    from snakemake.utils import validate

    with open(schema) as fh:
        spec = yaml.safe_load(fh)
    validator = jsonschema.Draft202012Validator(spec)
    cfg.update(coerce(cfg, spec, spec.get("$defs", {})))
    error = jsonschema.exceptions.best_match(validator.iter_errors(cfg))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        raise ConfigError(f"{key}: {error.message} (schema: {schema})")
    validate(cfg, str(schema), set_default=True)  # fills the schema's defaults
    declare(cfg)
    check_names(cfg)
    return cfg


def declare(cfg: dict) -> None:
    """Models and tasks the study declares itself (``models.<name>`` with a path, gguf or hub;
    ``tasks.<name>`` with a problem and files), checked and made known to this process and its
    jobs; a line per model says which family and kinds were found, for the user to check."""
    import sys


    for line in declare_models(cfg.get("models") or {}, MODELS.registered()):
        print(line, file=sys.stderr, flush=True)
    declare_tasks(cfg.get("tasks") or {}, TASKS.registered(), cfg.get("data_root"))


def load_config(path: str | Path, schema: str | Path) -> dict:
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    return validate_config(cfg, schema)


def grids(cfg: dict) -> list[tuple[str, dict]]:
    """(config key, grid) for each cross product the study is made of: ``study`` is one grid or
    a list of grids."""
    s = cfg["study"]
    return [("study", s)] if isinstance(s, dict) else [(f"study[{i}]", g) for i, g in enumerate(s)]


def study_values(cfg: dict, axis: str) -> list:
    """The values of one axis (tasks, models, ...) over every grid, first appearance first."""
    return list(dict.fromkeys(str(v) if axis == "bits" else v for _, g in grids(cfg) for v in g[axis]))


def check_names(cfg: dict) -> None:
    for where, grid in grids(cfg):
        check_grid(cfg, where, grid)
    check_scores(cfg)
    for i, ov in enumerate(cfg.get("overrides", [])):
        for key, registry in (("task", TASKS), ("method", METHODS), ("model", MODELS)):
            if key in ov:
                try:
                    registry.get(ov[key])
                except UnknownNameError as exc:
                    raise ConfigError(f"overrides[{i}].{key}: {exc}") from None


def check_chat(cfg: dict, task: str, model: str) -> None:
    """A task given as chat messages needs a model whose tokenizer has a chat template."""

    if not TASKS.get(task).chat:
        return
    opts = cfg.get("models", {}).get(model, {})
    has = chat_template(model, opts) if any(opts.get(k) for k in ("gguf", "hub")) or (
        opts.get("path") and model not in MODELS.registered()) else None
    if (why := chat_template_error(task, model, has)) is not None:
        raise ConfigError(why)


def check_grid(cfg: dict, study: str, grid: dict) -> None:
    registries = {"tasks": TASKS, "models": MODELS, "methods": METHODS, "bits": BITS}
    named = [(f"{study}.{key}", key, name) for key in registries for name in grid[key]]
    # option sections keyed by name (tasks:, models:, methods:) must name registered entries too
    named += [(f"{key}.{name}", key, name) for key in ("tasks", "models", "methods")
              for name in cfg.get(key, {})]
    for where, key, name in named:
        try:
            registries[key].get(str(name))
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    for task, model in itertools.product(grid["tasks"], grid["models"]):
        try:
            problem(task, model)
        except IncompatibleError as exc:
            raise ConfigError(f"{study}: {exc}") from None
        check_chat(cfg, task, model)
    for method in grid["methods"]:
        METHODS.get(method).options(cfg.get("methods", {}).get(method, {}), where=f"methods.{method}")
        if METHODS.get(method).own_bits and [str(b) for b in grid["bits"]] != ["32"]:
            raise ConfigError(f"{study}.bits: method {method!r} sets per-layer precision itself from "
                              f"the fp32 base; run it in a grid whose bits are [\"32\"] only")
        for bits in grid["bits"]:
            if (why := METHODS.get(method).bits_error(str(bits))) is not None:
                raise ConfigError(f"{study}.bits: {method} cannot train on bits {bits!r}: {why}")
    for task in grid["tasks"]:
        for method in grid["methods"]:
            for model in grid["models"]:
                lrs = resolve_training(cfg, task, method, model).get("lr_grid") or []
                if len(lrs) > 1 and not task_options(cfg, task)["selection_samples"]:
                    raise ConfigError(
                        f"tasks.{task}.selection_samples: {method} on {task} has an lr_grid of "
                        f"{len(lrs)} points, which needs a selection split to choose on (the test "
                        f"split is never used for choices); set selection_samples, e.g. 500")


def expand_runs(cfg: dict) -> list[Run]:
    """Every run of the study: the cross product of each grid's axes, in a stable order; a run
    that two grids share is run once."""
    runs = []
    for where, s in grids(cfg):
        grid = [
            Run(t, m, meth, int(b), str(bits), int(seed))
            for t, m, meth, b, bits, seed in itertools.product(
                s["tasks"], s["models"], s["methods"], s["budgets"], s["bits"], s["seeds"]
            )
        ]
        if len(set(grid)) != len(grid):
            raise ConfigError(f"{where}: an axis lists the same value twice")
        runs += grid
    return list(dict.fromkeys(runs))


def upstream_run(run: Run | dict) -> Run | None:
    """The run ``run``'s method builds on (same task, model, budget and seed; same bits unless the
    method names them: ``upstream = (method, bits)``), if any."""
    run = Run(**run) if isinstance(run, dict) else run
    up = METHODS.get(run.method).upstream
    if not up:
        return None
    method, bits = (up, run.bits) if isinstance(up, str) else up
    return replace(run, method=method, bits=str(bits))


def method_config(cfg: dict, method: str) -> dict:
    """``methods.<method>``; a family member (``optimal:lora@32``) without an entry of its own
    takes its family's (``methods.optimal``)."""
    methods = cfg.get("methods", {})
    return methods.get(method, methods.get(method.partition(":")[0], {}) if ":" in method else {})


def resolve_training(cfg: dict, task: str, method: str, model: str | None = None) -> dict:
    """Training hyperparameters for one (task, method[, model]) by the documented precedence."""
    hp = copy.deepcopy(cfg["training"])
    hp.update(cfg.get("tasks", {}).get(task, {}).get("training", {}))
    hp.update(method_config(cfg, method).get("training", {}))
    for ov in cfg.get("overrides", []):
        if all(ov.get(k, v) == v for k, v in (("task", task), ("method", method), ("model", model))):
            hp.update(ov["training"])
    return hp


def check_scores(cfg: dict) -> None:
    """``tasks.<task>.forgetting`` names a language-modelling task; each ``scores`` entry names a
    task and models every one of its adapters' runs can be scored on, and runs the study trains."""
    for task, opts in cfg.get("tasks", {}).items():
        if "forgetting" in opts:
            try:
                kind = TASKS.get(opts["forgetting"]).problem_type
            except UnknownNameError as exc:
                raise ConfigError(f"tasks.{task}.forgetting: {exc}") from None
            if kind != "causal_lm":
                raise ConfigError(f"tasks.{task}.forgetting: {opts['forgetting']!r} is a {kind} task; "
                                  f"forgetting is scored as loss on a language-modelling task's text")
    runs = set(expand_runs(cfg))
    for i, entry in enumerate(cfg.get("scores", [])):
        where = f"scores[{i}]"
        for model in entry["models"]:
            try:
                problem(entry["task"], model)
            except (UnknownNameError, IncompatibleError) as exc:
                raise ConfigError(f"{where}: {exc}") from None
            for j, a in enumerate(entry.get("adapters", [])):
                run = Run(a["task"], model, a["method"], int(a["budget"]), str(a["bits"]), int(a["seed"]))
                if run not in runs:
                    raise ConfigError(f"{where}.adapters[{j}]: {run.path} is not a run of this study")
                if problem(run.task, model).peft_task_type != problem(entry["task"], model).peft_task_type:
                    raise ConfigError(f"{where}.adapters[{j}]: an adapter trained on {run.task} has another "
                                      f"head than {entry['task']} needs")


def scoring_plan(cfg: dict, runs: list[Run]) -> list[tuple[str, str, Run | None]]:
    """(task, model, run) of every scoring without training, run None for the full-precision base
    without adapter: the bases of the causal-LM and seq2seq tasks the study trains on (perplexity
    or ROUGE before any training), of their forgetting tasks, and the ``scores`` entries."""
    plan = []
    for run in runs:
        if TASKS.get(run.task).problem_type != "classification":
            plan.append((run.task, run.model, None))
        if "forgetting" in task_options(cfg, run.task):
            plan.append((task_options(cfg, run.task)["forgetting"], run.model, None))
    for entry in cfg.get("scores", []):
        for model in entry["models"]:
            plan.append((entry["task"], model, None))
            plan += [(entry["task"], model, Run(a["task"], model, a["method"], int(a["budget"]), str(a["bits"]),
                                                int(a["seed"]))) for a in entry.get("adapters", [])]
    return list(dict.fromkeys(plan))


def scoring_spec(cfg: dict, task: str, model: str) -> dict:
    """What scoring ``model`` on ``task`` without training depends on."""
    return {"task": task, "model": model, "task_options": task_options(cfg, task),
            "model_options": cfg.get("models", {}).get(model, {}), "device": cfg["device"],
            "training": {k: cfg["training"][k] for k in ("batch_size", "eval_batch_size", "kbit_prepare")}}


# the run length assumed at start-up when nothing bounds it (no max_steps, no max_train_samples):
# options given as fractions of the run are still checked against each other, step counts pass
NOMINAL_STEPS = 1_000_000


def planned_steps(spec: dict) -> int:
    """The optimizer steps a run is configured for, known before its data is prepared: max_steps,
    else max_train_samples' batches x epochs (an upper bound: the data may hold fewer rows)."""
    hp, task = spec["training"], spec["task_options"]
    if hp.get("max_steps"):
        return int(hp["max_steps"])
    if task.get("max_train_samples"):
        return -(-int(task["max_train_samples"]) // int(hp["batch_size"])) * max(1, int(hp["epochs"]))
    return NOMINAL_STEPS


def run_spec(cfg: dict, run: Run) -> dict:
    """Everything that determines a run's result, resolved; it is the train rule's params. The
    method's options are checked against the run's budget and planned length here, at start-up
    (the training job checks them again against the steps its data gives)."""
    method = METHODS.get(run.method)
    spec = {
        "run": run.as_dict(),
        "training": resolve_training(cfg, run.task, run.method, run.model),
        "method_options": method.options(method_config(cfg, run.method), where=f"methods.{run.method}"),
        "task_options": task_options(cfg, run.task),
        "model_options": cfg.get("models", {}).get(run.model, {}),
        "device": cfg["device"],
    }
    method.prepare(run.budget, spec["method_options"], planned_steps(spec), f"methods.{run.method}")
    method.check_run(run, spec, f"methods.{run.method}")
    check_rslora_alpha(run, spec)
    return spec


def check_rslora_alpha(run: Run, spec: dict) -> None:
    """rsLoRA scales the update by alpha / sqrt(r). With alpha given as a multiple of the rank
    ("2r") that is 2 sqrt(r): a scale that grows with rank, the opposite of rsLoRA, and under
    ``lr_budgets: first`` r=8 would reuse a rate chosen at r=2's smaller scale. Refused: rsLoRA
    needs a fixed alpha."""
    hp = spec["training"]
    rs = run.method == "rslora" or hp.get("lora_scaling") == "rslora"
    if rs and isinstance(hp["lora_alpha"], str):
        key = (f"methods.{run.method}.training.lora_alpha" if run.method == "rslora"
               else "training.lora_alpha (with training.lora_scaling: rslora)")
        raise ConfigError(f"{key}: {hp['lora_alpha']!r} makes rsLoRA's scale alpha / sqrt(r) grow with the "
                          f"rank ({resolve_alpha_scale(hp['lora_alpha'], run.budget)} at r={run.budget}); "
                          f"give a fixed number, e.g. {2 * 2 ** 0.5:.2f} (scale 2 at r=2, 1 at r=8)")


def resolve_alpha_scale(alpha: str, rank: int) -> str:
    return f"{float(alpha[:-1]) * rank ** 0.5:.2f}"


# (files and dev_samples have no default here: a run's spec, and so its config hash, holds them
# only when they are set, so results from before they existed stay valid)
TASK_DEFAULTS = {"max_train_samples": None, "max_eval_samples": None, "max_length": 128,
                 "subset_seed": 0, "selection_samples": 0}
# options only tasks of a problem type have (the others' specs stay as they were)
TYPE_DEFAULTS = {"causal_lm": {"eval_stride": None},
                 "seq2seq": {"max_target_length": 128, "generation": {"max_new_tokens": 64, "num_beams": 1}}}


def one_run_spec(run: Run, schema: str | Path, training: dict | None = None,
                 methods: dict | None = None, **top) -> dict:
    """The resolved spec of a study of the one ``run`` (tests and benchmarks train single runs)."""
    cfg = validate_config({
        "study": {"tasks": [run.task], "models": [run.model], "methods": [run.method],
                  "budgets": [run.budget], "bits": [run.bits], "seeds": [run.seed]},
        "training": training or {}, "methods": methods or {}, **top,
    }, schema)
    return run_spec(cfg, run)


STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def study_name(cfg: dict, configfiles=()) -> str:
    """The study's name, the folder its runs, tables, plots and report live in
    (``results/<name>/``): ``study_name`` if set, else the name of the last ``--configfile``
    (``config/studies/rank-allocation.yaml`` -> ``rank-allocation``); a file called
    ``config.yaml``, or none, names the default study ``default``."""
    name = cfg.get("study_name")
    if not name:
        stems = [Path(f).stem for f in configfiles]
        name = stems[-1] if stems and stems[-1] != "config" else "default"
    if not STUDY_NAME.match(str(name)) or name == "cache":
        raise ConfigError(f"study_name: {name!r} is not a folder name a study can have (letters, digits, "
                          f"'_', '.', '-'; not 'cache', the shared caches' folder)")
    return str(name)


def settings_key(*settings) -> str:
    """Eight hex digits naming a cache entry (prepared data, tokenized inputs, a prepared base)
    by the settings that made it: two studies with the same settings share it, two with
    different ones each keep their own."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def task_options(cfg: dict, task: str) -> dict:
    """A task's options: rankbits' defaults < the task's registry defaults < tasks.<task>."""
    t = TASKS.get(task)
    opts = {k: v for k, v in cfg.get("tasks", {}).get(task, {}).items() if k != "training"}
    out = {**TASK_DEFAULTS, **TYPE_DEFAULTS.get(t.problem_type, {}), **t.defaults, **opts}
    if "generation" in opts and "generation" in t.defaults:
        out["generation"] = {**t.defaults["generation"], **opts["generation"]}
    return out


def lr_grid(spec: dict) -> list[float]:
    """The learning rates a run trains at: its lr_grid, or its lr alone."""
    return [float(x) for x in (spec["training"].get("lr_grid") or [spec["training"]["lr"]])]


def lr_tag(lr: float) -> str:
    """How a learning rate appears in paths (results/adapters/<run>/lr<tag>)."""
    return f"{lr:g}"


def adapter_dir(run_dir: str, lr: float) -> Path:
    """The adapter a finished run (``results/<study>/runs/<run>``) trained at ``lr``: under
    ``results/<study>/adapters/<run>/lr<tag>/adapter``."""
    run = Path(run_dir)
    parts = run.parts
    i = len(parts) - 1 - parts[::-1].index("runs")
    return Path(*parts[:i], "adapters", *parts[i + 1:], f"lr{lr_tag(lr)}", "adapter")


SEARCH_KEYS = ("lr_grid", "lr_search", "lr_max_extensions", "lr_seeds", "lr_budgets")


def searching(spec: dict) -> bool:
    """Whether the run selects its rate (a grid of two or more) and may extend the grid."""
    return len(lr_grid(spec)) > 1 and spec["training"].get("lr_search", "off") == "extend"


def next_rate(lrs: list[float], chosen: float) -> float | None:
    """The rate one step beyond the edge ``chosen`` sits at (the ratio of the edge pair), with 3
    significant digits; None when ``chosen`` is inside the rates tried."""
    lrs = sorted(lrs)
    if len(lrs) < 2 or lrs[0] < chosen < lrs[-1]:
        return None
    if chosen == lrs[-1]:
        return float(f"{chosen * lrs[-1] / lrs[-2]:.3g}")
    return float(f"{chosen * lrs[0] / lrs[1]:.3g}")


def reachable_rates(spec: dict) -> set[float]:
    """The grid and every rate the search may add beyond either edge (``lr_max_extensions`` steps
    of the edge pair's ratio each way)."""
    grid = sorted(lr_grid(spec))
    out = set(grid)
    if searching(spec):
        for edge in (grid[0], grid[-1]):
            lrs = list(grid)
            for _ in range(int(spec["training"].get("lr_max_extensions") or 0)):
                edge = next_rate(lrs, edge)
                lrs.append(edge)
                out.add(edge)
    return out


def point_spec(spec: dict, lr: float) -> dict:
    """The spec of one grid point: the run's spec at one learning rate, without the grid and the
    search settings, so a grid point's result depends on nothing but its own settings. ``lr`` is
    a grid rate, or (``lr_search: extend``) one the search added beyond the grid's edge."""
    if lr not in reachable_rates(spec):
        raise ConfigError(f"{Run(**spec['run']).path}: lr {lr} is not in its grid {lr_grid(spec)} "
                          f"nor a rate its search can add")
    out = copy.deepcopy(spec)
    out["training"]["lr"] = lr
    for key in SEARCH_KEYS:
        if key in out["training"]:
            out["training"][key] = None
    return out


def config_hash(spec: dict) -> str:
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
