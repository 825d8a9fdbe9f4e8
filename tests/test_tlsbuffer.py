"""TLS over memory buffers (ircchat.tlsbuffer), shared by server and client: two sessions
wired together in memory, no sockets."""

from __future__ import annotations

import ssl

import pytest
import trustme

from ircchat.tlsbuffer import TlsBuffer


@pytest.fixture(scope="module")
def contexts():
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("chat.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def handshake(client: TlsBuffer, server: TlsBuffer) -> None:
    done, flight = client.handshake()
    for _ in range(10):  # a handshake is a few flights
        plaintext, reply = server.receive(flight)
        assert plaintext == b""
        done, flight = client.handshake(reply)
        if done and server.established:
            return
    raise AssertionError("no handshake after 10 flights")


def test_a_client_and_a_server_session_talk_in_memory(contexts):
    server_context, client_context = contexts
    client = TlsBuffer(client_context, server_hostname="chat.test")
    server = TlsBuffer(server_context, server_side=True)
    with pytest.raises(ssl.SSLError):
        client.wrap(b"too early")
    handshake(client, server)
    plaintext, _ = server.receive(client.wrap(b"NICK alice\r\n"))
    assert plaintext == b"NICK alice\r\n"
    plaintext, _ = client.receive(server.wrap(b":srv 001 alice :Welcome\r\n"))
    assert plaintext == b":srv 001 alice :Welcome\r\n"
    record = client.wrap(b"PRIVMSG #a :split\r\n")
    assert server.receive(record[:5]) == (b"", b"")  # half a record: nothing yet
    assert server.receive(record[5:])[0] == b"PRIVMSG #a :split\r\n"
    goodbye = client.close()  # close_notify
    assert goodbye and server.receive(goodbye)[0] == b""  # no data after it (CPython reads it as b"")


def test_a_certificate_for_another_name_fails_the_handshake_with_an_alert(contexts):
    server_context, client_context = contexts
    client = TlsBuffer(client_context, server_hostname="other.test")
    server = TlsBuffer(server_context, server_side=True)
    _, flight = client.handshake()
    _, reply = server.receive(flight)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.handshake(reply)
    assert client.pending_output()  # the alert that tells the server why
