"""TLS over memory buffers (ircchat.tlsbuffer), shared by server and client: two sessions
wired together in memory; and the client's TlsStream over a socket pair."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import trustme

from curses_client.tls import TlsStream
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


def test_a_tls_server_that_stops_reading_blocks_the_writer_but_never_the_reader(contexts):
    """The client's writer thread stuck in sendall (the server reads nothing) must not hold
    the session: lines from the server are still decrypted and shown."""
    server_context, client_context = contexts
    client_sock, server_sock = socket.socketpair()
    client_sock.settimeout(10)
    server_side: list[ssl.SSLSocket] = []
    accepting = threading.Thread(target=lambda: server_side.append(
        server_context.wrap_socket(server_sock, server_side=True)))
    accepting.start()
    stream = TlsStream(client_sock, client_context, "chat.test")
    stream.handshake()
    accepting.join(10)
    server = server_side[0]
    failed: list[OSError] = []

    def write() -> None:
        try:
            stream.send(b"x" * 20_000_000)  # far more than the socket buffers hold: blocks
        except OSError as error:  # when the test closes the server side
            failed.append(error)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while not stream._send_lock.locked():  # the writer is in sendall
            assert time.monotonic() < deadline, "the writer never started sending"
            time.sleep(0.01)  # polling a flag with a deadline
        server.sendall(b":srv NOTICE * :still here\r\n")
        seen: list[bytes | None] = []
        reader = threading.Thread(target=lambda: seen.append(stream.receive(client_sock.recv(65536))), daemon=True)
        reader.start()
        reader.join(5)
        assert seen == [b":srv NOTICE * :still here\r\n"], "the reader waited for the stuck writer"
        assert writer.is_alive()  # still blocked: the server reads nothing
    finally:
        server.close()
        writer.join(10)
        client_sock.close()
