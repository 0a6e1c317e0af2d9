"""``optimal``: rank and bits chosen jointly under a training-memory budget, exactly.

Per adapted Linear the arm picks a precision (NF4+DQ, int8 or full) and a rank from
``ranks`` (0: not adapted) that maximise a measured utility with the run's training memory
(``rankbits.memory``: the bytes the verdict compares) at most the budget:

    optimal                 the budget is the training memory of LoRA on the NF4+DQ base (QLoRA)
                            at the same rank budget, task, model and seed: that finished run's
    optimal:<method>@<bits> ... or of ``method`` at ``bits`` (optimal:lora@32: fp32 LoRA's memory)
    optimal:<N>mib          a fixed budget of N MiB

**Utility.** For module m with precision p and rank r, ``s_m * (EV_m(r) - err_m(p))``:
    s_m       the probe's importance of m (mean |grad * weight| of its adapter over a short
              uniform-LoRA run, as ``probe``), normalised to sum 1 over the modules;
    EV_m(r)   the share of the variance of m's inputs (on the run's first training batches) in
              their top r directions: what a rank-r update of m can act on (EVA's statistic);
    err_m(p)  the relative output error of m at precision p on the same inputs,
              ||x (W_p - W)^T|| / ||x W^T + b|| (``quant_diagnostics``' rel_output_error; 0 at full).
Both terms are relative changes of m's output, weighted by how much the loss responds to m:
a rank-r adapter can move the output along a share EV(r) of its input's energy; quantization
moves it by err(p) in no useful direction. EV is concave in r, so rank has diminishing returns,
and a module the probe finds unimportant is worth neither rank nor bits.

**Cost.** Exact where it can be: each layer's weight bytes at each precision
(``memory.linear_bytes``, equal to ``footprint``), the adapter's weights, gradients and AdamW
state (``memory.adapter_bytes``). Activations are calibrated on the run's peak batch with three
measured forwards (rank ``budget`` everywhere; only the last layer adapted; one module left
out): 4 bytes per token per unit of rank, a per-module branch cost in proportion to its input
width, and a per-layer cost paid by every layer from the first adapted one up (autograd keeps
nothing below it), which makes freezing early layers a choice the solver can buy memory with.
The program is solved exactly (``rankbits.knapsack``); the chosen configuration is then built
and measured; if it exceeds the budget the target is lowered by the excess and the program
solved again, and if it falls more than 2% short the target is raised by half the slack (at
most 4 rounds; the best configuration measured within the budget is kept).
``train_info.allocation.optimal`` records the budget, the prediction, the
measurement, the bit map, the ranks, and what the choice cost (seconds).
"""
from __future__ import annotations

import copy
import functools
import json
import re
import time
import warnings
from pathlib import Path

import torch

from .. import memory
from ..knapsack import Infeasible, Problem, solve
from . import METHODS, register
from .joint import Joint
from .probe import Probe
from ..errors import ConfigError
from ..bits import BITS, bits_label
from ..io import read_json
from ..bits.mixed import linear_weight, quantize_modules, to_int8, to_nf4
from ..quant import dequantized_weight, real_tokens
from ..modeling import attach_adapter, model_source
from ..models import MODELS, linear_dims
from ..problems import problem

MIB = 2 ** 20
ROUNDS = 4  # solve-measure rounds before giving up on meeting the budget
TOLERANCE = 0.02  # a measured fit this close under the budget ends the rounds


class Optimal(Probe):
    own_bits = True
    rank_map = True
    paged_optimizer = False  # torch's AdamW: its state bytes are known before training
    defaults = {**Probe.defaults, "ranks": [0, 2, 4, 8, 16], "precisions": [4, 8, 32], "batches": 2}
    schema = {**Probe.schema,
              "ranks": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"type": "integer", "minimum": 0}, "contains": {"minimum": 1}},
              "precisions": {"type": "array", "minItems": 1, "uniqueItems": True,
                             "items": {"enum": [4, 8, 32]}},
              "batches": {"type": "integer", "minimum": 1}}

    def __init__(self, name: str = "optimal", match: tuple[str, str] | None = ("lora", "4"),
                 budget_mib: float | None = None):
        self.name, self.upstream, self.budget_mib = name, match, budget_mib

    @property
    def label(self) -> str:
        if self.upstream is None:
            return f"optimal at {self.budget_mib:g} MiB"

        method, bits = self.upstream
        return f"optimal at {METHODS.get(method).label or method} {bits_label(bits)} memory"

    # -- the budget -------------------------------------------------------------------------
    def budget_bytes(self, ctx) -> tuple[float, str]:
        if self.budget_mib is not None:
            return self.budget_mib * MIB, f"{self.budget_mib:g} MiB (fixed)"

        if ctx.upstream_dir is None:
            raise ValueError(f"{ctx.run.path}: {self.name} needs the matching run's directory (upstream_dir)")
        info = read_json(Path(ctx.upstream_dir) / "metrics.json")["train_info"]
        return float(info["training_memory"]["total_bytes"]), f"training memory of {ctx.upstream_dir}"

    def check_run(self, run, spec, where: str) -> None:
        """A fixed budget below the base's weights with every adapted layer NF4+DQ (adapters,
        activations and the head left out: a lower bound the job then makes exact) fails here."""

        if self.budget_mib is None:
            return
        floor = weights_floor(run.model, run.task, json.dumps(spec["model_options"], sort_keys=True))
        if floor is not None and floor > self.budget_mib * MIB:
            raise ConfigError(f"{where}: {self.budget_mib:g} MiB is below the smallest training memory "
                              f"{run.model} can have: its base alone, every adapted layer NF4+DQ, "
                              f"takes {floor / MIB:.1f} MiB")

    # -- the allocation ----------------------------------------------------------------------
    def allocate(self, ctx):
        t0 = time.perf_counter()
        importance = self.weights(ctx)  # the probe; its record is ctx.record["probe"]
        total = sum(importance.values())
        share = {m: (v / total if total > 0 else 1 / len(importance)) for m, v in importance.items()}
        budget, source = self.budget_bytes(ctx)
        base = ctx.load_base()  # read once; every configuration measured is built on a copy
        stats = layer_statistics(base, ctx.dims, ctx.init_batches(ctx.opts["batches"]),
                                 [p for p in ctx.opts["precisions"] if p != 32])
        model = Model(ctx, self, stats, base)
        options = [(p, r) for p in sorted(ctx.opts["precisions"]) for r in sorted(ctx.opts["ranks"])]
        problem = model.problem(options, share)

        def measure(sol):
            config = {m: options[k] for m, k in zip(model.modules, sol.choice)}
            return config, model.measure({m: r for m, (_, r) in config.items()},
                                         {m: p for m, (p, _) in config.items() if p != 32})["total"]

        try:
            result, rounds, chosen_round = fit(problem, budget, measure)
        except Infeasible as exc:
            raise ValueError(
                f"{ctx.run.path}: the budget {budget / MIB:.1f} MiB ({source}) is below the "
                f"smallest configuration {self.name} can build: {exc.minimum / MIB:.1f} MiB") from None
        if result is None:
            raise ValueError(f"{ctx.run.path}: {self.name}: no configuration measured within "
                             f"{budget / MIB:.1f} MiB after {ROUNDS} rounds: {rounds}")
        ranks = {m: r for m, (_, r) in result.items()}
        ctx.record["bit_map"] = {m: p for m, (p, _) in sorted(result.items()) if p != 32}
        ctx.record["optimal"] = {
            "budget_bytes": budget, "budget_source": source, "rounds": rounds, "chosen_round": chosen_round,
            "chosen": {m: {"bits": p, "rank": r} for m, (p, r) in sorted(result.items())},
            "utility_terms": {m: {"importance_share": share[m], "ev": {r: model.ev(m, r) for r in sorted(ctx.opts["ranks"])},
                                  "quant_error": stats[m]["error"]} for m in sorted(share)},
            "cost_model": model.calibration, "seconds": time.perf_counter() - t0}
        return ranks

    adapt_base = Joint.adapt_base  # the recorded bit map, quantized from the fp32 base


def fit(problem: Problem, budget: float, measure, rounds: int = ROUNDS):
    """Solve, build, measure: over the budget, lower the target by the excess; more than
    ``TOLERANCE`` under it, raise the target by half the slack. Returns (the best configuration
    measured within the budget or None, every round's record, the round it came from).
    ``measure(solution)`` -> (configuration, measured bytes). A round whose lowered target no
    configuration fits ends the rounds and keeps what earlier rounds found (it raised, throwing
    an in-budget configuration away); ``Infeasible`` only when the first round has nothing."""
    target, record, result, chosen = budget, [], None, None
    for _ in range(rounds):
        try:
            sol = solve(problem, target)
        except Infeasible as exc:
            if result is None and not record:
                raise
            record.append({"target_bytes": target, "infeasible": True, "minimum_bytes": exc.minimum})
            break
        config, measured = measure(sol)
        record.append({"target_bytes": target, "predicted_bytes": sol.total, "measured_bytes": measured,
                       "utility": sol.utility, "proven_optimal": sol.exact, "gap": sol.gap,
                       "solve_seconds": sol.seconds})
        if measured <= budget and (result is None or sol.utility > record[chosen]["utility"]):
            result, chosen = config, len(record) - 1
        if measured > budget:
            target -= measured - budget
        elif measured >= (1 - TOLERANCE) * budget:
            break
        else:
            target += (budget - measured) / 2
    return result, record, chosen


@torch.no_grad()
def layer_statistics(base, dims: dict, batches: list[dict], precisions: list[int]) -> dict:
    """Per target module: the explained-variance curve of its inputs (uncentred, over the
    batches' real tokens) and its relative output error at each precision."""
    mods = dict(base.named_modules())  # ``dims`` names modules of this model
    gram, sums, count = {}, {}, {}

    def hook(name):
        def pre(mod, args):
            x = real_tokens(args[0].detach(), mask).float()
            x = x.reshape(-1, x.shape[-1])
            gram[name] = gram.get(name, 0) + (x.T @ x).double()
            sums[name] = sums.get(name, 0) + x.sum(0).double()
            count[name] = count.get(name, 0) + x.shape[0]
        return pre

    hooks = [mods[n].register_forward_pre_hook(hook(n)) for n in dims]
    try:
        for batch in batches:
            mask = batch.get("attention_mask")
            base(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        for h in hooks:
            h.remove()
    convert = {4: to_nf4, 8: to_int8}
    out = {}
    for n in dims:
        layer = mods[n]
        g = gram[n]
        eig = torch.linalg.eigvalsh(g).flip(0).clamp(min=0)
        ev = (eig.cumsum(0) / eig.sum()).tolist()
        _, _, w = linear_weight(layer)
        w = w.double()
        b = layer.bias.detach().double().cpu() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        g = g.cpu()
        y2 = (w @ g * w).sum() + 2 * b @ (w @ sums[n].cpu()) + count[n] * (b @ b)
        errors = {32: 0.0}
        for p in precisions:
            with warnings.catch_warnings():  # bitsandbytes' notes on casting, once per layer
                warnings.simplefilter("ignore")
                q = convert[p](layer, layer.weight.device)
            d = dequantized_weight(q).double().cpu() - w
            errors[p] = float(((d @ g * d).sum().clamp(min=0) / y2).sqrt())
        out[n] = {"ev_curve": ev, "error": errors, "bias": layer.bias is not None,
                  "full_bytes": layer.weight.element_size()}
    return out


class Model:
    """The training-memory cost model of one run, calibrated by measurement (see the module doc)."""

    def __init__(self, ctx, method, stats: dict, base):
        self.ctx, self.method, self.stats, self.base = ctx, method, stats, base
        self.modules = sorted(ctx.dims)
        layers = sorted({ctx.family.locate(m)[0] for m in self.modules})
        self.stage = {m: layers.index(ctx.family.locate(m)[0]) for m in self.modules}
        self.n_stages = len(layers)
        batch = ctx.peak_batch()
        self.tokens = int(batch["input_ids"].numel())
        r0 = max(1, ctx.run.budget)
        full = {m: r0 for m in self.modules}
        last = [m for m in self.modules if self.stage[m] == self.n_stages - 1]
        left_out = max(last, key=lambda m: (ctx.dims[m][0], m))
        ref = self.measure(full, {})
        a_last = self.measure({m: (r0 if m in last else 0) for m in self.modules}, {}, weights=False)
        a_minus = self.measure({**full, left_out: 0}, {}, weights=False)
        t = self.tokens
        self.per_input = max(0.0, ref["activations"] - a_minus["activations"] - 4 * t * r0) / (t * ctx.dims[left_out][0])
        branch = {m: self.branch(m) + 4 * t * r0 for m in self.modules}
        below = ref["activations"] - a_last["activations"] - sum(branch[m] for m in self.modules if m not in last)
        self.per_stage = max(0.0, below / (self.n_stages - 1)) if self.n_stages > 1 else 0.0
        act_fixed = a_last["activations"] - self.per_stage - sum(branch[m] for m in last)
        weights_fixed = ref["total"] - ref["activations"] - sum(
            self.weight_bytes(m, 32) + memory.adapter_bytes(r0, *ctx.dims[m]) for m in self.modules)
        self.fixed = weights_fixed + act_fixed
        self.calibration = {
            "tokens": t, "calibration_rank": r0, "reference_measured": ref,
            "activation_bytes_per_input_feature_per_token": self.per_input,
            "activation_bytes_per_layer": self.per_stage, "fixed_bytes": self.fixed,
            "method": "3 measured forwards on the run's peak batch (rankbits.memory.activation_bytes)"}

    def branch(self, m: str) -> float:
        """Activation bytes an adapter's branch on ``m`` keeps besides its rank's (dropout, input)."""
        return self.per_input * self.tokens * self.ctx.dims[m][0]

    def weight_bytes(self, m: str, p: int) -> int:
        n_in, n_out = self.ctx.dims[m]
        s = self.stats[m]
        return memory.linear_bytes(n_in, n_out, p, s["bias"], s["full_bytes"])

    def cost(self, m: str, p: int, r: int) -> float:
        n_in, n_out = self.ctx.dims[m]
        act = (self.branch(m) + 4 * self.tokens * r) if r > 0 else 0.0
        if p == 8 and (r == 0 or self.ctx.hp["lora_dropout"] > 0):
            # LLM.int8 keeps its input on ctx whenever that input needs a gradient
            # (rankbits.memory); an adapter without dropout saves the same tensor, counted in
            # its branch. Charged whatever the stage: over by this much below the first adapted
            # layer, which the measured rounds then correct
            act += 4 * self.tokens * n_in
        return self.weight_bytes(m, p) + memory.adapter_bytes(r, n_in, n_out) + act

    def ev(self, m: str, r: int) -> float:
        curve = self.stats[m]["ev_curve"]
        return 0.0 if r == 0 else curve[min(r, len(curve)) - 1]

    def problem(self, options: list[tuple[int, int]], share: dict[str, float]) -> Problem:
        ev = self.ev
        return Problem(
            cost=[[self.cost(m, p, r) for p, r in options] for m in self.modules],
            utility=[[share[m] * (ev(m, r) - self.stats[m]["error"][p]) for p, r in options] for m in self.modules],
            active=[[r > 0 for _, r in options] for _ in self.modules],
            stage=[self.stage[m] for m in self.modules],
            stage_cost=[self.per_stage] * self.n_stages, fixed=self.fixed)

    def measure(self, ranks: dict[str, int], bit_map: dict[str, int], weights: bool = True) -> dict:
        """The training memory of this configuration by ``rankbits.memory``, built for real: the
        base quantized per ``bit_map``, the adapter attached, one measured forward. AdamW's state
        (two moments in the weights' dtype, an fp32 step per tensor) is what it holds after
        training."""

        ctx = self.ctx
        model = copy.deepcopy(self.base)
        device = next(model.parameters()).device
        if bit_map:
            model = quantize_modules(model, bit_map, device)
        base = memory.base_weights(model)["bytes"] if weights else 0
        pm = attach_adapter(model, ctx.run.model, ctx.run.task, self.method, ctx.run.budget, ctx.opts,
                            ctx.hp, ctx.total_steps, allocation=ranks)
        trainable = [p for p in pm.parameters() if p.requires_grad]
        w = memory.tensor_bytes(trainable)
        act = memory.activation_bytes(pm, ctx.peak_batch(), device)["bytes"]
        opt = 2 * w + 4 * len(trainable)
        return {"base_weights": base, "trainable_weights": w, "gradients": w, "optimizer_state": opt,
                "activations": act, "total": base + 2 * w + opt + act}


@functools.lru_cache(maxsize=None)  # start-up asks once per run; the answer is the model's
def weights_floor(model_name: str, task: str, model_options: str) -> int | None:
    """Bytes of the model's base with every target Linear NF4+DQ and the rest at full precision,
    from its config alone (a meta-device model: nothing is loaded); None if it cannot be built.
    ``model_options``: the model's options as sorted JSON (a cache key)."""

    try:
        from transformers import AutoConfig

        prob = problem(task, model_name)
        cfg = AutoConfig.from_pretrained(model_source(model_name, json.loads(model_options)))
        if prob.auto_class == "AutoModelForSequenceClassification":
            cfg.num_labels = prob.task.num_labels
        with torch.device("meta"):
            model = prob.model_class().from_config(cfg)
    except Exception:  # noqa: BLE001 - a GGUF-only model, say: the job checks exactly
        return None
    family = MODELS.get(model_name).family
    targets = family.target_dims(model)
    mods = dict(model.named_modules())
    total = 0
    for name, p in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in targets and name.endswith(".weight"):
            layer = mods[owner]
            total += memory.linear_bytes(*linear_dims(layer), 4, False)
        else:
            total += p.numel() * 4
    return total


def make(arg: str) -> Optimal:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)mib", arg)
    if m:
        if float(m.group(1)) <= 0:
            raise ValueError("a fixed budget must be above 0 MiB")
        return Optimal(f"optimal:{arg}", match=None, budget_mib=float(m.group(1)))
    method, sep, bits = arg.partition("@")
    if not sep or not method or not bits:
        raise ValueError("name a run to match as <method>@<bits> (e.g. lora@4) or a budget as <N>mib")

    for registry, value in ((METHODS, method), (BITS, bits)):
        try:
            registry.get(value)
        except KeyError as exc:
            raise ValueError(str(exc)) from None
    if (METHODS.get(method).own_bits and bits != "32") or method.startswith("optimal"):
        raise ValueError(f"{method}@{bits} is not a run this arm can match")
    return Optimal(f"optimal:{arg}", match=(method, bits))


register(Optimal())
METHODS.register_family("optimal", make, "optimal:<method@bits|Nmib>")
