"""A run's record: config/metrics.schema.yaml, and docs/record.md made from it."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO, valid_records
from rankbits.record import markdown

SCHEMA = yaml.safe_load((REPO / "config" / "metrics.schema.yaml").read_text())


def test_the_field_reference_is_made_from_the_schema():
    assert (REPO / "docs" / "record.md").read_text() == markdown(SCHEMA), \
        "run: python -m rankbits.record config/metrics.schema.yaml > docs/record.md"


def test_a_success_without_its_results_or_a_failure_without_its_reason_is_invalid(tmp_path):
    from rankbits.config import Run
    from rankbits.evaluate import write_failed_run

    run = Run("sst2", "minilm", "lora", 2, "32", 0)
    spec = {"run": run.as_dict(), "training": {}, "method_options": {}, "task_options": {}, "model_options": {},
            "device": "cpu"}
    write_failed_run(run, spec, [{"lr": 0.004, "step": 3, "error": "non-finite loss"}],
                     str(tmp_path / "runs" / run.path))
    assert valid_records(tmp_path) == 1  # what the real code writes for a failed run
    path = tmp_path / "runs" / run.path / "metrics.json"
    m = json.loads(path.read_text())
    m["run_info"]["status"] = "success"  # a success must carry train_info and eval_info
    path.write_text(json.dumps(m))
    with pytest.raises(AssertionError, match="train_info"):
        valid_records(tmp_path)
