"""Glue for the thin scripts under workflow/scripts/."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback

# set by the Snakefile's onstart handler; jobs inherit it (locally and through sbatch)
KEEP_GOING = "RANKBITS_KEEP_GOING"


def keep_going() -> bool:
    """Whether Snakemake runs with --keep-going (a diverged run is then recorded, not fatal)."""
    return os.environ.get(KEEP_GOING) == "1"


def logged(smk):
    """``logged_to`` the job's log file (Snakemake's ``log:``), if it has one."""
    return logged_to(smk.log[0] if smk.log else None)


@contextlib.contextmanager
def logged_to(path: str | None):
    """Send the job's output to its log file; on failure keep the traceback there and end the
    job with the error's one-line message (which Snakemake shows)."""
    if path is None:
        yield
        return
    with open(path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        logging.getLogger().addHandler(handler)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                yield
        except Exception as exc:  # noqa: BLE001 — reported, then the job fails
            traceback.print_exc(file=fh)
            msg = f"{type(exc).__name__}: {exc}"
        else:
            msg = None
        finally:
            logging.getLogger().removeHandler(handler)
    if msg is not None:
        sys.exit(f"rankbits job failed ({path}): {msg}")
