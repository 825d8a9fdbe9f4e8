"""``python chat_server.py`` as users run it: the start line, flags, and clean shutdown."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from irc_peer import Peer

SERVER = Path(__file__).resolve().parent.parent / "chat_server.py"


def start(*args: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = proc.stdout.readline()  # blocks until the server says where it listens
    match = re.search(r"listening on ([\d.]+):(\d+)", first)
    assert match, f"unexpected first line {first!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
    return proc, (match.group(1), int(match.group(2)))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(signum):
    proc, address = start("--server-name", "irc.example")
    try:
        peer = Peer(address)
        peer.register("ann")
        assert peer.seen[0].startswith(":irc.example 001 ann ")
        proc.send_signal(signum)
        closing = peer.expect_closed(timeout=5)
        assert any(line.startswith("ERROR :Closing Link") and "Server shutting down" in line for line in closing)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read()
    assert re.search(r"ann!~tester@\S+\.cloak registered from 127\.0\.0\.1", log) and "shutting down" in log
    assert "Traceback" not in log
    with socket.create_server(address):  # the port was freed
        pass


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, str(SERVER), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    for flag in ("--host", "--port", "--server-name", "--room", "--ping-timeout", "--sendq"):
        assert flag in out.stdout


def test_port_in_use_is_one_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, str(SERVER), "--port", str(port)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "cannot start on 127.0.0.1" in out.stderr and "Traceback" not in out.stderr


def test_bad_room_is_refused():
    out = subprocess.run([sys.executable, str(SERVER), "--room", "chat"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "--room" in out.stderr


def test_redis_without_the_redis_package_says_what_to_install():
    hide = ("import os, runpy, sys; sys.modules['redis'] = None; sys.argv = sys.argv[1:]; "
            "sys.path.insert(0, os.path.dirname(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", hide, str(SERVER), "--port", "0", "--redis", "redis://127.0.0.1:1/0"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert out.stderr.strip() == "chat_server.py: --redis needs the redis package: pip install redis"


def test_unreachable_redis_is_one_clear_error():
    pytest.importorskip("redis", reason="the redis package is not installed (pip install redis)")
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    out = subprocess.run([sys.executable, str(SERVER), "--port", "0", "--redis", f"redis://127.0.0.1:{port}/0",
                          "--redis-timeout", "1"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in out.stderr and "Traceback" not in out.stderr
