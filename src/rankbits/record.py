"""A run's record (``metrics.json``) described by its schema, ``config/metrics.schema.yaml``:
``markdown`` writes the field reference (``docs/record.md``) from it, so the two cannot drift.

    python -m rankbits.record config/metrics.schema.yaml > docs/record.md
"""
from __future__ import annotations

import sys

# The record's fields that tables, figures and the verdict read, by their dotted paths in
# metrics.json: pandas.json_normalize names a run's columns so (``aggregate.load_runs``), and
# ``aggregate.summarize`` appends _mean / _std. One name for a field from the record to the tables.
PRIMARY = "eval_info.primary_value"
PRIMARY_METRIC = "eval_info.primary_metric"
HIGHER = "eval_info.higher_is_better"
METRIC = "eval_info.metrics."  # + the metric's name: every metric of the task
LR = "train_info.training.lr"
AT_EDGE = "eval_info.lr_selection.at_edge"
COLLAPSED = "eval_info.collapse.collapsed"
COLLAPSE_REASON = "eval_info.collapse.reason"
TRAINABLE = "train_info.params.trainable_final"  # at the end: a growing rank ends with more
EFFECTIVE = "train_info.params.effective_adapter"
TRAINING_MEMORY = "train_info.training_memory.total_bytes"  # what a user budgets (rankbits.memory)
TRAIN_SECONDS = "train_info.timing.train_seconds"
TRAIN_CPU = "train_info.timing.train_cpu_seconds"
STEP_SECONDS = "train_info.timing.step_seconds_median"
OWN_BASE = "train_info.base.footprint.total_bytes"  # a method that quantizes its own base
# what the arm's number cost: every learning-rate grid point, probes included
SEARCH_STEPS = "eval_info.lr_selection.total_optimizer_steps"
SEARCH_SECONDS = "eval_info.lr_selection.total_train_seconds"
SEARCH_CPU = "eval_info.lr_selection.total_train_cpu_seconds"
EVAL_CPU = "eval_info.eval_cpu_seconds"

# Every cost ``summarize`` averages over an arm's seeds (besides the task's metrics); a cost
# measured and recorded by training or evaluation is one more path here.
COSTS = (TRAINABLE, EFFECTIVE, "train_info.total_rank", "train_info.adapter_bytes",
         "train_info.base.base_bytes", "train_info.memory.peak_rss_bytes",
         "train_info.memory.optimizer_state_bytes", OWN_BASE, "train_info.memory.cuda_max_allocated_bytes",
         "train_info.memory.cuda_max_reserved_bytes", TRAIN_SECONDS, "train_info.steps", SEARCH_STEPS,
         SEARCH_SECONDS, TRAINING_MEMORY, TRAIN_CPU, STEP_SECONDS, SEARCH_CPU, EVAL_CPU)
# subtrees a table never reads: per-module lists, the resolved settings (``recorded_settings``
# shows them), the identity again
NOT_TABULATED = ("run_info.spec", "train_info.run", "train_info.module_dims", "train_info.allocation.ranks",
                 "eval_info.lr_selection.grid", "eval_info.lr_selection.search", "eval_info.lr_selection.failed")


def _type(spec: dict) -> str:
    t = spec.get("type") or ("one of " + ", ".join(map(str, spec["enum"])) if "enum" in spec else "")
    return " or ".join(t) if isinstance(t, list) else str(t)


def _rows(props: dict, required: set, prefix: str) -> list[str]:
    rows = []
    for name, spec in props.items():
        key = f"{prefix}{name}"
        need = "yes" if name in required else ""
        text = " ".join(str(spec.get("description", "")).split())
        rows.append(f"| `{key}` | {_type(spec)} | {need} | {text} |")
        if spec.get("properties"):
            rows += _rows(spec["properties"], set(spec.get("required", [])), key + ".")
    return rows


def markdown(schema: dict) -> str:
    """The record's fields as a table per block: dotted name, type, required, meaning."""
    out = ["# A run's record: `metrics.json`", "",
           "Made from `config/metrics.schema.yaml` by `python -m rankbits.record "
           "config/metrics.schema.yaml > docs/record.md`; a test keeps the two the same.", "",
           " ".join(schema["description"].split()), ""]
    for block, spec in schema["properties"].items():
        out += [f"## `{block}`", "", " ".join(str(spec.get("description", "")).split()), "",
                "| field | type | required | meaning |", "| --- | --- | --- | --- |"]
        if spec.get("properties"):
            out += _rows(spec["properties"], set(spec.get("required", [])), f"{block}.")
        else:
            out.append(f"| `{block}` | {_type(spec)} | | {' '.join(str(spec.get('description', '')).split())} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import yaml

    sys.stdout.write(markdown(yaml.safe_load(open(sys.argv[1]))))
