"""The client's one door to the shared IRC protocol core (``ircchat.protocol``).

Every client module takes parsing, formatting, framing, case folding and pacing from here,
so the client depends on the core's declared surface (its ``__all__``) in one place, and
rules that differ from server to server can replace these defaults here, not in every module.
"""

from __future__ import annotations

from ircchat.protocol import (
    CHANNEL_RE,
    LINE_TOO_LONG,
    MAX_LINE_BYTES,
    NICK_RE,
    LineFramer,
    Message,
    TokenBucket,
    decode_line,
    encode_line,
    format_line,
    irc_fold,
    parse_message,
)

__all__ = [
    "CHANNEL_RE",
    "LINE_TOO_LONG",
    "MAX_LINE_BYTES",
    "NICK_RE",
    "LineFramer",
    "Message",
    "TokenBucket",
    "decode_line",
    "encode_line",
    "format_line",
    "irc_fold",
    "parse_message",
]
