"""Loading a registered model at a registered bit-width, and preparing quantized bases."""
from __future__ import annotations

import os
from pathlib import Path

from .bits import BITS, UnsupportedOnDevice
from .models import MODELS
from .tasks import TASKS

# Heads created for the task are never quantized (see the bitsandbytes-on-CPU trap).
HEAD_MODULES = ["classifier", "pooler", "bert.pooler"]


def load_tokenizer(model: str, options: dict):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_source(model, options))


def _from_pretrained(cls, src: str, device, kwargs: dict, bits: str):
    if not BITS.get(bits).quantized:
        return cls.from_pretrained(src, **kwargs).to(device)
    try:  # bitsandbytes layers are placed by device_map; they cannot be moved afterwards
        return cls.from_pretrained(src, **kwargs, device_map={"": str(device)})
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        raise UnsupportedOnDevice(
            f"bits {bits!r} on device {device.type!r}: bitsandbytes could not load the model "
            f"({type(exc).__name__}: {exc})") from exc


def load_base(model: str, bits: str, task: str, options: dict, device, base_dir: str | None = None):
    """(model with the task's head on ``device``, facts about how it was loaded). A quantized
    base is read from ``base_dir`` (written by :func:`prepare_base`), never quantized again."""
    from transformers import AutoModelForSequenceClassification

    spec, t = MODELS.get(model), TASKS.get(task)
    if t.problem_type != "classification":
        raise NotImplementedError(f"task {task!r}: problem type {t.problem_type!r} has no loader yet")
    kwargs, bit_info = BITS.get(bits).load_kwargs(device.type, HEAD_MODULES)
    src = _source(model, options)
    if BITS.get(bits).quantized:
        if base_dir is None:
            raise ValueError(f"bits {bits!r} needs the prepared base (results/base/<model>/<bits>)")
        src = str(Path(base_dir) / "model")
        kwargs = {k: v for k, v in kwargs.items() if k != "quantization_config"}
    m = _from_pretrained(AutoModelForSequenceClassification, src, device, kwargs, bits)
    if BITS.get(bits).finish_load is not None:
        m = BITS.get(bits).finish_load(m, base_dir)
    return m, {"source": src, "family": spec.family.name, "base_bytes": int(m.get_memory_footprint()),
               "num_params": int(sum(p.numel() for p in m.parameters())), **bit_info}


def attach_adapter(model, model_name: str, method, budget: int, opts: dict, hp: dict,
                   total_steps: int, task_type: str = "SEQ_CLS", allocation: dict | None = None):
    """Wrap ``model`` with ``method``'s adapter on the model family's target modules
    (``allocation``: a rank per module decided before training)."""
    from peft import get_peft_model

    from .methods import resolve_alpha

    hp = {**hp, "lora_alpha": resolve_alpha(hp["lora_alpha"], method.scaling_rank(budget, opts))}
    cfg = method.peft_config(budget=budget, opts=opts, hp=hp, total_steps=total_steps,
                             target_modules=MODELS.get(model_name).family.target_modules,
                             task_type=task_type, allocation=allocation)
    return get_peft_model(model, cfg)


def load_base_backbone(model: str, bits: str, options: dict, device):
    """The model without any task head, quantized for ``bits`` from the original weights."""
    from transformers import AutoModel

    kwargs, bit_info = BITS.get(bits).load_kwargs(device.type, HEAD_MODULES)
    src = _source(model, options)
    m = _from_pretrained(AutoModel, src, device, kwargs, bits)
    return m, {"source": src, "family": MODELS.get(model).family.name, **bit_info}


def _source(model: str, options: dict) -> str:
    src = MODELS.get(model).source(options)
    if not os.path.isdir(src) and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true"):
        raise FileNotFoundError(
            f"model {model!r}: {src!r} is not a local directory and HF_HUB_OFFLINE is set; "
            f"set models.{model}.path to a folder that from_pretrained can read"
        )
    return src
