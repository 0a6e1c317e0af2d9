"""Evaluation of a trained run on the task's dev split, and the run's results directory."""
from __future__ import annotations

import time
from pathlib import Path
from datetime import datetime, timezone

import pandas as pd
import torch

from .config import Run, adapter_dir, config_hash
from .health import collapse
from .io import atomic_dir, copy_into, read_json, write_json
from .methods import METHODS, Method, adapter_ranks
from .modeling import load_base, load_prepared_base, load_tokenizer
from .batching import Batches
from .problems import problem, score, score_split
from .runtime import advises_on_oom, git_commit, peak_memory, pick_device, repo_root
from .selection import selection_record
from .tasks import TASKS

RUN_FILES = ("rank_pattern.json", "rank_history.csv", "train_log.csv")


def failed_points(failures: list[dict]) -> list[dict]:
    """What metrics.json keeps of each failed grid point's failed.json."""
    return [{"lr": f["lr"], "step": f["step"], "error": f["error"]} for f in failures]


def write_failed_run(run: Run, spec: dict, failures: list[dict], out_dir: str) -> dict:
    """The run directory of a run none of whose grid points trained: metrics.json with status
    "failed" and why (step and error per learning rate); no predictions, nothing to evaluate."""
    metrics = {
        "run_info": {**run.as_dict(), "run_path": run.path,
                     "config_hash": failures[0].get("config_hash") if failures else None,
                     "status": "failed",
                     "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "spec": spec},
        "failure": failed_points(failures),
        "meta_info": {"git_commit": git_commit(repo_root())},
    }
    with atomic_dir(out_dir) as tmp:
        write_json(tmp / "metrics.json", metrics)
    return metrics


def data_sources(manifest: str | None) -> dict | None:
    """Where each split of the run's data was read from (its prepared data's manifest): what the
    report shows as the data the runs were made with."""
    if not manifest or not Path(manifest).exists():
        return None
    return {split: s.get("source") for split, s in read_json(str(manifest))["splits"].items()}


class AdapterOff:
    """A loss with the run's adapter switched off: its base's alone, which no run changes, so the
    runs on one base (the same prepared base, split, batch size, threads and device; for a method
    that rebuilds its base in ``adapt_base``, that method and its record) compute it once. Kept in
    ``cache/<hash>.json`` (the rule's ``results/cache/adapter_off``, beside the prepared bases,
    never inside one: a base folder's time stamp decides reruns); a number written once,
    atomically, by the same computation that would run again. No ``cache``: computed each time."""

    def __init__(self, model, run: Run, allocation, base_dir: str | None, batch_size: int, device,
                 cache: str | None = None):
        self.model, self.cache = model, Path(cache) if cache else None
        method = METHODS.get(run.method)
        own_base = type(method).adapt_base is not Method.adapt_base  # evaluation's base is adapt_base's
        self.key = {"base": str(base_dir), "method": run.method if own_base else None,
                    "allocation": allocation if own_base else None, "batch_size": batch_size,
                    "threads": torch.get_num_threads(), "device": str(device)}

    def loss(self, split: str, compute) -> float:
        """``compute()`` (the model's loss on ``split``, a file) with the adapter off, or its kept value."""
        stat = Path(split).stat()
        key = {**self.key, "split": str(split), "split_bytes": stat.st_size, "split_mtime_ns": stat.st_mtime_ns}
        path = None
        if self.cache is not None:
            path = self.cache / f"{config_hash(key)}.json"
            if path.exists():
                return float(read_json(path)["loss"])
        with self.model.disable_adapter():
            loss = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"loss": loss, **key})
        return loss


def general_text_loss(model, forget_dev: str, forget_base: str, tokenizer, device, off: AdapterOff) -> dict:
    """Forgetting, as PEFT's method_comparison reports it: the adapted model's loss on a fixed
    slice of general text (the forgetting task's dev split) minus the full-precision base's
    loss there (``forget_base``: that base's score, ``score_only``): ``forgetting``. On a
    quantized base most of that is the quantization, so ``forgetting_vs_own_base`` subtracts the
    loss of the base the adapter trained on (the same bits; the adapter switched off) instead:
    what the adapter itself did. For arms that rebuild their base (PiSSA's residual, LoftQ's),
    the own base is that rebuilt base."""
    base = read_json(forget_base)
    prob = problem(base["task"], base["model"])
    df = pd.read_parquet(forget_dev)

    def loss_of(m) -> float:
        return score_split(m, df, prob, tokenizer, base["spec"]["task_options"],
                           base["spec"]["training"]["eval_batch_size"], device)[2]

    loss = loss_of(model)
    own = off.loss(forget_dev, lambda: loss_of(model))
    return {"forgetting": loss - base["loss"], "forgetting_vs_own_base": loss - own,
            "forgetting_loss": loss, "own_base_loss": own}


@advises_on_oom("evaluating")
def evaluate_run(spec: dict, train_dirs: str | list[str], dev_path: str, out_dir: str, threads: int = 1,
                 base_dir: str | None = None, choice: str | None = None, forget_dev: str | None = None,
                 forget_base: str | None = None, manifest: str | None = None,
                 adapter_off: str | None = None) -> dict:
    """Choose among the run's trained grid points (``train_dirs``, one per learning rate) on their
    selection-split scores, score the chosen adapter on dev (the test split) and write the run
    directory (complete or absent). Only the chosen point is ever evaluated on dev. ``choice``:
    the learning-rate search's last round (``select_lr``), the run's own or, for a later seed that
    reuses its first seed's rate, that seed's; recorded with whether the rate sits at an edge.
    ``adapter_off``: the folder keeping losses with the adapter switched off (``AdapterOff``)."""
    from peft import PeftModel

    run = Run(**spec["run"])
    task, prob = TASKS.get(run.task), problem(run.task, run.model)
    torch.set_num_threads(max(1, threads))
    device = pick_device(spec["device"])
    # one trained point per learning rate of the run's grid: choose on the selection split among
    # the points that trained (a diverged point, recorded under --keep-going, is listed as failed)
    train_dirs = [train_dirs] if isinstance(train_dirs, str) else list(train_dirs)
    failed = [d for d in train_dirs if Path(d, "failed.json").exists()]
    failures = [read_json(f"{d}/failed.json") for d in failed]
    train_dirs = [d for d in train_dirs if d not in failed]
    if not train_dirs and not failures and choice:  # its rate is another seed's, which has none
        search = read_json(choice)
        failures = [{"lr": None, "step": None,
                     "error": f"not trained: its learning rate is chosen by {choice}, where every rate "
                              f"tried ({', '.join(f'{r:g}' for r in search['rates'])}) failed"}]
    if not train_dirs:
        return write_failed_run(run, spec, failures, out_dir)
    infos = [read_json(f"{d}/train_info.json") for d in train_dirs]
    search = read_json(choice) if choice else None  # the search's last round: its choice stands
    chosen, lr_selection = selection_record(infos, search)
    lr_selection["failed"] = failed_points(failures)
    if search is not None:
        reused = len(train_dirs) == 1 and len(search["rates"]) > 1
        lr_selection["search"] = {**search, "file": choice, "reused_by_this_seed": reused}
    train_dir, train_info = train_dirs[chosen], infos[chosen]
    t0, cpu0 = time.perf_counter(), time.process_time()
    df = pd.read_parquet(dev_path)
    tokenizer = load_tokenizer(run.model, spec["model_options"])
    base, _ = load_prepared_base(run, spec, device, base_dir)  # as training prepared it
    base = METHODS.get(run.method).adapt_base(base, train_info["allocation"] or {}, device)
    model = PeftModel.from_pretrained(base, f"{train_dir}/adapter").eval()  # on base's device
    # AdaLoRA saves adapters pruned to the kept ranks: what is evaluated is what was trained
    if adapter_ranks(model) != read_json(f"{train_dir}/rank_pattern.json"):
        raise RuntimeError(f"{train_dir}/adapter: its ranks differ from rank_pattern.json")
    hp = spec["training"]
    pred, values, loss = score_split(model, df, prob, tokenizer, spec["task_options"], hp["eval_batch_size"],
                                     device)
    pred.insert(0, "idx", df["idx"].to_numpy()[pred["row"]])
    if prob.task.problem_type == "classification":
        pred.insert(1, "label", df["label"].to_numpy()[pred["row"]])
    if "reference" in df:
        pred["reference"] = df["reference"].to_numpy()[pred["row"]]
    off = AdapterOff(model, run, train_info["allocation"], base_dir, hp["eval_batch_size"], device, adapter_off)
    if forget_dev:
        values.update(general_text_loss(model, forget_dev, forget_base, tokenizer, device, off))
    eval_seconds, eval_cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    log = pd.read_csv(f"{train_dir}/train_log.csv") if Path(train_dir, "train_log.csv").exists() else None
    labelled = prob.task.problem_type == "classification"
    own = None
    if not labelled:  # held-out evidence: the test split's loss with the adapter switched off
        own = off.loss(dev_path, lambda: score(model, Batches(df, hp["eval_batch_size"], tokenizer.pad_token_id, True),
                                               device, prob, metrics=False)[2])
    health = collapse([] if log is None else log["task_loss"].tolist(),
                      pred["pred"].to_numpy() if labelled else None,
                      pred["label"].to_numpy() if labelled else None,
                      test_loss=None if labelled else loss, base_loss=own)

    metrics = {
        "run_info": {
            **run.as_dict(),
            "run_path": run.path,
            "config_hash": train_info["config_hash"],
            "status": "success",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "spec": spec,
        },
        "train_info": train_info,  # as training wrote it (the chosen grid point's train_info.json)
        "eval_info": {
            "lr_selection": lr_selection,  # the grid points, the choice, what the whole search cost
            "metrics": values,
            "primary_metric": task.primary_metric,
            "primary_value": values[task.primary_metric],
            "higher_is_better": task.higher_is_better,
            "loss": loss,
            "collapse": health,  # learned nothing? (rankbits.health)
            "problem_type": task.problem_type,
            "n_eval": len(df),
            "scored_tokens": int(pred["tokens"].sum()) if "tokens" in pred else None,
            "eval_seconds": eval_seconds,
            "eval_cpu_seconds": eval_cpu_seconds,  # process CPU (all threads): load, score, forgetting
            "eval_peak_rss_bytes": peak_memory(device)["peak_rss_bytes"],
        },
        "meta_info": {
            "data": data_sources(manifest),
            "git_commit": git_commit(repo_root()),
        },
    }
    with atomic_dir(out_dir) as tmp:
        pred.drop(columns="row").to_parquet(tmp / "predictions.parquet", index=False)
        copy_into(train_dir, tmp, RUN_FILES)
        write_json(tmp / "metrics.json", metrics)
    return metrics


@advises_on_oom("scoring")
def score_only(spec: dict, dev_path: str, base_dir: str, out: str, threads: int = 1,
               run_dir: str | None = None) -> dict:
    """Score without training on a task's dev split (``spec``: ``config.scoring_spec``): the
    full-precision base without adapter, or (``run_dir``) a finished run's chosen adapter on the
    base it trained on. Writes ``out`` (JSON: metrics, loss, a few generated texts) atomically."""
    from peft import PeftModel

    torch.set_num_threads(max(1, threads))
    device = pick_device(spec["device"])
    t0 = time.perf_counter()
    df = pd.read_parquet(dev_path)
    prob = problem(spec["task"], spec["model"])
    tokenizer = load_tokenizer(spec["model"], spec["model_options"])
    scored = {"adapter": None}
    bits = "32"
    if run_dir is None:
        model, _ = load_base(spec["model"], bits, spec["task"], spec["model_options"], device)
    else:
        m = read_json(f"{run_dir}/metrics.json")
        trained = Run(**m["run_info"]["spec"]["run"])
        run = Run(spec["task"], trained.model, trained.method, trained.budget, trained.bits, trained.seed)
        model, _ = load_prepared_base(run, m["run_info"]["spec"], device, base_dir)
        model = METHODS.get(run.method).adapt_base(model, m["train_info"]["allocation"] or {}, device)
        lr = m["train_info"]["training"]["lr"]
        adapter = adapter_dir(run_dir, lr)
        model = PeftModel.from_pretrained(model, str(adapter))
        scored, bits = {"adapter": str(adapter), "run": trained.path, "lr": lr}, run.bits
    pred, values, loss = score_split(model.eval(), df, prob, tokenizer, spec["task_options"],
                                     spec["training"]["eval_batch_size"], device)
    result = {"task": spec["task"], "model": spec["model"], **scored,
              "bits": bits, "metrics": values, "primary_metric": prob.task.primary_metric,
              "primary_value": values[prob.task.primary_metric], "loss": loss, "n_eval": len(df),
              # what a generating task's scores come from: the first summaries beside their references
              "samples": ([{"generated": g, "reference": r} for g, r in
                           zip(pred["prediction"][:3], df["reference"].to_numpy()[pred["row"][:3]])]
                          if "prediction" in pred else []),
              "seconds": time.perf_counter() - t0, "spec": spec,
              "versions": {"rankbits_commit": git_commit(repo_root())}}
    write_json(out, result)
    return result
