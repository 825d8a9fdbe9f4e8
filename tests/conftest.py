"""Fixtures: a real ChatServer on a loopback port chosen by the kernel, and peers to talk to it."""

from __future__ import annotations

import dataclasses

import pytest

from ircchat.network import ChatServer
from ircchat.state import ServerConfig
from irc_peer import Peer


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Servers started as processes keep their history file in the test's own folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def start_server():
    """Start servers with config overrides; each is shut down when the test ends."""
    servers: list[ChatServer] = []

    def start(**overrides) -> ChatServer:
        server = ChatServer(dataclasses.replace(ServerConfig(), **overrides), "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def server(start_server) -> ChatServer:
    return start_server()


@pytest.fixture
def connect(server):
    """Open peers to the default server; ``connect("ann")`` also registers as ann."""
    peers: list[Peer] = []

    def open_peer(nick: str | None = None, target: ChatServer | None = None) -> Peer:
        peer = Peer((target or server).address)
        peers.append(peer)
        if nick:
            peer.register(nick)
        return peer

    yield open_peer
    for peer in peers:
        peer.close()
