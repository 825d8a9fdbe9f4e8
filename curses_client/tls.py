"""TLS for the client: the context the flags ask for, and TLS over memory buffers.

``client_context`` verifies the server's certificate against the system store, or only
against ``--tls-ca FILE``, with hostname checking on; ``--tls-insecure`` turns both off and
the UI says so. ``TlsStream`` puts the shared ``ircchat.tlsbuffer.TlsBuffer`` (TLS over
memory buffers, as the server uses it) on a socket: the network thread reads ciphertext and
decrypts, the writer thread encrypts and writes, and one lock keeps the TLS session
single-threaded and the records it makes in order on the wire. ``handshake`` runs over a
blocking socket, so a certificate that does not verify fails in ``open_connection``, before
the screen starts.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading

from ircchat.tlsbuffer import RECV_BYTES, TlsBuffer

log = logging.getLogger(__name__)

# OpenSSL's verify codes for a certificate that is valid, but for another name or address
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_IP_ADDRESS_MISMATCH = 64


class CaFileError(Exception):
    """``--tls-ca`` names a file that cannot be read as certificates; the message says why."""


def client_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """The stdlib's modern client defaults; raises CaFileError for a CA file it cannot use."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as error:
        reason = (error.reason or "not a PEM certificate file").replace("_", " ").lower()
        raise CaFileError(f"Cannot use {ca_file} as the certificate authority file: {reason}.") from error
    except OSError as error:
        raise CaFileError(f"Cannot use {ca_file} as the certificate authority file: "
                          f"{error.strerror or error}.") from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_tls_error(error: ssl.SSLError) -> str:
    """A reader's phrase for a TLS failure, without OpenSSL's file and line.

    >>> describe_tls_error(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"))
    'the TLS handshake failed (wrong version number)'
    """
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = str(error.verify_message or error.reason or "no reason given").rstrip(".")
        return f"its TLS certificate could not be verified ({detail})"
    code = getattr(error, "reason", None)  # OpenSSL's, e.g. WRONG_VERSION_NUMBER
    if code:
        return f"the TLS handshake failed ({code.replace('_', ' ').lower()})"
    text = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], str) else "no reason given"
    return f"the TLS handshake failed ({text.split('] ', 1)[-1].split(' (_ssl.c', 1)[0]})"


def refusal_advice(error: ssl.SSLCertVerificationError) -> str:
    """What the user can do about a certificate that did not verify."""
    if error.verify_code in (X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH):
        return "connect with --host set to a name the certificate is for, or use --tls-insecure to skip the check"
    return "use --tls-ca FILE to trust the authority that signed it, or --tls-insecure to skip the check"


class TlsStream:
    """One TLS session over a connected socket; ``receive`` and ``send`` are thread-safe.

    ``_lock`` guards the session (in-memory work only); records leave through ``_outgoing``,
    in the order they were made, sent by one thread at a time under ``_send_lock``. So the
    reader never waits on a send: a server that stops reading blocks the writer thread in
    ``sendall``, never the lines coming in.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self.sock = sock
        self._buffer = TlsBuffer(context, server_hostname=server_hostname)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._outgoing: list[bytes] = []  # records made but not yet sent, under _lock

    def handshake(self) -> None:
        """Complete the handshake on the (blocking, time-limited) socket, or raise.

        Raises ssl.SSLCertVerificationError for a certificate that does not verify, other
        ssl.SSLError for a failed handshake, OSError for the socket's own failures.
        """
        data = b""
        while True:
            try:
                done, reply = self._buffer.handshake(data)
            except ssl.SSLError:
                self._send_quietly(self._buffer.pending_output())  # the alert tells the server why
                raise
            if reply:
                self.sock.sendall(reply)
            if done:
                return
            data = self.sock.recv(RECV_BYTES)
            if not data:
                raise ssl.SSLEOFError(8, "the server closed the connection")

    def receive(self, data: bytes) -> bytes | None:
        """Ciphertext in, plaintext out (maybe b""); None once the server closed TLS."""
        with self._lock:
            plaintext, reply = self._buffer.receive(data)
            if reply:  # e.g. an answer to a key update
                self._outgoing.append(reply)
        if reply:
            self._flush(wait=False)  # a writer stuck in sendall sends it after its own
        return plaintext

    def send(self, plaintext: bytes) -> None:
        with self._lock:
            self._outgoing.append(self._buffer.wrap(plaintext))
        self._flush(wait=True)

    def close_notify(self) -> None:
        """Say we are done writing (after QUIT); reading goes on until the server closes."""
        with self._lock:
            try:
                goodbye = self._buffer.close()
            except ssl.SSLError as error:
                log.debug("close_notify: %s", error)
                goodbye = self._buffer.pending_output()
            self._outgoing.append(goodbye)
        try:
            self._flush(wait=True)
        except OSError as error:  # the connection is failing anyway; the caller reports why
            log.debug("could not send the last TLS records: %s", error)

    def _flush(self, wait: bool) -> None:
        """Send the records made so far, in order. Without ``wait``, leave them to a thread
        already sending, which checks for more after letting go of ``_send_lock``."""
        while True:
            if not self._send_lock.acquire(blocking=wait):
                return
            try:
                while True:
                    with self._lock:
                        data, self._outgoing = b"".join(self._outgoing), []
                    if not data:
                        break
                    self.sock.sendall(data)
            finally:
                self._send_lock.release()
            with self._lock:
                if not self._outgoing:  # else: made after our last look, left to us by another
                    return

    def _send_quietly(self, data: bytes) -> None:
        try:
            if data:
                self.sock.sendall(data)
        except OSError as error:  # the connection is failing anyway; the caller reports why
            log.debug("could not send the last TLS records: %s", error)
