"""Loading a registered model at a registered bit-width, and preparing quantized bases."""
from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path

import torch

from .bits import BITS, UnsupportedOnDevice
from .models import HEAD_MODULES, MODELS, is_conv1d
from .problems import problem
from .methods import resolve_alpha

log = logging.getLogger(__name__)
# PEFT 0.21 calls a transformers 5 property that transformers deprecates: harmless, and printed
# once in every training log otherwise
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# what prepare_base loads and saves per architecture: the pretrained model with its LM head where
# it has one, so that every problem type can be loaded from the saved base
BACKBONES = {"encoder": "AutoModel", "decoder": "AutoModelForCausalLM",
             "encoder-decoder": "AutoModelForSeq2SeqLM"}


def load_tokenizer(model: str, options: dict):
    """The model's tokenizer; one without a padding token (GPT-2, Llama) pads with its EOS token
    (padded positions are masked and carry no labels)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_source(model, options))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


@functools.lru_cache(maxsize=None)
def pad_token_id(model: str, source: str) -> int | None:
    """The padding id of ``model``'s tokenizer at ``source``, as ``load_tokenizer`` sets it (read
    once per process: a training run may load its base more than once)."""
    return load_tokenizer(model, {"path": source}).pad_token_id


def backbone_class(model: str):
    import transformers

    return getattr(transformers, BACKBONES[MODELS.get(model).family.architecture])


def _from_pretrained(cls, src: str, device, kwargs: dict, bits: str):
    """``cls.from_pretrained`` placed on ``device``, with transformers' load report replaced by
    one line: a freshly made task head (the classifier) is expected and said so; any other
    missing or unexpected weight is a warning naming it."""
    import transformers

    placed = ({"device_map": {"": str(device)}} if BITS.get(bits).quantized else {})
    before = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:  # bitsandbytes layers are placed by device_map; they cannot be moved afterwards
        m, info = cls.from_pretrained(src, **kwargs, **placed, output_loading_info=True)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        if not placed:
            raise
        raise UnsupportedOnDevice(
            f"bits {bits!r} on device {device.type!r}: bitsandbytes could not load the model "
            f"({type(exc).__name__}: {exc})") from exc
    finally:
        transformers.logging.set_verbosity(before)
    report_loading(src, info)
    one_4bit_layout(m)
    return m if placed else m.to(device)


def one_4bit_layout(model) -> None:
    """On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weight for inference the
    first time it runs in eval mode without gradients, and its training forward then takes the
    inference kernel (an in-place bias add autograd refuses, after EVA's or a validation pass). A
    run trains and evaluates in one layout: the one training uses."""
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False


def report_loading(src: str, info: dict) -> None:
    head = lambda key: any(key == h or key.startswith(h + ".") or f".{h}." in f".{key}"  # noqa: E731
                           for h in HEAD_MODULES)
    missing = sorted(info.get("missing_keys") or [])
    fresh, lost = [k for k in missing if head(k)], [k for k in missing if not head(k)]
    if fresh:
        print(f"rankbits: task head newly initialised, as expected (it trains): {', '.join(fresh)}", flush=True)
    if lost:
        log.warning("%s lacks %d weight(s) the model needs, initialised at random: %s", src, len(lost),
                    ", ".join(lost[:20]))
    unexpected = sorted(info.get("unexpected_keys") or [])
    if unexpected:
        print(f"rankbits: {src}: {len(unexpected)} checkpoint weight(s) this model does not use "
              f"(e.g. a pretraining head): {', '.join(unexpected[:8])}", flush=True)


def load_base(model: str, bits: str, task: str, options: dict, device, base_dir: str | None = None):
    """(model with the task's head on ``device``, facts about how it was loaded). A quantized
    base is read from ``base_dir`` (written by :func:`prepare_base`), never quantized again."""
    spec, prob = MODELS.get(model), problem(task, model)
    kwargs, bit_info = BITS.get(bits).load_kwargs(device.type, list(HEAD_MODULES))
    src = model_source(model, options)
    if prob.auto_class == "AutoModelForSequenceClassification":
        kwargs["num_labels"] = prob.task.num_labels
        kwargs["pad_token_id"] = pad_token_id(model, src)  # decoders need it
    if BITS.get(bits).quantized:
        if base_dir is None:
            raise ValueError(f"bits {bits!r} needs the prepared base (results/base/<model>/<bits>)")
        src = str(Path(base_dir) / "model")
        kwargs = {k: v for k, v in kwargs.items() if k != "quantization_config"}
    m = _from_pretrained(prob.model_class(), src, device, kwargs, bits)
    if BITS.get(bits).finish_load is not None:
        m = BITS.get(bits).finish_load(m, base_dir)
        one_4bit_layout(m)
    return m, {"source": src, **source_note(src), "family": spec.family.name,
               "base_bytes": int(m.get_memory_footprint()),
               "num_params": int(sum(p.numel() for p in m.parameters())), **bit_info}


def source_note(src: str) -> dict:
    """What a converted checkpoint says of itself (a GGUF file dequantized: which file, and that
    its weights carry the quantization's error), for the run's record."""
    import json

    for folder in (Path(src), Path(src).parent):
        note = folder / "rankbits_source.json"
        if note.is_file():
            return {"source_note": json.loads(note.read_text())}
    return {}


def load_prepared_base(run, spec: dict, device, base_dir: str | None = None):
    """``load_base`` as training and evaluation both use it: on a quantized base with
    ``training.kbit_prepare``, PEFT's QLoRA preparation (norms, embeddings and head upcast to
    fp32, input gradients on). Evaluation must see the model training saw."""
    m, info = load_base(run.model, run.bits, run.task, spec["model_options"], device, base_dir)
    info["kbit_prepared"] = bool(info["quantized"] and spec["training"]["kbit_prepare"])
    if info["kbit_prepared"]:
        from peft import prepare_model_for_kbit_training

        m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=False)
    info["gradient_checkpointing"] = bool(spec["training"].get("gradient_checkpointing"))
    if info["gradient_checkpointing"]:
        # transformers' own switch, non-reentrant (no input-gradient hook needed, and the dropout
        # draws of the recompute are the forward's); active in training mode only
        if not getattr(m, "supports_gradient_checkpointing", False):
            raise ValueError(f"training.gradient_checkpointing: {type(m).__name__} does not support it")
        # (transformers and PEFT also make the embeddings' output require grad, which only
        # reentrant checkpointing needs; attach_adapter undoes it: it only keeps more alive)
        m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return m, info


def adapter_config(model, model_name: str, task: str, method, budget: int, opts: dict, hp: dict,
                   total_steps: int, allocation: dict | None = None):
    """``method``'s PEFT config for ``model`` on the model family's target modules
    (``allocation``: a rank per module decided before training), with the task's PEFT task type;
    a classification head the family creates is trained in full (modules_to_save)."""
    family, prob = MODELS.get(model_name).family, problem(task, model_name)
    hp = {**hp, "lora_alpha": resolve_alpha(hp["lora_alpha"], method.scaling_rank(budget, opts))}
    cfg = method.peft_config(budget=budget, opts=opts, hp=hp, total_steps=total_steps,
                             target_modules=family.target_modules,
                             task_type=prob.peft_task_type, allocation=allocation)
    # GPT-2's Conv1D layers store weights in x out; bitsandbytes turns them into Linear layers
    cfg.fan_in_fan_out = any(is_conv1d(m) for m in model.modules())
    if prob.peft_task_type == "SEQ_CLS":
        cfg.modules_to_save = sorted(set(cfg.modules_to_save or []) | set(family.cls_head))
    return cfg


def attach_adapter(model, model_name: str, task: str, method, budget: int, opts: dict, hp: dict,
                   total_steps: int, allocation: dict | None = None, cfg=None):
    """Wrap ``model`` with ``method``'s adapter (``cfg``, else ``adapter_config``'s)."""
    from peft import get_peft_model

    cfg = cfg or adapter_config(model, model_name, task, method, budget, opts, hp, total_steps, allocation)
    peft_model = get_peft_model(model, cfg)
    if getattr(peft_model.get_base_model(), "is_gradient_checkpointing", False):
        no_input_grads(peft_model.get_base_model())
    method.on_attach(peft_model)
    keep_trainable_fp32(peft_model)
    return peft_model


def no_input_grads(model) -> None:
    """Remove the hooks transformers and PEFT put on the input embeddings under gradient
    checkpointing to make their output require grad: reentrant checkpointing needs it, the
    non-reentrant kind rankbits uses does not, and it keeps the first layer's input alive."""
    emb = model.get_input_embeddings()
    for key, hook in list(emb._forward_hooks.items()):
        if getattr(hook, "__name__", "").startswith("make_inputs_require_grad"):
            del emb._forward_hooks[key]


HALF = (torch.bfloat16, torch.float16)


def keep_trainable_fp32(model) -> list[str]:
    """Hold every trainable parameter in fp32 on a 16-bit base: PEFT upcasts adapter layers but
    not ``modules_to_save`` (the classification head, DeBERTa's pooler), whose AdamW updates in
    bf16 mostly round away (fp16: the second moment underflows). Such a module's parameters
    become fp32; a pre-hook casts its floating inputs to fp32 and a hook casts its output back
    to the input's dtype, so the modules around it see what they saw. Returns the modules."""
    changed = []
    for name, mod in model.named_modules():
        own = [p for p in mod.parameters(recurse=False) if p.requires_grad and p.dtype in HALF]
        if not own:
            continue
        for p in own:
            p.data = p.data.float()
        mod.register_forward_pre_hook(_inputs_to_fp32, with_kwargs=True)
        mod.register_forward_hook(_output_back, with_kwargs=True)
        changed.append(name)
    return changed


def _cast(x, dtype):
    if torch.is_tensor(x) and x.is_floating_point():
        return x.to(dtype)
    if isinstance(x, (tuple, list)):
        return type(x)(_cast(v, dtype) for v in x)
    if isinstance(x, dict):
        return {k: _cast(v, dtype) for k, v in x.items()}
    return x


def _first_float(args, kwargs):
    for v in (*args, *kwargs.values()):
        if torch.is_tensor(v) and v.is_floating_point():
            return v.dtype
    return None


def _inputs_to_fp32(mod, args, kwargs):
    mod._rankbits_in_dtype = _first_float(args, kwargs)
    return _cast(args, torch.float32), _cast(kwargs, torch.float32)


def _output_back(mod, args, kwargs, output):
    dtype = getattr(mod, "_rankbits_in_dtype", None)
    return output if dtype in (None, torch.float32) else _cast(output, dtype)


def load_base_backbone(model: str, bits: str, options: dict, device):
    """The pretrained model without a task head (with its LM head, for a decoder or an
    encoder-decoder: see ``BACKBONES``), quantized for ``bits`` from the original weights."""
    kwargs, bit_info = BITS.get(bits).load_kwargs(device.type, list(HEAD_MODULES))
    src = model_source(model, options)
    m = _from_pretrained(backbone_class(model), src, device, kwargs, bits)
    return m, {"source": src, "family": MODELS.get(model).family.name, **bit_info}


def model_source(model: str, options: dict) -> str:
    """Where ``model``'s weights load from (its configured path, package folder or Hub id); offline, a
    Hub id is an error naming the setting."""
    src = MODELS.get(model).source(options)
    if not os.path.isdir(src) and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true"):
        raise FileNotFoundError(
            f"model {model!r}: {src!r} is not a local directory and HF_HUB_OFFLINE is set; "
            f"set models.{model}.path to a folder that from_pretrained can read"
        )
    return src
