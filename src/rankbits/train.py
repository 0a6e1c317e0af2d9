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
import statistics
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__, memory
from .batching import Batches
from .checkpoint import Checkpointer, set_rng_state
from .config import Run, config_hash
from .errors import NonFiniteLoss
from .io import atomic_dir, dir_bytes, write_csv, write_json
from .allocation import budget_record
from .footprint import footprint
from .methods import METHODS, module_dims
from .modeling import attach_adapter, load_prepared_base, load_tokenizer
from .models import MODELS, Family
from .problems import Problem, problem, score, score_split, task_loss
from .runtime import advises_on_oom, device_info, peak_memory, pick_device, reset_peak, versions
from .watch import Watch
from .workflow import console, keep_going


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
class Data:
    """Phase 1 of a run: the training rows as batches (and a method's held-out validation rows)."""

    tokenizer: object
    batches: Batches
    val_batches: Batches | None
    n_train: int
    n_val: int
    steps: int


@dataclass
class Context:
    """What a method sees of its run. Facts: the run, its resolved options and training settings,
    the target modules' shapes, the model family, the planned steps, the upstream run. Services
    (methods below): ``probe``, ``init_batches``, ``peak_batch`` and ``load_base`` before training
    (``allocate``, ``initialize``), ``val_loss`` while training. Once the optimizer exists:
    ``model``, ``optimizer``, ``trainable``. ``record`` goes into train_info (its
    ``allocation``); ``state`` is the method's own (checkpointed through its hooks)."""

    run: Run
    opts: dict
    hp: dict
    dims: dict[str, tuple[int, int]]
    family: Family  # locate(module) -> (layer, kind); stack(module) -> "encoder" / "decoder" / ""
    total_steps: int = 0
    upstream_dir: str | None = None
    model_options: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict, repr=False)
    data: Data | None = field(default=None, repr=False)
    device: object = None
    base_dir: str | None = None
    model: object = None
    optimizer: object = None
    trainable: list = field(default_factory=list)
    record: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)

    def load_base(self):
        """A fresh copy of the run's base, as training loads it."""
        return load_prepared_base(self.run, self.spec, self.device, self.base_dir)[0]

    def init_batches(self, n: int) -> list[dict]:
        """The first ``n`` batches of the run's training stream, on the device."""
        stream = batch_stream(self.data.batches, self.run.seed)
        return [{key: v.to(self.device) for key, v in next(stream).items()} for _ in range(n)]

    def peak_batch(self) -> dict:
        """The batch the memory model measures activations on (``memory.peak_batch``)."""
        batch = memory.peak_batch(self.data.batches, self.hp["batch_size"])
        return {k: v.to(self.device) for k, v in batch.items()}

    def probe(self, n_steps: int, hook=None):
        """Uniform LoRA at the budget, trained ``n_steps`` on this run's data by the same step;
        ``hook(model, step)`` sees the gradients after each optimizer step."""
        import transformers

        run, hp = self.run, self.hp
        prob = problem(run.task, run.model)
        pm, info = load_prepared_base(run, self.spec, self.device, self.base_dir)
        pm = attach_adapter(pm, run.model, run.task, METHODS.get("lora"), run.budget, {}, hp, n_steps)
        params = [p for p in pm.parameters() if p.requires_grad]
        popt, _ = make_optimizer(params, hp, info["quantized"], self.device)
        psched = transformers.get_linear_schedule_with_warmup(popt, int(round(hp["warmup_ratio"] * n_steps)),
                                                               n_steps)
        pstream = batch_stream(self.data.batches, run.seed)
        pm.train()
        for k in range(n_steps):
            batch = {key: v.to(self.device) for key, v in next(pstream).items()}
            optimizer_step(pm, batch, params, popt, psched, hook and (lambda st: hook(pm, st)), k,
                           hp["max_grad_norm"], prob, hp["on_nan"] == "skip_batch")
        return pm

    def val_loss(self) -> float:
        """The model's loss on the training rows held out for the method (its ``val_samples``)."""
        if self.data.val_batches is None:
            raise RuntimeError(f"methods.{self.run.method}: val_loss needs held-out rows (a val_samples option)")
        self.model.eval()
        loss = score(self.model, self.data.val_batches, self.device, problem(self.run.task, self.run.model),
                     metrics=False)[2]
        self.model.train()
        return loss


def optimizer_step(model, batch, trainable, optimizer, scheduler, hook, step, max_grad_norm,
                   prob: Problem, skip_nonfinite: bool = False, skip_hook=None):
    """One optimizer step; returns (task loss, optimised loss, grad norm) as 0-d tensors and
    whether the batch was skipped (only with ``skip_nonfinite``, which syncs every step). A
    skipped batch updates no weight, but the schedule advances and ``skip_hook(step)`` runs (a
    method's schedule, such as AdaLoRA's final allocation, must not miss its step)."""
    out = model(**batch)
    task = task_loss(prob, out.logits.detach(), batch["labels"])
    gnorm = torch.tensor(float("nan"))
    finite = not skip_nonfinite or bool(torch.isfinite(out.loss))
    if finite:
        out.loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        finite = not skip_nonfinite or bool(torch.isfinite(gnorm))
    if finite:
        optimizer.step()
    scheduler.step()
    after = hook if finite else skip_hook  # before zero_grad: AdaLoRA reads the gradients
    if after is not None:
        after(step)
    optimizer.zero_grad(set_to_none=True)
    return task, out.loss.detach().float(), gnorm.detach().float(), not finite


def make_optimizer(params, hp: dict, quantized: bool, device, paged_ok: bool = True):
    """AdamW; paged AdamW (bitsandbytes) for a quantized base on CUDA, as the QLoRA recipe,
    unless the method needs torch's AdamW (``paged_ok`` False)."""
    if quantized and device.type == "cuda" and hp["paged_optimizer"] and paged_ok:
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"]), "PagedAdamW"
    return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"]), "AdamW"


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
              checkpoint_every: int, watch_dir: str | None = None) -> None:
    """The workflow's training job: ``train_run``; under ``--keep-going`` a run that diverged is
    recorded as failed (the same seed would diverge again) instead of failing the study."""
    name = f"{Run(**spec['run']).path} lr {spec['training']['lr']:g}"
    console(f"rankbits: training {name} ...")
    try:
        info = train_run(spec, train_path, out_dir, threads, base_dir, upstream_dir, selection_path,
                         checkpoint_dir, checkpoint_every, watch_dir)
        sel = info.get("selection") or {}
        sel_text = f", selection {sel['primary_metric']} {sel['primary_value']:.4g}" if sel else ""
        console(f"rankbits: trained  {name}: {info['steps']} steps in {info['timing']['train_seconds']:.0f} s "
                f"({info['timing']['train_cpu_seconds']:.0f} CPU s){sel_text}")
    except NonFiniteLoss as exc:
        if not keep_going():
            raise
        print(f"rankbits: run failed, recorded (--keep-going): {exc}")
        write_failure(out_dir, spec, exc)


@dataclass
class Built:
    """Phase 2: the model with its adapter, the optimizer, and what the method was told."""

    model: object
    base_info: dict
    ctx: Context
    allocation: dict | None
    trainable: list
    params: dict
    optimizer: object
    scheduler: object
    load_seconds: float
    base_memory: dict  # the frozen base's bytes (rankbits.memory.base_weights)


@dataclass
class Progress:
    """What the loop carries from step to step, and what a checkpoint saves of it."""

    ranks: dict
    rank_rows: list
    log_rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    start: int = 0
    seen: int = 0
    train_seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time of the loop (all threads), every attempt
    step_seconds: list = field(default_factory=list)  # per-step time of each logged group
    activations: dict = field(default_factory=dict)  # rankbits.memory.activation_bytes


class Phases:
    """Process CPU seconds between laps: ``lap(name, value)`` books the time since the last lap
    under ``name`` and hands ``value`` back."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.process_time()

    def lap(self, name: str, value=None):
        now = time.process_time()
        self.seconds[name] = now - self._last
        self._last = now
        return value


@advises_on_oom("training")
def train_run(spec: dict, train_path: str, out_dir: str, threads: int = 1,
              base_dir: str | None = None, upstream_dir: str | None = None,
              selection_path: str | None = None, checkpoint_dir: str | None = None,
              checkpoint_every: int = 0, watch_dir: str | None = None) -> dict:
    """Train one run and write its training artefacts to ``out_dir`` (complete or absent).
    ``upstream_dir``: the finished run a method builds on (e.g. adalora-transfer's AdaLoRA run).
    ``selection_path``: the task's selection split; the trained adapter is scored on it (for
    choosing among learning rates) — never on the test split.
    ``checkpoint_dir``: where the run's checkpoint lives (see ``rankbits.checkpoint``); a run
    finding one there for its configuration resumes from it, and removes it when done; one is
    saved every ``checkpoint_every`` optimizer steps (0: only on SIGTERM / SIGUSR1).

    Five phases, each a function below: prepare data -> build model -> restore -> loop -> record."""
    import transformers
    run = Run(**spec["run"])
    torch.set_num_threads(max(1, threads))
    transformers.set_seed(run.seed)
    device = pick_device(spec["device"])
    t0 = time.perf_counter()
    cpu = Phases()  # process CPU seconds of each phase (bench/study_profile.py sums them)
    ckpt = Checkpointer(checkpoint_dir, config_hash(spec), checkpoint_every)
    resume = ckpt.load(device)

    data = cpu.lap("data", prepare_data(spec, run, train_path))
    built = cpu.lap("build", build_model(spec, run, data, device, base_dir, upstream_dir, resume, t0))
    progress = restore(built, resume) if resume else Progress(*initial_ranks(built, run))
    watch = Watch(watch_dir)  # logging: tensorboard (rankbits.watch)
    cpu.lap("loop", loop(spec, run, data, built, progress, ckpt, device, resume, watch))
    info = cpu.lap("record", record(spec, run, data, built, progress, selection_path, device))
    watch.close(data.steps, info["training_memory"])
    with atomic_dir(out_dir) as tmp:
        built.model.save_pretrained(tmp / "adapter")
        info["adapter_bytes"] = dir_bytes(tmp / "adapter")
        cpu.lap("save", None)
        info["timing"]["phase_cpu_seconds"] = cpu.seconds  # record's includes the selection scoring
        write_json(tmp / "train_info.json", info)
        write_json(tmp / "rank_pattern.json", dict(sorted(progress.ranks.items())))
        write_csv(tmp / "rank_history.csv", ("step", "module", "rank"), progress.rank_rows)
        write_csv(tmp / "train_log.csv",
                  ("step", "task_loss", "loss", "lr", "grad_norm", "total_rank"), progress.log_rows)
    ckpt.remove()
    return info


def prepare_data(spec: dict, run: Run, train_path: str) -> Data:
    """The run's training rows as length-grouped batches; a method that needs validation rows
    (``grow``) gets them held out of train with the run's seed."""
    hp = spec["training"]
    df = pd.read_parquet(train_path)
    tokenizer = load_tokenizer(run.model, spec["model_options"])
    n_val = int(spec["method_options"].get("val_samples") or 0)  # a method's held-out rows (grow)
    val_batches = None
    if n_val:
        if n_val >= len(df):
            raise ValueError(f"methods.{run.method}: holds out {n_val} training rows for validation "
                             f"but {train_path} has only {len(df)}")
        val_df = df.sample(n=n_val, random_state=run.seed)
        df = df.drop(val_df.index)
        val_batches = Batches(val_df, hp["eval_batch_size"], tokenizer.pad_token_id, hp["group_by_length"])
    batches = Batches(df, hp["batch_size"], tokenizer.pad_token_id, hp["group_by_length"])
    return Data(tokenizer, batches, val_batches, len(df), n_val, total_steps(len(df), hp))


def build_model(spec: dict, run: Run, data: Data, device, base_dir, upstream_dir, resume,
                t0: float) -> Built:
    """The base at its bit-width, the method's allocation (or the saved one, on resume), the
    adapter, the optimizer and the schedule; the method's ``setup`` has run."""
    import transformers

    hp, method = spec["training"], METHODS.get(run.method)
    opts = method.prepare(run.budget, spec["method_options"], data.steps, f"methods.{run.method}")
    model, base_info = load_prepared_base(run, spec, device, base_dir)
    family = MODELS.get(run.model).family
    ctx = Context(run=run, opts=opts, hp=hp, dims=family.target_dims(model), family=family,
                  total_steps=data.steps, upstream_dir=upstream_dir, model_options=spec["model_options"],
                  spec=spec, data=data, device=device, base_dir=base_dir)
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
    base_memory = memory.base_weights(model)
    transformers.set_seed(run.seed)  # the adapter starts the same whatever the allocation consumed
    model = attach_adapter(model, run.model, run.task, method, run.budget, opts, hp, data.steps,
                           allocation=allocation)
    method.initialize(ctx, model)  # EVA, LoftQ: from data or from the base, before the optimizer
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
        optimizer, int(round(hp["warmup_ratio"] * data.steps)), data.steps)
    ctx.model, ctx.optimizer, ctx.trainable = model, optimizer, trainable
    method.setup(ctx)
    return Built(model, base_info, ctx, allocation, trainable, params, optimizer, scheduler,
                 time.perf_counter() - t0, base_memory)


def initial_ranks(built: Built, run: Run) -> tuple[dict, list]:
    ranks = METHODS.get(run.method).ranks(built.model)
    return ranks, [(0, m, r) for m, r in sorted(ranks.items())]


def restore(built: Built, resume: dict) -> Progress:
    """Continue a saved attempt: the method's state first (grow reshapes the adapter), then the
    trainable values, the optimizer, the schedule and the loop's own records."""
    ctx = built.ctx
    METHODS.get(ctx.run.method).restore_state(ctx, resume["method"])
    named = dict(built.model.named_parameters())
    with torch.no_grad():
        for name, value in resume["params"].items():
            named[name].copy_(value)
    built.optimizer.load_state_dict(resume["optimizer"])
    built.scheduler.load_state_dict(resume["scheduler"])
    ctx.record = resume["record"]
    console(f"rankbits: {ctx.run.path}: resuming from optimizer step {resume['step']} (its checkpoint)")
    return Progress(*(resume[k] for k in ("ranks", "rank_rows", "log_rows", "skipped", "step", "seen",
                                          "train_seconds")),
                    cpu_seconds=resume.get("cpu_seconds", 0.0), step_seconds=resume.get("step_seconds", []))


def loop(spec: dict, run: Run, data: Data, built: Built, pg: Progress, ckpt: Checkpointer, device,
         resume: dict | None, watch: Watch | None = None) -> None:
    """The optimizer steps from ``pg.start`` to the end; losses are checked (and logged) in groups
    of ``log_every`` steps, a checkpoint is saved when due."""
    hp, method, prob = spec["training"], METHODS.get(run.method), problem(run.task, run.model)
    model, optimizer, ctx = built.model, built.optimizer, built.ctx
    skip_nonfinite = hp["on_nan"] == "skip_batch"
    pending: list[tuple] = []

    def flush():
        nonlocal mark
        if not pending:
            return
        vals = torch.stack([torch.stack([a, b, g]) for _, a, b, _, g, _ in pending]).tolist()
        for (step, _, _, lr, _, total_rank), (task_loss, loss, gnorm) in zip(pending, vals):
            if not skip_nonfinite and not (math.isfinite(loss) and math.isfinite(task_loss)):
                raise NonFiniteLoss(
                    f"{run.path}: non-finite loss ({loss}) at optimizer step {step}; lower the "
                    f"learning rate (training.lr) or gradient clipping (training.max_grad_norm), "
                    f"or set training.on_nan: skip_batch", step)
            pg.log_rows.append((step, task_loss, loss, lr, gnorm, total_rank))
        if watch is not None:
            watch.rows(pg.log_rows[-len(pending):])
        now = time.perf_counter()  # the group's values are on the host: its steps are done
        pg.step_seconds.append((now - mark) / len(pending))
        mark = now
        pending.clear()

    def checkpoint(step):
        flush()  # a non-finite loss stops the run before it is saved
        ckpt.save({"step": step, "seen": pg.seen, "train_seconds": time.perf_counter() - t1 + pg.train_seconds,
                   "params": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
                   "optimizer": optimizer.state_dict(), "scheduler": built.scheduler.state_dict(),
                   "method": method.checkpoint_state(ctx), "allocation": built.allocation,
                   "record": ctx.record, "ranks": pg.ranks, "rank_rows": pg.rank_rows,
                   "log_rows": pg.log_rows, "skipped": pg.skipped,
                   "cpu_seconds": pg.cpu_seconds + time.process_time() - c1,
                   "step_seconds": pg.step_seconds})

    def hook(step):
        method.on_optimizer_step(ctx, step)

    def skip_hook(step):
        method.on_skipped_step(ctx, step)

    model.train()
    reset_peak(device)
    stream = batch_stream(data.batches, run.seed)
    for _ in range(pg.start):  # the batches the saved attempt consumed
        next(stream)
    if resume:
        set_rng_state(resume["rng"])
    activations = memory.activation_bytes(model, memory.peak_batch(data.batches, hp["batch_size"]), device)
    t1 = mark = time.perf_counter()
    c1 = time.process_time()
    with ckpt:
        for step in tqdm(range(pg.start, data.steps), desc=run.path, mininterval=5, initial=pg.start,
                         total=data.steps):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(stream).items()}
            task_loss, loss, gnorm, skip = optimizer_step(
                model, batch, built.trainable, optimizer, built.scheduler, hook, step,
                hp["max_grad_norm"], prob, skip_nonfinite, skip_hook)
            pg.seen += batch["labels"].shape[0]
            if skip:
                pg.skipped.append(step + 1)
            if method.rank_adaptive:
                new = method.ranks(model)
                if new != pg.ranks:
                    pg.rank_rows += [(step + 1, m, r) for m, r in sorted(new.items())]
                    pg.ranks = new
            pending.append((step + 1, task_loss, loss, built.scheduler.get_last_lr()[0], gnorm,
                            sum(pg.ranks.values())))
            if len(pending) >= hp["log_every"]:
                flush()
            if step + 1 < data.steps and ckpt.due(step + 1):
                checkpoint(step + 1)
    flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    pg.train_seconds += time.perf_counter() - t1
    pg.cpu_seconds += time.process_time() - c1
    pg.activations = activations


def record(spec: dict, run: Run, data: Data, built: Built, pg: Progress, selection_path, device) -> dict:
    """train_info.json: the run, its settings, parameters, ranks, memory, time and selection score."""
    hp, method, prob = spec["training"], METHODS.get(run.method), problem(run.task, run.model)
    model, ctx = built.model, built.ctx
    measured = {**peak_memory(device), "optimizer_state_bytes": memory.optimizer_bytes(built.optimizer)}
    paged = built.base_info["optimizer"] != "AdamW"
    budgeted = memory.training_memory(built.base_memory, ctx.trainable, built.optimizer, paged,
                                      pg.activations)
    c0 = time.process_time()
    selection = score_selection(model, selection_path, prob, hp, data.tokenizer, spec["task_options"], device)
    selection_cpu = time.process_time() - c0
    dims = module_dims(model)
    eff = sum(method.adapter_params(*dims[m], r) for m, r in pg.ranks.items() if r > 0)
    return {
        "run": run.as_dict(),
        "run_path": run.path,
        "config_hash": config_hash(spec),
        "training": hp,
        "method_options": ctx.opts,
        "lora_alpha": float(model.peft_config[model.active_adapter].lora_alpha),
        "budget": run.budget,
        "steps": data.steps,
        "epochs_seen": pg.seen / data.n_train,
        "n_train": data.n_train,
        "n_validation_held_out": data.n_val,
        "module_dims": dims,
        "params": {**built.params, "trainable_final": sum(p.numel() for p in ctx.trainable),
                   "effective_adapter": eff},
        "total_rank": sum(pg.ranks.values()),
        "target_total_rank": run.budget * len(ctx.dims),
        "budget_match": budget_record(eff, ctx.dims, run.budget),
        "allocation": ({"ranks": dict(sorted(built.allocation.items())), **ctx.record}
                       if built.allocation is not None else ctx.record or None),
        "skipped_batches": pg.skipped,
        "selection": selection,
        "base": built.base_info,
        "memory": measured,  # peaks as measured (process RSS on CPU; CUDA allocator on GPU)
        "training_memory": budgeted,  # what a user budgets: rankbits.memory
        "final_task_loss": next((r[1] for r in reversed(pg.log_rows) if math.isfinite(r[1])), None),
        "timing": {"load_seconds": built.load_seconds, "train_seconds": pg.train_seconds,
                   # process CPU seconds of the loop (every attempt), and the median
                   # optimizer-step time over groups of log_every steps: costs that load on a
                   # shared machine disturbs far less than wall time
                   "train_cpu_seconds": pg.cpu_seconds,
                   "step_seconds_median": statistics.median(pg.step_seconds) if pg.step_seconds else None,
                   "resumed_at_step": pg.start or None,  # from a checkpoint of an earlier attempt
                   "samples_per_second": pg.seen / pg.train_seconds if pg.train_seconds else None,
                   "selection_cpu_seconds": selection_cpu},  # scoring the selection split
        "device": device_info(device),
        "versions": versions(),
        "rankbits_version": __version__,
    }
