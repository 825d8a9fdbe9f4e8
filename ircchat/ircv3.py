"""IRCv3, with no I/O: the capabilities we offer, message tags, and each line in the form a client
asked for (no tags, ``time`` only, or every tag).

A room line is made once in each form its members need (``Stamped``) and every member is sent
the one its capabilities call for (``Variant``), so fan-out still hands the same bytes to many.
"""

from __future__ import annotations

import enum
import itertools
import secrets
import time
from collections.abc import Iterable

from ircchat.history import format_timestamp

CAP_LS = (  # what CAP LS offers, in the order it lists them
    "away-notify", "batch", "cap-notify", "draft/chathistory", "echo-message", "extended-join",
    "labeled-response", "message-tags", "multi-prefix", "server-time",
)
CAPS_WITHOUT_HISTORY = tuple(cap for cap in CAP_LS if cap != "draft/chathistory")
_TAG_ESCAPES = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


class Variant(enum.IntEnum):
    """Which tags a client gets on a message: message-tags implies every tag we send."""

    PLAIN = 0
    TIME = 1  # server-time only
    TAGGED = 2  # message-tags: time and msgid

    @classmethod
    def for_caps(cls, caps: Iterable[str]) -> Variant:
        caps = set(caps)
        if "message-tags" in caps:
            return cls.TAGGED
        return cls.TIME if "server-time" in caps else cls.PLAIN


def tag_prefix(tags: Iterable[tuple[str, str]]) -> bytes:
    """``@key=value;... `` with values escaped, or b"" for no tags.

    >>> tag_prefix([("time", "2023-11-14T22:13:20.123Z"), ("label", "a b;c")])
    b'@time=2023-11-14T22:13:20.123Z;label=a\\\\sb\\\\:c '
    """
    items = [f"{key}={value.translate(_TAG_ESCAPES)}" if value else key for key, value in tags]
    return ("@" + ";".join(items) + " ").encode("utf-8") if items else b""


def add_tags(line: bytes, tags: Iterable[tuple[str, str]]) -> bytes:
    """An encoded line with more tags in front (merged into its own tags, if it has some).

    >>> add_tags(b"@time=x :a PRIVMSG #c :hi\\r\\n", [("batch", "1")])
    b'@batch=1;time=x :a PRIVMSG #c :hi\\r\\n'
    """
    prefix = tag_prefix(tags)
    if not prefix:
        return line
    if line.startswith(b"@"):
        return prefix[:-1] + b";" + line[1:]
    return prefix + line


class Stamped:
    """One message line with its stamp, in each variant; a tagged form is made when first asked
    for, so a room of plain clients costs no tag formatting."""

    __slots__ = ("msgid", "time_ms", "_lines")

    def __init__(self, line: bytes, msgid: str, time_ms: int) -> None:
        self.msgid, self.time_ms = msgid, time_ms
        self._lines: list[bytes | None] = [line, None, None]  # indexed by Variant

    def line_for(self, variant: Variant) -> bytes:
        r"""The line as a client of ``variant`` gets it.

        >>> stamped = Stamped(b":a PRIVMSG #c :hi\r\n", "id1", 1_700_000_000_000)
        >>> stamped.line_for(Variant.TAGGED)
        b'@time=2023-11-14T22:13:20.000Z;msgid=id1 :a PRIVMSG #c :hi\r\n'
        """
        line = self._lines[variant]
        if line is None:
            when = ("time", format_timestamp(self.time_ms))
            tags = [when, ("msgid", self.msgid)] if variant is Variant.TAGGED else [when]
            line = self._lines[variant] = add_tags(self._lines[Variant.PLAIN], tags)
        return line


class Stamper:
    """Unique msgids and receive times that never go backwards (for the history's order).

    Not thread-safe: the Hub stamps under a lock of its own.
    """

    def __init__(self, start_ms: int) -> None:
        self._prefix = secrets.token_urlsafe(9)  # 72 random bits: unique across restarts
        self._count = itertools.count(1)
        self._last_ms = start_ms

    def stamp(self) -> tuple[str, int]:
        self._last_ms = max(self._last_ms, int(time.time() * 1000))
        return f"{self._prefix}{next(self._count):x}", self._last_ms
