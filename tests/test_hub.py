"""The Hub branch of every task, end to end through prepare_task: ``datasets.load_dataset`` is
replaced by a DatasetDict in the exact schema of the Hub dataset the task names (split names,
feature names, ClassLabel names, GLUE's unlabelled test splits), so our conversion to parquet,
the label mapping and the choice of splits run as they would online. Schemas as the dataset
cards give them: nyu-mll/glue, Salesforce/wikitext (wikitext-2-raw-v1), tatsu-lab/alpaca,
abisee/cnn_dailymail (3.0.0)."""
from __future__ import annotations

import pandas as pd
import pytest

datasets = pytest.importorskip("datasets")
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value  # noqa: E402

from rankbits import data  # noqa: E402
from rankbits.data import prepare_task  # noqa: E402
from rankbits.tasks import DataError  # noqa: E402

S, I = Value("string"), Value("int32")
GLUE = {  # config: (text features, label names, split names)
    "sst2": (["sentence"], ["negative", "positive"], ["train", "validation", "test"]),
    "cola": (["sentence"], ["unacceptable", "acceptable"], ["train", "validation", "test"]),
    "mrpc": (["sentence1", "sentence2"], ["not_equivalent", "equivalent"], ["train", "validation", "test"]),
    "rte": (["sentence1", "sentence2"], ["entailment", "not_entailment"], ["train", "validation", "test"]),
    "qnli": (["question", "sentence"], ["entailment", "not_entailment"], ["train", "validation", "test"]),
    "mnli": (["premise", "hypothesis"], ["entailment", "neutral", "contradiction"],
             ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"]),
}


def glue(config: str, n: int = 12) -> DatasetDict:
    cols, names, splits = GLUE[config]
    feats = Features({**{c: S for c in cols}, "label": ClassLabel(names=names), "idx": I})
    out = {}
    for split in splits:
        rows = {c: [f"{split} {c} number {i} of {config}" for i in range(n)] for c in cols}
        # test splits carry no labels (-1), as on the Hub
        rows["label"] = [-1] * n if split.startswith("test") else [i % len(names) for i in range(n)]
        rows["idx"] = list(range(n))
        out[split] = Dataset.from_dict(rows, features=feats, split=split)
    return DatasetDict(out)


def wikitext() -> DatasetDict:
    lines = ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . \n",
             " It was released in January 2011 . \n", "", " = = Gameplay = = \n"]
    return DatasetDict({s: Dataset.from_dict({"text": [f"{s}{x}" if x.strip() else x for x in lines * 3]},
                                             features=Features({"text": S}), split=s)
                        for s in ("train", "validation", "test")})


def alpaca() -> DatasetDict:
    recs = [{"instruction": f"Give tip {i}.", "input": "" if i % 2 else f"context {i}",
             "output": f"Tip {i}: sleep.", "text": f"Below is an instruction ... {i}"} for i in range(10)]
    return DatasetDict({"train": Dataset.from_list(recs, features=Features(
        {"instruction": S, "input": S, "output": S, "text": S}))})


def cnn() -> DatasetDict:
    return DatasetDict({s: Dataset.from_dict(
        {"article": [f"({s}) Article {i} body ." for i in range(6)],
         "highlights": [f"Summary {i} ." for i in range(6)], "id": [f"{s}{i:040d}" for i in range(6)]},
        features=Features({"article": S, "highlights": S, "id": S}), split=s)
        for s in ("train", "validation", "test")})


HUB = {**{t: (("nyu-mll/glue", t), lambda t=t: glue(t)) for t in GLUE},
       "wikitext2": (("Salesforce/wikitext", "wikitext-2-raw-v1"), wikitext),
       "alpaca": (("tatsu-lab/alpaca", None), alpaca),
       "cnn_dailymail": (("abisee/cnn_dailymail", "3.0.0"), cnn)}


@pytest.fixture
def hub(monkeypatch):
    """Route prepare_task to a fake Hub; returns the (path, name, split) of each load."""
    calls = []

    def load_dataset(path, name=None, split=None, **kw):
        for (p, n), make in HUB.values():
            if (p, n) == (path, name):
                calls.append((path, name, split))
                dd = make()
                if split not in dd:
                    raise ValueError(f'Unknown split "{split}". Should be one of {list(dd)}.')
                return dd[split]
        raise FileNotFoundError(f"Couldn't find '{path}' on the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: (True, ""))
    return calls


@pytest.mark.parametrize("task", list(GLUE))
def test_glue_from_the_hub(task, hub, tmp_path):
    m = prepare_task(task, None, {"selection_samples": 2}, str(tmp_path))
    dev_split = "validation_matched" if task == "mnli" else "validation"
    assert [c[2] for c in hub] == ["train", dev_split]
    assert m["splits"]["dev"]["source"] == f"hub:nyu-mll/glue/{task}:{dev_split}"
    train, sel, dev = (pd.read_parquet(tmp_path / f"{s}.parquet") for s in ("train", "selection", "dev"))
    n_labels = len(GLUE[task][1])
    assert len(dev) == 12 and list(dev["label"]) == [i % n_labels for i in range(12)]
    assert dev["text"].str.startswith(f"{dev_split} ").all()
    assert (dev["text_pair"].isna().all()) == (len(GLUE[task][0]) == 1)
    assert len(sel) == 2 and len(train) == 10 and train["label"].between(0, n_labels - 1).all()


def test_an_unlabelled_glue_test_split_or_other_label_names_are_refused(hub, monkeypatch, tmp_path):
    from rankbits.tasks import TASKS

    monkeypatch.setitem(TASKS.get("rte").hub_splits, "dev", "test")
    with pytest.raises(DataError, match=r"labels are -1 \(an unlabelled GLUE test split\)"):
        prepare_task("rte", None, {}, str(tmp_path))
    monkeypatch.setitem(HUB, "sst2", (("nyu-mll/glue", "sst2"), lambda: glue("cola")))
    with pytest.raises(DataError, match=r"label names \['unacceptable', 'acceptable'\], expected \['negative', 'positive'\]"):
        prepare_task("sst2", None, {}, str(tmp_path))


def test_wikitext_from_the_hub(hub, tmp_path):
    m = prepare_task("wikitext2", None, {}, str(tmp_path))
    assert [c[1:] for c in hub] == [("wikitext-2-raw-v1", "train"), ("wikitext-2-raw-v1", "test")]
    dev = pd.read_parquet(tmp_path / "dev.parquet")
    assert len(dev) == 12 and not dev["text"].str.strip().eq("").any()  # blank lines dropped
    assert dev["text"].iloc[0] == "test = Valkyria Chronicles III = "
    assert m["splits"]["train"]["rows"] == 12


def test_alpaca_from_the_hub(hub, tmp_path):
    prepare_task("alpaca", None, {"dev_samples": 3}, str(tmp_path))
    assert [c[2] for c in hub] == ["train"]
    train, dev = (pd.read_parquet(tmp_path / f"{s}.parquet") for s in ("train", "dev"))
    assert len(train) == 7 and len(dev) == 3
    row = pd.concat([train, dev]).set_index("target").loc["Tip 2: sleep."]
    assert "Give tip 2." in row["text"] and "context 2" in row["text"]  # the prompt with input


def test_cnn_dailymail_from_the_hub(hub, tmp_path):
    prepare_task("cnn_dailymail", None, {}, str(tmp_path))
    assert [c[1:] for c in hub] == [("3.0.0", "train"), ("3.0.0", "test")]
    dev = pd.read_parquet(tmp_path / "dev.parquet")
    assert list(dev["target"]) == [f"Summary {i} ." for i in range(6)]
    assert dev["text"].str.startswith("(test) Article").all()


def test_a_local_folder_without_the_file_falls_back_to_the_hub(hub, tmp_path, capsys):
    """config/studies/seeds.yaml: ../shared/data/wikitext2 has no train.txt."""
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2" / "test.txt").write_text(" = Local = \n local text . \n")
    m = prepare_task("wikitext2", str(tmp_path), {}, str(tmp_path / "out"))
    assert m["splits"]["train"]["source"].startswith("hub:Salesforce/wikitext")
    assert m["splits"]["dev"]["source"].startswith("local:")
    assert "train.txt not found; reading the train split from the Hub" in capsys.readouterr().out
