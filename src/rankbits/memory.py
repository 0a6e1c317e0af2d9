"""Training memory a user can budget: a deterministic breakdown of what one training step holds,
the same on every device, so arms compare by it even on a CPU (where process RSS is mostly
imported libraries).

    base weights   the frozen model at its bit-width with quantization constants and code tables
                   (``rankbits.footprint``), measured on the loaded base before the adapter
    trainable      adapter weights, and the copy of the head PEFT trains (``modules_to_save``)
    gradients      one per trainable value, in its dtype
    optimizer      AdamW's state as it is after training, by actual dtype (paged or not)
    activations    bytes of the tensors autograd saves for backward, summed over one forward
                   pass of a real batch at the configured batch size, of the longest training
                   rows (the peak batch of a length-grouped run); each storage counted once and
                   the model's own weights left out. Two things autograd's hooks do not see are
                   added: the input bitsandbytes' 8-bit matmul keeps on its ``ctx`` (``ctx.A``
                   on CPU, ``ctx.tensors`` on CUDA) whenever that input needs a gradient, and the
                   model's output logits, which the training step holds through ``backward()``

Their sum is the run's *training memory*. It leaves out what no arm controls (the framework,
CUDA context, allocator slack, transient buffers of the backward pass); measured peaks are kept
beside it (CUDA max allocated / reserved, process RSS) for checking it (bench/RESULTS.md).
"""
from __future__ import annotations

import torch

from .checkpoint import rng_state, set_rng_state
from .footprint import footprint

PARTS = ("base_weights", "trainable_weights", "gradients", "optimizer_state", "activations")


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_bytes(optimizer) -> int:
    """Bytes of the optimizer's state tensors, by their actual dtype (AdamW: two moments)."""
    return tensor_bytes(t for st in optimizer.state.values() for t in st.values() if torch.is_tensor(t))


def base_weights(model) -> dict:
    """Bytes of the frozen base as loaded (before the adapter): ``footprint``'s total."""
    fp = footprint(model)
    return {"bytes": fp["total_bytes"], "by_component": fp["bytes_by_component"]}


def peak_batch(batches, batch_size: int) -> dict[str, torch.Tensor]:
    """The ``batch_size`` longest training rows, padded as a batch: the largest activation
    footprint a length-grouped run meets (every row fits ``max_length`` after tokenisation)."""
    rows = torch.as_tensor(batches.lengths).argsort(descending=True, stable=True)[:batch_size]
    return batches.collate(rows.sort().values.numpy())


def is_int8_linear(module) -> bool:
    """bitsandbytes' LLM.int8 Linear (the frozen base layer; PEFT's LoRA wraps it)."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # rankbits runs without bitsandbytes where no base is quantized
        return False
    return isinstance(module, bnb.nn.Linear8bitLt)


def checkpointed_layers(model) -> list:
    """The layers transformers runs under gradient checkpointing (``GradientCheckpointingLayer``
    with checkpointing switched on)."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]


def storage_key(t: torch.Tensor):
    """What identifies a tensor's storage: its address, or on the meta device (no addresses: the
    plan's forward, ``rankbits.plan``) the storage object itself."""
    s = t.untyped_storage()
    return ("meta", s._cdata) if t.device.type == "meta" else s.data_ptr()


def _saved(model, batch: dict, device, layers: list, keep_inputs: bool, int8=is_int8_linear) -> dict:
    """One measuring forward: bytes autograd saves outside ``layers`` and inside each one
    (``per_layer``), and (``keep_inputs``) the bytes of the layers' inputs, which a checkpointed
    layer keeps for its recompute outside autograd's hooks. ``int8(module)``: the layers whose
    8-bit matmul keeps its input on ``ctx``."""
    own = {storage_key(p) for p in model.parameters()} | {storage_key(b) for b in model.buffers()}
    seen: dict = {}
    where: dict = {}  # storage -> the layer it was saved in (-1: outside every layer)
    current = [-1]

    on_meta = torch.device(device).type == "meta"

    def add(t, at: int):  # (a meta tensor in a real forward holds no memory)
        if isinstance(t, torch.Tensor) and (on_meta or t.device.type != "meta"):
            key = storage_key(t)
            if key not in own and key not in seen:
                seen[key], where[key] = t.untyped_storage(), at

    def pack(t: torch.Tensor):
        add(t, current[0])
        return None

    def unpack(_):
        raise RuntimeError("rankbits.memory.activation_bytes: this forward is for measuring only")

    def kept_on_ctx(mod, args):  # an 8-bit matmul keeps its input outside saved_tensors_hooks
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.requires_grad:
            pack(x)

    def enter(k):
        def pre(mod, args, kwargs):
            if keep_inputs:  # kept by the checkpoint for the recompute: counted outside the layer
                for v in (*args, *kwargs.values()):
                    add(v, -1)
            current[0] = k
        return pre

    def leave(mod, args, output):
        current[0] = -1

    hooks = [m.register_forward_pre_hook(kept_on_ctx) for m in model.modules() if int8(m)]
    for k, layer in enumerate(layers):
        hooks += [layer.register_forward_pre_hook(enter(k), with_kwargs=True), layer.register_forward_hook(leave)]
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            out = model(**{k: v.to(device) for k, v in batch.items()})
            logits = getattr(out, "logits", None)
            if isinstance(logits, torch.Tensor):  # held by the step until backward() is done
                add(logits, -1)
            del out, logits
        per_layer = [0] * len(layers)
        outside = 0
        for ptr, s in seen.items():
            if where[ptr] < 0:
                outside += s.nbytes()
            else:
                per_layer[where[ptr]] += s.nbytes()
        return {"outside": outside, "per_layer": per_layer}
    finally:
        for h in hooks:
            h.remove()
        seen.clear()


def activation_bytes(model, batch: dict, device, int8=is_int8_linear) -> dict:
    """Bytes autograd saves for backward in one training forward pass of ``batch``. RNG state is
    restored afterwards, so measuring changes nothing about the run (dropout draws included).

    The pack hook keeps each saved tensor's *storage* (not the tensor: a tensor saved by the node
    that made it would hold that node, a reference cycle that kept the whole graph allocated
    through training) and gives autograd a placeholder, since no backward runs here; holding the
    storages until the count is done keeps two saved tensors from sharing an address.

    Under gradient checkpointing (``training.gradient_checkpointing``) a checkpointed layer saves
    nothing in the forward but keeps its inputs, and its backward recomputes it: the layer's
    saved tensors exist again, one layer at a time. The figure is then what is saved outside the
    checkpointed layers + their kept inputs + the largest layer's saved tensors (its recompute),
    each layer measured in the same forward with checkpointing switched off."""
    layers = checkpointed_layers(model)
    state = rng_state()
    was_training = model.training
    model.train()
    try:
        for layer in layers:  # every layer's saved tensors, as they would be without checkpointing
            layer.gradient_checkpointing = False
        try:
            plain = _saved(model, batch, device, layers, keep_inputs=False, int8=int8)
        finally:
            for layer in layers:
                layer.gradient_checkpointing = True
        set_rng_state(state)
        without = plain["outside"] + sum(plain["per_layer"])
        result = {"bytes": without, "batch_shape": list(batch["input_ids"].shape),
                  "method": "saved_tensors_hooks over one forward of the longest training rows, plus "
                            "8-bit matmul inputs kept on ctx and the output logits"}
        if layers:
            kept = _saved(model, batch, device, layers, keep_inputs=True, int8=int8)
            recompute = max(plain["per_layer"])
            result.update(bytes=kept["outside"] + recompute, without_checkpointing_bytes=without,
                          checkpointed_layers=len(layers), kept_outside_bytes=kept["outside"],
                          recompute_bytes=recompute,
                          method=result["method"] + "; gradient checkpointing: saved outside the "
                                 "checkpointed layers + their kept inputs + the largest layer's recompute")
    finally:
        set_rng_state(state)
        model.train(was_training)
    return result


def training_memory(base: dict, trainable: list, optimizer, paged: bool, activations: dict) -> dict:
    """The breakdown (bytes) and its sum, ``total_bytes``."""
    weights = tensor_bytes(trainable)
    opt_bytes = optimizer_bytes(optimizer)
    parts = {"base_weights": base["bytes"], "trainable_weights": weights,
             "gradients": weights,  # a gradient per trainable value, in the value's dtype
             "optimizer_state": opt_bytes, "activations": activations["bytes"]}
    return {**parts, "total_bytes": sum(parts.values()), "optimizer_paged": paged,
            "base_by_component": base["by_component"], "activation_batch_shape": activations["batch_shape"],
            "activation_method": activations["method"],
            **{k: activations[k] for k in ("without_checkpointing_bytes", "kept_outside_bytes", "recompute_bytes")
               if k in activations},
            "method": "base footprint + trainable + gradients + AdamW state + saved activations "
                      "(rankbits.memory)"}


# Bytes of one frozen Linear (out x in weight, fp32 bias) at each precision rankbits builds, as
# ``footprint`` counts them: NF4 + double quantization packs two weights a byte, one uint8 absmax
# per 64-weight block, an fp32 absmax per 256 blocks and one fp32 offset, and the layer's own
# 16- and 256-entry fp32 code tables; LLM.int8 one byte a weight and an fp32 scale per row.
NF4_BLOCK, DQ_BLOCK = 64, 256


def linear_bytes(n_in: int, n_out: int, bits: int, bias: bool, full_bytes: int = 4) -> int:
    n = n_in * n_out
    b = 4 * n_out if bias else 0
    if bits == 4:
        blocks = -(-n // NF4_BLOCK)
        return -(-n // 2) + blocks + 4 * -(-blocks // DQ_BLOCK) + 4 + 4 * (16 + 256) + b
    if bits == 8:
        return n + 4 * n_out + b
    return full_bytes * n + b


def adapter_bytes(rank: int, n_in: int, n_out: int, param_bytes: int = 4) -> int:
    """Training bytes of a LoRA module at ``rank`` (A and B): weights, gradients, AdamW's two
    moments in the weights' dtype, and AdamW's fp32 step count per tensor."""
    return 0 if rank == 0 else 4 * param_bytes * rank * (n_in + n_out) + 2 * 4
