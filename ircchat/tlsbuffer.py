"""TLS over memory buffers, for both programs: ciphertext in and out, plaintext in between.

``TlsBuffer`` is an ``ssl.SSLObject`` over two ``MemoryBIO``\\ s and no socket: its owner
moves the bytes. Keeping TLS off the socket lets one thread decrypt what it read while
another encrypts what it will write, and lets the server's output pump send ciphertext
like any other bytes. An SSLObject is not thread-safe and the records it makes must reach
the wire in the order made, so each owner guards its buffer with a lock of its own: the
server's ``Outbox`` (ircchat.network), the client's ``TlsStream`` (curses_client.tls).
"""

from __future__ import annotations

import ssl

RECV_BYTES = 16384


class TlsBuffer:
    """One TLS session, client or server side; every method returns the ciphertext to send."""

    def __init__(self, context: ssl.SSLContext, server_side: bool = False, server_hostname: str | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self.established = False

    def handshake(self, data: bytes = b"") -> tuple[bool, bytes]:
        """Feed ciphertext, advance the handshake: (finished, bytes to send).

        Raises ssl.SSLError (SSLCertVerificationError for a certificate that does not
        verify); ``pending_output`` then holds the alert that tells the peer why.
        """
        if data:
            self._incoming.write(data)
        try:
            self._tls.do_handshake()
            self.established = True
        except ssl.SSLWantReadError:
            pass  # the peer's next flight is still on its way
        return self.established, self._outgoing.read()

    def receive(self, data: bytes) -> tuple[bytes | None, bytes]:
        """Feed ciphertext; return (plaintext, or None once the peer closed TLS; bytes to send).

        A handshake not finished yet is carried on first (the server's side finishes it here).
        """
        self._incoming.write(data)
        chunks = []
        try:
            if not self.established:
                self._tls.do_handshake()
                self.established = True
            while chunk := self._tls.read(RECV_BYTES):
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass  # the rest of a record (or of the handshake) is still on its way
        except ssl.SSLZeroReturnError:
            return None, self._outgoing.read()
        return b"".join(chunks), self._outgoing.read()

    def wrap(self, plaintext: bytes) -> bytes:
        """Encrypt; raises ssl.SSLError before the handshake is done."""
        if not self.established:
            raise ssl.SSLError("TLS handshake not finished")
        self._tls.write(plaintext)
        return self._outgoing.read()

    def close(self) -> bytes:
        """Our close_notify, to send; the peer's may come later, or never. Raises ssl.SSLError."""
        try:
            self._tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is made; waiting for the peer's is not needed to stop writing
        return self._outgoing.read()

    def pending_output(self) -> bytes:
        """What is left to send after a method raised (an alert, say)."""
        return self._outgoing.read()
