"""Problem types on model architectures: how a task's rows become model inputs, which
transformers class and PEFT task type load the model, the task loss logged while training, and
how a trained model is scored.

    classification  any architecture: AutoModelForSequenceClassification (SEQ_CLS)
    causal_lm       decoder: AutoModelForCausalLM (CAUSAL_LM); labels are the inputs (shifted)
    seq2seq         decoder: AutoModelForCausalLM, prompt + target, labels -100 on the prompt;
                    encoder-decoder: AutoModelForSeq2SeqLM (SEQ_2_SEQ_LM), source -> labels

``max_length`` is the tokens of one example: a classification input, an LM block or window, a
decoder's prompt + target, an encoder's source; ``max_target_length`` bounds a target.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batching import Batches
from .models import MODELS
from .tasks import TASKS, DataError, Task
from .tasks.configured import chat_prompt

LOADERS = {  # (problem type, architecture) -> (transformers auto class, PEFT task type)
    ("classification", "encoder"): ("AutoModelForSequenceClassification", "SEQ_CLS"),
    ("classification", "decoder"): ("AutoModelForSequenceClassification", "SEQ_CLS"),
    ("classification", "encoder-decoder"): ("AutoModelForSequenceClassification", "SEQ_CLS"),
    ("causal_lm", "decoder"): ("AutoModelForCausalLM", "CAUSAL_LM"),
    ("seq2seq", "decoder"): ("AutoModelForCausalLM", "CAUSAL_LM"),
    ("seq2seq", "encoder-decoder"): ("AutoModelForSeq2SeqLM", "SEQ_2_SEQ_LM"),
}
IGNORE = -100


class IncompatibleError(ValueError):
    """A task whose problem type the model's architecture cannot do."""


@dataclass(frozen=True)
class Problem:
    task: Task
    architecture: str
    auto_class: str
    peft_task_type: str

    @property
    def shift(self) -> bool:
        """Token labels predicted one position on (a decoder's LM loss)."""
        return self.task.problem_type != "classification" and self.architecture == "decoder"

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_class)


def problem(task: str, model: str) -> Problem:
    t, family = TASKS.get(task), MODELS.get(model).family
    try:
        cls, peft_type = LOADERS[(t.problem_type, family.architecture)]
    except KeyError:
        can = sorted({a for p, a in LOADERS if p == t.problem_type})
        raise IncompatibleError(
            f"task {task!r} ({t.problem_type}) cannot run on model {model!r} ({family.architecture}, "
            f"family {family.name}); it needs a model of architecture {' or '.join(can)}") from None
    return Problem(t, family.architecture, cls, peft_type)


# --- tokenisation -----------------------------------------------------------------------------

def tokenize(df: pd.DataFrame, tokenizer, options: dict, task: Task, architecture: str,
             split: str) -> pd.DataFrame:
    """A prepared split as model inputs (see the module docstring)."""
    if task.problem_type == "classification":
        return _classification(df, tokenizer, options["max_length"])
    if task.problem_type == "causal_lm":
        stride = None if split == "train" else options.get("eval_stride")
        return _blocks(df, tokenizer, options["max_length"], stride, split == "train")
    return _source_target(df, tokenizer, options, task, architecture)


def _classification(df, tokenizer, max_length: int) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame({"idx": pd.Series(dtype="int64"), "label": pd.Series(dtype="int64"),
                             "input_ids": pd.Series(dtype=object)})
    pairs = df["text_pair"].tolist() if df["text_pair"].notna().any() else None
    enc = tokenizer(df["text"].tolist(), pairs, truncation=True, max_length=max_length)
    out = pd.DataFrame({"idx": df["idx"], "label": df["label"], "input_ids": enc["input_ids"]})
    if "token_type_ids" in enc:
        out["token_type_ids"] = enc["token_type_ids"]
    return out


def _token_frame(idx, input_ids, labels, **extra) -> pd.DataFrame:
    out = pd.DataFrame({"idx": pd.Series(idx, dtype="int64"), "input_ids": pd.Series(input_ids, dtype=object),
                        "label": pd.Series(labels, dtype=object)})
    for k, v in extra.items():
        out[k] = pd.Series(v, dtype=object)
    return out


def _eos(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise DataError(f"tokenizer {tokenizer.name_or_path!r} has no end-of-sequence token, which "
                        f"causal LM and seq2seq tasks append to every target")
    return int(tokenizer.eos_token_id)


def _blocks(df, tokenizer, length: int, stride: int | None, train: bool) -> pd.DataFrame:
    """The split's lines as one token stream; training: disjoint blocks of ``length``; scoring:
    windows of ``length`` advancing by ``stride`` (default ``length``), each token scored once."""
    if df.empty:
        return _token_frame([], [], [])
    pieces = tokenizer([t + "\n" for t in df["text"]], add_special_tokens=False)["input_ids"]
    stream = [tok for piece in pieces for tok in piece]
    ids, labels = [], []
    if train:
        for begin in range(0, len(stream), length):
            block = stream[begin:begin + length]
            if len(block) > 1:
                ids.append(block)
                labels.append(list(block))
    else:
        stride = stride or length
        if stride > length:
            raise DataError(f"eval_stride {stride} exceeds max_length {length}")
        prev_end = 0
        for begin in range(0, len(stream), stride):
            end = min(begin + length, len(stream))
            window = stream[begin:end]
            fresh = end - prev_end  # tokens no earlier window scored
            ids.append(window)
            labels.append([IGNORE] * (len(window) - fresh) + window[len(window) - fresh:])
            prev_end = end
            if end == len(stream):
                break
    return _token_frame(range(len(ids)), ids, labels)


def _source_target(df, tokenizer, options: dict, task: Task, architecture: str) -> pd.DataFrame:
    max_len, max_tgt = options["max_length"], options["max_target_length"]
    template = task.prompts[architecture]
    prefix, _, suffix = template.partition("{text}")
    if df.empty:
        return _token_frame([], [], [], prompt_ids=[], reference=[])
    if architecture == "encoder-decoder":
        enc = tokenizer([template.format(text=t) for t in df["text"]], truncation=True, max_length=max_len)
        tgt = tokenizer(text_target=df["target"].tolist(), truncation=True, max_length=max_tgt)
        return _token_frame(df["idx"], enc["input_ids"], tgt["input_ids"], prompt_ids=enc["input_ids"],
                            reference=df["target"].tolist())
    eos = _eos(tokenizer)

    def toks(texts):
        return tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    pre, suf = toks([prefix])[0], toks([suffix])[0]
    if task.chat:  # a conversation: the model's chat template renders it up to the assistant's turn

        sources = toks(chat_prompt(tokenizer, t) for t in df["text"])
    else:
        sources = toks(df["text"])
    sep = "" if not suffix or suffix[-1].isspace() else " "
    targets = [t[:max_tgt - 1] + [eos] for t in toks(sep + x for x in df["target"])]
    ids, labels, prompts = [], [], []
    for src, tgt in zip(sources, targets):
        room = max_len - len(pre) - len(suf) - len(tgt)
        if room < 1:
            raise DataError(f"max_length {max_len} leaves no room for the source after the prompt "
                            f"template and a target of {len(tgt)} tokens; raise max_length or lower "
                            f"max_target_length")
        # a long conversation keeps its latest turns (and the template's assistant header)
        prompt = pre + (src[-room:] if task.chat else src[:room]) + suf
        prompts.append(prompt)
        ids.append(prompt + tgt)
        labels.append([IGNORE] * len(prompt) + tgt)
    return _token_frame(df["idx"], ids, labels, prompt_ids=prompts, reference=df["target"].tolist())


# --- losses and scores ------------------------------------------------------------------------

def token_nll(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and scored-token count per row (labels -100 are not scored)."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return nll.sum(1), (labels != IGNORE).sum(1)


def task_loss(prob: Problem, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task's loss without any regulariser: cross-entropy of the labels, per token for token
    labels (mean over scored tokens, as transformers' LM losses)."""
    if labels.dim() == 1:
        return F.cross_entropy(logits.float(), labels)
    nll, n = token_nll(logits, labels, prob.shift)
    return nll.sum() / n.sum().clamp(min=1)


@torch.inference_mode()
def forward_scores(model, batches, device, prob: Problem) -> pd.DataFrame:
    """Per row: classification: predicted class and logits; token labels: summed NLL, tokens."""
    rows, parts = [], []
    for idx, batch in batches.epoch(None):
        labels = batch.pop("labels")
        inputs = {k: v.to(device) for k, v in batch.items()}
        if prob.architecture == "encoder-decoder" and labels.dim() == 2:
            # the decoder reads the labels shifted right (not labels=: no loss, no regulariser)
            inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=labels.to(device))
        out = model(**inputs)
        rows.append(idx)
        if labels.dim() == 1:
            parts.append(out.logits.float().cpu())
        else:
            nll, n = token_nll(out.logits, labels.to(out.logits.device), prob.shift)
            parts.append(torch.stack([nll.float().cpu(), n.float().cpu()], 1))
    vals = torch.cat(parts)
    result = pd.DataFrame({"row": np.concatenate(rows)})
    if batches.classes:
        result["pred"] = vals.argmax(-1).numpy()
        for k in range(vals.shape[1]):
            result[f"logit_{k}"] = vals[:, k].numpy()
    else:
        result["nll"] = vals[:, 0].numpy()
        result["tokens"] = vals[:, 1].numpy().astype("int64")
    return result.sort_values("row").reset_index(drop=True)


def score(model, batches, device, prob: Problem, generator=None, metrics: bool = True
          ) -> tuple[pd.DataFrame, dict | None, float]:
    """Predictions of ``model`` (in eval mode) on ``batches``, the task's metrics (``metrics``)
    and the mean loss: cross-entropy of the class labels, or NLL per scored token.
    ``generator``: a :class:`Generator` (ROUGE tasks)."""
    pred = forward_scores(model, batches, device, prob)
    if batches.classes:
        logits = torch.as_tensor(pred.filter(like="logit_").to_numpy())
        loss = float(F.cross_entropy(logits, batches.labels))
        values = prob.task.metrics(batches.labels.tolist(), pred["pred"].tolist()) if metrics else None
        return pred, values, loss
    tokens = int(pred["tokens"].sum())
    loss = float(pred["nll"].sum() / max(tokens, 1))
    if not metrics:
        return pred, None, loss
    values = {"perplexity": math.exp(loss) if loss < 700 else math.inf, "nll_per_token": loss}
    if prob.task.scoring() == "rouge":
        if generator is None:
            raise ValueError(f"task {prob.task.name!r} scores generated text: pass a generator")
        pred["prediction"] = generator(model, batches.frame.iloc[pred["row"].to_numpy()], device)
        per_row = rouge(pred["prediction"].tolist(),
                        batches.frame["reference"].iloc[pred["row"].to_numpy()].tolist())
        for k, v in per_row.items():
            pred[k] = v
        values = {**{k: float(np.mean(v)) for k, v in per_row.items()}, **values}
    return pred, values, loss


def score_split(model, df: pd.DataFrame, prob: Problem, tokenizer, task_options: dict, batch_size: int,
                device) -> tuple[pd.DataFrame, dict, float]:
    """``score`` with the task's metrics on a tokenised split (generating where the task does)."""
    return score(model, Batches(df, batch_size, tokenizer.pad_token_id, True), device, prob,
                 generator(prob, tokenizer, task_options, batch_size))


ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9(])")


def sentences(text: str) -> str:
    """One sentence per line, as ``rougeLsum`` reads text: highlights are already one per line;
    generated text is split after ., ! or ? before an upper-case letter or digit (a regex:
    offline, unlike nltk's punkt models)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(s for ln in lines for s in SENTENCE_END.split(ln))


def rouge(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L and ROUGE-Lsum F1 (Porter stemming) of each prediction, as fractions
    (``rouge-score``). ``rougeL`` is the longest common subsequence over the whole text;
    ``rougeLsum``, the summary-level LCS over sentences, is what most CNN/DM papers report."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    scores = [scorer.score(sentences(ref), sentences(pred)) for pred, ref in zip(predictions, references)]
    return {k: [s[k].fmeasure for s in scores] for k in ROUGE_KEYS}


@dataclass
class Generator:
    """Generates from each row's ``prompt_ids`` (greedy or beam search; no sampling) and decodes
    the new tokens. Decoder prompts are left-padded, as batched generation needs."""

    tokenizer: object
    architecture: str
    max_new_tokens: int
    num_beams: int
    batch_size: int

    @torch.inference_mode()
    def __call__(self, model, frame: pd.DataFrame, device) -> list[str]:
        pad = self.tokenizer.pad_token_id
        out = []
        prompts = frame["prompt_ids"].tolist()
        for i in range(0, len(prompts), self.batch_size):
            chunk = [list(p) for p in prompts[i:i + self.batch_size]]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, p in enumerate(chunk):
                sl = slice(width - len(p), width) if self.architecture == "decoder" else slice(0, len(p))
                ids[j, sl], mask[j, sl] = torch.tensor(p), 1
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                 do_sample=False, pad_token_id=pad,
                                 eos_token_id=self.tokenizer.eos_token_id)
            new = gen[:, width:] if self.architecture == "decoder" else gen
            out += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out


def generator(prob: Problem, tokenizer, task_options: dict, batch_size: int) -> Generator | None:
    if prob.task.scoring() != "rouge":
        return None
    gen = task_options.get("generation") or {}
    return Generator(tokenizer, prob.architecture, int(gen.get("max_new_tokens", 64)),
                     int(gen.get("num_beams", 1)), batch_size)
