import time

import pandas as pd
import pytest

from rankbits.data import load_split, prepare_task, subset
from rankbits.tasks import TASKS, DataError

from conftest import SHARED_DATA, needs_shared_data


def data_rows(path) -> int:
    """Non-blank lines of a GLUE TSV file, less its header (raw CoLA has none): what a complete
    parse must return, derived from the file rather than hard-coded (../shared/data changes)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return len(lines) - (path.parent.name != "cola")


@needs_shared_data("sst2")
@pytest.mark.parametrize("task,split", [(t, s) for t in ("sst2", "cola", "mrpc", "rte") for s in ("train", "dev")])
def test_local_glue_files_parse_completely(task, split):
    if not (SHARED_DATA / task).is_dir():
        pytest.skip(f"{SHARED_DATA / task} is absent")
    df, source = load_split(TASKS.get(task), split, str(SHARED_DATA))
    assert len(df) == data_rows(SHARED_DATA / task / f"{split}.tsv") > 100 and source.startswith("local:")
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


def test_wrong_header_and_empty_and_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write(tmp_path, "sst2", "train.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(DataError, match=r"train\.tsv:1: expected header"):
        load_split(TASKS.get("sst2"), "train", str(tmp_path))
    write(tmp_path, "sst2", "dev.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match=r"dev\.tsv: no data rows"):
        load_split(TASKS.get("sst2"), "dev", str(tmp_path))
    write(tmp_path, "mrpc", "train.tsv", "x")
    with pytest.raises(DataError, match=r"no \S*mrpc/dev\.tsv and the Hugging Face Hub is not reachable"):
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
    n_train, n_dev = (data_rows(SHARED_DATA / "sst2" / f) for f in ("train.tsv", "dev.tsv"))
    assert m["splits"]["train"]["rows"] == 50 and m["splits"]["train"]["rows_available"] == n_train
    assert m["splits"]["selection"]["rows"] == 0
    assert len(pd.read_parquet(tmp_path / "train.parquet")) == 50
    assert len(pd.read_parquet(tmp_path / "dev.parquet")) == n_dev
    # the rebuilt SST-2 holds out whole sentences: no test row inside a training row
    assert m["leak"]["dev_rows_inside_a_train_row"] == 0
    assert (tmp_path / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def sst2_folder(tmp_path, train_rows, dev_rows):
    d = tmp_path / "sst2"
    d.mkdir(exist_ok=True)
    for name, rows in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        (d / name).write_text("sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in rows))
    return tmp_path


SENTENCES = [("a gorgeous , witty , seductive movie .", 1), ("the plot is nothing but boilerplate clichés", 0),
             ("it 's a charming and often affecting journey .", 1), ("unflinchingly bleak and desperate", 0),
             ("an absolute delight from start to finish", 1), ("a dull , lifeless mess of a film", 0)]


def test_a_test_row_inside_a_training_row_is_counted_and_warned_about(tmp_path, capsys):
    train = SENTENCES + [("seductive movie", 1), ("boilerplate", 0)]
    root = sst2_folder(tmp_path, train, [("witty , seductive", 1), ("a dull , lifeless", 0),
                                         ("never seen before", 1), ("movie .", 1)])
    m = prepare_task("sst2", str(root), {}, str(tmp_path / "out"))
    leak = m["leak"]
    assert leak["dev_rows_inside_a_train_row"] == 3 and leak["dev_rows_inside_a_train_row_fraction"] == 0.75
    assert "3 of 4 test rows (75.0%) occur inside a training row" in capsys.readouterr().out
    # token-aligned: "movie" inside "movies" is no hit; a threshold of 1 silences the warning
    sst2_folder(tmp_path, [("great movies here", 1), ("bad", 0)], [("movie", 1), ("great movies", 1)])
    m = prepare_task("sst2", str(root), {"leak_warn_fraction": 1.0}, str(tmp_path / "out"))
    assert m["leak"]["dev_rows_inside_a_train_row"] == 1 and "WARNING" not in capsys.readouterr().out


def test_selection_holds_whole_sentences_and_train_loses_their_phrases(tmp_path):
    phrases = [("gorgeous , witty", 1), ("witty , seductive movie", 1), ("boilerplate clichés", 0),
               ("charming and often affecting", 1), ("bleak", 0), ("from start to finish", 1),
               ("lifeless mess", 0), ("a dull , lifeless mess of a film", 0)]
    root = sst2_folder(tmp_path, SENTENCES + phrases, [("something else entirely", 1)])
    m = prepare_task("sst2", str(root), {"selection_samples": 2}, str(tmp_path / "out"))
    sel = pd.read_parquet(tmp_path / "out" / "selection.parquet")
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    whole = {t for t, _ in SENTENCES}
    assert set(sel["text"]) <= whole and m["splits"]["selection"]["whole_sentences"] == 2
    for s in sel["text"]:  # nothing of a selection sentence is left in train
        assert not [t for t in train["text"] if f" {t} " in f" {s} " or f" {s} " in f" {t} "]
    t = m["splits"]["train"]
    assert len(train) + 2 + t["dropped_as_in_selection_or_dev"] + t["dropped_as_containing_or_inside_selection"] == 14


@needs_shared_data("sst2")
def test_the_old_leaky_sst2_split_would_be_flagged(tmp_path, capsys):
    """The layout the offline SST-2 used to have: the last 2,000 training rows as the test split."""
    rows = (SHARED_DATA / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    d = tmp_path / "sst2"
    d.mkdir()
    (d / "train.tsv").write_text("\n".join(rows[:-2000]) + "\n", encoding="utf-8")
    (d / "dev.tsv").write_text("\n".join(rows[:1] + rows[-2000:]) + "\n", encoding="utf-8")
    m = prepare_task("sst2", str(tmp_path), {"max_train_samples": 10}, str(tmp_path / "out"))
    assert m["leak"]["dev_rows_inside_a_train_row_fraction"] > 0.5
    assert "WARNING task sst2" in capsys.readouterr().out


@pytest.mark.parametrize("task,name,head", [("sst2", "train.tsv", b"sentence\tlabel\ngood \t1\n"),
                                            ("wikitext2", "train.txt", b" = Title = \n\n text\n"),
                                            ("cnn_dailymail", "train.jsonl", b'{"article": "a", "highlights": "b"}\n'),
                                            ("alpaca", "alpaca_data.json", b'[{"instruction": "a",\n "output": "b"}\n')])
def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path, task, name, head):
    d = tmp_path / task
    d.mkdir()
    (d / name).write_bytes(head + b"caf\xe9 au lait\n")
    lines = head.count(b"\n") + 1
    with pytest.raises(DataError, match=rf"{name}:{lines}: byte 0xe9 at column 4 is not valid UTF-8"):
        load_split(TASKS.get(task), "train", str(tmp_path))


def test_train_rows_sentences_keeps_only_whole_sentences(tmp_path):
    phrases = [("gorgeous , witty", 1), ("boilerplate clichés", 0), ("bleak", 0), ("lifeless mess", 0)]
    root = sst2_folder(tmp_path, SENTENCES + phrases, [("something else entirely", 1)])
    m = prepare_task("sst2", str(root), {"train_rows": "sentences"}, str(tmp_path / "out"))
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert sorted(train["text"]) == sorted(t for t, _ in SENTENCES)
    assert m["splits"]["train"]["rows_kind"] == "sentences" and m["splits"]["train"]["rows_eligible"] == 6
    with pytest.raises(DataError, match="train_rows: 'sentences' is for classification tasks"):
        (tmp_path / "wikitext2").mkdir()
        for f in ("train.txt", "test.txt"):
            (tmp_path / "wikitext2" / f).write_text("a line\n")
        prepare_task("wikitext2", str(tmp_path), {"train_rows": "sentences"}, str(tmp_path / "w"))
