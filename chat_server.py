#!/usr/bin/env python3
"""A threaded chat server that speaks a subset of IRC (RFC 1459/2812 framing and numerics).

Run it with ``python chat_server.py`` (``--help`` for the flags). Any IRC client can join;
every user lands in one default room, where a message reaches every other member.

Map of this file, top to bottom:

1. Protocol core, no I/O: ``Message``, ``parse_message``, ``format_line``, ``encode_line``,
   ``irc_fold``, ``LineFramer``. The client package reuses these.
2. Numerics, as named constants.
3. Shared state: ``User``, ``Channel`` and the ``Hub`` that holds them behind ``Hub.lock``.
4. Command handlers: small functions in one dispatch table; a handler raises ``IRCError`` and
   ``dispatch`` turns it into the numeric, in one place.
5. Socket layer: a reader thread per connection, one ``OutputPump`` thread that does every
   write (so a slow reader never blocks anyone), a housekeeping thread for pings and
   registration timeouts, and ``ChatServer`` tying them together.
6. Command line.

Threading rules: ``Hub.lock`` guards users, nicks and channels and is held briefly; no socket
I/O is ever done under it. Handlers take a snapshot of recipients under the lock, then hand
pre-encoded lines to each recipient's ``deliver``, which only appends to that connection's
bounded outbox. Only the pump thread sends on or closes a client socket.
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import select
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from dataclasses import dataclass, field
from pathlib import Path

try:  # POSIX; only the server's slow-reader check uses them, and the client runs on Windows too
    import fcntl
    import termios
except ImportError:
    fcntl = termios = None

__version__ = "0.1.0"
log = logging.getLogger("chat_server")

# ---------------------------------------------------------------------------------------------
# 1. Protocol core (no I/O)
# ---------------------------------------------------------------------------------------------

MAX_LINE_BYTES = 512  # RFC 1459: a line, CRLF included, is at most 512 bytes
MAX_TAGS_BYTES = 8191  # IRCv3 message tags may come on top of that
NICK_RE = re.compile(r"^[a-zA-Z0-9_]{3,20}$")
CHANNEL_RE = re.compile(r"^#[^\x00\x07\r\n ,:]{1,49}$")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
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
    if prefix and (" " in prefix or _FORBIDDEN.search(prefix)):
        raise ValueError(f"bad prefix {prefix!r}")
    if not params:
        return f":{prefix} {command}" if prefix else command
    if _FORBIDDEN.search("".join(params)):  # one scan for the common, clean case
        bad = next(param for param in params if _FORBIDDEN.search(param))
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


class _EscapingFilter(logging.Filter):
    """Escapes every record of this module's logger: text from the network is never logged raw."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = escape_for_log(record.getMessage()), None
        return True


log.addFilter(_EscapingFilter())


def decode_line(line: bytes) -> str:
    """Bytes of one line to text: invalid UTF-8 becomes U+FFFD; stray CR and NUL are dropped."""
    return line.decode("utf-8", "replace").replace("\r", "").replace("\x00", "")


# ---------------------------------------------------------------------------------------------
# 2. Numerics (modern.ircdocs.horse names)
# ---------------------------------------------------------------------------------------------

RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_LUSERCLIENT = "251"
RPL_LUSERUNKNOWN = "253"
RPL_LUSERCHANNELS = "254"
RPL_LUSERME = "255"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_ENDOFWHO = "315"
RPL_WHOISIDLE = "317"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_CHANNELMODEIS = "324"
RPL_CREATIONTIME = "329"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_TOPICWHOTIME = "333"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_ENDOFNAMES = "366"
RPL_ENDOFBANLIST = "368"
RPL_MOTD = "372"
RPL_MOTDSTART = "375"
RPL_ENDOFMOTD = "376"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_CANNOTSENDTOCHAN = "404"
ERR_NOORIGIN = "409"
ERR_INVALIDCAPCMD = "410"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_TOOMANYTARGETS = "407"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_TOOMANYCHANNELS = "405"
ERR_NICKCHANGETOOFAST = "438"
ERR_NOTONCHANNEL = "442"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_CHANOPRIVSNEEDED = "482"
ERR_UMODEUNKNOWNFLAG = "501"
RPL_WHOISHOST = "378"
ERR_USERSDONTMATCH = "502"


class IRCError(Exception):
    """A handler's refusal; ``dispatch`` sends it to the user as ``:server NUMERIC nick ...``."""

    def __init__(self, numeric: str, *params: str) -> None:
        super().__init__(numeric, *params)
        self.numeric = numeric
        self.params = params


# ---------------------------------------------------------------------------------------------
# 3. Shared state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    server_name: str = "chat.local"
    network: str = "ChatNet"
    room: str = "#chat"
    motd: tuple[str, ...] = ("Welcome! Everyone here is in the same room. Be kind.",)
    ping_interval: float = 120.0  # idle seconds before the server PINGs a client
    ping_timeout: float = 60.0  # seconds a client has to answer that PING
    register_timeout: float = 60.0  # seconds a new connection has to register
    sendq: int = 1 << 20  # bytes queued for one client alone (replies, private lines) before it is dropped
    room_backlog: int = 32 << 20  # bytes of a room's lines a member may lag behind before it is dropped
    sendq_timeout: float = 30.0  # seconds a client with output waiting may accept none of it
    password: str | None = None  # PASS every client must give, if set
    flood_burst: int = 20  # lines a client may send at once...
    flood_rate: float = 5.0  # ...and per second after that; 0 turns flood control off
    max_clients: int = 10_000  # connections in all
    max_per_ip: int = 100  # connections from one address; loopback is exempt
    max_channels: int = 20  # channels one user may be in
    nick_changes_per_minute: int = 5
    password_backoff: float = 0.5  # seconds between tries after a wrong PASS, doubling per failure
    # Key for host cloaks (a stable keyed hash per address); None shows real addresses.
    cloak_secret: bytes | None = field(default_factory=lambda: secrets.token_bytes(16))


def cloak_host(secret: bytes | None, address: str) -> str:
    """The host other users see for ``address``: a keyed hash, stable for as long as the key.

    >>> cloak_host(b"key", "203.0.113.5") == cloak_host(b"key", "203.0.113.5")
    True
    >>> cloak_host(b"key", "203.0.113.5") != cloak_host(b"other", "203.0.113.5")
    True
    >>> cloak_host(None, "203.0.113.5")
    '203.0.113.5'
    """
    if secret is None:
        return address
    digest = hmac.new(secret, address.encode(), hashlib.sha256).hexdigest()
    return f"{digest[:8]}.{digest[8:16]}.cloak"


class PasswordBackoff:
    """Spaces out password tries from an address that gave wrong ones, doubling per failure.

    Tries are served one slot at a time per address, so opening connections in parallel does
    not get around it. Memory is bounded: the least recently failing addresses are forgotten
    first. Not thread-safe; the Hub calls it under ``Hub.lock``.
    """

    MAX_DELAY = 60.0  # seconds between tries, at most
    FORGET_AFTER = 600.0  # seconds without a failure after which an address starts afresh
    MAX_ADDRESSES = 4096

    def __init__(self, base: float) -> None:
        self.base = base
        self._failing: dict[str, tuple[int, float, float]] = {}  # address -> (failures, last, next slot)

    def reserve(self, address: str, now: float) -> float:
        """Book this address's next try; return the seconds to wait before making it."""
        state = self._current(address, now)
        if state is None:
            return 0.0
        failures, last, slot = state
        start = max(now, slot)
        self._failing[address] = (failures, last, start + self._delay(failures))
        return start - now

    def failed(self, address: str, now: float) -> None:
        failures, _, slot = self._current(address, now) or (0, now, now)
        self._failing.pop(address, None)  # re-inserted last: the most recent failure
        if len(self._failing) >= self.MAX_ADDRESSES:
            del self._failing[next(iter(self._failing))]
        self._failing[address] = (failures + 1, now, max(slot, now + self._delay(failures + 1)))

    def passed(self, address: str) -> None:
        self._failing.pop(address, None)

    def _current(self, address: str, now: float) -> tuple[int, float, float] | None:
        state = self._failing.get(address)
        if state is not None and now - state[1] > self.FORGET_AFTER:
            del self._failing[address]
            return None
        return state

    def _delay(self, failures: int) -> float:
        return min(self.MAX_DELAY, self.base * 2 ** min(failures - 1, 32))


def _ignore(_: object) -> None:
    """Default I/O callback for a User not attached to a connection (unit tests)."""


SEGMENT_MIN = 4096  # a room log's first segment; later ones double...
SEGMENT_MAX = 256 * 1024  # ...up to this


class Segment:
    """A fixed-size stretch of a room log. Its bytes, once written, never change or move."""

    __slots__ = ("start", "data", "view", "fill", "next")

    def __init__(self, start: int, capacity: int) -> None:
        self.start = start  # log offset of data[0]
        # Allocated once and never resized, so memoryviews of it stay valid while it fills.
        self.data = bytearray(capacity)
        self.view = memoryview(self.data)
        self.fill = 0
        self.next: Segment | None = None


class RoomLog:
    """A channel's lines, each stored once, read by every follower from its own offset.

    Appended under ``Hub.lock``; the pump reads without it: segments never move and offsets
    only grow. Nothing holds the consumed head: a segment is freed when the last follower's
    cursor leaves it, so a lagging member costs its place in the log, not a copy.
    """

    __slots__ = ("tail", "end", "floor", "followers")

    def __init__(self) -> None:
        self.tail = Segment(0, SEGMENT_MIN)
        self.end = 0  # offset just past the last line
        self.floor = 0  # the lowest offset a follower still needed at the pump's last pass
        self.followers: dict[Any, None] = {}  # the Outboxes reading this log, under Hub.lock

    def append(self, data: bytes) -> int:
        """Add one line (``Hub.lock`` held); return its offset. A line never spans segments."""
        tail, size, start = self.tail, len(data), self.end
        if tail.fill + size > len(tail.data):
            fresh = Segment(start, max(size, min(SEGMENT_MAX, 2 * len(tail.data))))
            tail.next = fresh  # linked before ``end`` moves: a reader never finds a gap
            self.tail = tail = fresh
        tail.data[tail.fill:tail.fill + size] = data  # same length: no resize
        tail.fill += size
        self.end = start + size
        return start


class RoomCursor:
    """One follower's place in a room log. The pump moves ``pos``; the hub sets ``stop`` once."""

    __slots__ = ("log", "seg", "pos", "stop")

    def __init__(self, log: RoomLog) -> None:
        self.log = log
        self.seg: Segment | None = log.tail  # None once the pump has sent everything up to stop
        self.pos = log.end
        self.stop: int | None = None  # set when the member leaves: nothing after it is theirs

    def limit(self) -> int:
        """How far the follower may read now (pump only)."""
        end = self.log.end  # read before stop: a stop set in between is never below it
        stop = self.stop
        return end if stop is None else stop

    def chunk(self, limit: int) -> memoryview | None:
        """The unsent bytes before ``limit``, from one segment; None if there are none."""
        pos = self.pos
        if pos >= limit:
            if self.stop is not None and pos >= self.stop:
                self.seg = None  # done with this log: let its segments go
            return None
        seg = self.seg
        while pos - seg.start >= seg.fill:  # this segment is used up (or skipped); on to the next
            seg = self.seg = seg.next
        return seg.view[pos - seg.start:min(seg.fill, limit - seg.start)]

    def skip(self, size: int) -> None:
        """Pass over the follower's own line without sending it (pump only)."""
        self.pos += size
        seg = self.seg
        # On to the segment the skip landed in: a member that only sends must not hold the
        # segments behind it.
        while self.pos - seg.start >= seg.fill and seg.next is not None:
            seg = seg.next
        self.seg = seg

    def line_end(self) -> int:
        """The end of the line ``pos`` is in (``pos`` itself at a line boundary); pump only."""
        seg = self.seg
        offset = self.pos - seg.start
        if offset == 0 or offset >= seg.fill or seg.data[offset - 1] == 10:
            return self.pos
        return seg.start + seg.data.index(b"\n", offset) + 1


@dataclass(eq=False, slots=True)
class User:
    """One connection's IRC identity. Fields other than the clocks change under ``Hub.lock``.

    ``deliver`` queues pre-encoded bytes for this user's connection and ``disconnect`` asks the
    socket layer to drop it; both are safe to call from any thread and never block. ``outbox``,
    when set, is the connection's ordered output, which can follow one room log (see Outbox).
    """

    host: str  # what others see: a cloak of the address, unless cloaking is off
    address: str = ""  # the real peer address: for limits, logs and server operators only
    deliver: Callable[[bytes], None] = _ignore
    disconnect: Callable[[str], None] = _ignore
    link: Any = None  # the I/O layer's object for this user (a Connection); the core never looks
    outbox: Any = None  # an Outbox that can follow a room log, or None (TLS, unit tests)
    nick: str | None = None
    username: str | None = None
    realname: str = ""
    registered: bool = False
    cap_negotiating: bool = False
    modes: set[str] = field(default_factory=set)
    channels: set[Channel] = field(default_factory=set)
    quit_reason: str | None = None  # set by QUIT; the connection then closes
    password: str | None = None  # as given with PASS
    authenticated: bool = False  # gave the server's password (always False when it has none)
    # Seconds the reader waits before handling this user's next line: the password back-off.
    hold: float = 0.0
    nick_changes: list[float] = field(default_factory=list)  # monotonic times, last minute
    signon: float = field(default_factory=time.time)  # wall clock, for WHOIS
    connected: float = field(default_factory=time.monotonic)  # for the registration timeout
    last_message: float = field(default_factory=time.monotonic)  # for WHOIS idle time
    last_seen: float = field(default_factory=time.monotonic)  # any line; for pings
    ping_sent: float | None = None
    # Flood-control tokens this user's commands cost beyond one per line (extra targets, long
    # replies); the reader charges them to its token bucket and resets this to 0.
    flood_debt: float = 0.0

    @property
    def source(self) -> str:
        return f"{self.nick}!{self.username}@{self.host}"


@dataclass(eq=False, slots=True)
class Channel:
    name: str
    created: float = field(default_factory=time.time)
    topic: str = ""
    topic_setter: str = ""
    topic_time: float = 0.0
    # A dict used as an ordered set: NAMES then lists members in the order they joined,
    # with no sorting on every join into a big room.
    members: dict[User, None] = field(default_factory=dict)
    log: RoomLog = field(default_factory=RoomLog)  # lines for the members that follow it
    others: dict[User, None] = field(default_factory=dict)  # members sent lines one by one
    # The names of the 353 lines, encoded and packed to ``names_room`` bytes each; kept up
    # to date on join (big rooms fill up without a rebuild per join), dropped on part/nick.
    names: list[bytearray] | None = field(default_factory=list)
    names_room: int = 0


@dataclass(slots=True)
class Fanout:
    """What a Hub change must tell, gathered under ``Hub.lock`` and done after releasing it."""

    logs: list[RoomLog] = field(default_factory=list)  # appended to: the pump must pass over them
    direct: Iterable[User] = ()  # members that follow none of those logs: sent the line one by one
    woken: list[Any] = field(default_factory=list)  # outboxes that stopped following: must drain


class Hub:
    """Everything users share: who is connected, under which nick, in which channels.

    ``lock`` guards ``users``, ``nicks`` and ``channels`` and every User/Channel field that
    other threads read. Hold it briefly; never do socket I/O under it. A line for a channel is
    appended once to its log (its followers read it from there) and handed one by one only to
    the members that do not follow that log.
    """

    def __init__(self, config: ServerConfig,
                 on_append: Callable[[list[RoomLog]], None] | None = None) -> None:
        self.config = config
        self.on_append = on_append  # the pump's: these logs have new lines
        self.lock = threading.Lock()
        self.users: set[User] = set()  # every connection, registered or not
        self.registered = 0  # how many of them are registered
        self.nicks: dict[str, User] = {}  # folded nick -> user, claimed at NICK
        self.channels: dict[str, Channel] = {}
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.channels[irc_fold(config.room)] = self._new_channel(config.room)
        self.password_backoff = PasswordBackoff(config.password_backoff)

    # -- output helpers: lines are encoded once, then handed to each recipient ------------

    def reply(self, user: User, numeric: str, *params: str) -> None:
        line = self.numeric_line(user, numeric, *params)
        # A query's reply can be thousands of times its size (WHO #room): charge the asker.
        user.flood_debt += len(line) / REPLY_BYTES_PER_TOKEN
        user.deliver(line)

    def numeric_line(self, user: User, numeric: str, *params: str) -> bytes:
        # Replies echo what the client sent (a bad nick, an unknown command); make each echo
        # a valid middle parameter so that no input can make the reply unformattable.
        *middle, last = params or ("",)
        middle = [_FORBIDDEN.sub("", p).replace(" ", "_").lstrip(":") or "*" for p in middle]
        line = format_line(numeric, user.nick or "*", *middle, _FORBIDDEN.sub("", last),
                           prefix=self.config.server_name)
        return encode_line(line)

    def send(self, fanout: Fanout, data: bytes) -> None:
        """Carry out a Fanout (``lock`` not held): tell the pump, hand out the direct copies."""
        if fanout.logs and self.on_append is not None:
            self.on_append(fanout.logs)
        for outbox in fanout.woken:
            outbox.kick()
        for recipient in fanout.direct:
            recipient.deliver(data)

    def reply_list(self, user: User, numeric: str, *params: str, items: Iterable[str]) -> None:
        """Send ``items`` as the space-separated last parameter of as many lines as it takes.

        Lines are packed by their encoded size, counting the prefix, the nick and ``params``,
        so no item is ever cut off at 512 bytes, whatever the names in the line.
        """
        room = MAX_LINE_BYTES - len(self.numeric_line(user, numeric, *params, ""))
        batch: list[str] = []
        length = -1  # bytes of " ".join(batch), kept as we go: a long list stays linear
        for item in items:
            size = len(item.encode("utf-8"))
            if batch and length + 1 + size > room:
                self.reply(user, numeric, *params, " ".join(batch))
                batch, length = [], -1
            batch.append(item)
            length += 1 + size
        if batch:
            self.reply(user, numeric, *params, " ".join(batch))

    # -- state changes ---------------------------------------------------------------------

    def add(self, user: User) -> None:
        with self.lock:
            self.users.add(user)

    def remove(self, user: User, line: bytes | None = None) -> None:
        """Forget a user; ``line`` (its QUIT) goes once to everyone who shared a channel."""
        with self.lock:
            if user in self.users and user.registered:
                self.registered -= 1
            self.users.discard(user)
            if user.nick and self.nicks.get(irc_fold(user.nick)) is user:
                del self.nicks[irc_fold(user.nick)]
            channels = list(user.channels)
            fanout = Fanout()
            for channel in channels:
                self._leave(user, channel, fanout)
            if line is not None:
                self._announce(channels, line, None, fanout)
        self.send(fanout, line or b"")

    def claim_nick(self, user: User, nick: str, line: Callable[[], bytes] | None = None) -> str | None:
        """Give ``user`` the nick and return the old one; a registered user's change, the
        ``line()`` built before the change, goes to them and once to everyone sharing a channel."""
        if not NICK_RE.match(nick):
            raise IRCError(ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname: use 3-20 of a-z A-Z 0-9 _")
        folded = irc_fold(nick)
        data = line() if line is not None else b""
        fanout = Fanout()
        with self.lock:
            holder = self.nicks.get(folded)
            if holder is not None and holder is not user:
                raise IRCError(ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            old = user.nick
            if old is not None:
                del self.nicks[irc_fold(old)]
            self.nicks[folded] = user
            user.nick = nick
            if line is not None:
                for channel in user.channels:
                    channel.names = None  # rebuilt by the next NAMES
                self._announce(list(user.channels), data, None, fanout)
                if not self._reaches(user, fanout) and user not in fanout.direct:
                    fanout.direct = [*fanout.direct, user]
        if line is not None:
            self.send(fanout, data)
        return old

    def join(self, user: User, name: str) -> Channel | None:
        """Put ``user`` in the channel and announce it to all members, the joiner included;
        return the channel, or None if already there."""
        with self.lock:
            channel = self.channels.get(irc_fold(name))
            if channel is not None and user in channel.members:
                return None
            if len(user.channels) >= self.config.max_channels:
                raise IRCError(ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
            if channel is None:
                channel = self.channels[irc_fold(name)] = self._new_channel(name)
            channel.members[user] = None
            user.channels.add(channel)
            outbox = user.outbox
            # Each connection follows one log, the first channel it joins; it gets the lines
            # of any other channel one by one (and of that one too, should it part and rejoin).
            if outbox is not None and outbox.cursor is None:
                outbox.follow(channel.log)
                channel.log.followers[outbox] = None
            else:
                channel.others[user] = None
            if channel.names is not None:
                self._add_name(channel, user.nick or "")
            data = encode_line(format_line("JOIN", channel.name, prefix=user.source))
            fanout = Fanout()
            self._announce([channel], data, None, fanout)
        self.send(fanout, data)
        return channel

    def part(self, user: User, name: str, reason: tuple[str, ...] = ()) -> None:
        """Take ``user`` out of a channel, announcing it to the members, the parter included."""
        fanout = Fanout()
        with self.lock:
            channel = self._member_channel(user, name)
            data = encode_line(format_line("PART", channel.name, *reason, prefix=user.source))
            self._announce([channel], data, None, fanout)
            self._leave(user, channel, fanout)
        self.send(fanout, data)

    def set_topic(self, user: User, name: str, topic: str) -> None:
        fanout = Fanout()
        with self.lock:
            channel = self._member_channel(user, name)
            channel.topic = topic
            channel.topic_setter = user.nick or ""
            channel.topic_time = time.time()
            data = encode_line(format_line("TOPIC", channel.name, topic, prefix=user.source))
            self._announce([channel], data, None, fanout)
        self.send(fanout, data)

    def send_to_channel(self, sender: User, name: str, data: bytes) -> None:
        """A message to channel ``name``: to every member but the sender, who must be one."""
        fanout = Fanout()
        with self.lock:
            channel = self.channels.get(irc_fold(name))
            if channel is None:
                raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
            if sender not in channel.members:
                raise IRCError(ERR_CANNOTSENDTOCHAN, name, "Cannot send to channel (join it first)")
            self._announce([channel], data, sender, fanout)
        self.send(fanout, data)

    # -- queries -------------------------------------------------------------------------

    def find_user(self, nick: str) -> User | None:
        with self.lock:
            user = self.nicks.get(irc_fold(nick))
            return user if user is not None and user.registered else None

    def find_channel(self, name: str) -> Channel | None:
        with self.lock:
            return self.channels.get(irc_fold(name))

    def members(self, channel: Channel) -> list[User]:
        with self.lock:
            return list(channel.members)

    def names(self, channel: Channel) -> list[bytearray]:
        """The channel's names, packed for 353 lines (rebuilt here after a part or nick change)."""
        with self.lock:
            if channel.names is None:
                channel.names = []
                for member in channel.members:
                    self._add_name(channel, member.nick or "")
            return [bytes(batch) for batch in channel.names]

    def password_try(self, address: str) -> float:
        """Seconds a password try from ``address`` must wait (see PasswordBackoff)."""
        with self.lock:
            return self.password_backoff.reserve(address, time.monotonic())

    def password_result(self, address: str, correct: bool) -> None:
        with self.lock:
            if correct:
                self.password_backoff.passed(address)
            else:
                self.password_backoff.failed(address, time.monotonic())

    def counts(self) -> tuple[int, int, int]:
        """(registered users, unregistered connections, channels)."""
        with self.lock:
            return self.registered, len(self.users) - self.registered, len(self.channels)

    def snapshot_users(self) -> list[User]:
        with self.lock:
            return list(self.users)

    # -- helpers that expect the lock held -------------------------------------------------

    def _new_channel(self, name: str) -> Channel:
        # Room for names on a 353 line: 512 bytes less CRLF, the longest nick's prefix and ours.
        head = f":{self.config.server_name} {RPL_NAMREPLY} {'x' * 20} = {name} :"
        return Channel(name, names_room=MAX_LINE_BYTES - 2 - len(head.encode()))

    @staticmethod
    def _add_name(channel: Channel, nick: str) -> None:
        encoded = nick.encode()
        batches = channel.names
        if batches and len(batches[-1]) + 1 + len(encoded) <= channel.names_room:
            batches[-1] += b" " + encoded
        else:
            batches.append(bytearray(encoded))

    def _announce(self, channels: list[Channel], data: bytes, sender: User | None, fanout: Fanout) -> None:
        """Append ``data`` once to each channel's log, never for ``sender``; put the members
        who follow none of those logs in ``fanout.direct``, each once."""
        logs = fanout.logs
        for channel in channels:
            log = channel.log
            if not log.followers:
                continue
            outbox = sender.outbox if sender is not None else None
            if outbox is not None and outbox.cursor is not None and outbox.cursor.log is log:
                outbox.append_own(log, data)
            else:
                log.append(data)
            logs.append(log)
        if len(channels) == 1:
            others = channels[0].others
            fanout.direct = [m for m in others if m is not sender] if sender in others else list(others)
        elif channels:
            direct: dict[User, None] = {}
            for channel in channels:
                for member in channel.others:
                    if member is not sender and not self._reaches(member, fanout):
                        direct[member] = None
            fanout.direct = list(direct)

    @staticmethod
    def _reaches(user: User, fanout: Fanout) -> bool:
        """Whether ``user`` gets a Fanout's line from a log it follows."""
        cursor = user.outbox.cursor if user.outbox is not None else None
        return cursor is not None and cursor.stop is None and cursor.log in fanout.logs

    def _member_channel(self, user: User, name: str) -> Channel:
        channel = self.channels.get(irc_fold(name))
        if channel is None:
            raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
        if user not in channel.members:
            raise IRCError(ERR_NOTONCHANNEL, name, "You're not on that channel")
        return channel

    def _leave(self, user: User, channel: Channel, fanout: Fanout) -> None:
        channel.members.pop(user, None)
        channel.others.pop(user, None)
        channel.names = None  # rebuilt by the next NAMES
        outbox = user.outbox
        if outbox is not None and outbox in channel.log.followers:
            del channel.log.followers[outbox]
            outbox.unfollow()
            fanout.woken.append(outbox)
        user.channels.discard(channel)
        if not channel.members and channel.name != self.config.room:
            del self.channels[irc_fold(channel.name)]


REPLY_BYTES_PER_TOKEN = 4096  # flood control charges one more line per this many reply bytes


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


def liveness_actions(hub: Hub, now: float) -> list[tuple[User, str]]:
    """Decide, for a housekeeping tick at monotonic time ``now``, who to PING or drop.

    Returns (user, action) pairs where action is "ping" or a reason to disconnect.
    """
    config = hub.config
    actions = []
    for user in hub.snapshot_users():
        if not user.registered:
            if now - user.connected > config.register_timeout:
                actions.append((user, "Registration timed out"))
        elif user.ping_sent is not None:
            # Measured from the last line too: a client heard from since the PING is alive.
            if now - max(user.ping_sent, user.last_seen) > config.ping_timeout:
                actions.append((user, f"Ping timeout: {round(now - user.last_seen)} seconds"))
        elif now - user.last_seen > config.ping_interval:
            actions.append((user, "ping"))
    return actions


# ---------------------------------------------------------------------------------------------
# 4. Command handlers
# ---------------------------------------------------------------------------------------------

Handler = Callable[[Hub, User, Message], None]
TOPIC_MAX = 390


def _send_as(user: User, command: str, *params: str) -> bytes:
    """A line with ``user`` as its source, encoded once for every recipient."""
    return encode_line(format_line(command, *params, prefix=user.source))


def cmd_cap(hub: Hub, user: User, msg: Message) -> None:
    # No capabilities yet; answering keeps IRCv3 clients from waiting for a reply.
    sub = msg.params[0].upper()
    server = hub.config.server_name
    if sub in ("LS", "LIST"):
        user.cap_negotiating = sub == "LS" or user.cap_negotiating
        user.deliver(encode_line(format_line("CAP", user.nick or "*", sub, "", prefix=server)))
    elif sub == "REQ":
        user.cap_negotiating = True
        wanted = msg.params[1] if len(msg.params) > 1 else ""
        user.deliver(encode_line(format_line("CAP", user.nick or "*", "NAK", wanted, prefix=server)))
    elif sub == "END":
        user.cap_negotiating = False
        _try_register(hub, user)
    else:
        raise IRCError(ERR_INVALIDCAPCMD, sub, "Invalid CAP command")


def cmd_pass(hub: Hub, user: User, msg: Message) -> None:
    if user.registered:
        raise IRCError(ERR_ALREADYREGISTERED, "You may not reregister")
    user.password = msg.params[0]  # checked at NICK or USER, after the back-off's wait
    if hub.config.password is not None:
        user.hold = hub.password_try(user.address)


def _check_password(hub: Hub, user: User) -> None:
    """With a server password, refuse (464, then close) a client that has not given it.

    Runs before NICK claims anything, so a client without the password can neither hold a
    nick nor learn from 433 who is online.
    """
    expected = hub.config.password
    if expected is None or user.authenticated:
        return
    given = user.password
    if given is None:
        user.quit_reason = "Password required"
        raise IRCError(ERR_PASSWDMISMATCH, "Password required: send PASS before NICK and USER")
    correct = hmac.compare_digest(given.encode(), expected.encode())
    hub.password_result(user.address, correct)
    if not correct:
        user.quit_reason = "Bad password"
        raise IRCError(ERR_PASSWDMISMATCH, "Password incorrect")
    user.authenticated = True


def cmd_nick(hub: Hub, user: User, msg: Message) -> None:
    if not msg.params or not msg.params[0]:
        raise IRCError(ERR_NONICKNAMEGIVEN, "No nickname given")
    new = msg.params[0]
    if user.nick == new:
        return
    if user.registered:
        _count_nick_change(hub, user)
    else:
        _check_password(hub, user)
    if user.registered:
        old = hub.claim_nick(user, new, lambda: encode_line(format_line("NICK", new, prefix=user.source)))
        log.info("%s is now known as %s", old, new)
    else:
        hub.claim_nick(user, new)
        _try_register(hub, user)


def _count_nick_change(hub: Hub, user: User) -> None:
    now = time.monotonic()
    user.nick_changes = [when for when in user.nick_changes if now - when < 60]
    if len(user.nick_changes) >= hub.config.nick_changes_per_minute:
        raise IRCError(ERR_NICKCHANGETOOFAST, user.nick or "*", "Nick change too fast: wait a minute")
    user.nick_changes.append(now)


def cmd_user(hub: Hub, user: User, msg: Message) -> None:
    if user.registered:
        raise IRCError(ERR_ALREADYREGISTERED, "You may not reregister")
    _check_password(hub, user)
    user.username = "~" + (re.sub(r"[^A-Za-z0-9_.-]", "", msg.params[0])[:10] or "user")
    user.realname = msg.params[3]
    _try_register(hub, user)


def _try_register(hub: Hub, user: User) -> None:
    if user.registered or not user.nick or not user.username or user.cap_negotiating:
        return
    with hub.lock:
        user.registered = True
        hub.registered += 1
    log.info("%s registered from %s", user.source, user.address)
    config = hub.config
    hub.reply(user, RPL_WELCOME, f"Welcome to the {config.network} IRC network, {user.source}")
    hub.reply(user, RPL_YOURHOST, f"Your host is {config.server_name}, running version {__version__}")
    hub.reply(user, RPL_CREATED, f"This server was created {hub.created}")
    hub.reply(user, RPL_MYINFO, config.server_name, __version__, "iw", "nt")
    hub.reply(
        user, RPL_ISUPPORT, "NICKLEN=20", "CASEMAPPING=ascii", "CHANTYPES=#", "CHANNELLEN=50",
        f"TOPICLEN={TOPIC_MAX}", f"NETWORK={config.network}", "CHANMODES=b,,,nt",
        isupport_targmax(), "are supported by this server",
    )
    cmd_lusers(hub, user, msg=Message("LUSERS"))
    cmd_motd(hub, user, msg=Message("MOTD"))
    _join(hub, user, config.room)


def cmd_ping(hub: Hub, user: User, msg: Message) -> None:
    if not msg.params:
        raise IRCError(ERR_NOORIGIN, "No origin specified")
    server = hub.config.server_name
    user.deliver(encode_line(format_line("PONG", server, msg.params[0], prefix=server)))


def cmd_pong(hub: Hub, user: User, msg: Message) -> None:
    """Nothing to do: every line a client sends already counts as a sign of life."""


def cmd_quit(hub: Hub, user: User, msg: Message) -> None:
    user.quit_reason = f"Quit: {msg.params[0]}" if msg.params and msg.params[0] else "Quit"


def cmd_motd(hub: Hub, user: User, msg: Message) -> None:
    motd = hub.config.motd
    if not motd:
        raise IRCError(ERR_NOMOTD, "MOTD File is missing")
    hub.reply(user, RPL_MOTDSTART, f"- {hub.config.server_name} Message of the day -")
    for text in motd:
        hub.reply(user, RPL_MOTD, f"- {text}")
    hub.reply(user, RPL_ENDOFMOTD, "End of /MOTD command.")


def cmd_lusers(hub: Hub, user: User, msg: Message) -> None:
    registered, unknown, channels = hub.counts()
    hub.reply(user, RPL_LUSERCLIENT, f"There are {registered} users and 0 invisible on 1 servers")
    if unknown:
        hub.reply(user, RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
    hub.reply(user, RPL_LUSERCHANNELS, str(channels), "channels formed")
    hub.reply(user, RPL_LUSERME, f"I have {registered} clients and 0 servers")


def cmd_join(hub: Hub, user: User, msg: Message) -> None:
    name = msg.params[0]
    if name == "0":
        for channel in list(user.channels):
            cmd_part(hub, user, Message("PART", (channel.name,)))
        return
    if not CHANNEL_RE.match(name):
        raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel (names are # and up to 49 more)")
    _join(hub, user, name)


def _join(hub: Hub, user: User, name: str) -> None:
    channel = hub.join(user, name)
    if channel is None:
        return
    log.info("%s joined %s", user.nick, channel.name)
    if channel.topic:
        _send_topic(hub, user, channel)
    _send_names(hub, user, channel)


def cmd_part(hub: Hub, user: User, msg: Message) -> None:
    hub.part(user, msg.params[0], msg.params[1:2])
    log.info("%s left %s", user.nick, msg.params[0])


def cmd_privmsg(hub: Hub, user: User, msg: Message) -> None:
    """PRIVMSG and NOTICE: to a channel, every other member; to a nick, that user."""
    if not msg.params or not msg.params[0]:
        raise IRCError(ERR_NORECIPIENT, f"No recipient given ({msg.command})")
    if len(msg.params) < 2 or not msg.params[1]:
        raise IRCError(ERR_NOTEXTTOSEND, "No text to send")
    target, text = msg.params[0], msg.params[1]
    if target.startswith("#"):
        hub.send_to_channel(user, target, _send_as(user, msg.command, target, text))
    else:
        recipient = hub.find_user(target)
        if recipient is None:
            raise IRCError(ERR_NOSUCHNICK, target, "No such nick/channel")
        recipient.deliver(_send_as(user, msg.command, target, text))
    user.last_message = time.monotonic()


def cmd_names(hub: Hub, user: User, msg: Message) -> None:
    if not msg.params:
        with hub.lock:
            channels = list(user.channels)
        for channel in channels:
            _send_names(hub, user, channel)
        return
    channel = hub.find_channel(msg.params[0])
    if channel is None:
        hub.reply(user, RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list")
    else:
        _send_names(hub, user, channel)


def _send_names(hub: Hub, user: User, channel: Channel) -> None:
    # The batches are kept packed by the hub, by bytes (a join into a big room adds one name,
    # it does not re-pack them all); a line is a batch behind a head that leaves room for it.
    head = f":{hub.config.server_name} {RPL_NAMREPLY} {user.nick or '*'} = {channel.name} :".encode()
    lines = b"".join([head + batch + b"\r\n" for batch in hub.names(channel)])
    data = lines + hub.numeric_line(user, RPL_ENDOFNAMES, channel.name, "End of /NAMES list")
    user.flood_debt += len(data) / REPLY_BYTES_PER_TOKEN  # as Hub.reply charges any reply
    user.deliver(data)


def cmd_topic(hub: Hub, user: User, msg: Message) -> None:
    name = msg.params[0]
    if len(msg.params) > 1:
        hub.set_topic(user, name, msg.params[1][:TOPIC_MAX])
        return
    channel = hub.find_channel(name)
    if channel is None:
        raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
    _send_topic(hub, user, channel)


def _send_topic(hub: Hub, user: User, channel: Channel) -> None:
    with hub.lock:
        topic, setter, when = channel.topic, channel.topic_setter, channel.topic_time
    if not topic:
        hub.reply(user, RPL_NOTOPIC, channel.name, "No topic is set")
        return
    hub.reply(user, RPL_TOPIC, channel.name, topic)
    hub.reply(user, RPL_TOPICWHOTIME, channel.name, setter, str(int(when)))


def cmd_who(hub: Hub, user: User, msg: Message) -> None:
    mask = msg.params[0] if msg.params else "*"
    channel = hub.find_channel(mask) if mask.startswith("#") else None
    if channel is not None:
        listed = [(channel.name, member) for member in hub.members(channel)]
    else:
        found = hub.find_user(mask)
        listed = [("*", found)] if found is not None else []
    server = hub.config.server_name
    for channel_name, member in listed:
        hub.reply(
            user, RPL_WHOREPLY, channel_name, member.username or "*", member.host, server,
            member.nick or "*", "H", f"0 {member.realname}",
        )
    hub.reply(user, RPL_ENDOFWHO, mask, "End of /WHO list")


def cmd_whois(hub: Hub, user: User, msg: Message) -> None:
    nick = msg.params[-1]  # the nick is last: "WHOIS [server] nick" (irssi sends "nick nick")
    found = hub.find_user(nick)
    if found is None:
        hub.reply(user, ERR_NOSUCHNICK, nick, "No such nick/channel")
    else:
        with hub.lock:
            channels = sorted(channel.name for channel in found.channels)
        idle = int(time.monotonic() - found.last_message)
        hub.reply(user, RPL_WHOISUSER, found.nick or "", found.username or "", found.host, "*", found.realname)
        if found is user or "o" in user.modes:  # the real address: to its owner and operators
            hub.reply(user, RPL_WHOISHOST, found.nick or "", f"is connecting from *@{found.address} {found.address}")
        hub.reply_list(user, RPL_WHOISCHANNELS, found.nick or "", items=channels)
        hub.reply(user, RPL_WHOISSERVER, found.nick or "", hub.config.server_name, hub.config.network)
        hub.reply(user, RPL_WHOISIDLE, found.nick or "", str(idle), str(int(found.signon)), "seconds idle, signon time")
    hub.reply(user, RPL_ENDOFWHOIS, nick, "End of /WHOIS list")


USER_MODES = "iw"


def cmd_mode(hub: Hub, user: User, msg: Message) -> None:
    target = msg.params[0]
    if target.startswith("#"):
        channel = hub.find_channel(target)
        if channel is None:
            raise IRCError(ERR_NOSUCHCHANNEL, target, "No such channel")
        if len(msg.params) == 1:
            hub.reply(user, RPL_CHANNELMODEIS, channel.name, "+nt")
            hub.reply(user, RPL_CREATIONTIME, channel.name, str(int(channel.created)))
        elif len(msg.params) == 2 and msg.params[1].lstrip("+") == "b":
            hub.reply(user, RPL_ENDOFBANLIST, channel.name, "End of channel ban list")
        else:
            raise IRCError(ERR_CHANOPRIVSNEEDED, channel.name, "Channel modes are fixed here (+nt)")
        return
    if irc_fold(target) != irc_fold(user.nick or ""):
        raise IRCError(ERR_USERSDONTMATCH, "Can't change mode for other users")
    if len(msg.params) == 1:
        hub.reply(user, RPL_UMODEIS, "+" + "".join(sorted(user.modes)))
        return
    applied, sign, unknown = "", "+", False
    for char in msg.params[1]:
        if char in "+-":
            sign = char
        elif char in USER_MODES:
            if (char in user.modes) != (sign == "+"):
                (user.modes.add if sign == "+" else user.modes.discard)(char)
                applied += sign + char
        else:
            unknown = True
    if applied:
        user.deliver(_send_as(user, "MODE", user.nick or "", applied))
    if unknown:
        raise IRCError(ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")


@dataclass(frozen=True)
class Command:
    handler: Handler
    min_params: int = 0
    before_registration: bool = False  # allowed before NICK/USER are done
    # Which parameter is a comma list of targets (0: the first, -1: the last), if any; the
    # handler then runs once per distinct target, and over ``max_targets`` of them draw 407.
    targets_at: int | None = None
    max_targets: int = 1
    quiet: bool = False  # never answer with an error numeric (NOTICE)


COMMANDS: dict[str, Command] = {
    "CAP": Command(cmd_cap, 1, before_registration=True),
    "PASS": Command(cmd_pass, 1, before_registration=True),
    "NICK": Command(cmd_nick, 0, before_registration=True),
    "USER": Command(cmd_user, 4, before_registration=True),
    "PING": Command(cmd_ping, 0, before_registration=True),
    "PONG": Command(cmd_pong, 0, before_registration=True),
    "QUIT": Command(cmd_quit, 0, before_registration=True),
    "JOIN": Command(cmd_join, 1, targets_at=0, max_targets=20),
    "PART": Command(cmd_part, 1, targets_at=0, max_targets=20),
    "PRIVMSG": Command(cmd_privmsg, 0, targets_at=0, max_targets=4),
    "NOTICE": Command(cmd_privmsg, 0, targets_at=0, max_targets=4, quiet=True),
    "NAMES": Command(cmd_names, 0, targets_at=0, max_targets=4),
    "TOPIC": Command(cmd_topic, 1),
    "WHO": Command(cmd_who, 0),
    "WHOIS": Command(cmd_whois, 1, targets_at=-1, max_targets=4),
    "MODE": Command(cmd_mode, 1),
    "MOTD": Command(cmd_motd, 0),
    "LUSERS": Command(cmd_lusers, 0),
}


def _distinct_targets(targets: str, limit: int) -> list[str]:
    """A comma list without repeats (``#a,#A`` is one target); 407 if it names over ``limit``."""
    by_folded: dict[str, str] = {}
    for target in targets.split(","):
        by_folded.setdefault(irc_fold(target), target)
    distinct = list(by_folded.values())
    if len(distinct) > limit:
        raise IRCError(ERR_TOOMANYTARGETS, targets, f"Too many targets: at most {limit} in one command")
    return distinct


def _with_param(msg: Message, index: int, value: str) -> Message:
    params = list(msg.params)
    params[index] = value
    return msg._replace(params=tuple(params))


def isupport_targmax() -> str:
    """The TARGMAX token, read off the dispatch table so the rule lives in one place."""
    limits = (f"{name}:{command.max_targets}" for name, command in COMMANDS.items()
              if command.targets_at is not None)
    return "TARGMAX=" + ",".join(limits)


def dispatch(hub: Hub, user: User, msg: Message) -> None:
    """Run one client message; every IRCError a handler raises becomes its numeric here."""
    if user.quit_reason is not None:
        return  # leaving (QUIT, a wrong password): nothing after that is handled
    command = COMMANDS.get(msg.command)
    targets: list[str | None] = [None]
    try:
        if not user.registered and not (command and command.before_registration):
            raise IRCError(ERR_NOTREGISTERED, "You have not registered")
        if command is None:
            raise IRCError(ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
        if len(msg.params) < command.min_params:
            raise IRCError(ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
        at = command.targets_at
        if at is not None and msg.params and "," in msg.params[at]:
            targets = _distinct_targets(msg.params[at], command.max_targets)
    except IRCError as error:
        hub.reply(user, error.numeric, *error.params)
        return
    user.flood_debt += len(targets) - 1  # each target beyond the first costs a line
    for target in targets:
        one = msg if target is None else _with_param(msg, command.targets_at, target)
        try:
            command.handler(hub, user, one)
        except IRCError as error:
            if not command.quiet:
                hub.reply(user, error.numeric, *error.params)


# ---------------------------------------------------------------------------------------------
# 5. Socket layer
# ---------------------------------------------------------------------------------------------

RECV_BYTES = 16384
CLOSE_GRACE = 2.0  # seconds a closing connection gets to flush its last lines
LINGER = 1.0  # seconds a connection shut for writing is read from, waiting for the peer to close
# Sends never wait for a slow reader. On platforms without MSG_DONTWAIT (Windows) sends
# block, so there a stalled reader can hold up the pump; the server is meant for POSIX hosts.
SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0)
FLUSHED, BLOCKED = "flushed", "blocked"  # Outbox.flush
PASS_SLICE = 128  # followers a room pass serves before it lets waiting replies through
END_OF_LOG = sys.maxsize  # the tag of a last line that goes after the room line in flight
# TCP states (Linux tcp_states.h) in which the peer has not closed its side yet.
_PEER_OPEN_STATES = (1, 4, 5)  # ESTABLISHED, FIN_WAIT1, FIN_WAIT2


def _unsent_bytes(sock: socket.socket) -> int | None:
    """Bytes the kernel holds for ``sock`` not yet acknowledged by the peer (Linux), else None."""
    if fcntl is None or not hasattr(termios, "TIOCOUTQ"):
        return None
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"), sys.byteorder)
    except OSError:  # closed meanwhile
        return None


class TlsSession:
    """TLS over memory buffers: ciphertext in and out, plaintext in between, no socket.

    Keeping TLS off the socket lets the reader thread decrypt and any thread encrypt, while
    the pump still only moves bytes. An SSLObject is not thread-safe, and the records it makes
    must reach the wire in the order made: the owning Connection's lock guards both.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._established = False

    def receive(self, data: bytes) -> tuple[bytes | None, bytes]:
        """Feed ciphertext; return (plaintext, or None once the peer closed TLS; bytes to send)."""
        self._incoming.write(data)
        chunks = []
        try:
            if not self._established:
                self._tls.do_handshake()
                self._established = True
            while chunk := self._tls.read(RECV_BYTES):
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass  # the rest of a record (or of the handshake) is still on its way
        except ssl.SSLZeroReturnError:
            return None, self._outgoing.read()
        return b"".join(chunks), self._outgoing.read()

    def wrap(self, plaintext: bytes) -> bytes:
        """Encrypt; raises ssl.SSLError before the handshake is done."""
        if not self._established:
            raise ssl.SSLError("TLS handshake not finished")
        self._tls.write(plaintext)
        return self._outgoing.read()


class Outbox:
    """One client's output, in order: the room log it follows, with its own lines in between.

    A line for this client alone is queued with a tag, the followed log's offset when it was
    queued: the pump sends the room's bytes up to the tag, then the line. An int in place of
    a line skips the client's own message in the log (no echo). Any thread may ``put``; the
    hub calls ``follow``, ``unfollow`` and ``append_own`` under ``Hub.lock``; only the pump
    sends and closes. ``_lock`` guards the queue, its count and the TLS session, and is never
    held during a system call. A TLS outbox never follows a log: its lines are encrypted as
    they are queued, each record in the order made.
    """

    def __init__(self, sock: socket.socket, config: ServerConfig, wake: Callable[[Outbox], None],
                 abort: Callable[[str, bool], None], tls: TlsSession | None = None) -> None:
        self.sock = sock
        self.tls = tls
        self._sendq = config.sendq
        self._wake = wake  # tells the pump this outbox has lines of its own
        self._abort = abort  # drops the connection (reason, discard its output)
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[int, bytes | int]] = collections.deque()
        self._queued = 0  # bytes of the lines in _queue: what --sendq limits
        self._pending = b""  # pump only: lines taken from _queue, sent up to _done
        self._done = 0
        self.cursor: RoomCursor | None = None  # set once, by follow
        self._scheduled = False  # the pump was told of lines in _queue
        self._closing = False  # the last line is queued; later ones are dropped
        self._cut = False  # drop the backlog after the line in flight (pump acts on it)
        self.closed = False
        self.blocked = False  # pump only: waiting in the selector for room in the socket
        self.progress = time.monotonic()  # when the client last took bytes (pump, housekeeper)
        self._kernel_unsent = 0  # housekeeper only: _unsent_bytes at its last look

    # -- any thread -----------------------------------------------------------------------

    def put(self, data: bytes) -> None:
        """Queue a line for this client alone (User.deliver); never blocks."""
        with self._lock:
            if self._closing or self.closed:
                log.debug("dropped a line for a closing connection")
                return
            if self.tls is not None:
                try:
                    data = self.tls.wrap(data)
                except ssl.SSLError as error:  # e.g. a timeout's ERROR before the handshake
                    log.debug("dropped a line before the TLS handshake: %s", error)
                    return
            overflow = self._queued + len(data) > self._sendq
            if not overflow:
                self._queue.append((self._tag(), data))
                self._queued += len(data)
                wake, self._scheduled = not self._scheduled, True
        if overflow:
            self._abort("SendQ exceeded", True)
        elif wake:
            self._wake(self)

    def kick(self) -> None:
        """Have the pump look at this outbox (after it stopped following its log)."""
        with self._lock:
            wake, self._scheduled = not self._scheduled, True
        if wake:
            self._wake(self)

    def finish(self, line: bytes, discard: bool) -> None:
        """Queue the last line; with ``discard``, in place of everything still unsent (but
        after the line in flight, so that the client's stream stays whole)."""
        with self._lock:
            if self._closing or self.closed:
                return
            self._closing = True
            if self.tls is not None:
                try:
                    line = self.tls.wrap(line)
                except ssl.SSLError as error:
                    log.debug("no last line before the TLS handshake: %s", error)
                    line = b""
            if discard:
                self._queue.clear()
                self._queued = 0
                self._cut = True
            if line:
                self._queue.append((END_OF_LOG if discard else self._tag(), line))
            wake, self._scheduled = not self._scheduled, True
        if wake:
            self._wake(self)

    def tls_receive(self, data: bytes) -> bytes | None:
        """Ciphertext from the socket to plaintext (b"" while a record is incomplete)."""
        with self._lock:
            plaintext, reply = self.tls.receive(data)
            if reply and not (self._closing or self.closed):
                self._queue.append((0, reply))  # handshake bytes are tiny: not held to SendQ
                wake, self._scheduled = not self._scheduled, True
            else:
                wake = False
        if wake:
            self._wake(self)
        return plaintext

    def _tag(self) -> int:
        """The offset in the followed log a line queued now must follow (``_lock`` held)."""
        return 0 if self.cursor is None else self.cursor.limit()

    # -- the hub, under Hub.lock ----------------------------------------------------------

    def follow(self, log_: RoomLog) -> None:
        with self._lock:
            self.cursor = RoomCursor(log_)

    def unfollow(self) -> None:
        """Stop reading the log at its current end; lines after it are not for this client."""
        with self._lock:
            self.cursor.stop = self.cursor.log.end

    def append_own(self, log_: RoomLog, data: bytes) -> None:
        """Append this client's own message to the log it follows, to be skipped, not echoed."""
        with self._lock:  # no tag may be taken between the append and the skip
            # The skip is queued before the log grows: the pump, reading without our lock,
            # must never see the line in the log before it sees the skip.
            self._queue.append((log_.end, len(data)))
            log_.append(data)

    # -- the pump -------------------------------------------------------------------------

    def flush(self) -> str:
        """Send what is due, in order, until nothing is left (FLUSHED) or the socket is full
        (BLOCKED): room bytes straight from the log, one slice per ``send``."""
        if self.closed:
            return FLUSHED
        if self._cut:
            self._cut_backlog()
        while True:
            room = not self._pending
            if room:
                data = self._room_chunk()
                if data is None:
                    if not self._take():
                        return FLUSHED
                    continue
            else:
                data = memoryview(self._pending)[self._done:]
            try:
                sent = self.sock.send(data, SEND_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self._fail(f"Write error: {error.strerror or error}")
                return FLUSHED
            if sent:
                self.progress = time.monotonic()
                if room:
                    self.cursor.pos += sent
                else:
                    self._done += sent
                    if self._done == len(self._pending):
                        self._pending, self._done = b"", 0
            if sent < len(data):
                return BLOCKED

    def _room_chunk(self) -> memoryview | None:
        cursor = self.cursor
        if cursor is None or cursor.seg is None:
            return None
        limit = cursor.limit()  # before the queue: a line queued after this has a later tag
        queue = self._queue
        if queue and queue[0][0] < limit:
            limit = queue[0][0]
        return cursor.chunk(limit)

    @staticmethod
    def _room_due(cursor: RoomCursor | None, tag: int) -> bool:
        """Whether room bytes must go before a line tagged ``tag``."""
        if cursor is None or cursor.seg is None:
            return False
        stop = cursor.stop
        return cursor.pos < (tag if stop is None or tag < stop else stop)

    def _take(self) -> bool:
        """Move the lines now due to ``_pending``; False (and unscheduled) if nothing is left."""
        with self._lock:
            queue, cursor, lines, skipped = self._queue, self.cursor, [], False
            while queue and not self._room_due(cursor, queue[0][0]):
                item = queue.popleft()[1]
                if type(item) is int:
                    if cursor.seg is not None:
                        cursor.skip(item)  # our own message
                    skipped = True
                else:
                    lines.append(item)
                    self._queued -= len(item)
            if lines:
                self._pending = lines[0] if len(lines) == 1 else b"".join(lines)
                return True
            if queue or skipped:
                return True  # room bytes come first (or now, past our own line)
            self._scheduled = False
            return False

    def _cut_backlog(self) -> None:
        """Keep only the rest of the line in flight: a last line follows it (``finish``)."""
        self._cut = False
        if self._pending and self.tls is None:  # TLS records cannot be cut
            end = self._pending.find(b"\n", self._done)
            if end >= 0:
                self._pending = self._pending[:end + 1]
        cursor = self.cursor
        if cursor is not None and cursor.seg is not None:
            # Pending lines always follow whole room lines, so then the room is at a boundary.
            cursor.stop = cursor.pos if self._pending else cursor.line_end()

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._closing = True
            self._queue.clear()
            self._queued = 0
        self._pending, self._done = b"", 0
        if self.cursor is not None:
            self.cursor.seg = None
        self._abort(reason, True)

    def evict(self, reason: str) -> None:
        """Drop a follower too far behind its room, letting go of its backlog at once."""
        self.cursor.seg = None
        self._abort(reason, True)

    def lag(self, end: int) -> int:
        """How far behind offset ``end`` of its log this follower is; 0 once it has let go."""
        cursor = self.cursor
        return 0 if cursor.seg is None else end - cursor.pos

    def has_output(self) -> bool:
        return bool(self._pending or self._queue) or self._room_due(self.cursor, END_OF_LOG)

    def shut_write(self) -> bool:
        """Send FIN after the last line; False if the socket is gone already."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            return True
        except OSError as error:
            log.debug("shutdown for writing: %s", error)
            return False

    def drain_input(self) -> bool:
        """Read and drop what the peer sent (closing with unread input would reset the
        connection and could destroy our last line); True once the peer has closed too."""
        try:
            while self.sock.recv(RECV_BYTES, SEND_FLAGS):
                pass
        except BlockingIOError:
            pass  # nothing more for now
        except OSError:
            return True  # reset: nothing left to wait for
        tcp_info = getattr(socket, "TCP_INFO", None)
        if tcp_info is None:
            return False  # no way to tell: the linger deadline decides
        try:
            return self.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0] not in _PEER_OPEN_STATES
        except OSError:
            return True

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._queue.clear()
            self._queued = 0
            # A closed connection is only freed by the cyclic GC (it and its User refer to
            # each other), which may take thousands of connections to come round: drop the
            # TLS session, by far its largest part, now. Nothing encrypts once closed is set,
            # and nothing decrypts: the pump closes only after the reader's _finish.
            self.tls = None
        self._pending = b""
        if self.cursor is not None:
            self.cursor.seg = None
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected: closing is all that is left to do
        self.sock.close()

    # -- the housekeeper ------------------------------------------------------------------

    def stalled(self, now: float, timeout: float) -> bool:
        """Whether the client has had output waiting and taken none of it for ``timeout`` s.

        A slow reader takes bytes from the kernel long before the socket has room enough to
        wake the pump, so the kernel's own count of unsent bytes counts as progress too.
        """
        if not self.blocked:
            return False
        unsent = _unsent_bytes(self.sock)
        if unsent is not None:
            if unsent < self._kernel_unsent:
                self.progress = now
            self._kernel_unsent = unsent
        return now - self.progress > timeout


class Connection:
    """One client's reader thread: ``serve`` reads, applies flood control, dispatches, and
    tears down; what the client is sent goes through its ``outbox``.

    ``_lock`` guards ``kill_reason`` and the kill latch.
    """

    def __init__(self, server: ChatServer, sock: socket.socket, address: tuple,
                 tls: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.sock = sock
        session = TlsSession(tls) if tls is not None else None
        self.outbox = Outbox(sock, server.config, server.pump.schedule, self.abort, session)
        self.user = User(host=cloak_host(server.config.cloak_secret, address[0]), address=address[0],
                         deliver=self.outbox.put, disconnect=self.abort, link=self,
                         outbox=self.outbox if session is None else None)
        self._lock = threading.Lock()
        # Released by abort(), ending a flood-control wait early: a held Lock is a one-shot
        # event at a fraction of threading.Event's size, which matters at thousands of clients.
        self._kill_latch = threading.Lock()
        self._kill_latch.acquire()
        # Waiting for data before handing recv() a buffer: an idle reader then holds none.
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock, select.POLLIN)
        self.kill_reason: str | None = None  # why the server is dropping this connection
        self._discard = False  # drop unsent output in favour of the ERROR line

    def abort(self, reason: str, discard: bool = False) -> None:
        """Drop this connection: wake its reader thread, which then tears it down."""
        with self._lock:
            if self.kill_reason is None:
                self.kill_reason = reason
            self._discard |= discard
            if self._kill_latch.locked():
                self._kill_latch.release()
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError as error:  # the peer may be gone, or the pump closed the socket
            log.debug("shutdown of %s: %s", self.user.address, error)

    def serve(self) -> None:
        user, framer = self.user, LineFramer()
        config = self.server.config
        bucket = TokenBucket(config.flood_burst, config.flood_rate, time.monotonic())
        eof_reason = "Connection closed"
        try:
            while user.quit_reason is None and self.kill_reason is None:
                if self._poller is not None:
                    self._poller.poll()
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    break
                if self.outbox.tls is not None:
                    data = self.outbox.tls_receive(data)
                    if data is None:
                        break  # the peer closed the TLS session
                    if not data:
                        continue  # handshake, or part of a record: no plaintext yet
                user.last_seen, user.ping_sent = time.monotonic(), None
                blank_lines = framer.blank_lines
                lines = framer.feed(data)
                user.flood_debt += framer.blank_lines - blank_lines  # a blank line is a line
                if not lines and user.flood_debt and self._pace(bucket, 0):
                    break
                for line in lines:
                    if self._pace(bucket, 1):
                        break
                    self._handle(line)
                    if user.quit_reason is not None:
                        break
                    self._wait_while_room_full(config.room_backlog)
        except ssl.SSLError as error:
            eof_reason = f"TLS error: {error.reason or error}"
        except OSError as error:
            eof_reason = f"Read error: {error.strerror or error}"
        finally:
            self._finish(user.quit_reason or self.kill_reason or eof_reason)

    def _wait_while_room_full(self, cap: int) -> None:
        """Hold this sender back while its room's log is over the cap, until the pump has
        passed over it (dropping the laggards): memory stays bounded however fast it sends."""
        cursor = self.outbox.cursor
        if cursor is None or cursor.stop is not None:
            return
        room_log = cursor.log
        while room_log.end - room_log.floor > cap and self.kill_reason is None:
            self._kill_latch.acquire(timeout=0.002)  # the pump sets no event: poll, but wake on abort

    def _pace(self, bucket: TokenBucket, lines: int) -> bool:
        """Wait before the next line: flood control charged ``lines`` and what earlier commands
        cost, and any password back-off. True if the connection was dropped meanwhile.

        An eager sender waits here, in its own thread, so its socket fills up and TCP slows it
        down; nothing is dropped, nobody else waits.
        """
        cost, self.user.flood_debt = lines + self.user.flood_debt, 0.0
        wait, self.user.hold = self.user.hold, 0.0  # the password back-off applies regardless
        if self.server.config.flood_rate > 0:
            wait = max(wait, bucket.delay(time.monotonic(), cost))
        return bool(wait) and self._kill_latch.acquire(timeout=wait)

    def _handle(self, line: bytes | LineTooLong) -> None:
        hub = self.server.hub
        if line is LINE_TOO_LONG:
            hub.reply(self.user, ERR_INPUTTOOLONG, "Input line was too long")
            return
        try:
            msg = parse_message(decode_line(line))
        except ValueError:
            return  # a line of spaces and tags only: nothing to answer
        try:
            dispatch(hub, self.user, msg)
        except Exception:  # a bug in one handler must not take the connection down
            log.exception("error handling %r from %s", msg.command, self.user.address)

    def _finish(self, reason: str) -> None:
        hub, user = self.server.hub, self.user
        hub.remove(user, _send_as(user, "QUIT", reason) if user.registered else None)
        if user.registered:
            log.info("%s quit (%s)", user.nick, reason)
        else:
            log.info("connection from %s closed before registering (%s)", user.address, reason)
        line = encode_line(format_line("ERROR", f"Closing Link: {user.host} ({reason})"))
        with self._lock:
            discard = self._discard
        self.outbox.finish(line, discard)
        self.server.pump.close_when_flushed(self.outbox)
        self.server.forget(self)


class OutputPump(threading.Thread):
    """The one thread that writes to (and closes) client sockets.

    Each pass goes over the room logs that grew since the last pass and sends each follower
    one slice of the log from its own offset, so lines that piled up while the pump was busy
    go out together; then over the outboxes with lines of their own. An outbox whose socket
    is full waits in a selector for writability instead, so one stalled reader never holds
    up the rest; a follower more than ``room_backlog`` bytes behind its room is dropped.
    Closing is: last line, FIN, then the peer's input read and dropped until it closes too.
    """

    def __init__(self, hub_lock: threading.Lock, room_backlog: int) -> None:
        super().__init__(name="output-pump", daemon=True)
        self._hub_lock = hub_lock  # to take a log's followers
        self._room_backlog = room_backlog
        # Deques, so that queueing takes no lock.
        self._ready: collections.deque[Outbox] = collections.deque()
        self._logs: collections.deque[RoomLog] = collections.deque()
        self._lock = threading.Lock()  # guards the next four fields and the wake-up sockets
        self._closing: dict[Outbox, float] = {}  # outbox -> deadline to flush by
        self._sleeping = False  # set (under _lock) just before the pump may block in select
        self._stopping = False  # asked to finish: flush what is closing, then exit
        self._stopped = False  # exited: late connections are closed on the spot
        self._lingering: dict[Outbox, float] = {}  # shut for writing -> deadline; pump only
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ)

    def schedule(self, outbox: Outbox) -> None:
        """``outbox`` has lines of its own: send them on the next pass."""
        self._ready.append(outbox)
        self._wake_if_sleeping()

    def logs_grew(self, logs: list[RoomLog]) -> None:
        """These logs have new lines: pass over their followers on the next pass."""
        self._logs.extend(logs)
        self._wake_if_sleeping()

    def close_when_flushed(self, outbox: Outbox) -> None:
        """Send what ``outbox`` still has (for up to CLOSE_GRACE seconds), then close it."""
        with self._lock:
            stopped = self._stopped
            self._closing[outbox] = time.monotonic() + CLOSE_GRACE
        if stopped:  # a straggler after shutdown: no pump left to flush for it
            outbox.close()
            return
        self.schedule(outbox)

    def _wake_if_sleeping(self) -> None:
        # The pump sets _sleeping before it looks at its deques one last time, so either it
        # sees what was just queued or we see it asleep and wake it.
        if self._sleeping:
            with self._lock:
                if self._sleeping and not self._stopped:
                    self._sleeping = False
                    self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if not self._stopped:
                self._wake()

    def _wake(self) -> None:
        """Interrupt the pump's select; called with ``_lock`` held (never blocks)."""
        try:
            self._wake_out.send(b"\0")
        except BlockingIOError:
            pass  # the wake-up pipe is full: the pump is sure to wake anyway

    def run(self) -> None:
        while True:
            ready, logs = self._take(self._ready), self._take(self._logs)
            with self._lock:
                stopping = self._stopping
                deadlines = list(self._closing.values())
                self._sleeping = not (ready or logs)
            if not (ready or logs):  # the last look before sleeping (see _wake_if_sleeping)
                ready, logs = self._take(self._ready), self._take(self._logs)
            if stopping and not (deadlines or self._lingering or ready or logs):
                break
            timeout = 0 if ready or logs else self._select_timeout(deadlines, stopping)
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_in:
                    self._drain_wakeups()
                else:
                    self._selector.unregister(key.fileobj)
                    key.data.blocked = False
                    ready.append(key.data)
            if self._sleeping:
                with self._lock:
                    self._sleeping = False
            for room_log in dict.fromkeys(logs):
                self._pass(room_log)
            for outbox in ready:
                if not outbox.blocked:
                    self._flush(outbox)
            self._close_finished()
            if self._lingering:
                self._linger()
        with self._lock:
            self._stopped = True
            stragglers = list(self._closing)  # handed over after our last look
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()
        for outbox in stragglers:
            outbox.close()

    def _pass(self, room_log: RoomLog) -> None:
        """Send every follower of ``room_log`` what it has not had yet; drop the laggards."""
        with self._hub_lock:
            followers = list(room_log.followers)
            end = room_log.end
        cap, floor = self._room_backlog, end
        for count, outbox in enumerate(followers, 1):
            if not outbox.blocked:
                self._flush(outbox)
            if not count % PASS_SLICE and self._ready:
                # A pass over a big room takes milliseconds: let replies (a joiner's NAMES,
                # a PONG) through in between instead of after it.
                for waiting in self._take(self._ready):
                    if not waiting.blocked:
                        self._flush(waiting)
            lag = outbox.lag(end)
            if lag > cap:
                outbox.evict(f"Backlog exceeded: over {cap} bytes behind the room")
            elif end - lag < floor:
                floor = end - lag
        room_log.floor = floor  # senders waiting for the room to shrink look at it

    def _flush(self, outbox: Outbox) -> None:
        if outbox.flush() is BLOCKED:
            outbox.blocked = True
            self._selector.register(outbox.sock, selectors.EVENT_WRITE, outbox)

    @staticmethod
    def _take(items: collections.deque) -> list:
        taken = []
        try:
            while True:
                taken.append(items.popleft())
        except IndexError:
            return taken

    def _select_timeout(self, deadlines: list[float], stopping: bool) -> float | None:
        if self._lingering:
            deadlines = [*deadlines, time.monotonic() + 0.02]  # peers' closing is polled for
        if not deadlines:
            return 0 if stopping else None
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass  # drained

    def _close_finished(self) -> None:
        now = time.monotonic()
        with self._lock:
            closing = list(self._closing.items())
        for outbox, deadline in closing:
            flushed = not outbox.has_output()
            if not flushed and now < deadline:
                continue  # still flushing its last lines
            if outbox.blocked:
                self._selector.unregister(outbox.sock)
                outbox.blocked = False
            with self._lock:
                del self._closing[outbox]
            if flushed and outbox.shut_write():
                self._lingering[outbox] = now + LINGER
            else:
                outbox.close()

    def _linger(self) -> None:
        now = time.monotonic()
        for outbox, deadline in list(self._lingering.items()):
            if outbox.drain_input() or now >= deadline:
                del self._lingering[outbox]
                outbox.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    listener = socket.create_server((host, port), family=family, backlog=1024)
    listener.setblocking(False)
    return listener


def _refuse(sock: socket.socket, host: str, reason: str, tls: ssl.SSLContext | None) -> None:
    """Close a connection we will not serve, telling a plain-text client why (best effort)."""
    if tls is None:  # a TLS client would need a handshake first; it just sees the close
        try:
            sock.send(f"ERROR :Closing Link: {host} ({reason})\r\n".encode(), SEND_FLAGS)
        except OSError as error:
            log.debug("could not tell %s why it was refused: %s", host, error)
    sock.close()


MEMORY_TRIM_INTERVAL = 1.0  # at least this many seconds between two malloc_trim calls


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS, Windows): then trimming is off."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            raise OSError("not glibc")
        import ctypes
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (AttributeError, ValueError, OSError, ImportError) as error:
        log.debug("malloc_trim unavailable, freed heap is not handed back to the OS: %s", error)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """Gives the heap that ended connections freed back to the OS (glibc only; else a no-op).

    glibc gives reader threads malloc arenas of their own and keeps what is freed there for
    reuse, so after a burst of connections (TLS ones above all) RSS stayed near its peak.
    malloc_trim(0) returns the free pages of every arena (about 0.2 ms for a 50 MB heap). It
    takes each arena's lock in turn, so the housekeeper calls it only after connections have
    ended, at most every MEMORY_TRIM_INTERVAL. With this and Connection.close dropping the TLS
    session, 12,000 TLS connections, 400 at a time, leave RSS at 38-41 MB instead of 86-91 MB (the
    server starts at 27 MB; most of the rest is fragmentation in Python's own allocator):
    ``python bench/tls_churn.py`` measures it.
    """

    def __init__(self) -> None:
        self._trim = _glibc_malloc_trim()
        self._last_time = float("-inf")
        self._last_ended = 0

    def maybe_trim(self, ended: int, now: float, idle: bool = False) -> bool:
        """Trim if the count of ended connections grew since the last trim, and it is time.

        ``idle``: no connection is open. Closed connections are reference cycles that only a
        full GC pass frees, and that pass may be thousands of connections away; with nobody
        connected it is cheap (a few ms), so it is done first and its garbage trimmed too.
        """
        if self._trim is None or ended == self._last_ended or now - self._last_time < MEMORY_TRIM_INTERVAL:
            return False
        self._last_time, self._last_ended = now, ended
        if idle:
            gc.collect()
        self._trim(0)
        return True


class ChatServer:
    """Listens, starts a reader thread per connection, and runs the pump and housekeeping."""

    def __init__(self, config: ServerConfig, host: str = "127.0.0.1", port: int = 5555,
                 tls: ssl.SSLContext | None = None, tls_port: int = 6697) -> None:
        self.config = config
        self.hub = Hub(config)
        self.pump = OutputPump(self.hub.lock, config.room_backlog)
        self.hub.on_append = self.pump.logs_grew
        self.listener = _listen(host, port)
        self.tls_listener = _listen(host, tls_port) if tls is not None else None
        self._tls_context = tls
        self._connections: set[Connection] = set()
        self._per_host: collections.Counter[str] = collections.Counter()
        self._connections_changed = threading.Condition()  # guards _connections and _per_host
        self._stop = threading.Event()
        self._stop_in, self._stop_out = socket.socketpair()
        self._trimmer = HeapTrimmer()
        # Connections ended so far: written under _connections_changed, read without it by
        # the housekeeper (a stale count only puts a trim off by one tick).
        self._ended = 0
        self._threads = [
            threading.Thread(target=self._accept_loop, name="acceptor", daemon=True),
            threading.Thread(target=self._housekeeping_loop, name="housekeeper", daemon=True),
        ]

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    @property
    def tls_address(self) -> tuple[str, int] | None:
        return self.tls_listener.getsockname()[:2] if self.tls_listener else None

    def start(self) -> None:
        self.pump.start()
        for thread in self._threads:
            thread.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ, None)
            if self.tls_listener is not None:
                selector.register(self.tls_listener, selectors.EVENT_READ, self._tls_context)
            selector.register(self._stop_in, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._stop_in:
                        continue
                    try:
                        self._accept(key.fileobj, key.data)
                    except Exception:  # one connection's failure must never end accepting
                        log.exception("error accepting a connection")

    def _accept(self, listener: socket.socket, tls: ssl.SSLContext | None) -> None:
        try:
            sock, address = listener.accept()
        except BlockingIOError:
            return  # the client gave up before we got to it
        except OSError as error:  # e.g. out of file descriptors: pause instead of spinning
            log.error("accept failed: %s", error)
            self._stop.wait(0.5)
            return
        if self._stop.is_set():
            sock.close()  # shutting down: too late to serve anyone new
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = address[0]
        conn = Connection(self, sock, address, tls)
        with self._connections_changed:
            refusal = self._refusal(host)
            if refusal is None:
                self._connections.add(conn)
                self._per_host[host] += 1
        if refusal is not None:
            log.warning("refused %s:%s: %s", host, address[1], refusal)
            _refuse(sock, host, refusal, tls)
            return
        self.hub.add(conn.user)
        log.info("connection from %s:%s%s", host, address[1], " (TLS)" if tls else "")
        try:
            threading.Thread(target=conn.serve, name=f"conn-{host}:{address[1]}", daemon=True).start()
        except (RuntimeError, MemoryError) as error:  # a thread or memory limit below --max-clients
            log.error("refused %s:%s: cannot start a thread for it (%s)", host, address[1], error)
            self.hub.remove(conn.user)
            self.forget(conn)
            _refuse(sock, host, "Server is out of resources, try again later", tls)

    def _refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused, if it is (``_connections_changed`` held)."""
        if len(self._connections) >= self.config.max_clients:
            return "Server is full"
        if self._per_host[host] >= self.config.max_per_ip and not ipaddress.ip_address(host).is_loopback:
            return "Too many connections from your address"
        return None

    def forget(self, conn: Connection) -> None:
        with self._connections_changed:
            self._connections.discard(conn)
            self._ended += 1
            address = conn.user.address
            self._per_host[address] -= 1
            if not self._per_host[address]:
                del self._per_host[address]
            self._connections_changed.notify_all()

    def _housekeeping_loop(self) -> None:
        config = self.config
        timeouts = (config.ping_interval, config.ping_timeout, config.register_timeout, config.sendq_timeout)
        tick = min(5.0, max(0.05, min(timeouts) / 4))
        ping = encode_line(format_line("PING", config.server_name))
        stalled = f"SendQ timeout: no progress for {config.sendq_timeout:g} seconds"
        while not self._stop.wait(tick):
            now = time.monotonic()
            for user, action in liveness_actions(self.hub, now):
                if action == "ping":
                    user.ping_sent = now
                    user.deliver(ping)
                else:
                    user.disconnect(action)
            with self._connections_changed:
                connections = list(self._connections)
            for conn in connections:
                if conn.outbox.stalled(now, config.sendq_timeout):
                    conn.abort(stalled, discard=True)
            self._trimmer.maybe_trim(self._ended, now, idle=not self._connections)

    def shutdown(self, timeout: float = CLOSE_GRACE) -> None:
        """Tell every client, close every socket and stop every thread, within ``timeout``."""
        if self._stop.is_set():
            return  # already shut down
        self._stop.set()
        self._stop_out.send(b"\0")
        for thread in self._threads:
            if thread.ident is not None:  # started (a signal may come before start())
                thread.join(timeout)
        self.listener.close()
        if self.tls_listener is not None:
            self.tls_listener.close()
        with self._connections_changed:
            connections = list(self._connections)
        for conn in connections:
            conn.abort("Server shutting down", discard=True)
        with self._connections_changed:
            self._connections_changed.wait_for(lambda: not self._connections, timeout)
        self.pump.stop()
        if self.pump.ident is not None:
            self.pump.join(timeout + LINGER)
        self._stop_in.close()
        self._stop_out.close()


# ---------------------------------------------------------------------------------------------
# 6. Command line
# ---------------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat_server.py",
        description="A threaded chat server speaking a subset of IRC. Every user joins one room.",
        formatter_class=_HelpFormatter,
    )
    defaults = ServerConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on")
    add("--port", type=int, default=5555, help="TCP port; 0 picks a free one")
    add("--server-name", default=defaults.server_name, help="name the server gives itself")
    add("--network", default=defaults.network, help="network name in the welcome")
    add("--room", default=defaults.room, help="the room every user joins")
    add("--motd-file", help="file whose lines are the message of the day (default: a greeting)")
    add("--ping-interval", type=float, default=defaults.ping_interval, help="idle seconds before a PING")
    add("--ping-timeout", type=float, default=defaults.ping_timeout, help="seconds to answer a PING")
    add("--register-timeout", type=float, default=defaults.register_timeout,
        help="seconds a new connection has to register")
    add("--sendq", type=int, default=defaults.sendq,
        help="bytes of replies and private lines queued for one client before it is dropped")
    add("--room-backlog", type=int, default=defaults.room_backlog,
        help="bytes of a room's lines a member may lag behind before it is dropped")
    add("--sendq-timeout", type=float, default=defaults.sendq_timeout,
        help="seconds a client with output waiting may take none of it before it is dropped")
    add("--password", help="password clients must give with PASS; better, set CHAT_SERVER_PASSWORD, "
                           "which ps does not show")
    add("--tls-cert", help="PEM certificate chain: also listen with TLS on --tls-port")
    add("--tls-key", help="PEM private key for --tls-cert")
    add("--tls-port", type=int, default=6697, help="TLS port")
    add("--flood-burst", type=int, default=defaults.flood_burst, help="lines a client may send at once")
    add("--flood-rate", type=float, default=defaults.flood_rate, help="lines a second after the burst")
    add("--no-flood-control", action="store_true", help="let clients send as fast as they like")
    add("--max-clients", type=int, default=defaults.max_clients, help="connections in all")
    add("--max-per-ip", type=int, default=defaults.max_per_ip,
        help="connections from one address (loopback is exempt)")
    add("--max-channels", type=int, default=defaults.max_channels, help="channels one user may be in")
    add("--nick-changes-per-minute", type=int, default=defaults.nick_changes_per_minute,
        help="name changes one user may make in a minute")
    add("--password-backoff", type=float, default=defaults.password_backoff,
        help="seconds an address waits to try again after a wrong password, doubling per failure "
             "up to a minute")
    add("--no-cloak", action="store_true",
        help="show users' real addresses to everyone (by default others see a keyed hash; set "
             "CHAT_CLOAK_SECRET to keep the hashes the same across restarts)")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="console log level")
    args = parser.parse_args(argv)
    if not CHANNEL_RE.match(args.room):
        parser.error(f"--room {args.room!r} is not a channel name like #chat")
    if " " in args.server_name or not args.server_name:
        parser.error("--server-name must be one word, such as chat.example.org")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    motd = ServerConfig.motd
    if args.motd_file:
        with open(args.motd_file, encoding="utf-8", errors="replace") as motd_file:
            motd = tuple(line.rstrip("\r\n") for line in motd_file)
    return ServerConfig(
        server_name=args.server_name, network=args.network, room=args.room, motd=motd,
        ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
        register_timeout=args.register_timeout, sendq=args.sendq, room_backlog=args.room_backlog,
        sendq_timeout=args.sendq_timeout,
        password=args.password or os.environ.get("CHAT_SERVER_PASSWORD") or None,
        flood_burst=args.flood_burst, flood_rate=0 if args.no_flood_control else args.flood_rate,
        max_clients=args.max_clients, max_per_ip=args.max_per_ip, max_channels=args.max_channels,
        nick_changes_per_minute=args.nick_changes_per_minute, password_backoff=args.password_backoff,
        cloak_secret=None if args.no_cloak else _cloak_secret(),
    )


def _cloak_secret() -> bytes:
    """CHAT_CLOAK_SECRET if set (cloaks then survive restarts), else a fresh random key."""
    configured = os.environ.get("CHAT_CLOAK_SECRET")
    return configured.encode() if configured else secrets.token_bytes(16)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context with the ssl module's modern defaults (TLS 1.2 or newer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(message)s")
    try:
        config = config_from_args(args)
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        server = ChatServer(config, args.host, args.port, tls, args.tls_port)
    except OSError as error:  # ssl.SSLError included: a bad certificate or key
        print(f"chat_server.py: cannot start on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    try:
        # Set both explicitly: a shell starting us in the background may have ignored SIGINT.
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        server.start()
        host, port = server.address
        tls_note = f", TLS on port {server.tls_address[1]}" if server.tls_address else ""
        print(f"chat_server listening on {host}:{port}{tls_note}, room {config.room} (Ctrl-C to stop)",
              flush=True)
        while True:  # the threads do the work; SIGINT or SIGTERM ends this wait
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        # A second Ctrl-C must not cut the shutdown short: it takes a couple of seconds at most.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.shutdown()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
