"""The chat as the client understands it: who you are, where, who else is there.

``ChatState`` is plain Python: it is told what happened (connected, a parsed IRC message
arrived, the user typed a command) and answers with a ``Reaction``: entries for the pane
and IRC lines to send. It never touches a socket or the screen, so it is tested directly.

Registration: after the user picks a name, NICK and USER go out on every (re)connection,
after PASS when there is a password. 432/433 before the welcome bring the name prompt back
with the server's reason; 464 (password incorrect) brings up the password prompt, and the
app holds reconnection back until the user has typed one. Our own
server puts everyone in its room by itself; a plain IRC server does not. So after 001 the
client sends a PING with a marker token: a server answers lines in order, so when its PONG
comes back any automatic JOIN has already arrived, and if none has, the client JOINs the
room itself.

Everything from the network is hostile until shown otherwise: text goes through
``sanitize`` before it becomes an entry, and names that end up in lines we send (our nick,
the room) are taken only if they are safe there, so no server line can make the client
build a line ``format_line`` refuses.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

from ircchat.numerics import ERR_PASSWDMISMATCH
from curses_client.irc import CHANNEL_RE, NICK_RE, Message, format_line, irc_fold
from curses_client import commands
from curses_client.entries import Entry, Kind, make
from curses_client.width import sanitize

AUTOJOIN_TOKEN = "curses-client-autojoin"
WANTED_CAPS = ("batch", "message-tags", "server-time")  # history with its times, in batches
OLDER_PAGE = 50  # lines asked for when scrolling up past the oldest
SEEN_MSGIDS = 5000  # msgids remembered, so a replay after a reconnection shows no line twice
MAX_TEXT_BYTES = 400  # leaves room for ":nick!user@host PRIVMSG #room :" within 512 bytes
NAME_PREFIXES = "~&@%+"  # channel status marks in a 353 reply
CTCP_MARK = "\x01"
NICK_RULE = "Names are 3-20 letters, digits or _."
LIVE_SEPARATOR = "─── live chat from here ───"
SAFE_REF = re.compile(r"^[A-Za-z0-9_.+/=:-]{1,100}$")  # a msgid we may send back in a command
_SERVER_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$")


def parse_server_time(text: str) -> float | None:
    """Seconds since the epoch from an IRCv3 ``time`` tag; None if it is not one.

    >>> parse_server_time("2023-11-14T22:13:20.500Z")
    1700000000.5
    >>> parse_server_time("yesterday") is None
    True
    """
    match = _SERVER_TIME.match(text)
    if match is None:
        return None
    fields = [int(part) for part in match.groups()[:6]]
    try:
        return calendar.timegm((*fields, 0, 0, 0)) + float(match.group(7) or 0)
    except (OverflowError, ValueError):
        return None


def format_server_time(seconds: float) -> str:
    """The IRCv3 form of a time, for CHATHISTORY references.

    >>> format_server_time(1700000000.5)
    '2023-11-14T22:13:20.500Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


class Transport(Enum):
    """How the connection is made, for the pane and the status line."""

    PLAIN = ""
    TLS = "TLS"
    TLS_UNVERIFIED = "TLS UNVERIFIED"


class Link(Enum):
    """The connection, as shown in the status line."""

    CONNECTING = "connecting"
    REGISTERING = "registering"
    ONLINE = "online"
    DISCONNECTED = "disconnected"


@dataclass
class Reaction:
    entries: list[Entry] = field(default_factory=list)
    send: list[str] = field(default_factory=list)  # IRC lines without CRLF
    loading: bool = False  # older history was asked for: show that it is on its way, on top
    older: list[Entry] | None = None  # older history that came: in place of the loading line

    def info(self, text: str, kind: Kind = Kind.INFO, sender: str = "") -> None:
        self.entries.append(make(kind, text, sender))


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Cut text into pieces of at most ``limit`` UTF-8 bytes, at a space when there is one.

    >>> split_text("aaa bbb ccc", 8)
    ['aaa bbb', 'ccc']
    """
    pieces = []
    while len(text.encode("utf-8")) > limit:
        cut = len(text.encode("utf-8")[:limit].decode("utf-8", "ignore"))
        space = text.rfind(" ", 0, cut)
        if space > 0:
            cut = space
        pieces.append(text[:cut])
        text = text[cut:].lstrip(" ")
    return pieces + [text] if text else pieces


def is_safe_name(name: str) -> bool:
    """Whether a name from the server can be shown and sent back as a middle parameter.

    >>> is_safe_name("ann[away]"), is_safe_name("a b"), is_safe_name(":x"), is_safe_name("\\x1b[2J")
    (True, False, False, False)
    """
    return (
        0 < len(name) <= 64
        and name.isprintable()
        and not any(char in name for char in " ,")
        and not name.startswith(":")
        and sanitize(name) == name
    )


def clean_typed(text: str) -> str:
    """What the user typed or pasted, without control characters that IRC would refuse."""
    return "".join(" " if char == "\t" else char for char in text if char == "\t" or ord(char) >= 0x20)


class ChatState:
    def __init__(
        self,
        server_label: str,
        room: str,
        nick: str | None = None,
        password: str | None = None,
        transport: Transport = Transport.PLAIN,
    ) -> None:
        self.server_label = server_label
        self.room = room  # the room we are in, or will join
        self.nick = nick  # None until the user has picked a valid name
        self.password = password  # sent as PASS before NICK/USER; never shown or logged
        self.transport = transport
        self._asking_password = False  # the server refused (or wanted) a password: prompt for one
        self._last_refusal = ""  # the last TLS refusal shown, so retries do not repeat it
        self.link = Link.CONNECTING
        self.registered = False
        self.in_room = False
        self.members: dict[str, str] = {}  # folded nick -> nick as shown
        self.nick_problem: str | None = None  # why the name prompt is showing again
        self.retry_text = ""  # "reconnecting in 4s" while disconnected
        self._connected = False
        self._user_sent = False  # USER goes once per connection, NICK again after a refusal
        self._names: dict[str, str] | None = None  # a NAMES reply being collected
        self._names_wanted = False  # the user asked /users
        self.caps: frozenset[str] = frozenset()  # IRCv3 capabilities the server granted us
        self._offered: list[str] = []  # a multi-line CAP LS being collected
        self.history_limit = 0  # CHATHISTORY=N in 005: older history can be asked for
        self._batches: dict[str, list[tuple[Entry, str | None]]] = {}  # open chathistory batches
        self._fetching = False  # CHATHISTORY BEFORE sent, its batch not in yet
        self._history_done = False  # the start of the room's history was reached
        self._oldest_ref: str | None = None  # where the oldest history line shown is (msgid=...)
        self._seen_order: deque[str] = deque()  # msgids shown, oldest first...
        self._seen: set[str] = set()  # ...and for lookups
        self._handlers: dict[str, Callable[[Message, Reaction], None]] = {
            "PING": self._on_ping,
            "CAP": self._on_cap,
            "BATCH": self._on_batch,
            "FAIL": self._on_fail,
            "PONG": self._on_pong,
            "ERROR": self._on_error,
            "JOIN": self._on_join,
            "PART": self._on_part,
            "QUIT": self._on_quit,
            "NICK": self._on_nick,
            "PRIVMSG": self._on_privmsg,
            "NOTICE": self._on_notice,
            "TOPIC": self._on_topic,
            "001": self._on_welcome,
            "005": self._on_isupport,
            "353": self._on_names,
            "366": self._on_end_of_names,
            "332": self._on_topic_reply,
            "333": self._ignore,
            "431": self._on_bad_nick,
            "432": self._on_bad_nick,
            "433": self._on_bad_nick,
            "436": self._on_bad_nick,
            ERR_PASSWDMISMATCH: self._on_bad_password,
        }

    # -- what the status line shows ---------------------------------------------------------

    @property
    def needs_nick(self) -> bool:
        return self.nick is None

    @property
    def needs_password(self) -> bool:
        return self._asking_password

    @property
    def online_count(self) -> int | None:
        return len(self.members) if self.in_room else None

    def is_me(self, nick: str | None) -> bool:
        return nick is not None and self.nick is not None and irc_fold(nick) == irc_fold(self.nick)

    # -- the connection ----------------------------------------------------------------------

    def connected(self) -> Reaction:
        reaction = Reaction()
        self._connected, self.registered, self.in_room = True, False, False
        self._user_sent = False
        self.link, self.retry_text = Link.REGISTERING, ""
        self._last_refusal = ""
        if self.transport is Transport.TLS_UNVERIFIED:
            reaction.info(
                f"Connected to {self.server_label} over TLS WITHOUT checking its certificate "
                "(--tls-insecure): anyone on the way could read or change the chat.",
                Kind.ERROR,
            )
        else:
            over = " over TLS" if self.transport is Transport.TLS else ""
            reaction.info(f"Connected to {self.server_label}{over}.")
        if self._asking_password:
            return reaction  # registering waits for the password the user is typing
        # Capabilities first: a server that knows CAP holds registration until CAP END, and one
        # that does not answers 421 and registers us as usual.
        self.caps, self._offered, self._batches, self._fetching = frozenset(), [], {}, False
        reaction.send.append("CAP LS 302")
        if self.password is not None:
            reaction.send.append(format_line("PASS", self.password))
        if self.nick is not None:
            self._register(reaction)
        return reaction

    def refused(self, reason: str) -> Reaction:
        """A reconnection was refused before any IRC (a TLS certificate that does not verify)."""
        reaction = Reaction()
        if reason != self._last_refusal:
            self._last_refusal = reason
            reaction.info(f"Refusing {self.server_label}: {sanitize(reason)}; still trying, over TLS only.",
                          Kind.ERROR)
        return reaction

    def choose_password(self, password: str) -> Reaction:
        """The user typed a password at the prompt; the app then connects again at once."""
        reaction = Reaction()
        password = clean_typed(password)
        if not password:
            reaction.info("Type the password and press Enter, or /exit to leave.", Kind.ERROR)
            return reaction
        self.password, self._asking_password = password, False
        reaction.info("Connecting again with the password...")
        return reaction

    def disconnected(self, reason: str) -> Reaction:
        reaction = Reaction()
        if self._connected:
            reaction.info(f"Lost the connection to {self.server_label}: {reason}", Kind.ERROR)
        self._connected, self.registered, self.in_room = False, False, False
        self.members.clear()
        self.link = Link.DISCONNECTED
        return reaction

    def reconnecting(self, text: str) -> None:
        self.retry_text = text

    def choose_nick(self, nick: str) -> Reaction:
        """The user entered a name at the prompt."""
        reaction = Reaction()
        nick = nick.strip()
        if not NICK_RE.match(nick):
            self.nick_problem = f"{sanitize(nick)!r} is not a valid name. {NICK_RULE}"
            reaction.info(self.nick_problem, Kind.ERROR)
            return reaction
        self.nick, self.nick_problem = nick, None
        if self._connected and not self._asking_password:
            self._register(reaction)
        return reaction

    def _register(self, reaction: Reaction) -> None:
        assert self.nick is not None
        reaction.send.append(format_line("NICK", self.nick))
        if not self._user_sent:
            self._user_sent = True
            reaction.send.append(format_line("USER", self.nick, "0", "*", self.nick))

    # -- messages from the server -----------------------------------------------------------

    def handle(self, msg: Message) -> Reaction:
        reaction = Reaction()
        handler = self._handlers.get(msg.command)
        if handler is not None:
            handler(msg, reaction)
        elif msg.command.isdigit():
            self._on_other_numeric(msg, reaction)
        else:
            shown = " ".join(sanitize(param) for param in msg.params)
            reaction.info(f"{sanitize(msg.command)} {shown}".strip())
        if msg.tags:
            self._apply_tags(dict(msg.tags), reaction)
        return reaction

    def _apply_tags(self, tags: dict[str, str], reaction: Reaction) -> None:
        """Server time on what a line shows; a line of a history batch goes to that batch."""
        when = parse_server_time(tags.get("time", ""))
        if when is not None:
            reaction.entries = [replace(entry, when=when) for entry in reaction.entries]
        msgid = tags.get("msgid", "")
        batch = self._batches.get(tags.get("batch", ""))
        if batch is not None:
            if msgid not in self._seen:  # a replay after a reconnection repeats what we have
                ref = f"msgid={msgid}" if SAFE_REF.match(msgid) else None
                batch.extend((replace(entry, replayed=True), ref) for entry in reaction.entries)
            reaction.entries = []
        if msgid:
            self._remember(msgid)

    def _remember(self, msgid: str) -> None:
        if msgid not in self._seen:
            self._seen.add(msgid)
            self._seen_order.append(msgid)
            if len(self._seen_order) > SEEN_MSGIDS:
                self._seen.discard(self._seen_order.popleft())

    def _ignore(self, msg: Message, reaction: Reaction) -> None:
        """Messages that change nothing the reader sees."""

    def _on_cap(self, msg: Message, reaction: Reaction) -> None:
        sub = msg.params[1].upper() if len(msg.params) > 2 else ""
        if sub == "LS":
            self._offered += msg.params[-1].split()
            if len(msg.params) > 3 and msg.params[2] == "*":
                return  # more LS lines follow
            offered = {cap.split("=", 1)[0] for cap in self._offered}
            wanted = [cap for cap in WANTED_CAPS if cap in offered]
            self._offered = []
            reaction.send.append(format_line("CAP", "REQ", " ".join(wanted)) if wanted else "CAP END")
        elif sub == "ACK":
            self.caps = self.caps | set(msg.params[-1].split()) & set(WANTED_CAPS)
            reaction.send.append("CAP END")
        elif sub == "NAK":
            reaction.send.append("CAP END")

    def _on_isupport(self, msg: Message, reaction: Reaction) -> None:
        for token in msg.params[1:-1]:
            name, _, value = token.partition("=")
            if name == "CHATHISTORY":
                self.history_limit = int(value) if value.isdigit() else 0

    def _on_batch(self, msg: Message, reaction: Reaction) -> None:
        ref = msg.params[0] if msg.params else ""
        if ref.startswith("+") and msg.params[1:2] == ("chathistory",):
            self._batches[ref[1:]] = []
        elif ref.startswith("-") and ref[1:] in self._batches:
            self._end_history(self._batches.pop(ref[1:]), reaction)

    def _end_history(self, lines: list[tuple[Entry, str | None]], reaction: Reaction) -> None:
        """A history batch is complete: older lines asked for, or the replay on joining."""
        entries = [entry for entry, _ in lines]
        oldest = next((ref for _, ref in lines if ref is not None), None)
        if self._fetching:
            self._fetching = False
            if oldest is not None:
                self._oldest_ref = oldest
            if not entries:
                self._history_done = True
                entries = [make(Kind.INFO, f"This is the start of {sanitize(self.room)}'s history.")]
            reaction.older = entries
        elif entries:
            if self._oldest_ref is None:
                self._oldest_ref = oldest
            reaction.entries += entries
            reaction.info(LIVE_SEPARATOR)

    def _on_fail(self, msg: Message, reaction: Reaction) -> None:
        text = sanitize(msg.params[-1]) if msg.params else "failed"
        if msg.params[:1] == ("CHATHISTORY",) and self._fetching:
            self._fetching, self._history_done = False, True
            reaction.older = [make(Kind.ERROR, f"Older messages are not available: {text}")]
            return
        reaction.info(" ".join(sanitize(param) for param in msg.params[:-1]) + f": {text}", Kind.ERROR)

    def fetch_older(self) -> Reaction:
        """The reader scrolled up past the oldest line: ask for the page before it, once."""
        reaction = Reaction()
        if (not self.in_room or not self.history_limit or "batch" not in self.caps
                or self._fetching or self._history_done):
            return reaction
        ref = self._oldest_ref or "timestamp=" + format_server_time(time.time())
        self._fetching = True
        count = str(min(OLDER_PAGE, self.history_limit))
        reaction.send.append(format_line("CHATHISTORY", "BEFORE", self.room, ref, count))
        reaction.loading = True
        return reaction

    def _on_ping(self, msg: Message, reaction: Reaction) -> None:
        reaction.send.append(format_line("PONG", *(msg.params[-1:] or ("ping",))))

    def _on_pong(self, msg: Message, reaction: Reaction) -> None:
        if msg.params and msg.params[-1] == AUTOJOIN_TOKEN and not self.in_room:
            reaction.send.append(format_line("JOIN", self.room))

    def _on_error(self, msg: Message, reaction: Reaction) -> None:
        text = sanitize(msg.params[-1]) if msg.params else "no reason given"
        reaction.info(f"The server closed the link: {text}", Kind.ERROR)

    def _on_welcome(self, msg: Message, reaction: Reaction) -> None:
        self.registered, self.link = True, Link.ONLINE
        if msg.params and NICK_RE.match(msg.params[0]):
            self.nick = msg.params[0]
        reaction.info(sanitize(msg.params[-1]) if len(msg.params) > 1 else "Welcome.")
        reaction.send.append(format_line("PING", AUTOJOIN_TOKEN))

    def _on_bad_nick(self, msg: Message, reaction: Reaction) -> None:
        reason = sanitize(msg.params[-1]) if msg.params else "Name refused"
        name = sanitize(msg.params[1]) if len(msg.params) > 2 else ""
        text = f"{name}: {reason}" if name else reason
        if self.registered:
            reaction.info(text, Kind.ERROR)
        else:
            self.nick, self.nick_problem = None, text  # back to the name prompt
            reaction.info(f"{text}. Choose another name.", Kind.ERROR)

    def _on_bad_password(self, msg: Message, reaction: Reaction) -> None:
        reason = sanitize(msg.params[-1]) if len(msg.params) > 1 else "Password incorrect"
        if self.registered:
            reaction.info(reason, Kind.ERROR)
            return
        lead = "The server refused the password" if self.password is not None else "The server needs a password"
        self.password, self._asking_password = None, True
        reaction.info(f"{lead} ({reason}). Type it below and press Enter (it shows as *), or /exit to leave.",
                      Kind.ERROR)

    def _on_join(self, msg: Message, reaction: Reaction) -> None:
        channel = msg.params[0] if msg.params else ""
        who = sanitize(msg.nick or "?")
        if self.is_me(msg.nick) and CHANNEL_RE.match(channel) and is_safe_name(channel):
            self.room, self.in_room = channel, True
            self.members = {irc_fold(self.nick or who): self.nick or who}
            reaction.info(f"You joined {sanitize(channel)}.", Kind.JOIN)
            return
        if irc_fold(channel) == irc_fold(self.room):
            self.members[irc_fold(who)] = who
        reaction.info(f"{who} joined {sanitize(channel)}", Kind.JOIN, who)

    def _on_part(self, msg: Message, reaction: Reaction) -> None:
        channel = msg.params[0] if msg.params else ""
        who = sanitize(msg.nick or "?")
        reason = f" ({sanitize(msg.params[1])})" if len(msg.params) > 1 and msg.params[1] else ""
        if self.is_me(msg.nick):
            if irc_fold(channel) == irc_fold(self.room):
                self.in_room = False
                self.members.clear()
            reaction.info(f"You left {sanitize(channel)}{reason}", Kind.PART)
            return
        if irc_fold(channel) == irc_fold(self.room):
            self.members.pop(irc_fold(who), None)
        reaction.info(f"{who} left {sanitize(channel)}{reason}", Kind.PART, who)

    def _on_quit(self, msg: Message, reaction: Reaction) -> None:
        who = sanitize(msg.nick or "?")
        reason = sanitize(msg.params[0]) if msg.params and msg.params[0] else "no reason given"
        self.members.pop(irc_fold(who), None)
        reaction.info(f"{who} quit ({reason})", Kind.QUIT, who)

    def _on_nick(self, msg: Message, reaction: Reaction) -> None:
        old, new = sanitize(msg.nick or "?"), sanitize(msg.params[0] if msg.params else "?")
        if self.members.pop(irc_fold(old), None) is not None:
            self.members[irc_fold(new)] = new
        if self.is_me(msg.nick) and msg.params and is_safe_name(msg.params[0]):
            self.nick = new
            reaction.info(f"You are now known as {new}", Kind.NICK, new)
        else:
            reaction.info(f"{old} is now known as {new}", Kind.NICK, new)

    def _on_privmsg(self, msg: Message, reaction: Reaction) -> None:
        if len(msg.params) < 2:
            return
        target, text = msg.params[0], msg.params[1]
        who = sanitize(msg.nick or msg.prefix or "?")
        private = not target.startswith(("#", "&"))
        if text.startswith(CTCP_MARK):
            verb, _, body = text.strip(CTCP_MARK).partition(" ")
            if verb.upper() != "ACTION":
                reaction.info(f"{who} sent a CTCP {sanitize(verb)} request (not answered)")
                return
            kind = Kind.PRIVATE_IN if private else Kind.ACTION
            shown = f"* {sanitize(body)}" if private else sanitize(body)
            reaction.info(shown, kind, who)
            return
        reaction.info(sanitize(text), Kind.PRIVATE_IN if private else Kind.CHAT, who)

    def _on_notice(self, msg: Message, reaction: Reaction) -> None:
        if len(msg.params) < 2:
            return
        who = sanitize(msg.nick or msg.prefix or "server")
        reaction.info(sanitize(msg.params[1].strip(CTCP_MARK)), Kind.NOTICE, who)

    def _on_topic(self, msg: Message, reaction: Reaction) -> None:
        who = sanitize(msg.nick or "?")
        topic = sanitize(msg.params[-1]) if len(msg.params) > 1 else ""
        reaction.info(f"{who} set the topic: {topic}")

    def _on_topic_reply(self, msg: Message, reaction: Reaction) -> None:
        if len(msg.params) > 2:
            reaction.info(f"Topic of {sanitize(msg.params[1])}: {sanitize(msg.params[2])}")

    def _on_names(self, msg: Message, reaction: Reaction) -> None:
        if len(msg.params) < 4 or irc_fold(msg.params[2]) != irc_fold(self.room):
            return
        if self._names is None:
            self._names = {}
        for name in msg.params[3].split():
            name = sanitize(name.lstrip(NAME_PREFIXES))
            if name:
                self._names[irc_fold(name)] = name

    def _on_end_of_names(self, msg: Message, reaction: Reaction) -> None:
        if len(msg.params) < 2 or irc_fold(msg.params[1]) != irc_fold(self.room):
            return
        if self._names is not None and self.in_room:
            self.members = self._names
        self._names = None
        if self._names_wanted:
            self._names_wanted = False
            names = sorted(self.members.values(), key=str.lower)
            reaction.info(f"{len(names)} in {sanitize(self.room)}: {', '.join(names)}")

    def _on_other_numeric(self, msg: Message, reaction: Reaction) -> None:
        if msg.command == "421" and len(msg.params) > 1 and msg.params[1].upper() in ("CAP", "CHATHISTORY"):
            return  # a server without IRCv3: nothing to tell the reader
        # params[0] is our own nick; the rest is the text the server means for a reader
        text = " ".join(sanitize(param) for param in msg.params[1:]) or msg.command
        kind = Kind.ERROR if msg.command[0] in "45" else Kind.INFO
        reaction.info(text, kind)

    # -- what the user typed -----------------------------------------------------------------

    def user_input(self, parsed: commands.Parsed) -> Reaction:
        reaction = Reaction()
        if isinstance(parsed, commands.Say):
            self._say(parsed.text, reaction)
        elif isinstance(parsed, commands.Action):
            self._act(parsed.text, reaction)
        elif isinstance(parsed, commands.PrivateMessage):
            self._private(parsed.target, parsed.text, reaction)
        elif isinstance(parsed, commands.ChangeNick):
            if self._usable(reaction):
                reaction.send.append(format_line("NICK", parsed.nick))
        elif isinstance(parsed, commands.ListUsers):
            if self._usable(reaction):
                self._names_wanted = True
                reaction.send.append(format_line("NAMES", self.room))
        elif isinstance(parsed, commands.ShowHelp):
            for usage, meaning in commands.HELP:
                reaction.info(f"{usage:<24} {meaning}")
        elif isinstance(parsed, commands.Unknown):
            reaction.info(
                f"Unknown command /{sanitize(parsed.name)}. Type /help for the list, "
                f"or //{sanitize(parsed.name)} to send it as text.",
                Kind.ERROR,
            )
        elif isinstance(parsed, commands.BadUsage):
            reaction.info(parsed.message, Kind.ERROR)
        return reaction

    def _usable(self, reaction: Reaction) -> bool:
        if not self.registered:
            reaction.info("Not connected yet: wait until the status line says online.", Kind.ERROR)
            return False
        return True

    def _say(self, text: str, reaction: Reaction) -> None:
        text = clean_typed(text)
        if not text.strip() or not self._usable(reaction):
            return
        if not self.in_room:
            reaction.info(f"You are not in {self.room} yet.", Kind.ERROR)
            return
        for piece in split_text(text):
            reaction.send.append(format_line("PRIVMSG", self.room, piece))
            reaction.info(piece, Kind.OWN, self.nick or "")

    def _act(self, text: str, reaction: Reaction) -> None:
        text = clean_typed(text)
        if not self._usable(reaction):
            return
        if not self.in_room:
            reaction.info(f"You are not in {self.room} yet.", Kind.ERROR)
            return
        for piece in split_text(text, MAX_TEXT_BYTES - len("\x01ACTION \x01")):
            reaction.send.append(format_line("PRIVMSG", self.room, f"{CTCP_MARK}ACTION {piece}{CTCP_MARK}"))
            reaction.info(piece, Kind.ACTION, self.nick or "")

    def _private(self, target: str, text: str, reaction: Reaction) -> None:
        text = clean_typed(text)
        if not self._usable(reaction):
            return
        if any(char in target for char in " ,\x00\r\n") or target.startswith(":"):
            reaction.info(f"{sanitize(target)!r} is not a name.", Kind.ERROR)
            return
        for piece in split_text(text):
            reaction.send.append(format_line("PRIVMSG", target, piece))
            reaction.info(piece, Kind.PRIVATE_OUT, sanitize(target))

    def nicks_for_completion(self) -> list[str]:
        return [nick for nick in self.members.values() if not self.is_me(nick)]
