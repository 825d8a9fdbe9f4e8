"""Packaging (issue 12): ``pip install .`` into a fresh venv puts ``chat-server`` and ``chat``
on PATH, and both run from any directory; the chat then works between them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from client_harness import REPO, IrcPeer, Terminal

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout and a pty"),
]

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "chat_server.py", "ircchat", "curses_client")
NO_BUILD_TOOLS = re.compile(r"No matching distribution found for (setuptools|wheel)", re.IGNORECASE)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the project installed from a copy of its sources: (bin directory)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", str(source)],
                         capture_output=True, text=True, timeout=120, check=False)
    if pip.returncode and NO_BUILD_TOOLS.search(pip.stdout + pip.stderr):
        pytest.skip("no package index with setuptools to build from (offline)")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv / "bin"


def test_the_commands_are_installed_and_run_from_another_directory(installed, tmp_path):
    for command, usage in (("chat-server", "--server-name"), ("chat", "--username")):
        out = subprocess.run([str(installed / command), "--help"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0 and usage in out.stdout, out.stderr
    assert out.stdout.startswith("usage: chat "), out.stdout  # the name typed, not "python -m curses_client"


@pytest.mark.timeout(60)
def test_the_installed_server_and_client_chat(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # not the clone's
    server = subprocess.Popen([str(installed / "chat-server"), "--port", "0"], cwd=elsewhere, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    terminal = None
    try:
        match = re.search(r"listening on ([\d.]+):(\d+)", server.stdout.readline())
        assert match, server.stderr.read() if server.poll() is not None else "no address line"
        port = int(match.group(2))
        terminal = Terminal(["--port", str(port), "--username", "alice"], command=[str(installed / "chat")],
                            cwd=elsewhere, env={"PYTHONPATH": ""})
        terminal.wait_for("You joined #chat")
        bob = IrcPeer(port, "bob")
        bob.send("JOIN", "#chat")
        terminal.wait_for("bob joined")
        bob.send("PRIVMSG", "#chat", "hello from an installed server")
        terminal.wait_for("hello from an installed server")
        bob.close()
        terminal.type("/quit\r")
        assert terminal.wait_exit() == 0
    finally:
        if terminal is not None:
            terminal.close()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=10)
