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
    sendq: int = 1 << 20  # bytes queued for one client before it is dropped
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


@dataclass(eq=False, slots=True)
class User:
    """One connection's IRC identity. Fields other than the clocks change under ``Hub.lock``.

    ``deliver`` queues pre-encoded bytes for this user's connection and ``disconnect`` asks the
    socket layer to drop it; both are safe to call from any thread and never block.
    """

    host: str  # what others see: a cloak of the address, unless cloaking is off
    address: str = ""  # the real peer address: for limits, logs and server operators only
    deliver: Callable[[bytes], None] = _ignore
    disconnect: Callable[[str], None] = _ignore
    link: Any = None  # the I/O layer's object for this user (a Connection); the core never looks
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


class Hub:
    """Everything users share: who is connected, under which nick, in which channels.

    ``lock`` guards ``users``, ``nicks`` and ``channels`` and every User/Channel field that
    other threads read. Hold it briefly; never do socket I/O under it.
    """

    def __init__(self, config: ServerConfig,
                 fanout: Callable[[Iterable[User], bytes], None] | None = None) -> None:
        self.config = config
        self.fanout = fanout  # the I/O layer's batched send_all, if it has one
        self.lock = threading.Lock()
        self.users: set[User] = set()  # every connection, registered or not
        self.registered = 0  # how many of them are registered
        self.nicks: dict[str, User] = {}  # folded nick -> user, claimed at NICK
        self.channels: dict[str, Channel] = {}
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self.channels[irc_fold(config.room)] = Channel(config.room)
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

    def send_all(self, recipients: Iterable[User], data: bytes) -> None:
        """Hand the same encoded line to every recipient (batched, if the I/O layer can)."""
        if self.fanout is not None:
            self.fanout(recipients, data)
        else:
            for recipient in recipients:
                recipient.deliver(data)

    # -- state changes ---------------------------------------------------------------------

    def add(self, user: User) -> None:
        with self.lock:
            self.users.add(user)

    def remove(self, user: User) -> set[User]:
        """Forget a user; return who shared a channel with them (they should hear the QUIT)."""
        with self.lock:
            if user in self.users and user.registered:
                self.registered -= 1
            self.users.discard(user)
            if user.nick and self.nicks.get(irc_fold(user.nick)) is user:
                del self.nicks[irc_fold(user.nick)]
            peers = self._peers(user)
            for channel in list(user.channels):
                self._leave(user, channel)
            return peers

    def claim_nick(self, user: User, nick: str) -> tuple[str | None, set[User]]:
        """Give ``user`` the nick; return (old nick, who shares a channel) for the NICK line."""
        if not NICK_RE.match(nick):
            raise IRCError(ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname: use 3-20 of a-z A-Z 0-9 _")
        folded = irc_fold(nick)
        with self.lock:
            holder = self.nicks.get(folded)
            if holder is not None and holder is not user:
                raise IRCError(ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            old = user.nick
            if old is not None:
                del self.nicks[irc_fold(old)]
            self.nicks[folded] = user
            user.nick = nick
            return old, self._peers(user)

    def join(self, user: User, name: str) -> tuple[Channel, list[User]] | None:
        """Put ``user`` in the channel; return it with its members, or None if already there."""
        with self.lock:
            channel = self.channels.get(irc_fold(name))
            if channel is not None and user in channel.members:
                return None
            if len(user.channels) >= self.config.max_channels:
                raise IRCError(ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
            if channel is None:
                channel = self.channels[irc_fold(name)] = Channel(name)
            channel.members[user] = None
            user.channels.add(channel)
            return channel, list(channel.members)

    def part(self, user: User, name: str) -> list[User]:
        """Take ``user`` out of a channel; return the members before (who hear the PART)."""
        with self.lock:
            channel = self._member_channel(user, name)
            members = list(channel.members)
            self._leave(user, channel)
            return members

    def set_topic(self, user: User, name: str, topic: str) -> tuple[Channel, list[User]]:
        with self.lock:
            channel = self._member_channel(user, name)
            channel.topic = topic
            channel.topic_setter = user.nick or ""
            channel.topic_time = time.time()
            return channel, list(channel.members)

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

    def channel_recipients(self, sender: User, name: str) -> list[User]:
        """The members a message to channel ``name`` goes to: all but the sender."""
        with self.lock:
            channel = self.channels.get(irc_fold(name))
            if channel is None:
                raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
            if sender not in channel.members:
                raise IRCError(ERR_CANNOTSENDTOCHAN, name, "Cannot send to channel (join it first)")
            return [member for member in channel.members if member is not sender]

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

    def _peers(self, user: User) -> set[User]:
        peers: set[User] = set()
        for channel in user.channels:
            peers.update(channel.members)
        peers.discard(user)
        return peers

    def _member_channel(self, user: User, name: str) -> Channel:
        channel = self.channels.get(irc_fold(name))
        if channel is None:
            raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
        if user not in channel.members:
            raise IRCError(ERR_NOTONCHANNEL, name, "You're not on that channel")
        return channel

    def _leave(self, user: User, channel: Channel) -> None:
        channel.members.pop(user, None)
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
    old_source = user.source
    old, peers = hub.claim_nick(user, new)
    if user.registered:
        line = encode_line(format_line("NICK", new, prefix=old_source))
        hub.send_all([user, *peers], line)
        log.info("%s is now known as %s", old, new)
    else:
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
    joined = hub.join(user, name)
    if joined is None:
        return
    channel, members = joined
    log.info("%s joined %s", user.nick, channel.name)
    hub.send_all(members, _send_as(user, "JOIN", channel.name))
    if channel.topic:
        _send_topic(hub, user, channel)
    _send_names(hub, user, channel)


def cmd_part(hub: Hub, user: User, msg: Message) -> None:
    members = hub.part(user, msg.params[0])
    reason = msg.params[1:2]
    hub.send_all(members, _send_as(user, "PART", msg.params[0], *reason))
    log.info("%s left %s", user.nick, msg.params[0])


def cmd_privmsg(hub: Hub, user: User, msg: Message) -> None:
    """PRIVMSG and NOTICE: to a channel, every other member; to a nick, that user."""
    if not msg.params or not msg.params[0]:
        raise IRCError(ERR_NORECIPIENT, f"No recipient given ({msg.command})")
    if len(msg.params) < 2 or not msg.params[1]:
        raise IRCError(ERR_NOTEXTTOSEND, "No text to send")
    target, text = msg.params[0], msg.params[1]
    if target.startswith("#"):
        recipients = hub.channel_recipients(user, target)
    else:
        recipient = hub.find_user(target)
        if recipient is None:
            raise IRCError(ERR_NOSUCHNICK, target, "No such nick/channel")
        recipients = [recipient]
    user.last_message = time.monotonic()
    hub.send_all(recipients, _send_as(user, msg.command, target, text))


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
    nicks = [member.nick or "" for member in hub.members(channel)]
    hub.reply_list(user, RPL_NAMREPLY, "=", channel.name, items=nicks)
    hub.reply(user, RPL_ENDOFNAMES, channel.name, "End of /NAMES list")


def cmd_topic(hub: Hub, user: User, msg: Message) -> None:
    name = msg.params[0]
    if len(msg.params) > 1:
        channel, members = hub.set_topic(user, name, msg.params[1][:TOPIC_MAX])
        hub.send_all(members, _send_as(user, "TOPIC", channel.name, channel.topic))
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
# Sends never wait for a slow reader. On platforms without MSG_DONTWAIT (Windows) sends
# block, so there a stalled reader can hold up the pump; the server is meant for POSIX hosts.
SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0)
FLUSHED, BLOCKED, MORE = "flushed", "blocked", "more"  # Connection.flush


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


class Connection:
    """One client socket: ``serve`` runs in its own reader thread; the pump drains its outbox.

    ``_lock`` guards the outbox, the TLS session and whether the socket is still open; it is
    never held while waiting on the network, so ``deliver`` from other threads only ever waits
    for a copy (or an encryption).
    """

    def __init__(self, server: ChatServer, sock: socket.socket, address: tuple,
                 tls: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.sock = sock
        self.user = User(host=cloak_host(server.config.cloak_secret, address[0]), address=address[0],
                         deliver=self.enqueue, disconnect=self.abort, link=self)
        self.tls = TlsSession(tls) if tls is not None else None
        # Released by abort(), ending a flood-control wait early: a held Lock is a one-shot
        # event at a fraction of threading.Event's size, which matters at thousands of clients.
        self._kill_latch = threading.Lock()
        self._kill_latch.acquire()
        # Waiting for data before handing recv() a buffer: an idle reader then holds none.
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock, select.POLLIN)
        self._lock = threading.Lock()
        self._outbox: list[bytes] = []  # lines queued since the pump last took them
        self._unsent = b""  # taken by the pump, not yet accepted by the socket; pump only
        # Bytes in _outbox and _unsent: what SendQ limits. Between a send and the pump's
        # settling up it still counts what the kernel just took: errs early, never unbounded.
        self._queued = 0
        self._scheduled = False  # the pump knows this connection has output
        self._overflowed = False  # SendQ exceeded: further output is dropped
        self._closed = False  # the pump closed the socket
        self.kill_reason: str | None = None  # why the server is dropping this connection

    # -- called from any thread -----------------------------------------------------------

    def enqueue(self, data: bytes) -> None:
        """Queue a line for this client (User.deliver); never blocks."""
        if self.queue(data):
            self.server.pump.schedule(self)

    def queue(self, data: bytes) -> bool:
        """Append a line (encrypted first on TLS); True when the pump must be told of it."""
        with self._lock:
            if self.tls is not None and not (self._overflowed or self._closed):
                try:
                    data = self.tls.wrap(data)
                except ssl.SSLError as error:  # e.g. a timeout's ERROR before the handshake
                    log.debug("dropped a line for %s: %s", self.user.address, error)
                    return False
            verdict = self._queue_locked(data)
        if verdict is None:
            self.abort("SendQ exceeded")
            return False
        return verdict

    def _queue_locked(self, data: bytes) -> bool | None:
        """Append wire bytes (``_lock`` held): True if newly scheduled, None on overflow."""
        if self._overflowed or self._closed:
            return False
        if self._queued + len(data) > self.server.config.sendq:
            self._overflowed = True
            self._outbox.clear()
            self._queued = 0
            return None
        self._outbox.append(data)
        self._queued += len(data)
        if self._scheduled:
            return False
        self._scheduled = True
        return True

    def abort(self, reason: str) -> None:
        """Drop this connection: wake its reader thread, which then tears it down."""
        with self._lock:
            if self.kill_reason is None:
                self.kill_reason = reason
            if self._kill_latch.locked():
                self._kill_latch.release()
            if self._closed:
                return
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError as error:  # the peer may be gone already; the reader will notice
                log.debug("shutdown of %s: %s", self.user.address, error)

    # -- the reader thread ------------------------------------------------------------------

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
                if self.tls is not None:
                    data = self._decrypt(data)
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
        except ssl.SSLError as error:
            eof_reason = f"TLS error: {error.reason or error}"
        except OSError as error:
            eof_reason = f"Read error: {error.strerror or error}"
        finally:
            self._finish(user.quit_reason or self.kill_reason or eof_reason)

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

    def _decrypt(self, data: bytes) -> bytes | None:
        """Ciphertext from the socket to plaintext (b"" while a record is incomplete)."""
        with self._lock:
            plaintext, reply = self.tls.receive(data)
            if reply and self._queue_locked(reply):
                self.server.pump.schedule(self)  # (a handshake reply never overflows SendQ)
        return plaintext

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
        peers = hub.remove(user)
        if user.registered:
            hub.send_all(peers, _send_as(user, "QUIT", reason))
            log.info("%s quit (%s)", user.nick, reason)
        else:
            log.info("connection from %s closed before registering (%s)", user.address, reason)
        self.enqueue(encode_line(format_line("ERROR", f"Closing Link: {user.host} ({reason})")))
        self.server.pump.close_when_flushed(self)
        self.server.forget(self)

    # -- called by the pump thread only ---------------------------------------------------

    def flush(self) -> str:
        """Send what is queued, in one ``send``; FLUSHED, BLOCKED (socket full) or MORE.

        The lock is held only to take the queued lines and to settle the count afterwards,
        never during the system call, so senders queueing for this client never wait on it.
        """
        with self._lock:
            if self._closed:
                self._scheduled = False
                return FLUSHED
            batch, self._outbox = self._outbox, []
        if batch:
            joined = batch[0] if len(batch) == 1 else b"".join(batch)
            self._unsent = self._unsent + joined if self._unsent else joined
        data = self._unsent
        sent, write_error = 0, None
        if data:
            try:
                sent = self.sock.send(data, SEND_FLAGS)
            except BlockingIOError:
                pass
            except OSError as error:
                write_error = f"Write error: {error.strerror or error}"
        with self._lock:
            if write_error is not None:
                self._overflowed = True  # nothing more can reach this peer
                self._outbox.clear()
                self._unsent = b""
                self._queued = 0
                self._scheduled = False
            else:
                self._unsent = data[sent:]
                self._queued -= sent
                if self._unsent:
                    return BLOCKED
                if self._outbox:
                    return MORE  # queued while we were sending: next pass
                self._scheduled = False
                return FLUSHED
        self.abort(write_error)
        return FLUSHED

    def has_output(self) -> bool:
        with self._lock:
            return bool(self._outbox or self._unsent)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._outbox.clear()
            # A closed Connection is only freed by the cyclic GC (it and its User refer to
            # each other), which may take thousands of connections to come round: drop the
            # TLS session, by far its largest part, now. Nothing encrypts once _closed is set,
            # and nothing decrypts: the pump closes a connection only after its reader's _finish.
            self.tls = None
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected: closing is all that is left to do
        self.sock.close()


class OutputPump(threading.Thread):
    """The one thread that writes to (and closes) client sockets.

    Connections with new output are put on a ready list; each pass sends every ready
    connection's whole outbox in one ``send``, so lines that piled up while the pump was busy
    go out together. A connection whose socket is full waits in a selector for writability
    instead, so one stalled reader never holds up the rest.
    """

    def __init__(self) -> None:
        super().__init__(name="output-pump", daemon=True)
        # Connections with output. A deque, so that queueing one takes no lock: a broadcast
        # may schedule thousands of connections at once.
        self._ready: collections.deque[Connection] = collections.deque()
        self._lock = threading.Lock()  # guards the next four fields and the wake-up sockets
        self._closing: dict[Connection, float] = {}  # connection -> deadline to flush by
        self._sleeping = False  # set (under _lock) just before the pump may block in select
        self._stopping = False  # asked to finish: flush what is closing, then exit
        self._stopped = False  # exited: late connections are closed on the spot
        self._selector = selectors.DefaultSelector()
        self._waiting: set[Connection] = set()  # registered in the selector for writability
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ)

    def schedule(self, conn: Connection) -> None:
        """``conn`` has output: send it on the next pass."""
        self._submit(conn, close=False)

    def schedule_many(self, conns: list[Connection]) -> None:
        self._ready.extend(conns)
        self._wake_if_sleeping()

    def close_when_flushed(self, conn: Connection) -> None:
        """Send what ``conn`` still has (for up to CLOSE_GRACE seconds), then close it."""
        self._submit(conn, close=True)

    def _submit(self, conn: Connection, close: bool) -> None:
        if close:
            with self._lock:
                stopped = self._stopped
                self._closing[conn] = time.monotonic() + CLOSE_GRACE
            if stopped:  # a straggler after shutdown: no pump left to flush for it
                conn.close()
                return
        self._ready.append(conn)
        self._wake_if_sleeping()

    def _wake_if_sleeping(self) -> None:
        # The pump sets _sleeping before it looks at _ready one last time, so either it sees
        # what was just queued or we see it asleep and wake it.
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
            ready = self._take_ready()
            with self._lock:
                stopping = self._stopping
                deadlines = list(self._closing.values())
                self._sleeping = not ready
            if not ready:
                ready = self._take_ready()  # the last look before sleeping (see _submit)
            if stopping and not deadlines and not ready:
                break
            timeout = 0 if ready else self._select_timeout(deadlines, stopping)
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_in:
                    self._drain_wakeups()
                else:
                    self._selector.unregister(key.fileobj)
                    self._waiting.discard(key.data)
                    ready.append(key.data)
            if self._sleeping:
                with self._lock:
                    self._sleeping = False
            for conn in ready:
                if conn in self._waiting:
                    continue
                outcome = conn.flush()
                if outcome is BLOCKED:
                    self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
                    self._waiting.add(conn)
                elif outcome is MORE:
                    self._ready.append(conn)
            self._close_finished()
        with self._lock:
            self._stopped = True
            stragglers = list(self._closing)  # handed over after our last look
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()
        for conn in stragglers:
            conn.close()

    def _take_ready(self) -> list[Connection]:
        ready = []
        try:
            while True:
                ready.append(self._ready.popleft())
        except IndexError:
            return ready

    @staticmethod
    def _select_timeout(deadlines: list[float], stopping: bool) -> float | None:
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
        for conn, deadline in closing:
            if conn.has_output() and now < deadline:
                continue  # still flushing its last lines
            if conn in self._waiting:
                self._selector.unregister(conn.sock)
                self._waiting.discard(conn)
            conn.close()
            with self._lock:
                del self._closing[conn]


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
        self.hub = Hub(config, fanout=self._fanout)
        self.pump = OutputPump()
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

    def _fanout(self, users: Iterable[User], data: bytes) -> None:
        """Queue one line for many users, telling the pump once for all of them."""
        newly_ready = [user.link for user in users if user.link.queue(data)]
        if newly_ready:
            self.pump.schedule_many(newly_ready)

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
        tick = min(5.0, max(0.05, min(config.ping_interval, config.ping_timeout, config.register_timeout) / 4))
        ping = encode_line(format_line("PING", config.server_name))
        while not self._stop.wait(tick):
            now = time.monotonic()
            for user, action in liveness_actions(self.hub, now):
                if action == "ping":
                    user.ping_sent = now
                    user.deliver(ping)
                else:
                    user.disconnect(action)
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
            conn.abort("Server shutting down")
        with self._connections_changed:
            self._connections_changed.wait_for(lambda: not self._connections, timeout)
        self.pump.stop()
        if self.pump.ident is not None:
            self.pump.join(timeout)
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
    add("--sendq", type=int, default=defaults.sendq, help="bytes queued for a client before it is dropped")
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
        register_timeout=args.register_timeout, sendq=args.sendq,
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
