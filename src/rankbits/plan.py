"""``rankbits plan``: each training job's training memory, predicted before anything runs.

The prediction is ``rankbits.memory``'s breakdown computed on the *meta device*: the model is
built from its ``config.json`` (no weights read), the method's adapter attached as training
attaches it, and one training forward at the configured batch size and the task's
``max_length`` (every training row fits it: an upper bound on the longest batch) is counted with
the same saved-tensor hooks a run measures itself with. Parts:

    base weights   every parameter at its bit-width: a quantized Linear as ``memory.linear_bytes``
                   counts it (NF4 + double quantization, LLM.int8), the rest in fp32 (bf16 for
                   ``bits: 16`` on CUDA)
    trainable      the adapter's and the head copy's parameters, fp32; gradients the same
    optimizer      AdamW's two moments per trainable value, fp32
    activations    what autograd saves in that forward (gradient checkpointing as configured),
                   the logits, and for LLM.int8 each 8-bit layer's input kept on ``ctx``

What it cannot know before training is said in ``approximation``: methods that choose per-module
ranks from data (planned at their uniform budget), per-layer bit-widths (``mixed:*``, methods that
set their own base's precision), and initialisations that need the weights (planned with PEFT's
default; shapes are the same).
"""
from __future__ import annotations

import dataclasses

import torch

from .bits import BITS
from .config import Run, expand_runs, lr_grid, planned_steps, run_spec
from .memory import activation_bytes, linear_bytes
from .methods import METHODS
from .modeling import adapter_config, attach_adapter
from .models import HEAD_MODULES, MODELS, is_conv1d
from .problems import problem
from .record import STEP_SECONDS
from .aggregate import arm_name
from .errors import ConfigError

MiB = 2**20
MARGIN = 0.25  # a GPU job asks for its prediction plus this (allocator slack, CUDA context, kernels)
CUDA_CONTEXT_MIB = 500  # what a CUDA process holds before its first tensor (order of magnitude)


@dataclasses.dataclass
class Prediction:
    arm: tuple  # (task, model, method, budget, bits)
    parts: dict  # bytes by part (memory.PARTS)
    total_bytes: int
    batch_shape: list
    approximation: list[str]
    jobs: int = 1  # training jobs of the arm (seeds x learning rates)
    steps: int = 0  # optimizer steps each trains (planned)

    def mib(self, part: str | None = None) -> float:
        return (self.total_bytes if part is None else self.parts[part]) / MiB


def meta_model(run: Run, spec: dict, device: str = "cpu"):
    """The run's model with its task head, built on the meta device from its config (in bf16
    for ``bits: 16`` on CUDA, as it would load)."""
    from transformers import AutoConfig

    prob = problem(run.task, run.model)
    config = AutoConfig.from_pretrained(MODELS.get(run.model).source(spec["model_options"]))
    if prob.auto_class == "AutoModelForSequenceClassification":
        config.num_labels = prob.task.num_labels
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = getattr(config, "eos_token_id", None) or 0
    dtype = torch.bfloat16 if run.bits == "16" and device == "cuda" else torch.float32
    with torch.device("meta"):
        return prob.model_class().from_config(config, dtype=dtype)


def base_bytes(model, bits: str, device: str) -> int:
    """The base's bytes at ``bits``: bitsandbytes quantizes every Linear outside the task head."""
    spec = BITS.get(bits)
    q = {"8": 8}.get(bits, 4 if spec.quantized else None)
    full = 2 if bits == "16" and device == "cuda" else 4
    total, in_linear = 0, set()
    for name, m in model.named_modules():
        if q and (isinstance(m, torch.nn.Linear) or is_conv1d(m)) and not name.startswith(HEAD_MODULES):
            n_out, n_in = m.weight.shape if isinstance(m, torch.nn.Linear) else m.weight.shape[::-1]
            total += linear_bytes(n_in, n_out, q, m.bias is not None)
            in_linear |= {id(p) for p in m.parameters(recurse=False)}
    seen = set()
    for p in model.parameters():  # the rest (tied weights once)
        if id(p) not in in_linear and id(p) not in seen:
            seen.add(id(p))
            total += p.numel() * full
    return total


def predict(run: Run, spec: dict, device: str = "cuda", shape: tuple[int, int] | None = None) -> Prediction:
    """``run``'s training memory on ``device``, from its spec alone; activations of a batch of
    ``shape`` (rows, tokens) when given, else the configured batch size x ``max_length``."""
    hp, method, prob = spec["training"], METHODS.get(run.method), problem(run.task, run.model)
    approx = []
    model = meta_model(run, spec, device)
    base = base_bytes(model, run.bits, device)
    if device == "cuda" and BITS.get(run.bits).quantized and run.bits != "8":
        approx.append("4-bit layers compute in bf16 on CUDA: activations planned in fp32, an upper bound")
    if BITS.get(run.bits).build is not None:
        approx.append(f"bits {run.bits}: per-layer bit-widths planned as NF4 everywhere")
    if method.own_bits:
        approx.append(f"{run.method} sets its base's precision itself: planned at fp32, its ceiling")
    if method.rank_map or method.rank_adaptive:
        approx.append(f"{run.method} sets per-module ranks in training: planned at its starting ranks")
    steps = planned_steps(spec)
    opts = method.prepare(run.budget, spec["method_options"], steps, f"methods.{run.method}")
    if hp.get("gradient_checkpointing"):  # as load_prepared_base switches it on, before the adapter
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    cfg = adapter_config(model, run.model, run.task, method, run.budget, opts, hp, steps)
    if isinstance(getattr(cfg, "init_lora_weights", True), str):
        approx.append(f"init {cfg.init_lora_weights!r} needs the weights: planned with PEFT's default "
                      f"(the same shapes)")
        cfg.init_lora_weights = True
    model = attach_adapter(model, run.model, run.task, method, run.budget, opts, hp, steps, cfg=cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = sum(p.numel() * 4 for p in trainable)
    rows, seq = shape or (int(hp["batch_size"]), int(spec["task_options"]["max_length"]))
    ids = torch.zeros(rows, seq, dtype=torch.long, device="meta")
    batch = {"input_ids": ids, "labels": (torch.zeros(len(ids), dtype=torch.long, device="meta")
                                          if prob.peft_task_type == "SEQ_CLS" else ids)}

    # the frozen Linear layers bitsandbytes would make 8-bit ones (the head stays full precision)
    eight = {id(m) for n, m in model.get_base_model().named_modules()
             if run.bits == "8" and isinstance(m, torch.nn.Linear) and not n.startswith(HEAD_MODULES)
             and not any(p.requires_grad for p in m.parameters(recurse=False))}
    acts = activation_bytes(model, batch, torch.device("meta"), int8=lambda m: id(m) in eight)
    parts = {"base_weights": base, "trainable_weights": weights, "gradients": weights,
             "optimizer_state": 2 * weights, "activations": acts["bytes"]}
    return Prediction(arm=(run.task, run.model, run.method, run.budget, run.bits), parts=parts,
                      total_bytes=sum(parts.values()), batch_shape=list(ids.shape), approximation=approx)


def plan(cfg: dict, device: str = "cuda") -> list[Prediction]:
    """One prediction per arm of the study (seeds share it), with its training jobs: every rate
    of the grid for the seed that chooses it, one for a seed that reuses the choice
    (``lr_seeds: first``); a search that extends its grid trains more."""
    runs = expand_runs(cfg)
    out: dict[tuple, Prediction] = {}
    first: dict[tuple, int] = {}
    for run in runs:
        key = (run.task, run.model, run.method, run.budget, run.bits)
        first[key] = min(first.get(key, run.seed), run.seed)
    for run in runs:
        key = (run.task, run.model, run.method, run.budget, run.bits)
        spec = run_spec(cfg, run)
        if key not in out:
            out[key] = predict(run, spec, device)
            out[key].steps, out[key].jobs = planned_steps(spec), 0
        reuses = spec["training"].get("lr_seeds") == "first" and run.seed != first[key]
        out[key].jobs += 1 if reuses else len(lr_grid(spec))
    return list(out.values())


def step_history(paths: list[str]) -> dict[tuple, tuple[float, str]]:
    """Median seconds per optimizer step of each arm measured by earlier studies
    (``results/*/tables/runs.csv``): {arm: (seconds, the study it came from)}."""
    import pandas as pd

    out = {}
    for path in paths:
        runs = pd.read_csv(path)
        if STEP_SECONDS not in runs:  # a table written before the record's paths named its columns
            continue
        for key, g in runs.groupby(["task", "model", "method", "budget", "bits"]):
            s = g[STEP_SECONDS].dropna()
            if len(s):
                out[(key[0], key[1], key[2], int(key[3]), str(key[4]))] = (float(s.median()), path)
    return out


def wall_estimate(predictions: list[Prediction], history: dict, at_once: int) -> list[str]:
    """Training time the earlier step times suggest, per arm and in all (``at_once`` jobs side by
    side; selection scoring, evaluation and the workflow's own time come on top)."""
    known = [(p, history[p.arm]) for p in predictions if p.arm in history]
    if not known:
        return []
    lines = []
    total = 0.0
    for p, (sec, src) in known:
        t = p.jobs * p.steps * sec
        total += t
        lines.append(f"  {'/'.join(map(str, p.arm))}: {p.jobs} job(s) x {p.steps} steps x {1000 * sec:.0f} ms "
                     f"= {t / 60:.1f} min (step time from {src})")
    missing = len(predictions) - len(known)
    return (["training time from step times measured before on this machine:"] + lines
            + [f"  in all {total / 60:.1f} min of training, about {total / 60 / max(1, at_once):.1f} min with "
               f"{at_once} at once" + (f"; {missing} arm(s) never measured" if missing else "")])


def job_mib(p: Prediction) -> int:
    """What a GPU job asks the scheduler for: the prediction, the margin, a CUDA context."""
    return int(p.mib() * (1 + MARGIN) + CUDA_CONTEXT_MIB + 0.5)


def table(predictions: list[Prediction], gpu_mib: float | None) -> str:
    head = (f"{'task / model':<22}{'arm':<26}{'batch':>9}{'base':>8}{'adapter':>9}{'grads':>8}{'AdamW':>8}"
            f"{'activ.':>9}{'total':>9}{'job':>8}" + (f"{'at once':>9}" if gpu_mib else ""))
    lines = [head, f"{'':<57}(MiB; job = total + {MARGIN:.0%} + {CUDA_CONTEXT_MIB} MiB CUDA context)"]
    notes = []
    for p in predictions:
        task, model, method, budget, bits = p.arm
        need = job_mib(p)
        shape = "x".join(str(n) for n in p.batch_shape)
        row = (f"{task + ' / ' + model:<22}{arm_name(method, bits, budget):<26}{shape:>9}{p.mib('base_weights'):>8.1f}"
               f"{p.mib('trainable_weights'):>9.1f}{p.mib('gradients'):>8.1f}{p.mib('optimizer_state'):>8.1f}"
               f"{p.mib('activations'):>9.1f}{p.mib():>9.1f}{need:>8d}")
        if gpu_mib:
            row += f"{int(gpu_mib // need):>9d}" if need <= gpu_mib else f"{'DOES NOT FIT':>14}"
        lines.append(row)
        notes += p.approximation
    lines.append("batch: rows x the task's max_length (every row fits max_length: activations are an upper bound)")
    return "\n".join(lines + [f"approximation: {n}" for n in dict.fromkeys(notes)])


def too_big(predictions: list[Prediction], gpu_mib: float) -> list[str]:
    """The arms that cannot fit ``gpu_mib``, each with the settings that shrink it."""
    out = []
    for p in predictions:
        if job_mib(p) > gpu_mib:
            task, model, method, budget, bits = p.arm
            biggest = max(p.parts, key=p.parts.get)
            out.append(f"{task} / {model} {arm_name(method, bits, budget)} needs {job_mib(p)} MiB of the GPU's "
                       f"{gpu_mib:g} (its largest part: {biggest}, {p.mib(biggest):.0f} MiB); lower "
                       f"training.batch_size or tasks.{task}.max_length, set training.gradient_checkpointing: "
                       f"true, or use fewer bits")
    return out


def gpu_budget(cfg: dict) -> int:
    """The GPU memory jobs share, in MiB: the ``gpu_mib`` setting, else the device's own."""
    if cfg.get("gpu_mib"):
        return int(cfg["gpu_mib"])
    if not torch.cuda.is_available():
        raise ConfigError("gpu_mib: the device is CUDA but torch sees none to read its memory from; "
                          "set gpu_mib (MiB)")
    index = int(cfg["device"].split(":")[1]) if ":" in cfg["device"] else 0
    return int(torch.cuda.get_device_properties(index).total_memory // MiB)


def planned_jobs(cfg: dict, gpu_mib: int) -> dict[tuple, int]:
    """GPU MiB each arm's jobs ask for; an arm that cannot fit ``gpu_mib`` is a ConfigError that
    names the settings to change."""
    predictions = plan(cfg, "cuda")
    problems = too_big(predictions, gpu_mib)
    if problems:
        raise ConfigError("arms that cannot fit the GPU (rankbits plan shows every arm's parts):\n  "
                          + "\n  ".join(problems))
    return {p.arm: job_mib(p) for p in predictions}
