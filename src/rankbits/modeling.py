"""Loading a registered model at a registered bit-width for a task."""
from __future__ import annotations

import os

from .bits import BITS
from .models import MODELS
from .tasks import TASKS

# Heads created for the task are never quantized (see the bitsandbytes-on-CPU trap).
HEAD_MODULES = ["classifier", "bert.pooler"]


def load_tokenizer(model: str, options: dict):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_source(model, options))


def load_base(model: str, bits: str, task: str, options: dict, device):
    """(model on ``device``, facts about how it was loaded)."""
    from transformers import AutoModelForSequenceClassification

    spec, t = MODELS.get(model), TASKS.get(task)
    if t.problem_type != "classification":
        raise NotImplementedError(f"task {task!r}: problem type {t.problem_type!r} has no loader yet")
    kwargs, bit_info = BITS.get(bits).load_kwargs(device.type, HEAD_MODULES)
    src = _source(model, options)
    m = AutoModelForSequenceClassification.from_pretrained(src, num_labels=t.num_labels, **kwargs)
    if "quantization_config" not in kwargs:
        m = m.to(device)
    return m, {"source": src, "family": spec.family.name, "base_bytes": int(m.get_memory_footprint()),
               "num_params": int(sum(p.numel() for p in m.parameters())), **bit_info}


def attach_adapter(model, model_name: str, method, budget: int, opts: dict, hp: dict,
                   total_steps: int, task_type: str = "SEQ_CLS"):
    """Wrap ``model`` with ``method``'s adapter on the model family's target modules."""
    from peft import get_peft_model

    cfg = method.peft_config(budget=budget, opts=opts, hp=hp, total_steps=total_steps,
                             target_modules=MODELS.get(model_name).family.target_modules,
                             task_type=task_type)
    return get_peft_model(model, cfg)


def load_base_backbone(model: str, bits: str, options: dict, device):
    """The model without any task head, as prepared for ``bits`` (for footprints)."""
    from transformers import AutoModel

    kwargs, bit_info = BITS.get(bits).load_kwargs(device.type, HEAD_MODULES)
    src = _source(model, options)
    m = AutoModel.from_pretrained(src, **kwargs)
    if "quantization_config" not in kwargs:
        m = m.to(device)
    return m, {"source": src, "family": MODELS.get(model).family.name, **bit_info}


def _source(model: str, options: dict) -> str:
    src = MODELS.get(model).source(options)
    if not os.path.isdir(src) and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true"):
        raise FileNotFoundError(
            f"model {model!r}: {src!r} is not a local directory and HF_HUB_OFFLINE is set; "
            f"set models.{model}.path to a folder that from_pretrained can read"
        )
    return src
