"""Cluster mode without I/O: what a node tells the others, and how it mirrors what they tell it.

Several server processes ("nodes") serve one chat when they share a bus (``redisbus`` holds
the Redis one). Each node's ``Hub`` stays the authority for its own connections and delivers
every line to its own members itself; what crosses nodes is one event per change:

- ``ClusterBus`` is the interface the Hub calls after a change by one of its own users (a
  join, a part, a nick claim...). This base class is the single-process default: every method
  does nothing and every nick claim is granted, so one process needs no other module.
- ``Mirror`` applies the other nodes' events to this node's Hub. Their users live here as
  replicas: ``User`` objects with ``node`` set and no connection, in ``Hub.nicks`` and in
  their channels' members (so NAMES, WHO, WHOIS, LUSERS, LIST, ISON, bans and modes see the
  whole cluster) but never followers of a room log nor in ``Channel.others``: nothing is
  ever delivered to them through the fan-out. What is sent to one of them alone (a private
  message, an INVITE, a KILL) goes back on the bus to its node.

An event is a small dict, sent as JSON: ``t`` its type, ``n`` the node, ``u`` the user's id on
that node. A user's whole state (``record``) travels with registration, and again when its
node rejoins after losing Redis: applying a record is idempotent (an "upsert"), so a node that
already knows the user changes nothing, and one that does not sees it join its channels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ircchat.history import HistoryEntry
from ircchat.ircv3 import Stamped
from ircchat.logs import log
from ircchat.modes import PREFIXES, ModeChange
from ircchat.numerics import IRCError
from ircchat.protocol import encode_line, format_line, irc_fold
from ircchat.state import Channel, Hub, RoomLine, User

NODE_LOST = "node lost"  # the QUIT reason of the users of a node that stopped answering


class ClusterError(Exception):
    """Cluster mode cannot start (no redis package, Redis unreachable); one sentence."""


class ClusterBus:
    """The single-process default: no other nodes. ``RedisBus`` overrides every method.

    The Hub calls these for its own users only (``user.node`` is None); the ones marked
    "lock held" are called under ``Hub.lock`` and must only queue, never wait.
    """

    node: str | None = None  # this node's id in a cluster

    def servers(self) -> int:
        """How many nodes serve the chat, this one included (as LUSERS says)."""
        return 1

    def claim_nick(self, user: User, nick: str) -> bool:
        """Claim ``nick`` for ``user`` across the cluster (lock not held); False if another
        user anywhere holds it. For a registered user the change is announced too."""
        return True

    def registered(self, user: User) -> None:
        """``user`` finished registering (lock held)."""

    def joined(self, user: User, channel: Channel) -> None:
        """``user`` joined ``channel`` (lock held)."""

    def parted(self, user: User, channel: Channel, reason: tuple[str, ...]) -> None:
        """``user`` left ``channel`` (lock held)."""

    def kicked(self, kicker: User, channel: Channel, target: User, reason: str) -> None:
        """``kicker`` put ``target`` out of ``channel`` (lock held)."""

    def modes_changed(self, user: User, channel: Channel, applied: list[ModeChange]) -> None:
        """``user`` changed ``channel``'s modes (lock held)."""

    def invited(self, inviter: User, target: User, channel: Channel) -> None:
        """``inviter`` let ``target`` into ``channel`` past +i and +l (lock held): on every
        node, so it holds on the target's."""

    def user_changed(self, user: User) -> None:
        """``user``'s away message or user modes changed (lock held)."""

    def quit(self, user: User, line: bytes | None) -> None:
        """``user`` is gone (lock held); ``line`` is its QUIT, None if it never registered."""


# ---------------------------------------------------------------------------------------------
# Records and events
# ---------------------------------------------------------------------------------------------


def record(user: User) -> dict[str, Any]:
    """Everything other nodes need to know about one of our users (``Hub.lock`` held)."""
    return {
        "f": irc_fold(user.nick or ""), "reg": user.registered, "nick": user.nick,
        "user": user.username, "host": user.host, "real": user.realname, "signon": user.signon,
        "away": user.away, "modes": "".join(sorted(user.modes)),
        "ch": {channel.name: ("o" if user in channel.ops else "") + ("v" if user in channel.voiced else "")
               for channel in user.channels},
    }


def encode_event(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def decode_record(data: bytes) -> dict[str, Any] | None:
    """A JSON object read from Redis (an event, a user's record, a stored line); None (logged)
    if it is not one."""
    try:
        found = json.loads(data)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        log.error("cluster: skipped unreadable data %r", data[:200])
        return None
    return found


def decode_event(data: bytes) -> dict[str, Any] | None:
    """An event read from the bus; None (logged) if it is not one."""
    event = decode_record(data)
    if event is not None and not isinstance(event.get("t"), str):
        log.error("cluster: skipped an event without a type %r", data[:200])
        return None
    return event


def split_id(event_id: str) -> tuple[int, int]:
    """A stream id ``ms-seq`` as numbers: a room line's msgid, in the order of the cluster.

    >>> split_id("1700000000123-4")
    (1700000000123, 4)
    """
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


# ---------------------------------------------------------------------------------------------
# The mirror: other nodes' users and events applied to this node's Hub
# ---------------------------------------------------------------------------------------------


class Mirror:
    """Keeps this node's Hub in step with the other nodes' events (one thread calls it).

    ``send_to_node(node, event, line)`` puts an event for one node on the bus: how a line for
    a replica (a private message), or a KILL of one, reaches the node that serves it.
    ``rewrite(user)`` asks the bus to store one of our users' record again: after another node
    kicked it or changed its channel prefixes. ``local_user(node, uid)``: the user of ours
    another node's event names by its id (None if it is not ours, or gone).
    """

    def __init__(self, hub: Hub, send_to_node: Callable[[str, dict[str, Any], bytes], None],
                 rewrite: Callable[[User], None], local_user: Callable[[str, str], User | None]) -> None:
        self.hub = hub
        self.replicas: dict[tuple[str, str], User] = {}  # (node, user id) -> replica
        self.keys: dict[User, tuple[str, str]] = {}  # and back, under ``Hub.lock``
        self._send_to_node = send_to_node
        self._rewrite = rewrite
        self._local_user = local_user

    # -- users ---------------------------------------------------------------------------------

    def upsert(self, node: str, uid: str, rec: dict[str, Any]) -> None:
        """Make the replica of (node, uid) match ``rec``: create it, rename it, join or part it."""
        if not rec.get("reg"):
            return  # a nick claimed before registering: nobody here sees it yet
        hub = self.hub
        replica = self.replicas.get((node, uid))
        if replica is None:
            replica = self._new_replica(node, uid, rec)
        elif replica.nick != rec["nick"]:
            self._rename(replica, rec["nick"])
        with hub.lock:
            replica.away, replica.modes = rec.get("away"), set(rec.get("modes", ""))
            current = {irc_fold(channel.name): channel.name for channel in replica.channels}
        wanted = rec.get("ch", {})
        for name in wanted:
            if irc_fold(name) not in current:
                self._join(replica, name, "o" in wanted[name])
        folded_wanted = {irc_fold(name) for name in wanted}
        for folded, name in current.items():
            if folded not in folded_wanted:
                self._quietly(hub.part, replica, name)
        with hub.lock:
            for channel in replica.channels:
                self._set_prefixes(channel, replica, wanted.get(channel.name, ""))

    def _new_replica(self, node: str, uid: str, rec: dict[str, Any]) -> User:
        hub = self.hub
        key = (node, uid)
        replica = User(
            host=rec["host"], address="", nick=rec["nick"], username=rec["user"], realname=rec["real"],
            registered=True, signon=rec.get("signon", 0.0), node=node,
            deliver=lambda line: self._send_to_node(node, {"t": "dm", "to": uid}, line),
            disconnect=lambda reason: self._send_to_node(node, {"t": "kill", "to": uid, "r": reason}, b""),
        )
        with hub.lock:
            folded = irc_fold(replica.nick or "")
            holder = hub.nicks.get(folded)
            if holder is not None and holder.node is not None:
                holder.nick = None  # a stale replica: the nick is this one's now
            if holder is None or holder.node is not None:
                hub.nicks[folded] = replica
            else:  # one of ours holds it: only while Redis was away; our rejoin renames ours
                log.warning("cluster: %s on node %s holds a nick a user here holds too", replica.nick, node)
            hub.remote_users += 1
            self.replicas[key] = replica
            self.keys[replica] = key
        return replica

    def _rename(self, replica: User, nick: str) -> None:
        line = encode_line(format_line("NICK", nick, prefix=replica.source))
        self._quietly(self.hub.claim_nick, replica, nick, lambda: line)

    def _join(self, replica: User, name: str, op: bool) -> None:
        channel = self._quietly(self.hub.join, replica, name)
        if channel is not None and op:
            with self.hub.lock:
                self._set_prefixes(channel, replica, "o")

    @staticmethod
    def _set_prefixes(channel: Channel, member: User, letters: str) -> None:
        """Give ``member`` exactly the prefixes ``letters`` in ``channel`` (``Hub.lock`` held)."""
        for letter, holders in (("o", channel.ops), ("v", channel.voiced)):
            if (letter in letters) != (member in holders):
                (holders.add if letter in letters else holders.discard)(member)
                channel.names = None

    def lost(self, node: str, reason: str = NODE_LOST) -> None:
        """Every user of ``node`` quits, with ``reason``."""
        for key in [key for key in self.replicas if key[0] == node]:
            self.quit(key, reason)

    def quit(self, key: tuple[str, str], reason: str) -> None:
        replica = self.replicas.pop(key, None)
        if replica is None:
            return
        line = encode_line(format_line("QUIT", reason, prefix=replica.source))
        with self.hub.lock:
            self.hub.remote_users -= 1
            del self.keys[replica]
        self.hub.remove(replica, line)

    def forget_all_but(self, alive: set[tuple[str, str]], reason: str) -> None:
        """Quit every replica not in ``alive`` (after a snapshot that no longer has them)."""
        for key in [key for key in self.replicas if key not in alive]:
            self.quit(key, reason)

    # -- events --------------------------------------------------------------------------------

    def apply(self, event: dict[str, Any], line: bytes, event_id: str) -> RoomLine | None:
        """Apply another node's event; a room line comes back, for the Hub to deliver in order."""
        kind, node, uid = event["t"], event.get("n", ""), event.get("u", "")
        if kind == "user":
            self.upsert(node, uid, event["rec"])
        elif kind == "lost":
            self.lost(event["node"])
        else:
            replica = self.replicas.get((node, uid))
            if replica is None:
                log.debug("cluster: %s event for an unknown user %s/%s", kind, node, uid)
                return None
            if kind == "msg":
                return self._room_line(replica, event, line, event_id)
            self._apply_change(kind, replica, event)
        return None

    def _apply_change(self, kind: str, replica: User, event: dict[str, Any]) -> None:
        hub = self.hub
        if kind == "nick":
            self._rename(replica, event["nick"])
        elif kind == "join":
            self._join(replica, event["c"], bool(event.get("op")))
        elif kind == "part":
            self._quietly(hub.part, replica, event["c"], tuple(event.get("r", ())))
        elif kind == "quit":
            self.quit((replica.node or "", event["u"]), event.get("r", "Quit"))
        elif kind == "kick":
            nick = self._current_nick(event.get("ref"), event["k"])
            target = hub.find_user(nick) if nick is not None else None
            if target is not None:
                self._quietly(hub.kick, replica, event["c"], nick, event.get("r", ""))
            if target is not None and target.node is None:
                self._rewrite(target)  # ours: its stored record lost a channel
        elif kind == "mode":
            self.apply_modes(replica, event)
        elif kind == "invite":
            nick = self._current_nick(event.get("ref"), event["k"])
            if nick is not None:
                self._quietly(hub.invite, replica, nick, event["c"])
        elif kind == "umode":
            hub.set_away(replica, event.get("away"))
            with hub.lock:
                replica.modes = set(event.get("modes", ""))
        else:
            log.debug("cluster: skipped an event of unknown type %r", kind)

    def apply_modes(self, setter: User, event: dict[str, Any], ordered: bool = False) -> None:
        """A MODE event of ``setter`` (a replica, or one of ours read back: ``ordered``, see
        ``Hub.change_modes``)."""
        hub = self.hub
        changes = []
        refs = event.get("refs") or [None] * len(event.get("m", ()))
        for (sign, letter, param), ref in zip(event.get("m", ()), refs):
            if letter in PREFIXES:
                param = self._current_nick(ref, param)
                if param is None:
                    continue  # its target is gone
            changes.append(ModeChange(sign, letter, param))
        self._quietly(hub.change_modes, setter, event["c"], changes, ordered)
        for change in changes:
            target = hub.find_user(change.param or "") if change.letter in PREFIXES else None
            if target is not None and target.node is None:
                self._rewrite(target)

    def _current_nick(self, ref: Any, nick: str | None) -> str | None:
        """The nick now of the user an event names by ``ref`` ([node, uid]) and by the ``nick``
        it had on the sender's node: a rename may have crossed the event, and another user
        taken that nick. None if that user is gone; ``nick`` from a node that sends no ref."""
        if not isinstance(ref, list) or len(ref) != 2:
            return nick
        node, uid = ref
        user = self.replicas.get((node, uid)) or self._local_user(node, uid)
        return user.nick if user is not None else None

    def _room_line(self, replica: User, event: dict[str, Any], line: bytes, event_id: str) -> RoomLine | None:
        hub = self.hub
        channel = hub.find_channel(event["c"])
        if channel is None:
            log.debug("cluster: a line for %s, which this node does not know", event["c"])
            return None
        ms, _ = split_id(event_id)
        if event["cmd"] == "TOPIC":
            hub.apply_topic(channel, event["text"], replica.nick or "", ms / 1000)
        entry = HistoryEntry(event_id, ms, irc_fold(channel.name), replica.source, event["cmd"],
                             channel.name, event["text"])
        return RoomLine(replica, channel, Stamped(line, event_id, ms), False, None, entry)

    @staticmethod
    def _quietly(action: Callable[..., Any], *args: Any) -> Any:
        """Apply a change the other node already checked; a refusal here means the nodes
        disagree for a moment (a change crossing another): logged, not fatal."""
        try:
            return action(*args)
        except IRCError as error:
            log.debug("cluster: %s refused here: %s %s", action.__name__, error.numeric, error.params)
            return None
