import time

import pandas as pd
import pytest

from rankbits.data import load_split, prepare_task, subset
from rankbits.tasks import TASKS, DataError

from conftest import SHARED_DATA, needs_shared_data


@needs_shared_data("sst2")
@pytest.mark.parametrize("task,split,rows", [
    ("sst2", "train", 65349), ("sst2", "dev", 2000), ("cola", "train", 8051), ("cola", "dev", 500),
    ("mrpc", "train", 3668), ("mrpc", "dev", 408), ("rte", "train", 2190), ("rte", "dev", 300),
])
def test_local_glue_files_parse_completely(task, split, rows):
    if not (SHARED_DATA / task).is_dir():
        pytest.skip(f"{SHARED_DATA / task} is absent")
    df, source = load_split(TASKS.get(task), split, str(SHARED_DATA))
    assert len(df) == rows and source.startswith("local:")
    assert set(df["label"].unique()) == {0, 1}
    assert df["text"].str.len().min() > 0
    assert df["text_pair"].isna().all() == (task in ("sst2", "cola"))


def write(tmp_path, task, name, text):
    d = tmp_path / task
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d / name


def test_malformed_row_names_file_and_line(tmp_path):
    write(tmp_path, "sst2", "train.tsv", "sentence\tlabel\ngood film \t1\nno label here\n")
    with pytest.raises(DataError, match=r"train\.tsv:3: expected 2 tab-separated fields, found 1"):
        load_split(TASKS.get("sst2"), "train", str(tmp_path))


def test_bad_label_names_file_line_and_allowed_values(tmp_path):
    write(tmp_path, "rte", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"dev\.tsv:3: label 'maybe' is not one of"):
        load_split(TASKS.get("rte"), "dev", str(tmp_path))


def test_wrong_header_and_empty_and_missing_files(tmp_path):
    write(tmp_path, "sst2", "train.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv:1: expected header"):
        load_split(TASKS.get("sst2"), "train", str(tmp_path))
    write(tmp_path, "sst2", "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"dev\.tsv: no data rows"):
        load_split(TASKS.get("sst2"), "dev", str(tmp_path))
    write(tmp_path, "mrpc", "train.tsv", "x")
    with pytest.raises(DataError, match=r"mrpc/dev\.tsv: file not found"):
        load_split(TASKS.get("mrpc"), "dev", str(tmp_path))


def test_offline_without_local_copy_fails_at_once_saying_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_split(TASKS.get("cola"), "train", str(tmp_path))
    assert time.perf_counter() - t < 2
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and str(tmp_path / "cola") in msg and "train.tsv" in msg


def test_subset_is_fixed_by_seed_and_keeps_order():
    df = pd.DataFrame({"idx": range(100), "label": [0, 1] * 50})
    a, b = subset(df, 10, 3), subset(df, 10, 3)
    assert a.equals(b) and len(a) == 10 and a["idx"].is_monotonic_increasing
    assert not a.equals(subset(df, 10, 4))
    assert subset(df, None, 0) is df and subset(df, 1000, 0) is df


@needs_shared_data("sst2")
def test_prepare_task_writes_splits_and_manifest(tmp_path):
    m = prepare_task("sst2", str(SHARED_DATA), {"max_train_samples": 50, "max_eval_samples": None}, str(tmp_path))
    assert m["splits"]["train"]["rows"] == 50 and m["splits"]["train"]["rows_available"] == 65349
    assert m["splits"]["selection"]["rows"] == 0
    assert len(pd.read_parquet(tmp_path / "train.parquet")) == 50
    assert len(pd.read_parquet(tmp_path / "dev.parquet")) == 2000
    assert (tmp_path / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
