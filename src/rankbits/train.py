"""The one training loop every method goes through.

    ranks = method.allocate(ctx)            # patterns, probe, adalora-transfer: ranks per module
    model = attach_adapter(base, method, ranks); method.setup(ctx)
    for step in range(total_steps):
        loss = model(**batch).loss          # AdaLoRA adds its orthogonal regulariser here
        loss.backward(); clip; optimizer.step(); scheduler.step()
        method.on_optimizer_step(ctx, step)  # AdaLoRA: update_and_allocate; grow: grow on plateau
        optimizer.zero_grad()

The task loss (cross-entropy, without any regulariser) is logged apart from the optimised loss so
loss curves compare across methods. Losses are checked for finiteness in groups of ``log_every``
steps (one host sync per group) and a non-finite one stops the run, naming its step — unless
``training.on_nan: skip_batch``, which checks every step and skips a batch whose loss or gradient
is not finite (counted in train_info).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__
from .batching import Batches
from .checkpoint import Checkpointer, set_rng_state
from .config import Run, config_hash
from .io import atomic_dir, dir_bytes, write_csv, write_json
from .allocation import budget_record
from .footprint import footprint
from .methods import METHODS, module_dims
from .modeling import attach_adapter, load_base, load_tokenizer
from .models import MODELS, Family
from .problems import Problem, problem, score, score_split, task_loss
from .runtime import advises_on_oom, device_info, peak_memory, pick_device, reset_peak, versions


class NonFiniteLoss(FloatingPointError):
    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def write_failure(out_dir: str, spec: dict, exc: Exception) -> dict:
    """Record a training that failed for a reason a rerun would meet again (a non-finite loss)
    as the grid point's outcome: ``out_dir`` holds ``failed.json`` instead of an adapter. Used
    under ``snakemake --keep-going``, so the rest of the study and its tables still build."""
    record = {"run": spec["run"], "run_path": Run(**spec["run"]).path, "lr": spec["training"]["lr"],
              "config_hash": config_hash(spec), "error": f"{type(exc).__name__}: {exc}",
              "step": getattr(exc, "step", None)}
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "failed.json", record)
    return record


def total_steps(n_train: int, hp: dict) -> int:
    per_epoch = -(-n_train // hp["batch_size"])
    return int(hp["max_steps"]) if hp.get("max_steps") else per_epoch * int(hp["epochs"])


def batch_stream(batches: Batches, seed: int):
    epoch = 0
    while True:
        for _, batch in batches.epoch(seed * 100_003 + epoch):
            yield batch
        epoch += 1


@dataclass
class Context:
    """What a method sees of its run: before training (``allocate``: dims, ``probe``, the upstream
    run) and while training (``setup`` / ``on_optimizer_step``: model, optimizer, trainable
    parameters, ``val_loss``). ``record`` goes into train_info; ``state`` is the method's own."""

    run: Run
    opts: dict
    hp: dict
    dims: dict[str, tuple[int, int]]
    family: Family  # locate(module) -> (layer, kind); stack(module) -> "encoder" / "decoder" / ""
    upstream_dir: str | None = None
    probe: Callable | None = None
    val_loss: Callable[[], float] | None = None
    model: object = None
    optimizer: object = None
    trainable: list = field(default_factory=list)
    record: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


def optimizer_step(model, batch, trainable, optimizer, scheduler, hook, step, max_grad_norm,
                   prob: Problem, skip_nonfinite: bool = False):
    """One optimizer step; returns (task loss, optimised loss, grad norm) as 0-d tensors and
    whether the batch was skipped (only with ``skip_nonfinite``, which syncs every step)."""
    out = model(**batch)
    task = task_loss(prob, out.logits.detach(), batch["labels"])
    if skip_nonfinite and not bool(torch.isfinite(out.loss)):
        optimizer.zero_grad(set_to_none=True)
        return task, out.loss.detach().float(), torch.tensor(float("nan")), True
    out.loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
    if skip_nonfinite and not bool(torch.isfinite(gnorm)):
        optimizer.zero_grad(set_to_none=True)
        return task, out.loss.detach().float(), gnorm.detach().float(), True
    optimizer.step()
    scheduler.step()
    if hook is not None:
        hook(step)
    optimizer.zero_grad(set_to_none=True)
    return task, out.loss.detach().float(), gnorm.detach().float(), False


def make_optimizer(params, hp: dict, quantized: bool, device, paged_ok: bool = True):
    """AdamW; paged AdamW (bitsandbytes) for a quantized base on CUDA, as the QLoRA recipe,
    unless the method needs torch's AdamW (``paged_ok`` False)."""
    if quantized and device.type == "cuda" and hp["paged_optimizer"] and paged_ok:
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"]), "PagedAdamW"
    return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"]), "AdamW"


def optimizer_state_bytes(optimizer) -> int:
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if torch.is_tensor(t))


def score_selection(model, path: str | None, prob: Problem, hp: dict, tokenizer, task_opts: dict,
                    device) -> dict | None:
    """The task's metrics and mean loss of ``model`` on the selection split."""
    df = pd.read_parquet(path) if path else None
    if df is None or df.empty:
        return None
    task = prob.task
    model.eval()
    _, values, loss = score_split(model, df, prob, tokenizer, task_opts, hp["eval_batch_size"], device)
    return {"metrics": values, "primary_metric": task.primary_metric,
            "primary_value": values[task.primary_metric], "higher_is_better": task.higher_is_better,
            "loss": loss, "n": len(df)}


def train_job(spec: dict, train_path: str, out_dir: str, threads: int, base_dir: str | None,
              upstream_dir: str | None, selection_path: str | None, checkpoint_dir: str | None,
              checkpoint_every: int) -> None:
    """The workflow's training job: ``train_run``; under ``--keep-going`` a run that diverged is
    recorded as failed (the same seed would diverge again) instead of failing the study."""
    from .workflow import keep_going

    try:
        train_run(spec, train_path, out_dir, threads, base_dir, upstream_dir, selection_path,
                  checkpoint_dir, checkpoint_every)
    except NonFiniteLoss as exc:
        if not keep_going():
            raise
        print(f"rankbits: run failed, recorded (--keep-going): {exc}")
        write_failure(out_dir, spec, exc)


@advises_on_oom("training")
def train_run(spec: dict, train_path: str, out_dir: str, threads: int = 1,
              base_dir: str | None = None, upstream_dir: str | None = None,
              selection_path: str | None = None, checkpoint_dir: str | None = None,
              checkpoint_every: int = 0) -> dict:
    """Train one run and write its training artefacts to ``out_dir`` (complete or absent).
    ``upstream_dir``: the finished run a method builds on (e.g. adalora-transfer's AdaLoRA run).
    ``selection_path``: the task's selection split; the trained adapter is scored on it (for
    choosing among learning rates) — never on the test split.
    ``checkpoint_dir``: where the run's checkpoint lives (see ``rankbits.checkpoint``); a run
    finding one there for its configuration resumes from it, and removes it when done; one is
    saved every ``checkpoint_every`` optimizer steps (0: only on SIGTERM / SIGUSR1)."""
    import transformers
    run = Run(**spec["run"])
    hp, method, prob = spec["training"], METHODS.get(run.method), problem(run.task, run.model)
    torch.set_num_threads(max(1, threads))
    transformers.set_seed(run.seed)
    device = pick_device(spec["device"])
    skip_nonfinite = hp["on_nan"] == "skip_batch"
    t0 = time.perf_counter()

    df = pd.read_parquet(train_path)
    tokenizer = load_tokenizer(run.model, spec["model_options"])
    n_val = method.validation_samples(spec["method_options"])
    val_batches = None
    if n_val:
        if n_val >= len(df):
            raise ValueError(f"methods.{run.method}: holds out {n_val} training rows for validation "
                             f"but {train_path} has only {len(df)}")
        val_df = df.sample(n=n_val, random_state=run.seed)
        df = df.drop(val_df.index)
        val_batches = Batches(val_df, hp["eval_batch_size"], tokenizer.pad_token_id, hp["group_by_length"])
    batches = Batches(df, hp["batch_size"], tokenizer.pad_token_id, hp["group_by_length"])
    steps = total_steps(len(df), hp)
    opts = method.prepare(run.budget, spec["method_options"], steps, f"methods.{run.method}")

    def base_model():
        m, info = load_base(run.model, run.bits, run.task, spec["model_options"], device, base_dir)
        info["kbit_prepared"] = bool(info["quantized"] and hp["kbit_prepare"])
        if info["kbit_prepared"]:  # QLoRA recipe: upcasts norms/heads to fp32, input grads on
            from peft import prepare_model_for_kbit_training

            m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=False)
        return m, info

    def probe(n_steps: int, hook=None):
        """Uniform LoRA at the budget, trained ``n_steps`` on this run's data by the same step;
        ``hook(model, step)`` sees the gradients after each optimizer step."""
        pm, _ = base_model()
        pm = attach_adapter(pm, run.model, run.task, METHODS.get("lora"), run.budget, {}, hp, n_steps)
        params = [p for p in pm.parameters() if p.requires_grad]
        popt, _ = make_optimizer(params, hp, base_info["quantized"], device)
        psched = transformers.get_linear_schedule_with_warmup(popt, int(round(hp["warmup_ratio"] * n_steps)),
                                                               n_steps)
        pstream = batch_stream(batches, run.seed)
        pm.train()
        for k in range(n_steps):
            batch = {key: v.to(device) for key, v in next(pstream).items()}
            optimizer_step(pm, batch, params, popt, psched, hook and (lambda st: hook(pm, st)), k,
                           hp["max_grad_norm"], prob, skip_nonfinite)
        return pm

    def val_loss() -> float:
        model.eval()
        loss = score(model, val_batches, device, prob, metrics=False)[2]
        model.train()
        return loss

    ckpt = Checkpointer(checkpoint_dir, config_hash(spec), checkpoint_every)
    resume = ckpt.load(device)
    model, base_info = base_model()
    family = MODELS.get(run.model).family
    ctx = Context(run=run, opts=opts, hp=hp, dims=family.target_dims(model), family=family,
                  upstream_dir=upstream_dir, probe=probe,
                  val_loss=val_loss if val_batches is not None else None)
    if resume:  # the allocation (a probe, say) was made by the attempt that saved it; a copy of
        # its record, since setup() and the replay of a method's state write to ctx.record
        allocation, ctx.record = resume["allocation"], copy.deepcopy(resume["record"])
    else:
        allocation = method.allocate(ctx)
    if method.own_bits:
        model = method.adapt_base(model, ctx.record, device)
        base_info.update(base_bytes=int(model.get_memory_footprint()), quantized=True,
                         weight_dtype=f"{method.name}: per-layer bit map",
                         footprint=footprint(model.base_model))  # backbone, as footprint.json
    transformers.set_seed(run.seed)  # the adapter starts the same whatever the allocation consumed
    model = attach_adapter(model, run.model, run.task, method, run.budget, opts, hp, steps,
                           allocation=allocation)
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = {
        "trainable": sum(p.numel() for p in trainable),
        "adapter_initial": sum(p.numel() for n, p in model.named_parameters()
                               if p.requires_grad and "lora_" in n),
    }
    params["head"] = params["trainable"] - params["adapter_initial"]
    optimizer, base_info["optimizer"] = make_optimizer(trainable, hp, base_info["quantized"], device,
                                                       method.paged_optimizer)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(round(hp["warmup_ratio"] * steps)), steps)
    ctx.model, ctx.optimizer, ctx.trainable = model, optimizer, trainable
    method.setup(ctx)
    load_seconds = time.perf_counter() - t0

    ranks = method.ranks(model)
    rank_rows = [(0, m, r) for m, r in sorted(ranks.items())]
    log_rows: list[tuple] = []
    pending: list[tuple[int, torch.Tensor, torch.Tensor, float, torch.Tensor, int]] = []
    skipped = []
    start, seen, train_seconds = 0, 0, 0.0
    if resume:
        method.restore_state(ctx, resume["method"])  # first: grow reshapes the adapter
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in resume["params"].items():
                named[name].copy_(value)
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        ranks, rank_rows, log_rows, skipped = (resume[k] for k in ("ranks", "rank_rows", "log_rows",
                                                                    "skipped"))
        start, seen, train_seconds = resume["step"], resume["seen"], resume["train_seconds"]
        ctx.record = resume["record"]

    def flush():
        if not pending:
            return
        vals = torch.stack([torch.stack([a, b, g]) for _, a, b, _, g, _ in pending]).tolist()
        for (step, _, _, lr, _, total_rank), (task_loss, loss, gnorm) in zip(pending, vals):
            if not skip_nonfinite and not (math.isfinite(loss) and math.isfinite(task_loss)):
                raise NonFiniteLoss(
                    f"{run.path}: non-finite loss ({loss}) at optimizer step {step}; lower the "
                    f"learning rate (training.lr) or gradient clipping (training.max_grad_norm), "
                    f"or set training.on_nan: skip_batch", step)
            log_rows.append((step, task_loss, loss, lr, gnorm, total_rank))
        pending.clear()

    def hook(step):
        method.on_optimizer_step(ctx, step)

    def checkpoint(step):
        flush()  # a non-finite loss stops the run before it is saved
        ckpt.save({"step": step, "seen": seen, "train_seconds": time.perf_counter() - t1 + train_seconds,
                   "params": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "method": method.checkpoint_state(ctx), "allocation": allocation,
                   "record": ctx.record, "ranks": ranks, "rank_rows": rank_rows,
                   "log_rows": log_rows, "skipped": skipped})

    model.train()
    reset_peak(device)
    stream = batch_stream(batches, run.seed)
    for _ in range(start):  # the batches the saved attempt consumed
        next(stream)
    if resume:
        set_rng_state(resume["rng"])
    t1 = time.perf_counter()
    with ckpt:
        for step in tqdm(range(start, steps), desc=run.path, mininterval=5, initial=start,
                         total=steps):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}
            task_loss, loss, gnorm, skip = optimizer_step(model, batch, trainable, optimizer, scheduler,
                                                          hook, step, hp["max_grad_norm"], prob,
                                                          skip_nonfinite)
            seen += batch["labels"].shape[0]
            if skip:
                skipped.append(step + 1)

            if method.rank_adaptive:
                new = method.ranks(model)
                if new != ranks:
                    rank_rows += [(step + 1, m, r) for m, r in sorted(new.items())]
                    ranks = new
            pending.append((step + 1, task_loss, loss, scheduler.get_last_lr()[0], gnorm,
                            sum(ranks.values())))
            if len(pending) >= hp["log_every"]:
                flush()
            if step + 1 < steps and ckpt.due(step + 1):
                checkpoint(step + 1)
    flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds += time.perf_counter() - t1
    memory = {**peak_memory(device), "optimizer_state_bytes": optimizer_state_bytes(optimizer)}

    selection = score_selection(model, selection_path, prob, hp, tokenizer, spec["task_options"], device)
    dims = module_dims(model)
    eff = sum(r * method.params_per_rank(*dims[m]) for m, r in ranks.items())
    info = {
        "run": run.as_dict(),
        "run_path": run.path,
        "config_hash": config_hash(spec),
        "training": hp,
        "method_options": opts,
        "lora_alpha": float(model.peft_config[model.active_adapter].lora_alpha),
        "budget": run.budget,
        "steps": steps,
        "epochs_seen": seen / len(df),
        "n_train": len(df),
        "n_validation_held_out": n_val,
        "module_dims": dims,
        "params": {**params, "trainable_final": sum(p.numel() for p in ctx.trainable),
                   "effective_adapter": eff},
        "total_rank": sum(ranks.values()),
        "target_total_rank": run.budget * len(ctx.dims),
        "budget_match": budget_record(eff, ctx.dims, run.budget),
        "allocation": ({"ranks": dict(sorted(allocation.items())), **ctx.record}
                       if allocation is not None else ctx.record or None),
        "skipped_batches": skipped,
        "selection": selection,
        "base": base_info,
        "memory": memory,
        "final_task_loss": next((r[1] for r in reversed(log_rows) if math.isfinite(r[1])), None),
        "timing": {"load_seconds": load_seconds, "train_seconds": train_seconds,
                   "resumed_at_step": start or None,  # from a checkpoint of an earlier attempt
                   "samples_per_second": seen / train_seconds if train_seconds else None},
        "device": device_info(device),
        "versions": versions(),
        "rankbits_version": __version__,
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp / "adapter")
        info["adapter_bytes"] = dir_bytes(tmp / "adapter")
        write_json(tmp / "train_info.json", info)
        write_json(tmp / "rank_pattern.json", dict(sorted(ranks.items())))
        write_csv(tmp / "rank_history.csv", ("step", "module", "rank"), rank_rows)
        write_csv(tmp / "train_log.csv",
                  ("step", "task_loss", "loss", "lr", "grad_norm", "total_rank"), log_rows)
    ckpt.remove()
    return info
