"""The chat as the client understands it: the connection's phase, who you are, the windows.

``ChatState`` is plain Python: it is told what happened (connected, lost, a name or password
typed) and answers with a ``Reaction``: lines for windows and IRC lines to send. Server
messages are handled by ``handle`` and typed commands by ``commands``, each a small table of
functions over this state. Nothing here touches a socket or the screen, so it is tested
directly.

The connection's lifecycle is one ``Phase`` that moves only through ``TRANSITIONS``:
connecting -> registering -> online, with the name prompt (a refused or missing name) and
the password prompt (464) on the way, and waiting (to reconnect) after a lost link. After
the user picks a name, NICK and USER go out on every (re)connection, after PASS when there is
a password. A name refused on a reconnection is replaced by the same name with ``_`` added.

Our own server puts everyone in its room by itself; a plain IRC server does not. So after 001
the client sends a PING with a marker token: a server answers lines in order, so when its
PONG comes back any automatic JOIN has already arrived, and the client joins what is still
missing: the rooms it was in before the link was lost, or ``--room`` when no room window is
open.

Everything from the network is hostile until shown otherwise: text goes through
``sanitize`` before it becomes an entry, and names that end up in lines we send (our nick,
a room) are taken only if they are safe there, so no server line can make the client build a
line ``format_line`` refuses. Names are compared by the server's own 005 rules (``rules``).
"""

from __future__ import annotations

import calendar
import re
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from curses_client.entries import Entry, Kind, make
from curses_client.irc import MAX_LINE_BYTES, format_line
from curses_client.rules import ServerRules
from curses_client.width import sanitize
from curses_client.windows import Window, WindowList

AUTOJOIN_TOKEN = "curses-client-autojoin"
WANTED_CAPS = ("batch", "message-tags", "server-time")  # history with its times, in batches
OLDER_PAGE = 50  # lines asked for when scrolling up past the oldest
SEEN_MSGIDS = 5000  # msgids remembered, so a replay after a reconnection shows no line twice
MAX_TEXT_BYTES = 400  # leaves room for ":nick!user@host PRIVMSG #room :" within 512 bytes
MAX_RAW_BYTES = MAX_LINE_BYTES - 2  # a /quote line, CRLF not counted
MAX_NAME_VARIANTS = 3  # "alice_", "alice__"...: then the name prompt
CTCP_MARK = "\x01"
NICK_RULE = "Names cannot hold spaces or any of , * ? ! @ : . and cannot start with a digit or -."
LIVE_SEPARATOR = "─── live chat from here ───"
SAFE_REF = re.compile(r"^[A-Za-z0-9_.+/=:-]{1,100}$")  # a msgid we may send back in a command
# time.localtime on Windows refuses times before 1970 or after 3000 (a day of margin each way
# for time zones): a server time outside is not one
EARLIEST_SERVER_TIME, LATEST_SERVER_TIME = 86_400, 32_503_593_600
_SERVER_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$")
def parse_server_time(text: str) -> float | None:
    """Seconds since the epoch from an IRCv3 ``time`` tag; None if it is not one.

    >>> parse_server_time("2023-11-14T22:13:20.500Z")
    1700000000.5
    >>> parse_server_time("yesterday") is None, parse_server_time("0001-01-01T00:00:00Z") is None
    (True, True)
    """
    match = _SERVER_TIME.match(text)
    if match is None:
        return None
    fields = [int(part) for part in match.groups()[:6]]
    try:
        seconds = calendar.timegm((*fields, 0, 0, 0)) + float(match.group(7) or 0)
    except (OverflowError, ValueError):
        return None
    return seconds if EARLIEST_SERVER_TIME <= seconds < LATEST_SERVER_TIME else None


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


class Phase(Enum):
    """Where the connection is; the value is what the status line says."""

    CONNECTING = "connecting"
    REGISTERING = "registering"
    ASKING_NAME = "choose a name"
    ASKING_PASSWORD = "password needed"
    ONLINE = "online"
    WAITING = "disconnected"  # the link is gone; the network thread will connect again


class Step(Enum):
    CONNECTED = "connected"
    NAME_NEEDED = "the server wants another name (or none was given)"
    NAME_GIVEN = "the user typed a name"
    PASSWORD_NEEDED = "the server wants a (different) password"
    PASSWORD_GIVEN = "the user typed a password"
    WELCOMED = "001 arrived"
    LOST = "the link is gone"


TRANSITIONS: dict[tuple[Phase, Step], Phase] = {
    (Phase.CONNECTING, Step.CONNECTED): Phase.REGISTERING,
    (Phase.WAITING, Step.CONNECTED): Phase.REGISTERING,
    (Phase.REGISTERING, Step.NAME_NEEDED): Phase.ASKING_NAME,
    (Phase.ASKING_NAME, Step.NAME_GIVEN): Phase.REGISTERING,
    (Phase.ASKING_NAME, Step.NAME_NEEDED): Phase.ASKING_NAME,  # refused again before the user typed
    (Phase.REGISTERING, Step.PASSWORD_NEEDED): Phase.ASKING_PASSWORD,
    (Phase.ASKING_NAME, Step.PASSWORD_NEEDED): Phase.ASKING_PASSWORD,
    (Phase.ASKING_PASSWORD, Step.PASSWORD_GIVEN): Phase.CONNECTING,  # the app connects again
    (Phase.REGISTERING, Step.WELCOMED): Phase.ONLINE,
    (Phase.CONNECTING, Step.LOST): Phase.WAITING,
    (Phase.REGISTERING, Step.LOST): Phase.WAITING,
    (Phase.ASKING_NAME, Step.LOST): Phase.WAITING,
    (Phase.ONLINE, Step.LOST): Phase.WAITING,
    (Phase.WAITING, Step.LOST): Phase.WAITING,
    # the password prompt outlasts the link: the app holds reconnection back until it is answered
    (Phase.ASKING_PASSWORD, Step.LOST): Phase.ASKING_PASSWORD,
    (Phase.ASKING_PASSWORD, Step.CONNECTED): Phase.ASKING_PASSWORD,
}


class BadTransition(Exception):
    """A step the current phase does not allow (a bug in the caller, not the server's doing)."""


@dataclass
class Reaction:
    """What the state wants done: lines for windows (None: the active one), lines to send."""

    shown: list[tuple[Window | None, Entry]] = field(default_factory=list)
    send: list[str] = field(default_factory=list)  # IRC lines without CRLF
    loading: Window | None = None  # older history was asked for: say it is on its way, on top
    older: tuple[Window, list[Entry]] | None = None  # older history that came: in place of that
    quit: str | None = None  # the user asked to leave, with this reason
    reconnect: bool = False  # the user asked to reconnect now, not at the next retry

    @property
    def entries(self) -> list[Entry]:
        return [entry for _, entry in self.shown]

    def info(self, text: str, kind: Kind = Kind.INFO, sender: str = "", window: Window | None = None,
             highlight: bool = False) -> None:
        self.shown.append((window, make(kind, text, sender, highlight)))

    def error(self, text: str, window: Window | None = None) -> None:
        self.info(text, Kind.ERROR, window=window)


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


def is_safe_raw(line: str) -> bool:
    """Whether a /quote line may go out as it is: one line, within the length limit.

    >>> is_safe_raw("MODE #chat +o bob"), is_safe_raw("A\\rB"), is_safe_raw("x" * 600)
    (True, False, False)
    """
    return bool(line.strip()) and line.isprintable() and len(line.encode("utf-8")) <= MAX_RAW_BYTES


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
        self.room = room  # the room to join when no room window is open
        self.nick = nick  # None until the user has picked a name
        self.password = password  # sent as PASS before NICK/USER; never shown or logged
        self.transport = transport
        self.phase = Phase.CONNECTING
        self.rules = ServerRules()
        self.windows = WindowList(server_label)
        self.nick_problem: str | None = None  # why the name prompt is showing again
        self.was_online = False  # a name refused from now on is one we had: try a variant
        self.last_private: str | None = None  # who sent the last private message (/r)
        self.oper_name: str | None = None  # /oper NAME typed: the password prompt is showing
        self.caps: frozenset[str] = frozenset()  # IRCv3 capabilities the server granted us
        self.offered: list[str] = []  # a multi-line CAP LS being collected
        self.user_sent = False  # USER goes once per connection, NICK again after a refusal
        self.last_refusal = ""  # the last TLS refusal shown, so retries do not repeat it
        self.names: dict[str, dict[str, tuple[str, str]]] = {}  # room key -> NAMES being collected
        self.names_wanted: set[str] = set()  # rooms whose /names the user asked for
        self.batches: dict[str, list[tuple[Window | None, Entry, str | None]]] = {}  # open history batches
        self.fetching: Window | None = None  # CHATHISTORY BEFORE sent for it, its batch not in yet
        self.fetch_batch: str | None = None  # the batch that answers it, once it has started
        self.last_ctcp_reply = float("-inf")  # time.monotonic() of the last CTCP answer we sent
        self._seen_order: deque[str] = deque()  # msgids shown, oldest first...
        self._seen: set[str] = set()  # ...and for lookups

    # -- the phase ---------------------------------------------------------------------------

    def can(self, step: Step) -> bool:
        """Whether a step is allowed now (a server may send a refusal at any moment)."""
        return (self.phase, step) in TRANSITIONS

    def move(self, step: Step) -> None:
        """Take one step of the lifecycle; ``TRANSITIONS`` says where it leads."""
        following = TRANSITIONS.get((self.phase, step))
        if following is None:
            raise BadTransition(f"{step.value} while {self.phase.value}")
        self.phase = following

    @property
    def needs_nick(self) -> bool:
        return self.nick is None  # the prompt shows while connected or not, until a name is typed

    @property
    def needs_password(self) -> bool:
        return self.phase is Phase.ASKING_PASSWORD

    @property
    def registered(self) -> bool:
        return self.phase is Phase.ONLINE

    # -- names and windows -------------------------------------------------------------------

    def fold(self, name: str) -> str:
        return self.rules.fold(name)

    def is_me(self, nick: str | None) -> bool:
        return nick is not None and self.nick is not None and self.fold(nick) == self.fold(self.nick)

    def window_of(self, name: str) -> Window | None:
        return self.windows.find(self.fold(name))

    def open_window(self, name: str) -> Window:
        """The window of a room or a nick, opened if need be (names already sanitised and safe)."""
        return self.windows.open(name, self.fold(name), self.rules.is_channel(name))

    @property
    def current(self) -> Window:
        return self.windows.current

    @property
    def online_count(self) -> int | None:
        window = self.current
        return len(window.members) if window.is_room and window.joined else None

    def mentions_me(self, text: str) -> bool:
        if not self.nick:
            return False
        pattern = r"(?<![\w\-\[\]\\`^{}|])" + re.escape(self.nick) + r"(?![\w\-\[\]\\`^{}|])"
        return re.search(pattern, text, re.IGNORECASE) is not None

    def everywhere(self, reaction: Reaction, text: str, kind: Kind = Kind.INFO) -> None:
        """A line about the connection: in every window, so whichever is shown says it."""
        for window in self.windows.windows:
            reaction.info(text, kind, window=window)

    def nicks_for_completion(self) -> list[str]:
        return [nick for _, nick in self.current.members.values() if not self.is_me(nick)]

    # -- the connection ----------------------------------------------------------------------

    def connected(self) -> Reaction:
        reaction = Reaction()
        self.move(Step.CONNECTED)
        self.user_sent, self.last_refusal = False, ""
        self.rules = ServerRules()
        if self.transport is Transport.TLS_UNVERIFIED:
            self.everywhere(reaction, f"Connected to {self.server_label} over TLS WITHOUT checking its certificate "
                                      "(--tls-insecure): anyone on the way could read or change the chat.", Kind.ERROR)
        else:
            over = " over TLS" if self.transport is Transport.TLS else ""
            self.everywhere(reaction, f"Connected to {self.server_label}{over}.")
        if self.needs_password:
            return reaction  # registering waits for the password the user is typing
        # Capabilities first: a server that knows CAP holds registration until CAP END, and one
        # that does not answers 421 and registers us as usual.
        self.caps, self.offered, self.batches, self.fetching, self.fetch_batch = frozenset(), [], {}, None, None
        reaction.send.append("CAP LS 302")
        if self.password is not None:
            reaction.send.append(format_line("PASS", self.password))
        if self.nick is None:
            self.move(Step.NAME_NEEDED)
        else:
            self.register(reaction)
        return reaction

    def refused(self, reason: str) -> Reaction:
        """A reconnection was refused before any IRC (a TLS certificate that does not verify)."""
        reaction = Reaction()
        if reason != self.last_refusal:
            self.last_refusal = reason
            self.everywhere(reaction, f"Refusing {self.server_label}: {sanitize(reason)}; still trying, over TLS only.",
                            Kind.ERROR)
        return reaction

    def disconnected(self, reason: str) -> Reaction:
        reaction = Reaction()
        if self.phase not in (Phase.CONNECTING, Phase.WAITING):
            self.everywhere(reaction, f"Lost the connection to {self.server_label}: {reason}", Kind.ERROR)
        self.move(Step.LOST)
        for window in self.windows.windows:
            window.rejoin = window.rejoin or window.joined
            window.leave()
        return reaction

    def choose_password(self, password: str) -> Reaction:
        """The user typed a password at the prompt; the app then connects again at once."""
        reaction = Reaction()
        password = clean_typed(password)
        if not password:
            reaction.error("Type the password and press Enter, or /exit to leave.")
            return reaction
        self.password = password
        if self.can(Step.PASSWORD_GIVEN):
            self.move(Step.PASSWORD_GIVEN)
        reaction.info("Connecting again with the password...")
        return reaction

    def ask_password(self, reason: str, reaction: Reaction) -> None:
        if not self.can(Step.PASSWORD_NEEDED):
            reaction.error(f"Password refused: {reason}")
            return
        lead = "The server refused the password" if self.password is not None else "The server needs a password"
        self.password = None
        self.move(Step.PASSWORD_NEEDED)
        reaction.error(f"{lead} ({reason}). Type it below and press Enter (it shows as *), or /exit to leave.")

    def choose_nick(self, nick: str) -> Reaction:
        """The user entered a name at the prompt."""
        reaction = Reaction()
        nick = nick.strip()
        if not self.rules.valid_nick(nick):
            self.nick_problem = f"{sanitize(nick)!r} is not a valid name. {NICK_RULE}"
            reaction.error(self.nick_problem)
            return reaction
        self.nick, self.nick_problem = nick, None
        if self.phase is Phase.ASKING_NAME:
            self.move(Step.NAME_GIVEN)
            self.register(reaction)
        return reaction

    def name_refused(self, name: str, reason: str, reaction: Reaction) -> None:
        """432/433/436 before the welcome: a variant of a name we had, or the prompt again."""
        text = f"{name}: {reason}" if name else reason
        if not self.can(Step.NAME_NEEDED):
            reaction.error(text)
            return
        variant = (self.nick or "") + "_"
        if (self.was_online and self.nick and len(variant) <= self.rules.nicklen
                and not self.nick.endswith("_" * MAX_NAME_VARIANTS)):
            reaction.error(f"The name {sanitize(self.nick)} is taken ({reason}); trying {sanitize(variant)}.")
            self.nick = variant
            self.register(reaction)
            return
        self.nick, self.nick_problem = None, text  # back to the name prompt
        reaction.error(f"{text}. Choose another name.")
        self.move(Step.NAME_NEEDED)

    def register(self, reaction: Reaction) -> None:
        assert self.nick is not None
        reaction.send.append(format_line("NICK", self.nick))
        if not self.user_sent:
            self.user_sent = True
            reaction.send.append(format_line("USER", self.nick, "0", "*", self.nick))

    def welcomed(self, nick: str, reaction: Reaction) -> None:
        if not self.can(Step.WELCOMED):
            return  # a welcome out of turn (while a prompt shows): the prompt's answer comes first
        self.move(Step.WELCOMED)
        self.was_online = True
        if self.rules.valid_nick(nick):
            self.nick = nick
        reaction.send.append(format_line("PING", AUTOJOIN_TOKEN))

    def join_missing_rooms(self, reaction: Reaction) -> None:
        """After registering: join again the rooms we were in, or ``--room`` the first time."""
        rooms = [window for window in self.windows.windows if window.is_room]
        if not rooms:
            reaction.send.append(format_line("JOIN", self.room))
        for window in rooms:
            if window.rejoin and not window.joined:
                keys = (window.room_key,) if window.room_key else ()
                reaction.send.append(format_line("JOIN", window.name, *keys))
            window.rejoin = False

    def oper(self, password: str) -> Reaction:
        """The password typed for /oper NAME: sent once, never kept."""
        reaction = Reaction()
        name, self.oper_name = self.oper_name, None
        password = clean_typed(password).strip()
        if name is None or not password or " " in password:
            reaction.error("/oper cancelled: no password (or one with a space) was typed.")
        elif self.registered:
            reaction.send.append(format_line("OPER", name, password))
        else:
            reaction.error("/oper cancelled: not connected.")
        return reaction

    # -- history -----------------------------------------------------------------------------

    def remember(self, msgid: str) -> None:
        if msgid not in self._seen:
            self._seen.add(msgid)
            self._seen_order.append(msgid)
            if len(self._seen_order) > SEEN_MSGIDS:
                self._seen.discard(self._seen_order.popleft())

    def seen(self, msgid: str) -> bool:
        return msgid in self._seen

    def fetch_older(self) -> Reaction:
        """The reader scrolled up past the oldest line of a room: ask for the page before it, once."""
        reaction = Reaction()
        window = self.current
        if (not window.is_room or not window.joined or not self.rules.history_limit or "batch" not in self.caps
                or self.fetching is not None or window.history_done):
            return reaction
        ref = window.oldest_ref or "timestamp=" + format_server_time(time.time())
        self.fetching = window
        count = str(min(OLDER_PAGE, self.rules.history_limit))
        reaction.send.append(format_line("CHATHISTORY", "BEFORE", window.name, ref, count))
        reaction.loading = window
        return reaction
