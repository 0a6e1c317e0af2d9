"""The one training loop every method goes through.

    for step in range(total_steps):
        loss = model(**batch).loss          # AdaLoRA adds its orthogonal regulariser here
        loss.backward(); clip; optimizer.step(); scheduler.step()
        method.on_optimizer_step(model, step)   # AdaLoRA: update_and_allocate
        optimizer.zero_grad()

The task loss (cross-entropy, without any regulariser) is logged apart from the optimised loss so
loss curves compare across methods. Losses are checked for finiteness in groups of ``log_every``
steps (one host sync per group) and a non-finite one stops the run, naming its step.
"""
from __future__ import annotations

import math
import time

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import __version__
from .batching import Batches
from .config import Run, config_hash
from .io import atomic_dir, dir_bytes, write_csv, write_json
from .methods import METHODS, module_dims
from .modeling import attach_adapter, load_base, load_tokenizer
from .runtime import device_info, peak_memory, pick_device, reset_peak, versions


class NonFiniteLoss(FloatingPointError):
    pass


def total_steps(n_train: int, hp: dict) -> int:
    per_epoch = -(-n_train // hp["batch_size"])
    return int(hp["max_steps"]) if hp.get("max_steps") else per_epoch * int(hp["epochs"])


def batch_stream(batches: Batches, seed: int):
    epoch = 0
    while True:
        for _, batch in batches.epoch(seed * 100_003 + epoch):
            yield batch
        epoch += 1


def optimizer_step(model, batch, trainable, optimizer, scheduler, method, step, max_grad_norm):
    """One optimizer step; returns (task loss, optimised loss, grad norm) as 0-d tensors."""
    out = model(**batch)
    task_loss = F.cross_entropy(out.logits.detach().float(), batch["labels"])
    out.loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
    optimizer.step()
    scheduler.step()
    method.on_optimizer_step(model, step)
    optimizer.zero_grad(set_to_none=True)
    return task_loss, out.loss.detach().float(), gnorm.detach().float()


def make_optimizer(params, hp: dict, quantized: bool, device):
    """AdamW; paged AdamW (bitsandbytes) for a quantized base on CUDA, as the QLoRA recipe."""
    if quantized and device.type == "cuda" and hp["paged_optimizer"]:
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"]), "PagedAdamW"
    return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"]), "AdamW"


def optimizer_state_bytes(optimizer) -> int:
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if torch.is_tensor(t))


def train_run(spec: dict, train_path: str, out_dir: str, threads: int = 1,
              base_dir: str | None = None) -> dict:
    """Train one run and write its training artefacts to ``out_dir`` (complete or absent)."""
    import transformers
    run = Run(**spec["run"])
    hp, method = spec["training"], METHODS.get(run.method)
    torch.set_num_threads(max(1, threads))
    transformers.set_seed(run.seed)
    device = pick_device(spec["device"])
    t0 = time.perf_counter()

    df = pd.read_parquet(train_path)
    tokenizer = load_tokenizer(run.model, spec["model_options"])
    batches = Batches(df, hp["batch_size"], tokenizer.pad_token_id, hp["group_by_length"])
    steps = total_steps(len(df), hp)
    opts = method.prepare(run.budget, spec["method_options"], steps, f"methods.{run.method}")

    model, base_info = load_base(run.model, run.bits, run.task, spec["model_options"], device, base_dir)
    base_info["kbit_prepared"] = bool(base_info["quantized"] and hp["kbit_prepare"])
    if base_info["kbit_prepared"]:  # QLoRA recipe: upcasts norms/heads to fp32, input grads on
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = attach_adapter(model, run.model, method, run.budget, opts, hp, steps)
    dims = module_dims(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = {
        "trainable": sum(p.numel() for p in trainable),
        "adapter_initial": sum(p.numel() for n, p in model.named_parameters()
                               if p.requires_grad and "lora_" in n),
    }
    params["head"] = params["trainable"] - params["adapter_initial"]
    optimizer, base_info["optimizer"] = make_optimizer(trainable, hp, base_info["quantized"], device)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(round(hp["warmup_ratio"] * steps)), steps)
    load_seconds = time.perf_counter() - t0

    ranks = method.ranks(model)
    rank_rows = [(0, m, r) for m, r in sorted(ranks.items())]
    log_rows: list[tuple] = []
    pending: list[tuple[int, torch.Tensor, torch.Tensor, float, torch.Tensor, int]] = []

    def flush():
        if not pending:
            return
        vals = torch.stack([torch.stack([a, b, g]) for _, a, b, _, g, _ in pending]).tolist()
        for (step, _, _, lr, _, total_rank), (task_loss, loss, gnorm) in zip(pending, vals):
            if not (math.isfinite(loss) and math.isfinite(task_loss)):
                raise NonFiniteLoss(
                    f"{run.path}: non-finite loss ({loss}) at optimizer step {step}; lower the "
                    f"learning rate (training.lr) or gradient clipping (training.max_grad_norm)")
            log_rows.append((step, task_loss, loss, lr, gnorm, total_rank))
        pending.clear()

    model.train()
    reset_peak(device)
    t1 = time.perf_counter()
    stream = batch_stream(batches, run.seed)
    seen = 0
    for step in tqdm(range(steps), desc=run.path, mininterval=5, disable=False):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}
        task_loss, loss, gnorm = optimizer_step(model, batch, trainable, optimizer, scheduler,
                                                method, step, hp["max_grad_norm"])
        seen += batch["labels"].shape[0]

        if method.rank_adaptive:
            new = method.ranks(model)
            if new != ranks:
                rank_rows += [(step + 1, m, r) for m, r in sorted(new.items())]
                ranks = new
        pending.append((step + 1, task_loss, loss, scheduler.get_last_lr()[0], gnorm,
                        sum(ranks.values())))
        if len(pending) >= hp["log_every"]:
            flush()
    flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - t1
    memory = {**peak_memory(device), "optimizer_state_bytes": optimizer_state_bytes(optimizer)}

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
        "module_dims": dims,
        "params": {**params, "effective_adapter": eff},
        "total_rank": sum(ranks.values()),
        "target_total_rank": run.budget * len(dims),
        "base": base_info,
        "memory": memory,
        "final_task_loss": log_rows[-1][1] if log_rows else None,
        "timing": {"load_seconds": load_seconds, "train_seconds": train_seconds,
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
    return info
