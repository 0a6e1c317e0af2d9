"""The job server's wire format, without a server: framing that keeps every message."""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading

import pytest

from rankbits.jobserver import Channel, _send, ended

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the job server is Linux-only")


def test_two_messages_in_one_read_are_both_kept():
    a, b = socket.socketpair()
    _send(a, {"pid": 1})
    _send(a, {"code": 0, "message": None})
    ch = Channel(b)
    assert ch.recv() == {"pid": 1}
    assert ch.recv() == {"code": 0, "message": None}  # was EOFError: the second was dropped


def test_a_message_larger_than_one_read_arrives_whole_with_its_descriptors():
    a, b = socket.socketpair()
    big = {"env": {f"K{i}": "x" * 100 for i in range(5000)}}  # ~0.5 MB, many reads
    r, w = os.pipe()
    t = threading.Thread(target=_send, args=(a, big, [r]))
    t.start()
    ch = Channel(b, with_fds=True)
    assert ch.recv() == big
    t.join()
    assert len(ch.fds) == 1
    os.write(w, b"!")
    assert os.read(ch.fds[0], 1) == b"!"  # the descriptor passed is the pipe's read end


def test_a_closed_connection_and_a_garbage_length_are_errors_not_hangs():
    a, b = socket.socketpair()
    a.sendall(b"\x00\x00")
    a.close()
    with pytest.raises(EOFError):
        Channel(b).recv()
    a, b = socket.socketpair()
    a.sendall(b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match="not from a rankbits"):
        Channel(b).recv()


def test_how_a_process_ended_is_named():
    assert ended(3 << 8) == "exit code 3"
    assert ended(signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
