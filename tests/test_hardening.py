"""Hardening: TLS, the server password, flood control and the connection and usage limits."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme

from chat_server import tls_context
from ircchat.network import ChatServer
from ircchat.protocol import TokenBucket
from ircchat.state import Hub, ServerConfig
from irc_peer import Peer
from test_handlers import Client, numerics, registered


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, as PEM files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    return folder


@pytest.fixture
def tls_server(certificate):
    context = tls_context(str(certificate / "cert.pem"), str(certificate / "key.pem"))
    server = ChatServer(ServerConfig(), "127.0.0.1", 0, context, 0)
    server.start()
    yield server
    server.shutdown()


class TlsPeer(Peer):
    def __init__(self, address, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(address, timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self._buffer = b""
        self.closed = False
        self.seen = []


def test_tls_client_with_the_right_ca_chats_with_a_plain_client(tls_server, certificate):
    context = ssl.create_default_context(cafile=str(certificate / "ca.pem"))
    secure = TlsPeer(tls_server.tls_address, context)
    secure.register("secure")
    plain = Peer(tls_server.address)
    plain.register("plain")
    secure.send("PRIVMSG #chat :over TLS " + "é" * 100)
    assert plain.expect("PRIVMSG #chat :over TLS").params[-1].endswith("é" * 100)
    plain.send("PRIVMSG #chat :in the clear")
    secure.expect("PRIVMSG #chat :in the clear$")
    secure.send("QUIT :bye")
    assert any(line.startswith("ERROR ") for line in secure.expect_closed())


def test_unverifiable_certificate_is_refused_by_a_verifying_client(tls_server):
    context = ssl.create_default_context()  # the system store does not know our throwaway CA
    with pytest.raises(ssl.SSLCertVerificationError):
        TlsPeer(tls_server.tls_address, context)
    plain = Peer(tls_server.address)
    plain.register("still_up")


def test_plain_text_on_the_tls_port_is_dropped_and_the_server_carries_on(tls_server):
    confused = Peer(tls_server.tls_address)
    confused.send("NICK confused", "USER c 0 * :C")
    assert confused.expect_closed() == []
    Peer(tls_server.address).register("fine")


# -- password ------------------------------------------------------------------------------


def test_password_is_required_and_checked(start_server):
    server = start_server(password="s3cret")
    wrong = Peer(server.address)
    wrong.send("PASS :guess", "NICK wrong", "USER w 0 * :W")
    lines = wrong.expect_closed()
    assert any(" 464 * :Password incorrect" in line for line in lines)  # no nick was taken
    assert not any(" 001 " in line for line in lines)
    missing = Peer(server.address)
    missing.send("NICK missing", "USER m 0 * :M")
    assert any(" 464 " in line for line in missing.expect_closed())
    right = Peer(server.address)
    right.send("PASS s3cret")
    right.register("right")


# -- flood control -------------------------------------------------------------------------


def test_token_bucket_refills_over_time():
    bucket = TokenBucket(burst=3, rate=2.0, now=0.0)
    assert [bucket.delay(0.0) for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert bucket.delay(10.0) == 0.0  # idle long enough: a full burst again


def test_flooder_is_slowed_not_dropped_and_others_are_not_held_up(start_server):
    server = start_server(flood_burst=5, flood_rate=20)
    flooder, bob, cat = (Peer(server.address) for _ in range(3))
    for peer, nick in ((flooder, "flooder"), (bob, "bob"), (cat, "cat")):
        peer.register(nick)
    flooder.send(*(f"PRIVMSG #chat :flood {i}" for i in range(40)))  # about 2 s at 20 a second
    cat.expect("PRIVMSG #chat :flood 0$")
    bob.send("PRIVMSG #chat :bob gets through")
    order = []
    while len(order) < 40:  # flood 1 to 39, and bob's line somewhere among them
        order.append(cat.expect("PRIVMSG #chat :").params[-1])
    assert [line for line in order if line.startswith("flood")] == [f"flood {i}" for i in range(1, 40)]
    assert order.index("bob gets through") < order.index("flood 39")


# -- limits --------------------------------------------------------------------------------


def test_server_full_is_refused_with_a_reason(start_server):
    server = start_server(max_clients=2)
    first, second = Peer(server.address), Peer(server.address)
    first.register("first")
    second.register("second")
    third = Peer(server.address)
    assert any("Server is full" in line for line in third.expect_closed())


def test_per_address_limit_exempts_loopback():
    server = ChatServer(ServerConfig(max_per_ip=2), "127.0.0.1", 0)
    try:
        server._per_host.update({"203.0.113.5": 2, "127.0.0.1": 50})
        assert server._refusal("203.0.113.5") == "Too many connections from your address"
        assert server._refusal("203.0.113.6") is None
        assert server._refusal("127.0.0.1") is None
    finally:
        server.listener.close()


def test_channel_limit_gives_405():
    hub = Hub(ServerConfig(max_channels=3))
    ann = registered(hub, "ann")  # already in #chat
    out = ann.do("JOIN #a,#b,#c")
    assert numerics([line for line in out if " 405 " in line]) == ["405"]
    assert len(ann.user.channels) == 3


def test_nick_changes_are_rate_limited():
    hub = Hub(ServerConfig(nick_changes_per_minute=2))
    ann = registered(hub, "ann")
    ann.do("NICK ann_1", "NICK ann_2")
    assert numerics(ann.do("NICK ann_3")) == ["438"]
    assert ann.user.nick == "ann_2"


def test_password_is_compared_without_leaking_through_registration():
    hub = Hub(ServerConfig(password="pw"))
    client = Client(hub)
    out = client.do("PASS :nope", "NICK ann", "USER a 0 * :A")
    assert numerics(out) == ["464"] and not client.user.registered
    assert client.user.quit_reason == "Bad password"


def test_command_line_tls_and_password_from_the_environment(certificate):
    import os
    import subprocess
    import sys

    from test_server_cli import SERVER

    env = dict(os.environ, CHAT_SERVER_PASSWORD="from-env")
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--tls-port", "0",
         "--tls-cert", str(certificate / "cert.pem"), "--tls-key", str(certificate / "key.pem")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stdout.readline()
        assert "TLS on port" in first
        tls_port = int(first.split("TLS on port ")[1].split(",")[0])
        context = ssl.create_default_context(cafile=str(certificate / "ca.pem"))
        peer = TlsPeer(("127.0.0.1", tls_port), context)
        peer.send("PASS from-env")
        peer.register("secure")
        proc.terminate()
        assert any("Server shutting down" in line for line in peer.expect_closed())
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "from-env" not in proc.stderr.read()
