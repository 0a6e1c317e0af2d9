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


@pytest.fixture
def base_config() -> dict:
    with open(REPO / "config" / "config.yaml") as fh:
        return copy.deepcopy(yaml.safe_load(fh))


@pytest.fixture
def validated(base_config):
    from rankbits.config import validate_config

    return validate_config(base_config, SCHEMA)
