"""Data preparation: a task's splits normalised to parquet, then tokenised once per model."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd

from .io import atomic_file, write_json
from .tasks import TASKS, DataError, Task

HUB_HOST = ("huggingface.co", 443)


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the Hub can be asked at all; answers at once instead of a retry loop."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False, f"{var} is set"
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"cannot reach {HUB_HOST[0]} ({exc.__class__.__name__})"


def local_dir(task: Task, data_root: str | None) -> Path | None:
    if not data_root:
        return None
    return Path(data_root).expanduser() / task.name


def local_files(task: Task, options: dict) -> dict[str, str]:
    """File name per split under data_root/<task>/: the registry's, then tasks.<task>.files."""
    return {**task.local_files, **(options.get("files") or {})}


def load_split(task: Task, split: str, data_root: str | None, options: dict | None = None
               ) -> tuple[pd.DataFrame, str]:
    """One split as a normalised frame, and a line saying where it came from."""
    folder = local_dir(task, data_root)
    files = local_files(task, options or {})
    if split not in files and split not in task.hub_splits:
        raise DataError(f"task {task.name!r} has no {split} file; set tasks.{task.name}.files.{split} "
                        f"or tasks.{task.name}.dev_samples (rows of train held out as the test split)")
    given = Path(files[split]).expanduser() if split in files else None
    path = (None if given is None else given if given.is_absolute()
            else folder / given if folder is not None else None)
    if path is not None and path.is_file():
        return task.read_local(path), f"local:{path.resolve()}"
    ok, why = hub_reachable()
    if not ok:
        where = folder if folder is not None else Path("<data_root>") / task.name
        missing = f"no {path}" if folder is not None and folder.is_dir() else "no local copy"
        raise DataError(
            f"task {task.name!r}: {missing} and the Hugging Face Hub is not reachable ({why}). "
            f"Put {files.get(split, f'its {split} file')} in {where}/ (set data_root, or tasks.{task.name}.files.{split}, "
            f"in the config) — see docs/data.md."
        )
    if folder is not None and folder.is_dir():  # a local folder without this split's file
        print(f"rankbits: {task.name}: {path} not found; reading the {split} split from the Hub")
    import datasets

    hub_path, hub_name = task.hub
    ds = datasets.load_dataset(hub_path, hub_name, split=task.hub_splits[split])
    return task.from_hub(ds), f"hub:{hub_path}/{hub_name}:{task.hub_splits[split]}"


def subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A fixed-seed random subset of ``n`` rows (all rows when n is None or too large)."""
    if n is None or n >= len(df):
        return df
    return df.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def prepare_task(task_name: str, data_root: str | None, options: dict, out_dir: str) -> dict:
    """Write ``<out_dir>/{train,selection,dev}.parquet``, then ``manifest.json`` (source, rows,
    overlap between splits).

    ``dev`` is the test split every reported metric is computed on. ``selection`` is
    ``selection_samples`` rows held out of the task's training data (fixed seed) for choices
    such as the learning rate; it may be empty. ``train`` is what is left, without any row whose
    text is also in selection or dev, then subset to ``max_train_samples``.

    Classification tasks are also checked for *containment* leaks (SST-2's training file holds
    phrases cut from the same sentences): the selection split is drawn from whole sentences
    (rows contained in no other training row) and every training row that contains, or is
    contained in, a selection row (token-aligned) is removed; the manifest counts test rows that
    occur inside a training row, and a warning is printed above ``leak_warn_fraction``."""
    task = TASKS.get(task_name)
    seed = options.get("subset_seed", 0)
    manifest = {"task": task.name, "problem_type": task.problem_type, "splits": {}}
    train, train_source = load_split(task, "train", data_root, options)
    n_dev_held = options.get("dev_samples")
    if n_dev_held:  # no separate test file: hold rows of train out as the test split
        if n_dev_held >= len(train):
            raise DataError(f"tasks.{task.name}.dev_samples: {n_dev_held} is not below the "
                            f"{len(train)} training rows of {train_source}")
        dev = train.sample(n=n_dev_held, random_state=seed + 2).sort_index()
        train = train.drop(dev.index).reset_index(drop=True)
        dev, dev_source = dev.reset_index(drop=True), f"{train_source} ({n_dev_held} rows held out of train)"
    else:
        dev, dev_source = load_split(task, "dev", data_root, options)
    n_train, n_dev = len(train), len(dev)
    dev = subset(dev, options.get("max_eval_samples"), seed)
    n_sel = int(options.get("selection_samples") or 0)
    if n_sel >= n_train:
        raise DataError(f"tasks.{task.name}.selection_samples: {n_sel} is not below the "
                        f"{n_train} training rows")
    check = task.problem_type == "classification"  # short texts: containment is cheap and telling
    overlap = Overlap(train, dev) if check else None
    selection = (overlap.draw_selection(n_sel, seed + 1) if check else
                 train.sample(n=n_sel, random_state=seed + 1) if n_sel else train.iloc[:0])
    train = train.drop(selection.index)
    held = (set(text_keys(dev)) | set(text_keys(selection))) - {""}
    keep = ~text_keys(train).isin(held)
    dropped = int((~keep).sum())
    contained = 0
    if check and len(selection):
        near = overlap.related(train.index[keep.to_numpy()], selection.index)
        contained = int(len(near))
        keep &= ~train.index.isin(near)
    rows_kind = options.get("train_rows", "all")
    if rows_kind == "sentences":
        if not check:
            raise DataError(f"tasks.{task.name}.train_rows: 'sentences' is for classification tasks")
        keep &= ~overlap.texts.loc[train.index].isin(overlap.inner).to_numpy()
    n_pool = int(keep.sum())
    train = subset(train[keep].reset_index(drop=True), options.get("max_train_samples"), seed)
    selection = selection.sort_index().reset_index(drop=True)
    for split, df, source, available in (("train", train, train_source, n_train),
                                         ("selection", selection, train_source, n_train),
                                         ("dev", dev, dev_source, n_dev)):
        with atomic_file(Path(out_dir) / f"{split}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
        manifest["splits"][split] = {"source": source, "rows": len(df), "rows_available": available}
    manifest["splits"]["train"]["dropped_as_in_selection_or_dev"] = dropped
    manifest["splits"]["train"]["rows_kind"] = rows_kind
    manifest["splits"]["train"]["rows_eligible"] = n_pool
    if check:
        manifest["splits"]["train"]["dropped_as_containing_or_inside_selection"] = contained
        manifest["splits"]["selection"]["whole_sentences"] = int(overlap.roots_drawn)
        manifest["leak"] = leak = overlap.dev_leak(dev)
        limit = float(options.get("leak_warn_fraction", 0.01))
        if leak["dev_rows_inside_a_train_row_fraction"] > limit:
            print(f"rankbits: WARNING task {task.name}: {leak['dev_rows_inside_a_train_row']} of "
                  f"{len(dev)} test rows ({leak['dev_rows_inside_a_train_row_fraction']:.1%}) occur "
                  f"inside a training row of {train_source} (token-aligned); test scores on this "
                  f"split are inflated (tasks.{task.name}.leak_warn_fraction: {limit})")
    else:
        manifest["leak"] = {"checked": "exact duplicates only (long texts)"}
    write_json(Path(out_dir) / "manifest.json", manifest)
    return manifest


def normalised(df: pd.DataFrame) -> pd.Series:
    """Each row's text(s) as whitespace tokens joined by one space (a pair joined by `` ||| ``):
    the form in which one row is looked for inside another, token-aligned."""
    text = df["text"].astype(str).str.split().str.join(" ")
    if "text_pair" in df and df["text_pair"].notna().any():
        text = text + " ||| " + df["text_pair"].fillna("").astype(str).str.split().str.join(" ")
    return text


def inside(rows: pd.Series, queries: set[str], proper: bool) -> pd.Series:
    """Per row of ``rows`` (normalised texts), the queries that occur in it as a token-aligned
    substring (``proper``: other than the whole row). Cost: sum of squared row lengths, capped at
    the longest query."""
    longest = max((q.count(" ") + 1 for q in queries), default=0)
    found = {}
    for idx, row in rows.items():
        toks = row.split(" ")
        n = len(toks)
        hits = [s for i in range(n) for j in range(i + 1, min(n, i + longest) + 1)
                if not (proper and j - i == n) and (s := " ".join(toks[i:j])) in queries]
        if hits:
            found[idx] = hits
    return pd.Series(found, dtype=object)


class Overlap:
    """Token-aligned containment between a task's training rows and its test rows."""

    def __init__(self, train: pd.DataFrame, dev: pd.DataFrame):
        self.train = train
        self.texts = normalised(train)
        self.dev_texts = set(normalised(dev))
        queries = set(self.texts) | self.dev_texts
        # texts that occur inside another training row: phrases cut from a longer one
        self.inner = {q for hits in inside(self.texts, queries, proper=True) for q in hits}
        self.roots_drawn = 0

    def draw_selection(self, n: int, seed: int) -> pd.DataFrame:
        """``n`` rows for the selection split: whole sentences first (rows inside no other
        training row and not a test row), drawn with ``seed``; one row per distinct text."""
        if not n:
            return self.train.iloc[:0]
        distinct = ~self.texts.duplicated()
        whole = distinct & ~self.texts.isin(self.inner | self.dev_texts)
        pool = self.train[whole]
        picked = pool.sample(n=min(n, len(pool)), random_state=seed)
        if len(picked) < n:  # not enough whole sentences: the rest from other distinct rows
            rest = self.train[distinct & ~whole]
            picked = pd.concat([picked, rest.sample(n=n - len(picked), random_state=seed)])
        self.roots_drawn = int(min(n, len(pool)))
        return picked

    def related(self, candidates: pd.Index, selection: pd.Index) -> pd.Index:
        """Training rows among ``candidates`` that contain a selection row or lie inside one."""
        sel = set(self.texts[selection])
        cand = self.texts[candidates]
        parts = set(q for hits in inside(self.texts[selection], set(cand), proper=True) for q in hits)
        near = cand[cand.isin(parts)].index
        if not sel <= (set(self.texts) - self.inner):  # a non-root selection row: look inside
            near = near.union(inside(cand, sel, proper=True).index)
        return near

    def dev_leak(self, dev: pd.DataFrame) -> dict:
        """How many test rows occur inside (or equal) a training row, and how many training rows
        lie inside a test row (token-aligned) — before selection and subsetting."""
        dev_texts = normalised(dev)
        train_set = set(self.texts)
        leaked = int(dev_texts.isin(self.inner | train_set).sum())
        parts = {q for hits in inside(dev_texts, train_set, proper=True) for q in hits}
        return {"method": "token-aligned substring (whitespace tokens)",
                "dev_rows_inside_a_train_row": leaked,
                "dev_rows_inside_a_train_row_fraction": leaked / len(dev) if len(dev) else 0.0,
                "train_rows_inside_a_dev_row": int(self.texts.isin(parts).sum())}


def text_keys(df: pd.DataFrame) -> pd.Series:
    """One string per row naming its input text(s), for overlap checks between splits."""
    pair = df["text_pair"].fillna("").astype(str) if "text_pair" in df else ""
    key = df["text"].astype(str).str.strip() + "\t" + pair
    return key.where(key.str.strip() != "", "")


def tokenize_split(src: str, dst: str, tokenizer, options: dict, task_name: str, architecture: str,
                   split: str) -> None:
    """The split as model inputs: ``input_ids`` (no padding: batches are padded dynamically),
    ``labels`` (a class per row, or token labels with -100 where no loss is taken) and, for
    generation, ``prompt_ids`` and the ``reference`` text. See ``rankbits.problems``."""
    from .problems import tokenize  # here, not at the top: torch stays out of reading the data

    df = pd.read_parquet(src)
    out = tokenize(df, tokenizer, options, TASKS.get(task_name), architecture, split)
    with atomic_file(dst) as tmp:
        out.to_parquet(tmp, index=False)
