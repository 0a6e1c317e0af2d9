"""``rankbits``: questions a user asks of a finished study. Reads ``results/<study>/`` only;
never trains.

    rankbits recommend --results results/default --memory-mb 200 [--task sst2] [--model minilm]
                       [--emit peft|axolotl|llama-factory]
    rankbits plan [--configfile config/studies/gpu.yaml] [--gpu-mib 81559]
    rankbits compare results/default results/byo --out compare.html

Each subcommand imports what it needs when it runs (function-local imports): torch, pandas and
scipy stay out of ``rankbits --help`` and of a subcommand that does not use them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConfigError
from .record import TRAINING_MEMORY


def run_dirs(results: Path) -> list[str]:
    """Every finished run of a study (``results/<study>/runs/**/metrics.json``)."""
    root = results / "runs" if (results / "runs").is_dir() else results
    return sorted(str(p.parent) for p in root.rglob("metrics.json"))


def margin_arg(text: str) -> tuple[str, float | str]:
    metric, sep, value = text.partition("=")
    if not sep or not metric:
        raise argparse.ArgumentTypeError(f"{text!r}: expected METRIC=M, e.g. accuracy=0.02")
    if value.endswith("%"):
        float(value[:-1])
        return metric, value
    return metric, float(value)


def recommend(args) -> int:
    from . import aggregate as agg
    from .verdict import recommend as answer

    dirs = run_dirs(Path(args.results))
    if not dirs:
        print(f"rankbits recommend: no finished runs (metrics.json) under {args.results}", file=sys.stderr)
        return 2
    runs = agg.load_runs(dirs)
    if runs[TRAINING_MEMORY].isna().all():
        print(f"rankbits recommend: the runs under {args.results} have no training-memory record "
              f"(made before rankbits measured it); rerun the study", file=sys.stderr)
        return 2
    settings = Path(args.results) / "tables" / "verdict_settings.json"  # the study's own
    study = json.loads(settings.read_text()) if settings.exists() else {}
    alpha = args.alpha if args.alpha is not None else study.get("alpha", 0.05)
    margins = {**study.get("margin", {}), **dict(args.margin or [])}
    try:
        if args.emit:
            from .emit import emit

            print(emit(runs, args.memory_mb, args.emit, args.task, args.model, alpha, margins), end="")
        else:
            print(answer(runs, args.memory_mb, args.task, args.model, alpha, margins))
    except (ValueError, FileNotFoundError) as exc:
        print(f"rankbits recommend: {exc}", file=sys.stderr)
        return 2
    return 0


def study_config(configfiles: list[str], base: str = "config/config.yaml") -> dict:
    """The study's configuration as Snakemake reads it: ``base`` with each ``--configfile``
    merged over it, validated."""
    import yaml

    from .config import validate_config

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k) or {}, v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    cfg = yaml.safe_load(Path(base).read_text()) or {}
    for f in configfiles:
        cfg = merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    return validate_config(cfg, Path(base).parent / "schema.yaml")


def plan(args) -> int:
    from .plan import job_mib, plan as predict, step_history, table, too_big, wall_estimate

    try:
        cfg = study_config(args.configfile or [], args.base)
    except ConfigError as exc:
        print(f"rankbits plan: {exc}", file=sys.stderr)
        return 2
    predictions = predict(cfg, args.device)
    print(table(predictions, args.gpu_mib))
    history = step_history(args.history if args.history is not None
                           else sorted(str(p) for p in Path("results").glob("*/tables/runs.csv")))
    at_once = args.cores if not args.gpu_mib else min(args.cores, *(int(args.gpu_mib // job_mib(p)) or 1
                                                                    for p in predictions))
    for line in wall_estimate(predictions, history, at_once):
        print(line)
    if args.gpu_mib:
        problems = too_big(predictions, args.gpu_mib)
        for line in problems:
            print(f"rankbits plan: {line}", file=sys.stderr)
        return 1 if problems else 0
    return 0


def compare(args) -> int:
    from .explorer import write

    missing = [r for r in args.results if not (Path(r) / "tables" / "verdict.csv").exists()]
    if missing:
        print(f"rankbits compare: no finished study (tables/verdict.csv) in {', '.join(missing)}", file=sys.stderr)
        return 2
    names = [Path(r).resolve().name for r in args.results]
    if len(set(names)) < len(names):  # two studies of one name from different folders
        names = [str(Path(r)) for r in args.results]
    try:
        write(list(zip(args.results, names)), args.out, "rankbits: " + " vs ".join(names))
    except ValueError as exc:  # a study tabled by an older rankbits
        print(f"rankbits compare: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(names)} studies; open it in a browser (self-contained, offline)")
    return 0


def example_data(args) -> int:
    from .examples import make

    for line in make(args.data_root, args.out):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rankbits", description="Ask a finished rankbits study.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    rec = sub.add_parser("recommend", help="the arm to use within a training-memory budget",
                         description="The best arm whose training memory (weights at their "
                                     "bit-width, trainable weights, gradients, AdamW state and "
                                     "activations) fits the budget, its interval over seeds, the "
                                     "runner-up and whether they differ. Reads results/<study>/ only.")
    rec.add_argument("--results", default="results/default",
                     help="the study's folder (default: results/default, the default study)")
    rec.add_argument("--memory-mb", type=float, required=True, help="training-memory budget in MiB")
    rec.add_argument("--task", help="only this task")
    rec.add_argument("--model", help="only this model")
    rec.add_argument("--alpha", type=float, default=None,
                     help="significance level (default: the study's verdict.alpha, else 0.05)")
    rec.add_argument("--margin", action="append", type=margin_arg, metavar="METRIC=M",
                     help="equivalence margin for a metric, e.g. accuracy=0.02 or perplexity=2%% "
                          "(default: the study's verdict.margin; built in: 0.01, perplexity 2%%)")
    rec.add_argument("--emit", choices=("peft", "axolotl", "llama-factory"),
                     help="print the recommended arm as settings for this tool (a PEFT LoraConfig/"
                          "AdaLoraConfig with its BitsAndBytesConfig, or an Axolotl or LLaMA-Factory "
                          "YAML fragment) instead of the verdict")
    rec.set_defaults(func=recommend)
    pl = sub.add_parser("plan", help="each training job's predicted training memory, before the run",
                        description="Every arm's training memory (base, adapter, gradients, AdamW, "
                                    "activations), predicted from the model's config on the meta device "
                                    "(no weights read), and with --gpu-mib how many such jobs fit the GPU "
                                    "at once; an arm that cannot fit is named with the settings to change "
                                    "(exit 1).")
    pl.add_argument("--configfile", action="append", help="a study file merged over --base (repeatable)")
    pl.add_argument("--base", default="config/config.yaml", help="the base configuration (default: %(default)s)")
    pl.add_argument("--gpu-mib", type=float, help="the GPU's memory in MiB (e.g. 81559 for an H100 80GB)")
    pl.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="where the jobs will train (bits 16 is bf16 on cuda, fp32 on cpu; default: cuda)")
    pl.add_argument("--history", nargs="*", metavar="RUNS_CSV",
                    help="earlier studies' tables/runs.csv whose step times estimate training time "
                         "(default: every results/*/tables/runs.csv here)")
    pl.add_argument("--cores", type=int, default=2, help="jobs at once, as snakemake --cores (default: 2)")
    pl.set_defaults(func=plan)
    cmp = sub.add_parser("compare", help="one explorer page over several finished studies",
                         description="Every run and arm of the studies on axes you pick, filtered by "
                                     "study, task, model, method, budget, bits and seed, the frontier drawn "
                                     "(tables/runs.csv and tables/verdict.csv of each).")
    cmp.add_argument("results", nargs="+", help="results/<study> folders")
    cmp.add_argument("--out", default="compare.html", help="the page to write (default: %(default)s)")
    cmp.set_defaults(func=compare)
    ex = sub.add_parser("example-data", help="write the files config/studies/byo.yaml declares",
                        description="A CSV of reviews (SST-2, columns review/sentiment, string labels) and "
                                    "chat and prompt/response JSON Lines (the Alpaca sample), made from "
                                    "the benchmark data under --data-root.")
    ex.add_argument("--data-root", default="../shared/data", help="where sst2/ and alpaca/ are")
    ex.add_argument("--out", default="results/byo-data", help="the folder to write (byo.yaml's data_root)")
    ex.set_defaults(func=example_data)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
