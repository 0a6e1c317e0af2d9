"""Jobs for tests/test_jobserver.py (imported by the job server's forks)."""
import json
import os
import signal
import sys
import time


def report(path):
    print("hello from the job")
    with open(path, "w") as fh:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                   "foo": os.environ.get("FOO"), "torch_loaded": "torch" in sys.modules}, fh)


def fail():
    raise ValueError("boom")


def wait_for_term(pid_file=None):
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if pid_file:
        with open(pid_file, "w") as fh:
            fh.write(str(os.getpid()))
    print("ready", flush=True)
    time.sleep(60)


def warn_through_transformers():
    from transformers.utils import logging

    logging.get_logger("transformers").warning("a warning for the log")
    print("a line for the log")


def touch(path):
    """A short job (like ``select_lr``): its result comes right behind the fork's pid."""
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))


def crash():
    """Dies without a result: a segmentation fault, as a broken extension would."""
    import ctypes

    print("about to crash", flush=True)
    ctypes.string_at(0)


def killed():
    os.kill(os.getpid(), signal.SIGKILL)


def burn(seconds):
    """Spend about ``seconds`` of CPU."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
