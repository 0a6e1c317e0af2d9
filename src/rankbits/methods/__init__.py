"""Method registry. A method turns (budget, options, hyperparameters) into a PEFT config, may
allocate ranks per module before training (budget-matched, see ``allocation``), may act after
every optimizer step, and reports the rank each adapted module has right now.

Adding a method is one module here plus, if it has options, an entry under ``methods:`` in the
config. The training loop, the Snakefile and the plots only use this interface.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from ..errors import ConfigError, coerce
from ..models import linear_dims


class Method:
    name: str = ""
    label: str = ""  # how tables name it; defaults to ``name``
    # option name -> default; ``options()`` rejects anything else
    defaults: dict[str, Any] = {}
    # option name -> JSON schema of its value (type, range, allowed values): checked for the
    # whole study at start-up, so no job starts on an option a later job would reject
    schema: dict[str, dict] = {}
    # ranks change during training (rank history and per-run rank heatmap are informative)
    rank_adaptive: bool = False
    # ranks differ between modules (the run gets a rank heatmap)
    rank_map: bool = False
    # a method whose finished run (same task, model, budget, bits, seed) this one reads, or a
    # (method, bits) pair: that method's run at those bits
    upstream: str | tuple[str, str] | None = None
    # sets the base's per-layer precision itself (``adapt_base``): runs only with bits "32"
    own_bits: bool = False
    # may train with bitsandbytes' paged AdamW (quantized base on CUDA, training.paged_optimizer);
    # False: the method works on torch's AdamW state and always gets torch's AdamW
    paged_optimizer: bool = True

    def options(self, user: dict, where: str) -> dict:
        given = {k: v for k, v in (user or {}).items() if k != "training"}
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(f"{where}: unknown option(s) {unknown}; valid options: {valid}, training")
        return {**self.defaults, **{k: self.checked(k, v, where) for k, v in given.items()}}

    def checked(self, key: str, value, where: str):
        """``value`` read as its schema's type (``--config`` hands strings over), or a
        ConfigError naming ``<where>.<key>`` and what is wrong."""
        import jsonschema

        schema = self.schema.get(key)
        if schema is None:
            return value
        value = coerce(value, schema, {})
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if error is not None:
            raise ConfigError(f"{where}.{key}: {error.message}")
        return value

    def prepare(self, budget: int, opts: dict, total_steps: int, where: str) -> dict:
        """Options resolved for a run of ``total_steps`` (e.g. fractions turned into steps); a
        ConfigError for options that cannot work with this budget or run length. Called at
        start-up for every run with the planned steps (``config.planned_steps``) and again by
        the training job with the steps its data gives."""
        return dict(opts)

    def check_run(self, run, spec: dict, where: str) -> None:
        """A ConfigError for a run this method cannot make, found from the run and its spec at
        start-up (before any job); the default checks nothing."""

    def allocate(self, ctx) -> dict[str, int] | None:
        """Rank per target module (0: not adapted), decided before training; ``ctx`` is the
        run's ``train.Context`` (its facts and services). None: the method's PEFT config decides."""
        return None

    def adapt_base(self, model, record: dict, device):
        """The base model as this method trains it, given the allocation ``record`` (train_info's
        ``allocation``); called in training after ``allocate`` and again in evaluation."""
        return model

    def peft_config(self, *, budget: int, opts: dict, hp: dict, target_modules: list[str],
                    total_steps: int, task_type: str, allocation: dict[str, int] | None):
        raise NotImplementedError

    def bits_error(self, bits: str) -> str | None:
        """Why this method cannot train on a base of ``bits`` (a start-up config error), or None."""
        return None

    def on_attach(self, model) -> None:
        """Called on the PEFT model right after the adapter is attached (before training)."""

    def initialize(self, ctx, model) -> None:
        """Initialise the attached adapter from data or from the base (EVA, LoftQ), before the
        optimizer exists (so ranks may still change); what it cost goes into
        ``ctx.record["init"]`` (seconds, rows seen). ``ctx.init_batches(n)``: the run's first
        ``n`` training batches, on the model's device."""

    def setup(self, ctx) -> None:
        """Called once the optimizer exists, before the first step (``ctx``: ``train.Context``,
        with its model, optimizer and trainable parameters set)."""

    def on_optimizer_step(self, ctx, step: int) -> None:
        """Called after ``optimizer.step()`` and before ``zero_grad()``; ``step`` counts from 0."""

    def on_skipped_step(self, ctx, step: int) -> None:
        """Called instead of ``on_optimizer_step`` for a batch skipped under ``on_nan:
        skip_batch`` (no gradients): a method's schedule must still see the step."""

    def checkpoint_state(self, ctx) -> dict:
        """The method's training state beyond parameters and optimizer, for a checkpoint."""
        return {}

    def restore_state(self, ctx, state: dict) -> None:
        """Load what ``checkpoint_state`` saved: after ``setup``, before the checkpoint's
        parameters and optimizer state are loaded (so a method may reshape the model first)."""

    def ranks(self, model) -> dict[str, int]:
        """Current rank of every adapted module, by module name in the base model."""
        return adapter_ranks(model)

    def adapter_params(self, in_features: int, out_features: int, rank: int) -> int:
        """Trainable adapter parameters a module of this shape costs at ``rank`` > 0: LoRA's A
        and B; AdaLoRA adds a singular value per rank, DoRA a magnitude vector per module."""
        return rank * (in_features + out_features)

    def scaling_rank(self, budget: int, opts: dict) -> int:
        """The rank PEFT divides ``lora_alpha`` by (scaling = alpha / rank)."""
        return budget

    def budget_line(self, info: dict, step: int) -> int | None:
        """The scheduled total rank at ``step`` (for plots), if the method has a schedule."""
        return None


METHODS: Registry[Method] = Registry("method", __name__)


def register(method: Method) -> Method:
    return METHODS.register(method.name, method)


def adapted_modules(model):
    """(base-model module name, adapter layer) for each module that carries an adapter."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, mod in model.named_modules():
        if isinstance(mod, BaseTunerLayer) and hasattr(mod, "lora_A"):
            yield strip_prefix(name), mod


def adapter_ranks(model) -> dict[str, int]:
    """Rank each adapted module is built with (for a loaded AdaLoRA adapter: the kept rank)."""
    return {name: int(mod.r[mod.active_adapters[0]]) for name, mod in adapted_modules(model)}


def resolve_alpha(value: float | str, rank: int) -> float:
    """``lora_alpha`` as configured: a number, or a multiple of the rank (``"2r"``: alpha / r = 2
    whatever the rank, so budgets compare at the same scaling)."""
    if isinstance(value, str):
        return float(value[:-1]) * rank
    return float(value)


def strip_prefix(name: str) -> str:
    for prefix in ("base_model.model.", "model."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def module_dims(model) -> dict[str, tuple[int, int]]:
    return {name: linear_dims(mod.get_base_layer()) for name, mod in adapted_modules(model)}


def as_steps(value: float, total: int) -> int:
    """A schedule length given as a fraction of the run (< 1) or as optimizer steps (>= 1)."""
    return int(round(value * total)) if value < 1 else int(value)
