"""End to end, hardening: the real client over TLS and with a server password, in a pty.

The server is the real one (TLS listener from a throwaway ``trustme`` CA, or a password);
the client is ``python -m curses_client`` in a pseudo-terminal read through pyte. Every wait
has a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import sys

import pytest
import trustme

from chat_server import tls_context
from ircchat.network import ChatServer
from ircchat.state import ServerConfig
from client_harness import IrcPeer, free_port, peers, run_client, terminals  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]

PASSWORD = "open sesame"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A throwaway CA, a certificate for 127.0.0.1 signed by it (cert.pem, key.pem) and one
    for another name (other-cert.pem, other-key.pem), as PEM files."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("client-tls")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    for stem, names in (("", ("127.0.0.1", "localhost")), ("other-", ("other.example",))):
        cert = ca.issue_cert(*names)
        cert.private_key_pem.write_to_path(folder / f"{stem}key.pem")
        cert.cert_chain_pems[0].write_to_path(folder / f"{stem}cert.pem")
    return folder


def start_tls_server(certificate, port=0, tls_port=0, stem=""):
    context = tls_context(str(certificate / f"{stem}cert.pem"), str(certificate / f"{stem}key.pem"))
    server = ChatServer(ServerConfig(flood_rate=0), "127.0.0.1", port, context, tls_port)
    server.start()
    return server


@pytest.fixture
def tls_server(certificate):
    server = start_tls_server(certificate)
    yield server
    server.shutdown()




class PasswordPeer(IrcPeer):
    """An IrcPeer that gives the password first (IrcPeer registers from its constructor)."""

    def send(self, command: str, *params: str) -> None:
        if command == "NICK" and not getattr(self, "_password_given", False):
            self._password_given = True
            super().send("PASS", PASSWORD)
        super().send(command, *params)


def privmsg(peer, text):
    return peer.expect(lambda m: m.command == "PRIVMSG" and m.params[-1] == text, f"PRIVMSG {text!r}")


def test_tls_with_the_ca_chats_and_reconnects_over_tls(certificate, terminals, peers):
    plain_port, tls_port = free_port(), free_port()
    server = start_tls_server(certificate, plain_port, tls_port)
    try:
        terminal = terminals(["--tls", "--tls-ca", str(certificate / "ca.pem"), "--port", str(tls_port),
                              "--username", "alice", "--retry-delay", "0.05"], rows=60)
        terminal.wait_for("You joined #chat")
        terminal.type("\x1b1")  # the first connection is told in the server window
        terminal.wait_for(f"Connected to 127.0.0.1:{tls_port} over TLS.")
        terminal.type("\x1b2")
        terminal.wait_screen(lambda: "| TLS | alice | 2:#chat |" in terminal.text(), "TLS in the status line")
        bob = peers(plain_port, "bob")
        terminal.wait_for("bob joined #chat")
        bob.send("PRIVMSG", "#chat", "plain to tls é")
        terminal.wait_for("<bob> plain to tls é")
        terminal.type("tls to plain\r")
        privmsg(bob, "tls to plain")
        server.shutdown()
        terminal.wait_for("Lost the connection")
        server = start_tls_server(certificate, plain_port, tls_port)
        terminal.wait_screen(lambda: terminal.text().count("You joined #chat") == 2, "the client to rejoin over TLS")
        assert f"Connected to 127.0.0.1:{tls_port} over TLS." in terminal.text() and "| TLS | alice" in terminal.text()
        bob = peers(plain_port, "bob")
        terminal.wait_for("bob joined")
        terminal.type("back, still encrypted\r")
        privmsg(bob, "back, still encrypted")
        terminal.type("/exit\r")
        assert terminal.wait_exit() == 0
    finally:
        server.shutdown()


def test_a_reconnection_to_a_certificate_for_another_name_is_refused_not_downgraded(certificate, terminals):
    plain_port, tls_port = free_port(), free_port()
    server = start_tls_server(certificate, plain_port, tls_port)
    try:
        terminal = terminals(["--tls", "--tls-ca", str(certificate / "ca.pem"), "--port", str(tls_port),
                              "--username", "alice", "--retry-delay", "0.05"], cols=200)
        terminal.wait_for("You joined #chat")
        server.shutdown()
        server = start_tls_server(certificate, plain_port, tls_port, stem="other-")  # same CA, wrong name
        terminal.wait_for(f"Refusing 127.0.0.1:{tls_port}: its TLS certificate could not be verified (IP address")
        terminal.wait_for("still trying, over TLS only")
        terminal.wait_for("disconnected, retry")
        assert terminal.text().count("You joined #chat") == 1
        with server.hub.lock:
            assert not server.hub.nicks  # no connection got as far as NICK: no plain-text fallback
        server.shutdown()
        server = start_tls_server(certificate, plain_port, tls_port)
        terminal.wait_screen(lambda: terminal.text().count("You joined #chat") == 2, "the client to rejoin")
    finally:
        server.shutdown()


def test_an_unverifiable_certificate_is_refused_in_one_sentence(tls_server):
    port = tls_server.tls_address[1]
    result = run_client("--tls", "--port", str(port), "--username", "alice")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Refusing the chat server at 127.0.0.1:{port}: its TLS certificate could not be verified "
        "(unable to get local issuer certificate); use --tls-ca FILE to trust the authority that signed it, "
        "or --tls-insecure to skip the check."
    )
    assert result.stdout == ""


def test_tls_to_a_plain_port_fails_in_one_sentence(tls_server):
    port = tls_server.address[1]
    result = run_client("--tls", "--port", str(port), "--username", "alice")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Cannot connect to the chat server at 127.0.0.1:{port}: the TLS handshake failed (")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_tls_insecure_connects_with_a_warning(tls_server, terminals, peers):
    port = tls_server.tls_address[1]
    terminal = terminals(["--tls", "--tls-insecure", "--port", str(port), "--username", "alice"])
    terminal.wait_for("You joined #chat")
    terminal.type("\x1b1")  # the first connection is told in the server window
    terminal.wait_for("WITHOUT checking its certificate")
    terminal.type("\x1b2")
    terminal.wait_screen(lambda: "| TLS UNVERIFIED | alice |" in terminal.text(), "the warning in the status line")
    bob = peers(tls_server.address[1], "bob")
    terminal.wait_for("bob joined")
    terminal.type("hello\r")
    privmsg(bob, "hello")


def test_password_from_the_environment_registers(start_server, terminals, peers):
    server = start_server(password=PASSWORD, flood_rate=0)
    port = server.address[1]
    terminal = terminals(["--port", str(port), "--username", "alice"], env={"CHAT_PASSWORD": PASSWORD})
    terminal.wait_for("You joined #chat")
    assert PASSWORD not in terminal.text()


@pytest.mark.parametrize("given", [["--password", "wrong"], []], ids=["wrong", "missing"])
def test_refused_password_is_asked_for_masked_and_then_registers(given, start_server, terminals, peers):
    server = start_server(password=PASSWORD, flood_rate=0)
    port = server.address[1]
    terminal = terminals(["--port", str(port), "--username", "alice", *given])
    told = "refused the password (Password incorrect)" if given else "needs a password (Password required"
    terminal.wait_for(f"The server {told}")
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("Password: "), "the password prompt")
    assert "password needed" in terminal.text()
    terminal.type(PASSWORD)
    terminal.wait_screen(lambda: terminal.lines()[-1].rstrip() == "Password: " + "*" * len(PASSWORD),
                         "the password masked")
    assert PASSWORD not in terminal.text() and PASSWORD.encode() not in terminal.raw
    terminal.type("\r")
    terminal.wait_for("You joined #chat")
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("> "), "the chat prompt")
    bob = peers(port, "bob", PasswordPeer)
    terminal.wait_for("bob joined")
    terminal.type("in at last\r")
    privmsg(bob, "in at last")
    assert PASSWORD not in terminal.text()



def test_a_certificate_for_another_name_is_refused_with_advice_that_fits(certificate):
    server = start_tls_server(certificate, stem="other-")
    try:
        port = server.tls_address[1]
        result = run_client("--tls", "--tls-ca", str(certificate / "ca.pem"), "--port", str(port),
                            "--username", "alice")
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Refusing the chat server at 127.0.0.1:{port}: its TLS certificate could not be verified "
        "(IP address mismatch, certificate is not valid for '127.0.0.1'); connect with --host set to a name "
        "the certificate is for, or use --tls-insecure to skip the check."
    )
