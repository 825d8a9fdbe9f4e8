"""The IRC protocol core, with no I/O: parse and format lines, frame a byte stream, fold names.

Both programs use it: the server (``chat_server.py``) and the client (``curses_client``,
through ``curses_client.irc`` alone). ``__all__`` is the surface they may rely on; the
flood-control pacing (``TokenBucket``) is here too, as both sides pace lines.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "CHANNEL_RE",
    "FORBIDDEN_CHARS",
    "LINE_TOO_LONG",
    "MAX_LINE_BYTES",
    "MAX_TAGS_BYTES",
    "NICK_RE",
    "LineFramer",
    "LineTooLong",
    "Message",
    "TokenBucket",
    "decode_line",
    "encode_line",
    "escape_for_log",
    "format_line",
    "irc_fold",
    "parse_message",
]

MAX_LINE_BYTES = 512  # RFC 1459: a line, CRLF included, is at most 512 bytes
MAX_TAGS_BYTES = 8191  # IRCv3 message tags may come on top of that
NICK_RE = re.compile(r"^[a-zA-Z0-9_]{3,20}$")
CHANNEL_RE = re.compile(r"^#[^\x00\x07\r\n ,:]{1,49}$")
FORBIDDEN_CHARS = re.compile(r"[\r\n\x00]")
_TAG_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class Message(NamedTuple):
    """One IRC line, parsed. ``params`` holds the trailing parameter last, without its colon.

    A NamedTuple rather than a frozen dataclass: as immutable, and several times cheaper to
    make, which counts on the path every chat line takes.
    """

    command: str
    params: tuple[str, ...] = ()
    prefix: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def nick(self) -> str | None:
        """The nick part of the prefix (``nick!user@host``), if any."""
        return self.prefix.split("!", 1)[0].split("@", 1)[0] if self.prefix else None


def _unescape_tag_value(value: str) -> str:
    out, chars = [], iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            out.append(_TAG_UNESCAPES.get(escaped, escaped))
        else:
            out.append(char)
    return "".join(out)


def parse_message(line: str) -> Message:
    """Parse one line (without its line ending) into a Message.

    >>> parse_message(":ann!a@host PRIVMSG #chat :hello world")
    Message(command='PRIVMSG', params=('#chat', 'hello world'), prefix='ann!a@host', tags=())
    >>> parse_message("ping  tok").params
    ('tok',)

    Raises ValueError for a line with no command.
    """
    rest = line.lstrip(" ")
    tags: tuple[tuple[str, str], ...] = ()
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        pairs = []
        for item in filter(None, raw_tags.split(";")):
            key, _, value = item.partition("=")
            pairs.append((key, _unescape_tag_value(value)))
        tags = tuple(pairs)
        rest = rest.lstrip(" ")
    prefix = None
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest or rest.startswith(":"):
        if rest.startswith(":"):
            rest, trailing = "", rest[1:]
        else:
            rest, trailing = rest.split(" :", 1)
    words = [word for word in rest.split(" ") if word]  # only spaces separate, not tabs
    if not words:
        raise ValueError(f"no command in {line!r}")
    params = words[1:] + ([trailing] if trailing is not None else [])
    return Message(words[0].upper(), tuple(params), prefix or None, tags)


def format_line(command: str, *params: str, prefix: str | None = None) -> str:
    """Build one IRC line (without CRLF), refusing anything that could smuggle in another line.

    >>> format_line("PRIVMSG", "#chat", "hi there", prefix="ann!a@h")
    ':ann!a@h PRIVMSG #chat :hi there'
    >>> format_line("NICK", "bob")
    'NICK :bob'
    >>> format_line("PRIVMSG", "#chat", "a\\r\\nQUIT")
    Traceback (most recent call last):
    ...
    ValueError: CR, LF or NUL in a parameter: 'a\\r\\nQUIT'
    """
    if not command.isalnum():
        raise ValueError(f"bad command {command!r}")
    if prefix and (" " in prefix or FORBIDDEN_CHARS.search(prefix)):
        raise ValueError(f"bad prefix {prefix!r}")
    if not params:
        return f":{prefix} {command}" if prefix else command
    if FORBIDDEN_CHARS.search("".join(params)):  # one scan for the common, clean case
        bad = next(param for param in params if FORBIDDEN_CHARS.search(param))
        raise ValueError(f"CR, LF or NUL in a parameter: {bad!r}")
    *middle, last = params
    for param in middle:
        if not param or " " in param or param[0] == ":":
            raise ValueError(f"only the last parameter may be empty or hold spaces: {param!r}")
    # The last parameter is always marked as trailing: simple clients expect it.
    head = f":{prefix} {command}" if prefix else command
    return f"{head} {' '.join(middle)} :{last}" if middle else f"{head} :{last}"


def encode_line(line: str, limit: int = MAX_LINE_BYTES) -> bytes:
    """Encode a line as UTF-8 with CRLF, cut (at a character boundary) to ``limit`` bytes.

    >>> encode_line("PING :x")
    b'PING :x\\r\\n'
    >>> len(encode_line("PRIVMSG #c :x" + "é" * 400))  # 511: no half character
    511
    """
    data = line.encode("utf-8")
    if len(data) > limit - 2:
        data = data[: limit - 2].decode("utf-8", "ignore").encode("utf-8")
    return data + b"\r\n"


def irc_fold(name: str) -> str:
    """Fold a nick or channel name for comparison (CASEMAPPING=ascii).

    >>> irc_fold("Ann_42") == irc_fold("aNN_42")
    True
    """
    return name.lower() if name.isascii() else "".join(
        c.lower() if c.isascii() else c for c in name
    )


def glob_match(mask: str, text: str) -> bool:
    """Whether ``text`` matches the IRC wildcard ``mask`` (``*`` any run, ``?`` one character),
    case-folded. The pieces between stars are found left to right, each at its first place
    after the last (which is always the best choice for a glob), by searches that run in C:
    no backtracking, however many stars a hostile mask holds.

    >>> glob_match("A*!*@*.example", "ann!~a@host.example")
    True
    >>> glob_match("b?b", "BOB"), glob_match("b?b", "bb"), glob_match("*", "")
    (True, False, True)
    """
    mask, text = irc_fold(mask), irc_fold(text)
    first, *middle = mask.split("*")
    if not middle:
        return len(text) == len(first) and _piece_at(first, text, 0)
    last = middle.pop()
    end = len(text) - len(last)
    if end < len(first) or not _piece_at(first, text, 0) or not _piece_at(last, text, end):
        return False
    start = len(first)
    for piece in filter(None, middle):
        found = _piece_search(piece, text, start, end)
        if found is None:
            return False
        start = found + len(piece)
    return True


def _piece_regex(piece: str) -> re.Pattern[str]:
    return re.compile(re.escape(piece).replace(r"\?", "."), re.DOTALL)


def _piece_at(piece: str, text: str, at: int) -> bool:
    """Whether the star-free ``piece`` matches ``text`` at ``at`` (``?`` matches anything)."""
    if "?" not in piece:
        return text.startswith(piece, at)
    return _piece_regex(piece).match(text, at, at + len(piece)) is not None


def _piece_search(piece: str, text: str, start: int, end: int) -> int | None:
    """Where the star-free ``piece`` first matches within text[start:end], or None."""
    if "?" not in piece:
        found = text.find(piece, start, end)
        return found if found >= 0 else None
    match = _piece_regex(piece).search(text, start, end)
    return match.start() if match is not None else None


class LineTooLong:
    """What ``LineFramer.feed`` yields in place of a line that was over the limit."""

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG = LineTooLong()


class LineFramer:
    """Bytes in, complete lines out (CRLF or bare LF), with a bounded buffer.

    A line over 512 bytes (IRCv3 tags aside) is reported once as ``LINE_TOO_LONG`` and its
    bytes are skipped up to its end; the buffer never holds more than one maximal line.

    >>> framer = LineFramer()
    >>> framer.feed(b"NICK ann\\r\\nUSER a 0 * :A")
    [b'NICK ann']
    >>> framer.feed(b"nn\\n")
    [b'USER a 0 * :Ann']
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit - 2  # content bytes, without CRLF
        self._max_buffer = MAX_TAGS_BYTES + 1 + self._limit
        self._buffer = bytearray()
        self._skipping = False  # inside an overlong line that was already reported
        # Blank lines are not returned, but they cost the reader as much as any other line:
        # the server charges them to flood control from this running count.
        self.blank_lines = 0

    def _too_long(self, line: bytes) -> bool:
        if line.startswith(b"@"):
            tags, _, rest = line.partition(b" ")
            return len(tags) > MAX_TAGS_BYTES or len(rest) > self._limit
        return len(line) > self._limit

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        self._buffer += data
        if b"\n" not in data:
            pieces = []
        else:
            *pieces, tail = self._buffer.split(b"\n")
            self._buffer = bytearray(tail)
        lines: list[bytes | LineTooLong] = []
        for piece in pieces:
            if self._skipping:
                self._skipping = False
                continue
            line = bytes(piece[:-1] if piece.endswith(b"\r") else piece)
            if self._too_long(line):
                lines.append(LINE_TOO_LONG)
            elif line.strip():
                lines.append(line)
            else:
                self.blank_lines += 1
        if len(self._buffer) > self._max_buffer:
            if not self._skipping:
                lines.append(LINE_TOO_LONG)
                self._skipping = True
            self._buffer.clear()
        return lines


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_for_log(text: str) -> str:
    r"""Text from the network made harmless for a console: controls become ``\xNN``/``\uNNNN``.

    >>> escape_for_log("bye\x1b]0;owned\x07 \\ok")
    'bye\\x1b]0;owned\\x07 \\\\ok'
    """
    return _UNPRINTABLE.sub(_escape_char, text.replace("\\", "\\\\"))


def _escape_char(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def decode_line(line: bytes) -> str:
    """Bytes of one line to text: invalid UTF-8 becomes U+FFFD; stray CR and NUL are dropped."""
    return line.decode("utf-8", "replace").replace("\r", "").replace("\x00", "")


class TokenBucket:
    """Flood control: ``burst`` lines at once, then ``rate`` lines a second.

    >>> bucket = TokenBucket(burst=2, rate=1.0, now=0.0)
    >>> [bucket.delay(0.0) for _ in range(4)]
    [0.0, 0.0, 1.0, 2.0]
    """

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst, self.rate = burst, rate
        self._tokens = float(burst)
        self._stamp = now

    def delay(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens; return how many seconds to wait before handling the line."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - cost
        self._stamp = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
