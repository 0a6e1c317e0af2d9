"""Run a workflow job in a fork of a warm process, so a study pays the imports once.

Every train / evaluate job of a study starts a Python interpreter that imports torch,
transformers, peft and bitsandbytes before it does any work: about 4 s a job here
(``bench/job_overhead.py``), for jobs that compute for 10 to 60 s. With the job server, the first
job of a local ``snakemake`` run starts one server process that imports all that once; each job's
thin script (which imports only this module) connects to it over a Unix socket and hands over
its standard input, output and error, its working directory and environment, and the job (a
``module:function`` and its arguments). The server forks; the fork runs the job exactly as the
script would have (``run_job``) and reports its exit status; signals sent to the script
(SIGTERM, SIGINT, SIGUSR1: checkpoint and stop) are passed to the fork.

Trust. On a shared machine (an HPC login node) another user can see or guess the server's
name, so neither side trusts what answers: the server serves only its own user (``SO_PEERCRED``);
the client, before it sends a byte, checks that the peer runs as its own user and is this
snakemake's server (its command line), and forwards signals only to a child of that server. The
wire is JSON (a length, then UTF-8 JSON; stdio descriptors beside it), never pickle. The lock
and log files live in a directory of the user's own (mode 0700, checked), not in /tmp itself.
A peer that fails a check is refused with one line, and the job runs in the script's process.

The server belongs to one ``snakemake`` process (``RANKBITS_JOBSERVER_OWNER``, set by the
Snakefile for the local executor only) and exits soon after it. Nothing else is shared between
jobs: each fork starts from the server's state just after its imports, which ran no torch
operation (so no thread pool exists to fork) and never touched CUDA (each fork reads its own
``CUDA_VISIBLE_DEVICES``). Where the server cannot be used (not Linux, no owner, under SLURM,
``job_server: false``) ``run`` runs the job in the script's own process, as before.
"""
from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import importlib
import os
import json
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from .workflow import CONSOLE_FD, logged_to, record_cpu

OWNER = "RANKBITS_JOBSERVER_OWNER"  # pid of the snakemake process the server serves
FORK = "RANKBITS_JOBSERVER_FORK"  # set in each fork (runtime.peak_memory says what its RSS counts)
# what the server imports before it forks: the libraries, rankbits' job modules and what every job
# imported for itself before (scikit-learn's metrics and scipy.stats for scores, pyarrow for
# parquet, the plots for rank maps): bench/fork_preload.py measures what a fork saves
PRELOAD = ("torch", "pandas", "transformers", "transformers.modeling_utils", "peft", "bitsandbytes",
           "sklearn.metrics", "scipy.stats", "pyarrow.parquet", "peft.tuners.lora", "peft.tuners.adalora",
           "rankbits.train", "rankbits.evaluate", "rankbits.prepare", "rankbits.plots")
# (SIGUSR1 does not exist on Windows, where the Snakefile still imports this module)
FORWARDED = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, n))
START_TIMEOUT = 300.0  # seconds a job waits for a starting server's imports


def run_job(target: str, args: tuple, kwargs: dict, log: str | None) -> None:
    """Run ``target`` (``module:function``) with the job's log as its output, as a script would."""
    module, name = target.split(":")
    with logged_to(log):
        getattr(importlib.import_module(module), name)(*args, **kwargs)


def usable(enabled: bool = True) -> bool:
    return (enabled and sys.platform == "linux" and bool(os.environ.get(OWNER))
            and "SLURM_JOB_ID" not in os.environ)


def run(target: str, *args, log: str | None = None, server: bool = True, **kwargs) -> None:
    """Run one job: through the owner's job server when ``usable``, else in this process (also
    when what answers for the server fails the client's checks: one line says why)."""
    if not usable(server):
        run_job(target, args, kwargs, log)
        return
    try:
        code, message = _client(target, args, kwargs, log)
    except UntrustedPeer as exc:
        print(f"rankbits: job server refused ({exc}); running the job in this process",
              file=sys.stderr, flush=True)
        run_job(target, args, kwargs, log)
        return
    record_cpu(log, "process")  # this stub's own: the interpreter, its imports, the wait
    if code:
        sys.exit(message or code)


def server_name() -> str:
    """One server per snakemake process, Python (a conda env has its own) and user."""
    key = hashlib.sha256(f"{os.environ[OWNER]}\0{sys.executable}\0{os.getuid()}".encode()).hexdigest()[:16]
    return f"rankbits-jobserver-{key}"


def address(name: str) -> str:
    """Linux's abstract socket namespace: no file to go stale, no path-length limit to hit; the
    server accepts only its own user (``SO_PEERCRED``)."""
    return "\0" + name


def state_dir() -> Path:
    """The user's own directory for the servers' lock and log files: ``<tmp>/rankbits-<uid>``,
    mode 0700, owned by this user and not a link (else an UntrustedPeer: another user made it)."""
    d = Path(tempfile.gettempdir()) / f"rankbits-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(d, 0o700)
    st = os.lstat(d)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise UntrustedPeer(f"{d} is not a private directory of this user (a link, another owner, "
                            f"or mode {stat.S_IMODE(st.st_mode):o})")
    return d


class UntrustedPeer(RuntimeError):
    """What answers on the server's address (or holds its files) is not this user's server."""


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket, from the kernel."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))
    return pid, uid


def verify_server(sock: socket.socket, name: str) -> int:
    """The peer's pid once it is known to be this user's job server ``name``; else UntrustedPeer."""
    pid, uid = peer_credentials(sock)
    if uid != os.getuid():
        raise UntrustedPeer(f"the process answering on {name} runs as uid {uid}, not {os.getuid()}")
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError as exc:
        raise UntrustedPeer(f"cannot read the command line of pid {pid} on {name} ({exc})") from None
    if cmdline[1:4] != [b"-m", b"rankbits.jobserver", name.encode()]:
        raise UntrustedPeer(f"pid {pid} on {name} is not a rankbits job server "
                            f"({b' '.join(cmdline).decode(errors='replace')[:80]!r})")
    return pid


def child_of(pid: int, parent: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat_line.rsplit(")", 1)[1].split()[1]) == parent


# --- wire format: a 4-byte length, then UTF-8 JSON ---------------------------------------------
MAX_MESSAGE = 64 << 20  # a request carries the job's environment; nothing honest is larger


def _send(sock: socket.socket, obj, fds: list[int] | None = None) -> None:
    """One message, all of it: ``send_fds`` (``sendmsg``) may send part of a large one, and the
    rest follows with ``sendall`` (the descriptors travel with the first byte)."""
    data = json.dumps(obj).encode()
    data = struct.pack("!I", len(data)) + data
    sent = socket.send_fds(sock, [data], fds) if fds else 0
    if sent < len(data):
        sock.sendall(data[sent:])


class Channel:
    """The reading end of one connection: a buffer, so that two messages arriving in one read
    (a short job's result right behind the fork's pid, on a busy machine) are both kept, and a
    message longer than one read is put together from several. Descriptors passed with any read
    are collected in ``fds``."""

    def __init__(self, sock: socket.socket, with_fds: bool = False):
        self.sock, self.with_fds = sock, with_fds
        self.buf = b""
        self.fds: list[int] = []

    def _fill(self) -> None:
        if self.with_fds:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
            self.fds += fds
        else:
            data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError
        self.buf += data

    def recv(self):
        while len(self.buf) < 4:
            self._fill()
        n = struct.unpack("!I", self.buf[:4])[0]
        if n > MAX_MESSAGE:
            raise ValueError(f"a message of {n} bytes is not from a rankbits job server or client")
        while len(self.buf) < 4 + n:
            self._fill()
        message, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return json.loads(message.decode())


def ended(status: int) -> str:
    """How a process ended, from ``os.waitpid``'s status: its exit code, or the signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


# --- client ------------------------------------------------------------------------------------

def _connect(name: str) -> socket.socket:
    """A connection to the running server, starting it first if there is none."""
    def attempt():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(address(name))
            return s
        except ConnectionRefusedError:
            s.close()
            return None

    import fcntl  # Linux (``usable``)

    s = attempt()
    if s is not None:
        return s
    files = state_dir() / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    with os.fdopen(os.open(f"{files}.lock", flags, 0o600), "w") as lock:  # one job starts it;
        # the others wait here
        fcntl.flock(lock, fcntl.LOCK_EX)
        s = attempt()
        if s is None:
            server_log = os.fdopen(os.open(f"{files}.log", flags | os.O_APPEND, 0o600), "a")
            proc = subprocess.Popen([sys.executable, "-m", "rankbits.jobserver", name],
                                    stdin=subprocess.DEVNULL, stdout=server_log, stderr=server_log,
                                    start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT
            while s is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"rankbits job server exited at start; see {files}.log")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rankbits job server did not start in {START_TIMEOUT:.0f} s; "
                                       f"see {files}.log")
                time.sleep(0.05)
                s = attempt()
    return s


def _client(target, args, kwargs, log) -> tuple[int, str | None]:
    request = {"target": target, "args": args, "kwargs": kwargs, "log": log, "cwd": os.getcwd(),
               "env": dict(os.environ)}
    name = server_name()
    for attempt in range(3):  # a server that was just closing drops the connection unanswered
        sock = _connect(name)
        try:
            server = verify_server(sock, name)  # before a byte of the request goes out
        except UntrustedPeer:
            sock.close()
            raise
        try:
            _send(sock, request, [0, 1, 2])
            channel = Channel(sock)
            pid = int(channel.recv()["pid"])
            if not child_of(pid, server):
                sock.close()
                raise UntrustedPeer(f"the server named pid {pid}, which is not its own child")
            break
        except (EOFError, ConnectionError):
            sock.close()
            if attempt == 2:
                raise
            time.sleep(0.5)
    with sock:
        for sig in FORWARDED:
            signal.signal(sig, lambda signum, frame: os.kill(pid, signum))
        try:
            result = channel.recv()
        except EOFError:
            return 1, f"rankbits job (pid {pid} in the job server) ended without a result"
        if "ended" in result:  # the server saw its fork end before it reported
            where = f"; its log: {log}" if log else ""
            return 1, (f"rankbits job (pid {pid} in the job server) ended without a result: "
                       f"{result['ended']}{where}")
    return result["code"], result["message"]


# --- server ------------------------------------------------------------------------------------

def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the fork: become the job (its stdio, cwd, environment), run it, report, exit."""
    for sig in (signal.SIGCHLD, *FORWARDED):
        signal.signal(sig, signal.SIG_DFL)
    for target_fd, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target_fd)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[FORK] = "1"
    log = request["log"]
    # a crash (segfault, abort) leaves the Python stack of every thread in the job's log
    if log:  # at the descriptor level: handlers the server's imports made (transformers' logger)
        # hold the server's sys.stderr, which a Python-level redirect would miss
        os.environ[CONSOLE_FD] = str(os.dup(2))  # the client's terminal, for start/result lines
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    code, message = 0, None
    try:
        _send(conn, {"pid": os.getpid()})
        # the client sends nothing more: its end of the socket closes only when it dies (killed
        # by snakemake, say); the job then stops as if it had been sent SIGTERM, not orphaned
        threading.Thread(target=lambda: conn.recv(1) or os.kill(os.getpid(), signal.SIGTERM),
                         daemon=True).start()
        run_job(request["target"], request["args"], request["kwargs"], None)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        message = None if isinstance(exc.code, int) or exc.code is None else str(exc.code)
    except BaseException as exc:  # noqa: BLE001 — reported to the client, which fails the job
        traceback.print_exc()
        code, message = 1, f"{type(exc).__name__}: {exc}"
        if log:
            message = f"rankbits job failed ({log}): {message}"  # as ``logged_to`` words it
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        record_cpu(log, "fork")  # the job's work, in its fork of the warm server
        with contextlib.suppress(Exception):
            _send(conn, {"code": code, "message": message})
        os._exit(code)


def reap(children: dict[int, socket.socket]) -> None:
    """Collect the forks that have ended; tell each one's client how it ended. A client that
    already has its job's result has stopped reading, and this message is not read."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)
                _send(conn, {"ended": ended(status)})
            conn.close()


def preload() -> None:
    """``PRELOAD``, and every registry's modules (methods, models, tasks, bits: each job looked
    its names up, importing them, in its own fork). No torch operation runs (no thread pool to fork)."""
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    from .bits import BITS  # here, not at the top: a job's thin script imports this module alone
    from .methods import METHODS
    from .models import MODELS
    from .tasks import TASKS

    for registry in (BITS, METHODS, MODELS, TASKS):
        registry.names()


def serve(name: str, idle_seconds: float = 3600.0) -> None:
    """Import the heavy modules once, then fork a child per job until the owner is gone."""
    owner = int(os.environ[OWNER])
    preload()
    # forks are reaped here (``reap``), so a client whose job died without a result learns how
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    children: dict[int, socket.socket] = {}  # fork pid -> the server's end of its connection
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address(name))  # clients are refused until listen(): they wait and retry
    listener.listen(64)
    listener.settimeout(0.5)
    last = time.monotonic()
    print(f"rankbits job server {os.getpid()} for snakemake {owner}: {name}", flush=True)
    try:
        while time.monotonic() - last < idle_seconds:
            reap(children)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    break  # its snakemake has ended
                continue
            last = time.monotonic()
            conn.settimeout(None)
            if peer_credentials(conn)[1] != os.getuid():
                conn.close()
                continue
            channel = Channel(conn, with_fds=True)
            try:
                request = channel.recv()
            except (EOFError, OSError, ValueError):  # ValueError: not JSON, or absurdly long
                for fd in channel.fds:
                    os.close(fd)
                conn.close()
                continue
            fds = channel.fds
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in children.values():
                    other.close()
                _child(conn, request, fds)
            for fd in fds:
                os.close(fd)
            children[pid] = conn  # kept open until the fork is reaped
    finally:
        listener.close()  # connections still queued are dropped, and their jobs try again
        files = state_dir() / name
        for leftover in (f"{files}.lock", f"{files}.log"):  # its snakemake is gone: no one waits
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


if __name__ == "__main__":
    serve(sys.argv[1])
