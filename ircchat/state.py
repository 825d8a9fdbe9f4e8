"""What users share: ``User``, ``Channel`` and the ``Hub`` that holds them behind ``Hub.lock``.

Also the server's configuration and the small policies that live with the state (password
back-off, host cloaks, liveness); the rooms' logs are in ``roomlog``. No socket I/O here:
``Hub`` methods take the lock, change state and return who must hear about it.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ircchat.history import SAVED_CHANNELS_MAX, HistoryEntry, HistoryStore
from ircchat.ircv3 import Stamped, Stamper, Variant, add_tags
from ircchat.modes import (
    PREFIXES,
    Ban,
    BanList,
    ModeChange,
    apply_mode,
    channel_state,
    load_states,
    mode_batches,
    mode_string,
    names_one,
    restore_state,
)
from ircchat.numerics import (
    ERR_BADCHANNELKEY,
    ERR_BANNEDFROMCHAN,
    ERR_BANONCHAN,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANNELISFULL,
    ERR_CHANOPRIVSNEEDED,
    ERR_ERRONEUSNICKNAME,
    ERR_INVITEONLYCHAN,
    ERR_NICKNAMEINUSE,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOTONCHANNEL,
    ERR_TOOMANYCHANNELS,
    ERR_USERNOTINCHANNEL,
    ERR_USERONCHANNEL,
    RPL_NAMREPLY,
    IRCError,
    StandardReplyError,
)
from ircchat.protocol import (
    FORBIDDEN_CHARS,
    MAX_LINE_BYTES,
    NICK_RE,
    encode_line,
    format_line,
    irc_fold,
)
from ircchat.roomlog import RoomLog

if TYPE_CHECKING:
    from ircchat.cluster import ClusterBus


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
    replay_lines: int = 50  # room lines replayed on join, when there is history
    chathistory_max: int = 100  # most lines one CHATHISTORY request may ask for
    nick_changes_per_minute: int = 5
    # ADMIN's three lines: where the server is, who runs it, how to reach them.
    admin: tuple[str, str, str] = ("Location not given", "Run by its operator", "No contact address given")
    password_backoff: float = 0.5  # seconds between tries after a wrong PASS, doubling per failure
    opers: tuple[tuple[str, str], ...] = ()  # (name, password) pairs that OPER accepts
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

    def pending(self, address: str, now: float) -> float:
        """Seconds until this address's next try is due, booking nothing (0: now)."""
        state = self._current(address, now)
        return 0.0 if state is None else max(0.0, state[2] - now)

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
    """One connection's IRC identity. Fields that other threads read (nick, channels, caps and
    variant, registered, away) change under ``Hub.lock``; the rest (the clocks, the password, the
    label and answers of the command being handled, flood debt) belong to its reader thread.

    ``deliver`` queues pre-encoded bytes for this user's connection and ``disconnect`` asks the
    socket layer to drop it; both are safe to call from any thread and never block. ``outbox``,
    when set, is the connection's ordered output, which can follow one room log (see Outbox).
    """

    host: str  # what others see: a cloak of the address, unless cloaking is off
    address: str = ""  # the real peer address: for limits, logs and server operators only
    deliver: Callable[[bytes], None] = _ignore
    disconnect: Callable[[str], None] = _ignore
    outbox: Any = None  # an Outbox that can follow a room log, or None (TLS, unit tests)
    nick: str | None = None
    username: str | None = None
    realname: str = ""
    away: str | None = None  # the AWAY message, while away
    registered: bool = False
    cap_negotiating: bool = False
    caps: frozenset[str] = frozenset()  # IRCv3 capabilities this client asked for
    variant: Variant = Variant.PLAIN  # which tags its messages carry (from ``caps``)
    label: str | None = None  # the labeled-response label of the command being handled
    answers: list[bytes] | None = None  # meanwhile, its answers, collected to be labeled
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
    node: str | None = None  # cluster mode: the node serving a replica of another node's user
    # Flood-control tokens this user's commands cost beyond one per line (extra targets, long
    # replies); the reader charges them to its token bucket and resets this to 0.
    flood_debt: float = 0.0

    @property
    def source(self) -> str:
        return f"{self.nick}!{self.username}@{self.host}"


class WhowasEntry(NamedTuple):
    """A nick given up (by a quit or a nick change), as WHOWAS shows it."""

    nick: str
    username: str
    host: str
    realname: str
    when: float  # wall clock


WHOWAS_NICKS = 1000  # departed nicks remembered, the least recently given up forgotten first...
WHOWAS_PER_NICK = 4  # ...and the last few users of each


@dataclass(eq=False, slots=True)
class Channel:
    name: str
    created: float = field(default_factory=time.time)
    topic: str = ""
    topic_setter: str = ""
    topic_time: float = 0.0
    # The room's last stored lines as delivered, newest last (with history on): what a joiner
    # is replayed, taken in the same hold of ``Hub.lock`` as the join, so the replay ends
    # exactly where the joiner's live lines begin.
    recent: collections.deque[HistoryEntry] = field(default_factory=collections.deque)
    # A dict used as an ordered set: NAMES then lists members in the order they joined,
    # with no sorting on every join into a big room.
    members: dict[User, None] = field(default_factory=dict)
    log: RoomLog = field(default_factory=RoomLog)  # lines for the members that follow it
    others: dict[User, None] = field(default_factory=dict)  # members sent lines one by one
    # The names of the 353 lines, encoded and packed to ``names_room`` bytes each; kept up
    # to date on join (big rooms fill up without a rebuild per join), dropped on part/nick.
    names: list[bytearray] | None = field(default_factory=list)
    names_room: int = 0
    # Moderation (see ircchat.modes): flag letters of imnst (LIST and WHOIS ask "s" in it),
    # the key and limit, the bans, and who holds operator (@) and voice (+) here.
    modes: set[str] = field(default_factory=lambda: {"n", "t"})
    key: str | None = None
    limit: int | None = None
    bans: BanList = field(default_factory=BanList)
    ops: set[User] = field(default_factory=set)
    voiced: set[User] = field(default_factory=set)
    invited: dict[User, float] = field(default_factory=dict)  # invitee -> monotonic expiry
    # bool(bans) or +m: the one thing a member's message checks when neither is in force.
    restricted: bool = False
    ban_verdicts: dict[User, bool] = field(default_factory=dict)  # member -> banned, until a change

    def privileged(self, user: User) -> bool:
        """A channel operator here, or a server operator (who may act as one anywhere)."""
        return user in self.ops or "o" in user.modes

    def shown_to(self, viewer: User) -> bool:
        """Whether ``viewer`` may see this channel and its members: a secret (+s) channel only
        to its members and server operators (``Hub.lock`` held)."""
        return "s" not in self.modes or viewer in self.members or "o" in viewer.modes

    def prefix(self, user: User, multi: bool = False) -> str:
        """The NAMES prefix of a member: the highest of @ and +, or all of them (``multi``)."""
        marks = ("@" if user in self.ops else "") + ("+" if user in self.voiced else "")
        return marks if multi else marks[:1]

    def banned(self, user: User, source: str | None = None) -> bool:
        """Whether a ban matches ``user`` (or ``source``, the nick!user@host it would take)
        and no @, + or server operator status exempts it (``Hub.lock`` held); a member's
        verdict is kept until the bans or its nick change."""
        if not self.bans or user in self.ops or user in self.voiced or "o" in user.modes:
            return False
        if source is not None:
            return self.bans.matches(source)
        verdict = self.ban_verdicts.get(user)
        if verdict is None:
            verdict = self.bans.matches(user.source)
            if user in self.members:  # kept for members only: the cache stays as big as the room
                self.ban_verdicts[user] = verdict
        return verdict


@dataclass(slots=True)
class Fanout:
    """What a Hub change must tell, gathered under ``Hub.lock`` and done after releasing it."""

    logs: list[RoomLog] = field(default_factory=list)  # appended to: the pump must pass over them
    direct: Iterable[User] = ()  # members that follow none of those logs: sent the line one by one
    woken: list[Any] = field(default_factory=list)  # outboxes that stopped following: must drain


Replay = Callable[["Hub", User, Channel, list[HistoryEntry]], None]


class RoomLine(NamedTuple):
    """A room line on its way out: stamped, perhaps waiting for the history's commit."""

    sender: User
    channel: Channel
    stamped: Stamped
    to_sender: bool  # the sender gets it too (TOPIC; PRIVMSG with echo-message)
    label: str | None  # for the sender's copy (labeled-response)
    entry: HistoryEntry | None = None  # as stored


class Hub:
    """Everything users share: who is connected, under which nick, in which channels.

    ``lock`` guards ``users``, ``nicks`` and ``channels`` and every User/Channel field that
    other threads read. Hold it briefly; never do socket I/O under it. A line for a channel is
    appended once to its log (its followers read it from there) and handed one by one only to
    the members that do not follow that log.

    In cluster mode the Hub holds other nodes' users too, as replicas (``User.node`` set; see
    ``ircchat.cluster``), and tells its ``bus`` of every change its own users make.
    """

    def __init__(self, config: ServerConfig,
                 on_append: Callable[[list[RoomLog]], None] | None = None,
                 history: HistoryStore | None = None, bus: ClusterBus | None = None) -> None:
        # Imported here: the cluster module builds on this one.
        from ircchat.cluster import ClusterBus
        self.config = config
        # The other nodes, in cluster mode: told of every change our own users make.
        self.bus = bus if bus is not None else ClusterBus()
        self.on_append = on_append  # the pump's: these logs have new lines
        self.history = history  # None: no history (--no-history)
        if history is not None:
            history.on_commit = self._deliver_stored
        self.started_ms = int(time.time() * 1000)  # stored lines before this are earlier runs'
        # Stamps, and the order entries reach the history in: its own lock, so that senders
        # never wait for ``lock`` while a committed batch is being delivered under it.
        self._order_lock = threading.Lock()
        self._stamper = Stamper(self.started_ms)  # under ``_order_lock``
        self._history_failure_told = False  # under ``lock``
        self._batch_ids = itertools.count(1)
        self.lock = threading.Lock()
        self.users: set[User] = set()  # every connection, registered or not
        self.registered = 0  # how many of them are registered
        self.remote_users = 0  # cluster mode: replicas of other nodes' users (see ircchat.cluster)
        self.nicks: dict[str, User] = {}  # folded nick -> user, claimed at NICK
        self.channels: dict[str, Channel] = {}
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        # Channels' saved topics, modes and bans (folded name -> state), read once from the
        # history here, so no SQLite read happens under ``lock``; kept up to date under it.
        self.saved: dict[str, dict[str, Any]] = load_states(history) if history is not None else {}
        self.channels[irc_fold(config.room)] = self._new_channel(config.room, self._stored_lines(config.room))
        self.password_backoff = PasswordBackoff(config.password_backoff)
        # Folded nick -> its last users, newest first; the nick given up longest ago first.
        self.whowas: collections.OrderedDict[str, collections.deque[WhowasEntry]] = collections.OrderedDict()
        self.oper_backoff = PasswordBackoff(config.password_backoff)  # wrong OPER passwords

    # -- output helpers: lines are encoded once, then handed to each recipient ------------

    def reply(self, user: User, numeric: str, *params: str) -> None:
        self.answer(user, self.numeric_line(user, numeric, *params))

    def answer(self, user: User, line: bytes, now: bool = False) -> None:
        """Send ``user`` a line it asked for, charging it to the asker's flood control: a
        query's reply can be thousands of times its size (WHO #room). ``now``: at once, even
        while a labeled command's answers are being collected (a join's replay)."""
        user.flood_debt += len(line) / REPLY_BYTES_PER_TOKEN
        if user.answers is not None and not now:
            user.answers += line.splitlines(keepends=True)  # one answer may hold several lines
        else:
            user.deliver(line)

    def reply_error(self, user: User, error: IRCError) -> None:
        if isinstance(error, StandardReplyError):  # FAIL <command> <code> ...: no nick
            *context, text = error.params
            self.answer(user, self.server_line("FAIL", *map(_middle, context), _last(text)))
        else:
            self.reply(user, error.numeric, *error.params)

    def numeric_line(self, user: User, numeric: str, *params: str) -> bytes:
        # Replies echo what the client sent (a bad nick, an unknown command); make each echo
        # a valid middle parameter so that no input can make the reply unformattable.
        *middle, last = params or ("",)
        return self.server_line(numeric, user.nick or "*", *map(_middle, middle), _last(last))

    def server_line(self, command: str, *params: str) -> bytes:
        return encode_line(format_line(command, *params, prefix=self.config.server_name))

    def batch_id(self) -> str:
        """A reference for a BATCH, unique on this server."""
        return f"b{next(self._batch_ids)}"

    def send(self, fanout: Fanout, data: bytes | Stamped) -> None:
        """Carry out a Fanout (``lock`` not held): tell the pump, hand out the direct copies
        (of a stamped line, each in the form its recipient asked for)."""
        if fanout.logs and self.on_append is not None:
            self.on_append(fanout.logs)
        for outbox in fanout.woken:
            outbox.kick()
        if isinstance(data, Stamped):
            self.send_stamped(fanout.direct, data)
        else:
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

    def publish(self, sender: User, channel: Channel, command: str, text: str, line: bytes,
                to_sender: bool, label: str | None = None) -> None:
        """Send a room line to its members, stored in the history first when there is one.

        It is stamped (msgid, time) with its history entry queued under ``_order_lock``, so
        the order of the history is the order members see. ``to_sender``: the sender gets it
        too (TOPIC, or PRIVMSG with echo-message), with ``label`` for labeled-response.
        """
        if self.history is None:
            self._send_now(sender, channel, line, to_sender, label)
            return
        with self._order_lock:
            msgid, time_ms = self._stamper.stamp()
            entry = HistoryEntry(msgid, time_ms, irc_fold(channel.name), sender.source, command,
                                 channel.name, text)
            line_out = RoomLine(sender, channel, Stamped(line, msgid, time_ms), to_sender, label, entry)
            if self.history.append(entry, line_out):
                return
        self._deliver_stored([line_out], stored=False)  # the store is closing

    def _send_now(self, sender: User, channel: Channel, line: bytes, to_sender: bool,
                  label: str | None) -> None:
        """A room line straight out, with no history to store it first. The path every chat
        line takes then: ``_announce`` for one channel without its generality, and a stamp
        only for members who get the line one by one (they may want its tags)."""
        with self.lock:
            room_log = channel.log
            if room_log.followers:
                outbox = sender.outbox
                if outbox is not None and outbox.cursor is not None and outbox.cursor.log is room_log:
                    outbox.append_own(room_log, line)
                else:
                    room_log.append(line)
            else:
                room_log = None
            others = channel.others
            direct = [member for member in others if member is not sender] if others else ()
        if room_log is not None and self.on_append is not None:
            self.on_append([room_log])
        if direct or to_sender:
            stamped = self.stamp(line)
            self.send_stamped(direct, stamped)
            if to_sender:
                echo = stamped.line_for(sender.variant)
                sender.deliver(add_tags(echo, [("label", label)]) if label else echo)

    def settle_history(self) -> None:
        """Let the lines already sent for storing go out first (before a PART, NICK or QUIT
        that must follow them); a no-op without history."""
        if self.history is not None:
            self.history.settle(SETTLE_WAIT)

    def stamp(self, line: bytes) -> Stamped:
        """A line that is not stored (a private message), with its msgid and time."""
        with self._order_lock:
            return Stamped(line, *self._stamper.stamp())

    def _deliver_stored(self, lines: list[RoomLine], stored: bool) -> None:
        """Room lines out to their members, in order, in one pass (the history's on_commit).

        Each goes to every member but its sender, whose own copy, when it gets one, follows it
        with its label; a stored line joins its room's ``recent`` lines, for joiners' replay.
        """
        logs: list[RoomLog] = []
        direct: list[Iterable[User]] = []
        with self.lock:
            for line in lines:
                if stored and line.entry is not None:
                    line.channel.recent.append(line.entry)
                fanout = Fanout(logs=logs)
                self._announce([line.channel], line.stamped, line.sender, fanout)
                direct.append(fanout.direct)
        if logs and self.on_append is not None:
            self.on_append(list(dict.fromkeys(logs)))
        for line, recipients in zip(lines, direct):
            self.send_stamped(recipients, line.stamped)
            if line.to_sender:
                echo = line.stamped.line_for(line.sender.variant)
                line.sender.deliver(add_tags(echo, [("label", line.label)]) if line.label else echo)
        if not stored:
            self._tell_history_failed()

    @staticmethod
    def send_stamped(recipients: Iterable[User], stamped: Stamped) -> None:
        """Hand each recipient the form of the line its capabilities ask for."""
        for user in recipients:
            user.deliver(stamped.line_for(user.variant))

    def _tell_history_failed(self) -> None:
        """Tell everyone, once, that history has stopped (the store has logged why)."""
        with self.lock:
            if self._history_failure_told:
                return
            self._history_failure_told = True
            everyone = [user for user in self.users if user.registered]
        reason = self.history.failure if self.history is not None else None
        notice = self.server_line(
            "NOTICE", "*", f"History is unavailable ({reason or 'the history file is closed'}): "
            "the chat goes on, but new messages are not being saved.")
        for user in everyone:
            user.deliver(notice)

    # -- state changes ---------------------------------------------------------------------

    def add(self, user: User) -> None:
        with self.lock:
            self.users.add(user)

    def remove(self, user: User, line: bytes | None = None) -> None:
        """Forget a user; ``line`` (its QUIT) goes once to everyone who shared a channel."""
        with self.lock:
            if user.registered and (user in self.users or user.node is not None):
                if user.node is None:
                    self.registered -= 1  # replicas are counted in remote_users, by the Mirror
                self._remember_nick(user)
            if user in self.users:
                self.bus.quit(user, line)
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
            self._check_nick_free(user, nick)
        # In a cluster, the claim that counts: outside the lock, for it asks the other nodes.
        if user.node is None and not self.bus.claim_nick(user, nick):
            raise IRCError(ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        with self.lock:
            self._check_nick_free(user, nick)
            old = user.nick
            if old is not None:
                if self.nicks.get(irc_fold(old)) is user:
                    del self.nicks[irc_fold(old)]
                if user.registered:
                    self._remember_nick(user)
            self.nicks[folded] = user  # over a replica's hold, if the cluster has let it go
            user.nick = nick
            if line is not None:
                for channel in user.channels:
                    channel.names = None  # rebuilt by the next NAMES
                    channel.ban_verdicts.pop(user, None)
                self._announce(list(user.channels), data, None, fanout)
                # The user itself hears it too; a replica's own node has told it already.
                if user.node is None and not self._reaches(user, fanout) and user not in fanout.direct:
                    fanout.direct = [*fanout.direct, user]
        if line is not None:
            self.send(fanout, data)
        return old

    def _check_nick_free(self, user: User, nick: str) -> None:
        """433 if a user of this node holds ``nick``, 435 if it is banned where ``user`` is
        (``lock`` held). A replica holding it is the cluster's to judge (``ClusterBus``)."""
        holder = self.nicks.get(irc_fold(nick))
        if holder is not None and holder is not user and (holder.node is None or user.node is not None):
            raise IRCError(ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        if user.registered and user.node is None:
            self._check_not_banned_as(user, nick)

    def join(self, user: User, name: str, replay: Replay | None = None,
             keys: tuple[str, ...] = ()) -> Channel | None:
        """Put ``user`` in the channel and announce it to all members, the joiner included;
        return the channel, or None if ``user`` was already there. A +k channel takes any of
        ``keys``; the first member of a new channel (not the default room) is its operator.

        With history on, ``replay(hub, user, channel, recent lines)`` is called before the
        lock is let go, so what it queues for the joiner comes after its JOIN and before any
        line said after it: nothing missing, nothing twice.
        """
        # A channel about to be made starts with what it said before, read before taking the
        # lock (from a file, or Redis): under it only if the channel vanished meanwhile.
        stored = self._stored_lines(name) if irc_fold(name) not in self.channels else None
        with self.lock:
            channel = self.channels.get(irc_fold(name))
            if channel is not None and user in channel.members:
                return None
            if len(user.channels) >= self.config.max_channels:
                raise IRCError(ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
            local = user.node is None  # a replica's join was checked by its own node
            if channel is None:
                channel = self._new_channel(name, stored if stored is not None else self._stored_lines(name))
                if local:
                    self._check_entry(user, channel, keys)  # a saved state's bans and key hold
                self.channels[irc_fold(name)] = channel
                if not self._is_default(channel):
                    channel.ops.add(user)
            elif local:
                self._check_entry(user, channel, keys)
            channel.invited.pop(user, None)
            channel.members[user] = None
            user.channels.add(channel)
            outbox = user.outbox
            # Each connection follows one log, the first channel it joins; it gets the lines
            # of any other channel one by one (and of that one too, should it part and rejoin).
            # A client that asked for tags or extended joins is sent lines of its own form,
            # one by one.
            if outbox is not None and outbox.cursor is None and _reads_room_logs(user):
                outbox.follow(channel.log)
                channel.log.followers[outbox] = None
            elif local:
                channel.others[user] = None
            if channel.names is not None:
                self._add_name(channel.names, channel.names_room, channel.prefix(user) + (user.nick or ""))
            data = encode_line(format_line("JOIN", channel.name, prefix=user.source))
            fanout = Fanout()
            self._announce([channel], data, None, fanout)
            # extended-join: the members that asked for it get the joiner's account (none
            # here: "*") and realname; none of them follows a log, so they are all direct.
            extended = [member for member in fanout.direct if "extended-join" in member.caps]
            if extended:
                fanout.direct = [member for member in fanout.direct if "extended-join" not in member.caps]
            extended_data = encode_line(format_line("JOIN", channel.name, "*", user.realname, prefix=user.source))
            # away-notify: a joiner that is away is announced as such, after its JOIN.
            away_watchers = self._cap_holders([channel], "away-notify", user) if user.away else []
            away = _away_line(user) if away_watchers else b""
            if replay is not None and self.history is not None:
                if "extended-join" in user.caps:  # a joiner that follows no log: its JOIN first
                    extended.remove(user)
                    user.deliver(extended_data)
                elif user in fanout.direct:
                    fanout.direct = [member for member in fanout.direct if member is not user]
                    user.deliver(data)
                replay(self, user, channel, list(channel.recent))
            if local:
                self.bus.joined(user, channel)
        self.send(fanout, data)
        for member in extended:
            member.deliver(extended_data)
        for watcher in away_watchers:
            watcher.deliver(away)
        return channel

    def set_away(self, user: User, text: str | None) -> None:
        """Mark ``user`` away with ``text``, or back with None; tell the members of its
        channels that asked for away-notify, each once."""
        with self.lock:
            user.away = text
            if user.node is None:
                self.bus.user_changed(user)
            watchers = self._cap_holders(list(user.channels), "away-notify", user)
            line = _away_line(user)
        for watcher in watchers:
            watcher.deliver(line)

    def find_whowas(self, nick: str, count: int) -> list[WhowasEntry]:
        """The last ``count`` users of ``nick`` that gave it up, newest first."""
        with self.lock:
            return list(itertools.islice(self.whowas.get(irc_fold(nick), ()), count))

    def set_caps(self, user: User, caps: frozenset[str]) -> None:
        """Give ``user`` new capabilities. One that now wants tags or extended joins stops
        following its room's log (which holds untagged lines, and plain JOINs) and is sent that
        room's lines one by one instead."""
        fanout = Fanout()
        with self.lock:
            user.caps, user.variant = caps, Variant.for_caps(caps)
            outbox = user.outbox
            cursor = outbox.cursor if outbox is not None else None
            if not _reads_room_logs(user) and cursor is not None and cursor.stop is None:
                for channel in user.channels:
                    if channel.log is cursor.log:
                        del channel.log.followers[outbox]
                        outbox.unfollow()
                        channel.others[user] = None
                        fanout.woken.append(outbox)
        self.send(fanout, b"")

    def part(self, user: User, name: str, reason: tuple[str, ...] = ()) -> None:
        """Take ``user`` out of a channel, announcing it to the members, the parter included."""
        fanout = Fanout()
        with self.lock:
            channel = self._member_channel(user, name)
            data = encode_line(format_line("PART", channel.name, *reason, prefix=user.source))
            self._announce([channel], data, None, fanout)
            self._leave(user, channel, fanout)
            if user.node is None:
                self.bus.parted(user, channel, reason)
        self.send(fanout, data)

    def set_topic(self, user: User, name: str, topic: str) -> Channel:
        with self.lock:
            channel = self._member_channel(user, name)
            if "t" in channel.modes and not channel.privileged(user):
                raise IRCError(ERR_CHANOPRIVSNEEDED, channel.name, "You're not channel operator (+t)")
            channel.topic = topic
            channel.topic_setter = user.nick or ""
            channel.topic_time = time.time()
            self._save(channel)
            return channel

    def apply_topic(self, channel: Channel, topic: str, setter: str, when: float) -> None:
        """Cluster mode: a TOPIC line read from the shared stream sets the topic on every node,
        its own included, with the stream's time: whatever each node set first meanwhile,
        the last one in the stream's order is the topic everywhere."""
        with self.lock:
            channel.topic, channel.topic_setter, channel.topic_time = topic, setter, when
            self._save(channel)

    def kick(self, kicker: User, name: str, nick: str, reason: str) -> None:
        """Put ``nick`` out of a channel, announcing it to every member, the kicked one too."""
        fanout = Fanout()
        with self.lock:
            channel = self._privileged_channel(kicker, name)
            target = self._member(channel, nick)
            data = encode_line(format_line("KICK", channel.name, target.nick or "", reason, prefix=kicker.source))
            self._announce([channel], data, None, fanout)  # before _leave: the kicked one hears it
            self._tell_outsider(kicker, channel, fanout)  # before _leave too: a self-kick is no outsider's
            self._leave(target, channel, fanout)
            if kicker.node is None:
                self.bus.kicked(kicker, channel, target, reason)
        self.send(fanout, data)

    def invite(self, inviter: User, nick: str, name: str) -> tuple[User, Channel]:
        """Let ``nick`` into a channel past +i and +l, until it joins or INVITE_TTL passes."""
        with self.lock:
            target = self.nicks.get(irc_fold(nick))
            if target is None or not target.registered:
                raise IRCError(ERR_NOSUCHNICK, nick, "No such nick/channel")
            channel = self.channels.get(irc_fold(name))
            if channel is None:
                raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
            if inviter not in channel.members and "o" not in inviter.modes and inviter.node is None:
                raise IRCError(ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
            if "i" in channel.modes and not channel.privileged(inviter) and inviter.node is None:
                raise IRCError(ERR_CHANOPRIVSNEEDED, channel.name, "You're not channel operator (+i)")
            if target in channel.members:
                raise IRCError(ERR_USERONCHANNEL, target.nick or "", channel.name, "is already on channel")
            now = time.monotonic()
            invited = channel.invited
            for old in [who for who, until in invited.items() if until <= now]:
                del invited[old]
            invited.pop(target, None)  # re-inserted last: the newest
            if len(invited) >= MAX_INVITES:
                del invited[next(iter(invited))]
            invited[target] = now + INVITE_TTL
            if inviter.node is None:
                self.bus.invited(inviter, target, channel)
            return target, channel

    def change_modes(self, user: User, name: str, changes: list[ModeChange],
                     ordered: bool = False) -> list[IRCError]:
        """Apply a channel MODE's changes (an operator's), announce the ones that took, with
        the setter as their source, to every member; return the refusals, one per change.
        ``ordered``: cluster mode, one of our users' changes read back from the shared stream,
        applied again (checked and sent already) so that the stream's order has the last word
        on every node, as other nodes' changes crossing it have."""
        fanout = Fanout()
        refusals: list[IRCError] = []
        data = b""
        with self.lock:
            channel = self._privileged_channel(user, name, need_member=False, checked=ordered)
            applied: list[ModeChange] = []
            for change in changes:
                try:
                    done = apply_mode(channel, change, user.source, lambda nick: self._member(channel, nick),
                                      self._is_default(channel), ordered or user.node is not None)
                except IRCError as error:
                    refusals.append(error)
                    continue
                if done is not None:
                    applied.append(done)
            if applied:
                # Masks grow when normalized, and the echo has the setter's source in front:
                # a MODE that fitted one line may need several.
                room = MAX_LINE_BYTES - 2 - len(f":{user.source} MODE {channel.name} ".encode())
                data = b"".join(
                    encode_line(format_line("MODE", channel.name, *mode_string(batch), prefix=user.source))
                    for batch in mode_batches(applied, room))
                self._announce([channel], data, None, fanout)
                self._tell_outsider(user, channel, fanout)
                if any(change.letter not in PREFIXES for change in applied):
                    self._save(channel)
                if user.node is None and not ordered:
                    self.bus.modes_changed(user, channel, applied)
        self.send(fanout, data)
        return refusals

    def become_oper(self, user: User) -> None:
        with self.lock:
            user.modes.add("o")
            self.bus.user_changed(user)

    def set_user_modes(self, user: User, wanted: dict[str, bool]) -> str:
        """Set or unset a user's own modes (letter -> on); return what changed, as +x-y."""
        applied, sign = "", ""
        with self.lock:
            for letter, on in wanted.items():
                if (letter in user.modes) != on:
                    (user.modes.add if on else user.modes.discard)(letter)
                    mark = "+" if on else "-"
                    applied += (mark if mark != sign else "") + letter
                    sign = mark
            if applied:
                self.bus.user_changed(user)
        return applied

    def visible_channels(self, viewer: User, target: User) -> list[str]:
        """``target``'s channels as WHOIS shows them to ``viewer``, with prefixes: a secret
        (+s) channel only to its members and server operators."""
        with self.lock:
            return sorted(channel.prefix(target) + channel.name for channel in target.channels
                          if channel.shown_to(viewer))

    def channel_modes(self, user: User, channel: Channel) -> list[str]:
        """A channel's modes as 324 gives them: +flags and the key and limit (the key only to
        members and server operators)."""
        with self.lock:
            letters, params = "".join(sorted(channel.modes)), []
            if channel.key is not None:
                letters += "k"
                params.append(channel.key if user in channel.members or "o" in user.modes else "*")
            if channel.limit is not None:
                letters += "l"
                params.append(str(channel.limit))
            return ["+" + letters, *params]

    def ban_list(self, channel: Channel) -> list[Ban]:
        with self.lock:
            return list(channel.bans)

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

    def names(self, channel: Channel, viewer: User) -> list[bytearray]:
        """The channel's names with their prefixes, packed for 353 lines (rebuilt here after a
        part, nick or mode change); none of a secret (+s) channel's for outsiders. A viewer with
        multi-prefix gets every prefix a member holds, which differs from the cached form only
        while someone holds both."""
        with self.lock:
            if not channel.shown_to(viewer):
                return []
            if "multi-prefix" in viewer.caps and channel.ops & channel.voiced:
                batches: list[bytearray] = []
                for member in channel.members:
                    self._add_name(batches, channel.names_room, channel.prefix(member, True) + (member.nick or ""))
                return [bytes(batch) for batch in batches]
            if channel.names is None:
                channel.names = []
                for member in channel.members:
                    self._add_name(channel.names, channel.names_room, channel.prefix(member) + (member.nick or ""))
            return [bytes(batch) for batch in channel.names]

    def channel_to_speak_in(self, sender: User, name: str) -> Channel:
        """The channel a message to ``name`` goes to; 403 or 404 if ``sender`` cannot send there.

        The message path: with no bans and no +m (``restricted`` False) a member costs only
        the membership test; otherwise a kept verdict (see ``Channel.banned``).
        """
        with self.lock:
            channel = self.channels.get(irc_fold(name))
            if channel is None:
                raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
            if sender not in channel.members and "n" in channel.modes:
                raise IRCError(ERR_CANNOTSENDTOCHAN, channel.name, "Cannot send to channel (join it first)")
            if channel.restricted:
                if "m" in channel.modes and not (sender in channel.voiced or channel.privileged(sender)):
                    raise IRCError(ERR_CANNOTSENDTOCHAN, channel.name, "Cannot send to channel (+m: only @ and + speak)")
                if channel.banned(sender):
                    raise IRCError(ERR_CANNOTSENDTOCHAN, channel.name, "Cannot send to channel (you are banned)")
            return channel

    def is_member(self, user: User, channel: Channel) -> bool:
        with self.lock:
            return user in channel.members

    def password_try(self, address: str) -> float:
        """Seconds a password try from ``address`` must wait (see PasswordBackoff)."""
        with self.lock:
            return self.password_backoff.reserve(address, time.monotonic())

    def password_result(self, address: str, correct: bool, backoff: PasswordBackoff | None = None) -> None:
        """Record a password try (PASS, or with ``backoff`` another one, such as OPER's)."""
        with self.lock:
            backoff = backoff or self.password_backoff
            if correct:
                backoff.passed(address)
            else:
                backoff.failed(address, time.monotonic())

    def oper_wait(self, address: str) -> float:
        """Seconds before ``address`` may try an OPER password again; 0: now, and this try
        takes the address's slot, so tries from connections in parallel are spaced out too."""
        with self.lock:
            now = time.monotonic()
            wait = self.oper_backoff.pending(address, now)
            if wait == 0:
                self.oper_backoff.reserve(address, now)
            return wait

    def counts(self) -> tuple[int, int, int, int]:
        """(registered users in the whole chat, of them here, unregistered connections, channels)."""
        with self.lock:
            return (self.registered + self.remote_users, self.registered, len(self.users) - self.registered,
                    len(self.channels))

    def snapshot_users(self) -> list[User]:
        with self.lock:
            return list(self.users)

    # -- helpers that expect the lock held -------------------------------------------------

    def _stored_lines(self, name: str) -> list[HistoryEntry]:
        """What a room said before it (re)appeared (earlier runs, or before it last emptied),
        as many lines as a joiner is replayed."""
        count = self.config.replay_lines
        return self.history.latest(irc_fold(name), count) if self.history is not None and count > 0 else []

    def _new_channel(self, name: str, stored: list[HistoryEntry]) -> Channel:
        # Room for names on a 353 line: 512 bytes less CRLF, the longest nick's prefix and ours.
        head = f":{self.config.server_name} {RPL_NAMREPLY} {'x' * 20} = {name} :"
        channel = Channel(name, names_room=MAX_LINE_BYTES - 2 - len(head.encode()))
        saved = self.saved.get(irc_fold(name))
        if saved is not None:
            restore_state(channel, saved)
        if self._is_default(channel):  # everyone is put here: no +i, +k, +l (saved under another --room)
            if saved is None:
                channel.modes = {"n"}  # anyone may set its topic, until an operator sets +t
            channel.modes.discard("i")
            channel.key = channel.limit = None
            for ban in channel.bans:  # nor a ban that could match everyone (see modes.names_one)
                if not names_one(ban.mask):
                    channel.bans.remove(ban.mask)
            channel.restricted = bool(channel.bans) or "m" in channel.modes
        channel.recent = collections.deque(stored, maxlen=max(self.config.replay_lines, 0))
        return channel

    def _is_default(self, channel: Channel) -> bool:
        return irc_fold(channel.name) == irc_fold(self.config.room)

    def _check_entry(self, user: User, channel: Channel, keys: tuple[str, ...]) -> None:
        """474, 473, 475 or 471 if ``user`` may not join; server operators always may."""
        if "o" in user.modes:
            return
        if channel.bans and channel.bans.matches(user.source):
            raise IRCError(ERR_BANNEDFROMCHAN, channel.name, "Cannot join channel (+b)")
        invited = channel.invited.get(user, 0.0) > time.monotonic()
        if "i" in channel.modes and not invited:
            raise IRCError(ERR_INVITEONLYCHAN, channel.name, "Cannot join channel (+i)")
        if channel.key is not None and channel.key not in keys:
            raise IRCError(ERR_BADCHANNELKEY, channel.name, "Cannot join channel (+k)")
        if channel.limit is not None and len(channel.members) >= channel.limit and not invited:
            raise IRCError(ERR_CHANNELISFULL, channel.name, "Cannot join channel (+l)")

    def _check_not_banned_as(self, user: User, nick: str) -> None:
        """435 if ``user`` is banned in one of its channels, or would be under ``nick``: a
        ban on its current nick is not shed by changing it."""
        source = f"{nick}!{user.username}@{user.host}"
        for channel in user.channels:
            if channel.banned(user) or channel.banned(user, source):
                raise IRCError(ERR_BANONCHAN, nick, channel.name, "Cannot change nickname while banned on channel")

    def _privileged_channel(self, user: User, name: str, need_member: bool = True,
                            checked: bool = False) -> Channel:
        """A channel ``user`` may act on as operator: 403, 442 or 482 otherwise. A replica's
        change was allowed by its own node (and a ``checked`` one here already): a deop
        crossing it must not refuse it, or the nodes would disagree for good."""
        channel = self.channels.get(irc_fold(name))
        if channel is None:
            raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
        if user.node is not None or checked:
            return channel
        if need_member and user not in channel.members and "o" not in user.modes:
            raise IRCError(ERR_NOTONCHANNEL, channel.name, "You're not on that channel")
        if not channel.privileged(user):
            raise IRCError(ERR_CHANOPRIVSNEEDED, channel.name, "You're not channel operator")
        return channel

    def _member(self, channel: Channel, nick: str) -> User:
        """The member of ``channel`` called ``nick``: 401 or 441 otherwise."""
        target = self.nicks.get(irc_fold(nick))
        if target is None or not target.registered:
            raise IRCError(ERR_NOSUCHNICK, nick, "No such nick/channel")
        if target not in channel.members:
            raise IRCError(ERR_USERNOTINCHANNEL, target.nick or "", channel.name, "They aren't on that channel")
        return target

    @staticmethod
    def _tell_outsider(user: User, channel: Channel, fanout: Fanout) -> None:
        """A server operator acting on a channel it is not in hears the line too (from its
        own node, if it is a replica)."""
        if user not in channel.members and user.node is None:
            fanout.direct = [*fanout.direct, user]

    def _save(self, channel: Channel) -> None:
        """Keep a channel's topic, modes and bans (with history on), for when it is re-created."""
        if self.history is None:
            return
        folded = irc_fold(channel.name)
        state = channel_state(channel)
        self.saved.pop(folded, None)  # re-inserted last: the most recently changed
        if len(self.saved) >= SAVED_CHANNELS_MAX:  # forget the oldest, never the default room's
            default = irc_fold(self.config.room)
            del self.saved[next(name for name in self.saved if name != default)]
        self.saved[folded] = state
        self.history.save_channel(folded, json.dumps(state))

    @staticmethod
    def _add_name(batches: list[bytearray], room: int, name: str) -> None:
        encoded = name.encode()
        if batches and len(batches[-1]) + 1 + len(encoded) <= room:
            batches[-1] += b" " + encoded
        else:
            batches.append(bytearray(encoded))

    def _announce(self, channels: list[Channel], data: bytes | Stamped, sender: User | None,
                  fanout: Fanout) -> None:
        """Append ``data`` once to each channel's log, never for ``sender``; put the members
        who follow none of those logs in ``fanout.direct``, each once. (Only clients that
        asked for no tags follow logs: a stamped line goes there in its plain form.)"""
        if isinstance(data, Stamped):
            data = data.line_for(Variant.PLAIN)
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
    def _cap_holders(channels: list[Channel], cap: str, user: User) -> list[User]:
        """The members of ``channels`` but ``user`` that asked for ``cap``, each once."""
        holders: dict[User, None] = {}
        for channel in channels:
            for member in channel.members:
                if cap in member.caps and member is not user:
                    holders[member] = None
        return list(holders)

    def _remember_nick(self, user: User) -> None:
        """Keep the nick ``user`` gives up (quit or nick change) for WHOWAS."""
        folded = irc_fold(user.nick or "")
        entries = self.whowas.pop(folded, None) or collections.deque(maxlen=WHOWAS_PER_NICK)
        entries.appendleft(WhowasEntry(user.nick or "", user.username or "", user.host, user.realname,
                                       time.time()))
        self.whowas[folded] = entries  # re-inserted last: the most recently given up
        if len(self.whowas) > WHOWAS_NICKS:
            self.whowas.popitem(last=False)

    @staticmethod
    def _reaches(user: User, fanout: Fanout) -> bool:
        """Whether ``user`` gets a Fanout's line from a log it follows."""
        cursor = user.outbox.cursor if user.outbox is not None else None
        return cursor is not None and cursor.stop is None and cursor.log in fanout.logs

    def _member_channel(self, user: User, name: str, not_member: str = ERR_NOTONCHANNEL,
                        why: str = "You're not on that channel") -> Channel:
        channel = self.channels.get(irc_fold(name))
        if channel is None:
            raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
        if user not in channel.members:
            raise IRCError(not_member, name, why)
        return channel

    def _leave(self, user: User, channel: Channel, fanout: Fanout) -> None:
        channel.members.pop(user, None)
        channel.others.pop(user, None)
        channel.ops.discard(user)
        channel.voiced.discard(user)
        channel.ban_verdicts.pop(user, None)
        channel.names = None  # rebuilt by the next NAMES
        outbox = user.outbox
        if outbox is not None and outbox in channel.log.followers:
            del channel.log.followers[outbox]
            outbox.unfollow()
            fanout.woken.append(outbox)
        user.channels.discard(channel)
        if not channel.members and not self._is_default(channel):
            del self.channels[irc_fold(channel.name)]


MAX_INVITES = 100  # pending invitations per channel
INVITE_TTL = 3600.0  # seconds an invitation holds if not used
SETTLE_WAIT = 2.0  # seconds a PART, NICK or QUIT waits at most for its sender's stored lines
REPLY_BYTES_PER_TOKEN = 4096  # flood control charges one more line per this many reply bytes


def _reads_room_logs(user: User) -> bool:
    """Whether a client takes room lines as the logs hold them: no tags, plain JOINs."""
    return user.variant is Variant.PLAIN and "extended-join" not in user.caps


def _away_line(user: User) -> bytes:
    """``:nick!user@host AWAY :text``, or ``AWAY`` alone for a user who is back (away-notify)."""
    params = (user.away,) if user.away else ()
    return encode_line(format_line("AWAY", *params, prefix=user.source))


def _middle(param: str) -> str:
    """Text from a client made a valid middle parameter (no spaces, not empty, no leading ':')."""
    return FORBIDDEN_CHARS.sub("", param).replace(" ", "_").lstrip(":") or "*"


def _last(param: str) -> str:
    return FORBIDDEN_CHARS.sub("", param)


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
