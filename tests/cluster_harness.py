"""Start a real ``redis-server`` and chat server nodes as processes: for the cluster tests and
for benchmarks that want N nodes (``RedisProcess.start()``, then ``Node.start(redis.url)``).

Every process is started here and stopped here, by its PID. Nodes report their port on their
first line of output; their log goes to a file, read by the tests to see what a node said.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = Path(__file__).resolve().parent.parent / "chat_server.py"
REDIS_SERVER = shutil.which("redis-server")
START_WAIT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisProcess:
    """A redis-server on a loopback port, keeping nothing on disk."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, port: int | None = None) -> RedisProcess:
        server = cls(port or free_port())
        server.run()
        return server

    def run(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_WAIT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a process that is starting, with a deadline

    def pause(self) -> None:
        """Unreachable (but keeping its data) until ``resume``: SIGSTOP."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()  # a stopped process would not act on SIGTERM
            _stop(self.proc)


class Node:
    """One ``chat_server.py --redis`` process on a free port."""

    def __init__(self, proc: subprocess.Popen, address: tuple[str, int], log_path: Path) -> None:
        self.proc = proc
        self.address = address
        self.log_path = log_path

    @classmethod
    def start(cls, redis_url: str, *args: str, log_dir: str | None = None) -> Node:
        with tempfile.NamedTemporaryFile("w", prefix="node-", suffix=".log", dir=log_dir, delete=False) as log_file:
            proc = subprocess.Popen(
                [sys.executable, str(SERVER), "--port", "0", "--redis", redis_url, "--no-flood-control", *args],
                stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=log_dir or tempfile.gettempdir(),
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        first = proc.stdout.readline()  # blocks until the node says where it listens
        match = re.search(r"listening on ([\d.]+):(\d+)", first)
        if not match:
            proc.wait(START_WAIT)
            raise RuntimeError(f"node did not start: {first!r} {Path(log_file.name).read_text()}")
        return cls(proc, (match.group(1), int(match.group(2))), Path(log_file.name))

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """``kill -9``: no goodbye to anyone."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
