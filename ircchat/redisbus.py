"""Cluster mode over Redis: ``RedisBus`` carries events between nodes, ``RedisHistory`` keeps
room history where every node reads it. Imported only with ``--redis`` (it needs the ``redis``
package); ``cluster`` holds the part without I/O.

Keys (``chat:`` and then):

- ``events``: a stream of every event, in the one order every node applies them. A room line
  is delivered to a node's members when that node reads it back from here, the sender's node
  too, so every member on every node sees the same order. The stream id is the line's msgid.
- ``history:<room>``: a room's lines, capped, with the same ids (CHATHISTORY, replay on join);
  gone ``history_days`` after its last line.
- ``nicks``: folded nick -> ``node/uid``; a claim and its event are one Lua script, so of two
  registrations racing for a nick on two nodes exactly one wins.
- ``users:<node>``: uid -> the user's record (``cluster.record``): with ``nodes`` (the set of
  node ids) and the stream's last id, read in one script, the snapshot a starting node loads.
- ``alive:<node>``: a node's heartbeat, a key with a TTL. A node whose key has expired is
  reaped by the first node to see it (one script: its users' nicks freed, a ``lost`` event
  that makes every node announce them as quitting).
- ``channels``: folded channel name -> its saved topic, modes and bans; ``channels:saved`` the
  time each was saved, to drop them as the SQLite store does (``history_days`` after their
  last change, the least recently changed first past ``SAVED_CHANNELS_MAX``; never the
  default room's).
- ``epoch``: a random value set once; another value after an outage means Redis lost its data.

Threads: a writer sends queued script calls in pipelines (one round trip for everything
queued meanwhile; a full queue makes room lines' senders wait); a reader follows the stream
(``XREAD BLOCK``, shorter than the socket timeout) and, while Redis is unreachable, retries
with capped backoff and then rejoins; a heartbeat thread refreshes our key and reaps lost nodes. Every Redis call has a timeout.

A reader that fell so far behind that the stream was trimmed past what it had read (a frozen
node) cannot go on from there: it takes Redis for away, so that it rejoins with a snapshot.

Redis unreachable: lines waiting for the stream and every new line are delivered to this
node's members at once, the users are told once, and nothing is queued for later. Back, the
reader resumes from the last id it read (or, if Redis lost its data, from a new snapshot) and
reasserts our users: their nicks are claimed again and their records published; a user whose
nick another node's user took meanwhile is renamed (told by a NOTICE and its NICK line).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import redis

from ircchat.cluster import (
    ClusterBus,
    ClusterError,
    Mirror,
    decode_event,
    decode_record,
    encode_event,
    record,
    split_id,
)
from ircchat.history import SAVED_CHANNELS_MAX, HistoryEntry, MessageRef, OnCommit
from ircchat.ircv3 import Stamped, Variant
from ircchat.logs import log
from ircchat.modes import PREFIXES, ModeChange
from ircchat.numerics import IRCError
from ircchat.protocol import encode_line, format_line, irc_fold
from ircchat.state import Channel, Hub, RoomLine, User

PREFIX = "chat:"
EVENTS_MAX = 100_000  # events kept in the stream (approximately): a node away longer resnaps
READ_BLOCK = 1.0  # seconds XREAD waits at most (and half the socket timeout at most)
READ_COUNT = 500
WRITE_BATCH = 1000  # script calls in one pipeline at most: one round trip well within the timeout
QUEUE_MAX = 10 * WRITE_BATCH  # calls queued for Redis before a room line's sender waits
BACKOFF_START, BACKOFF_MAX = 0.1, 5.0  # seconds between reconnection tries, doubling up to the cap

# One script for every change a node makes: a nick claim (refused: 0), the user's record, the
# event on the stream (and the room's history), a channel's state. Atomic, so a claim and its
# event are one step. Nothing from a node the others have reaped (-1): killed before it has
# rejoined, it would hold what it wrote forever.
_SHARE = """
if redis.call('SISMEMBER', KEYS[6], ARGV[13]) == 0 then return -1 end
local owner = ARGV[3]
if ARGV[1] ~= '' then
  local holder = redis.call('HGET', KEYS[2], ARGV[1])
  if holder and holder ~= owner then return 0 end
  redis.call('HSET', KEYS[2], ARGV[1], owner)
end
if ARGV[2] ~= '' and ARGV[2] ~= ARGV[1] and redis.call('HGET', KEYS[2], ARGV[2]) == owner then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
if ARGV[5] == '-' then redis.call('HDEL', KEYS[3], ARGV[4])
elseif ARGV[5] ~= '' then redis.call('HSET', KEYS[3], ARGV[4], ARGV[5]) end
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[11], ARGV[12])
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZADD', KEYS[7], ms, ARGV[11])
  local function drop(name)
    if name == ARGV[15] then return 0 end
    redis.call('HDEL', KEYS[5], name)
    redis.call('ZREM', KEYS[7], name)
    return 1
  end
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ms - tonumber(ARGV[14]), 'LIMIT', 0, 100)) do
    drop(name)
  end
  local excess = redis.call('ZCARD', KEYS[7]) - tonumber(ARGV[16])
  if excess > 0 then
    for _, name in ipairs(redis.call('ZRANGE', KEYS[7], 0, excess)) do
      if excess > 0 then excess = excess - drop(name) end
    end
  end
end
if ARGV[6] == '' then return 1 end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[6], 'l', ARGV[7])
if ARGV[9] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], id, 'e', ARGV[9])
  redis.call('PEXPIRE', KEYS[4], ARGV[14])
end
return id
"""

# A node joining: its heartbeat, its place in the set of nodes, the epoch, the stream's first
# and last ids and every other node's users, in one consistent read.
_SNAPSHOT = """
redis.call('SET', KEYS[3], ARGV[3], 'NX')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local out = {redis.call('GET', KEYS[3]), last[1] and last[1][1] or '0-0', first[1] and first[1][1] or ''}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if node ~= ARGV[1] then
    table.insert(out, node)
    table.insert(out, redis.call('HGETALL', ARGV[2] .. node))
  end
end
return out
"""

# Reaping a node whose heartbeat expired; the membership test makes it happen once.
_REAP = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local fields = redis.call('HGETALL', KEYS[3])
for i = 1, #fields, 2 do
  local ok, rec = pcall(cjson.decode, fields[i + 1])  -- a record of another version may not decode
  local folded = ok and type(rec) == 'table' and rec['f']
  if type(folded) == 'string' and redis.call('HGET', KEYS[4], folded) == ARGV[1] .. '/' .. fields[i] then
    redis.call('HDEL', KEYS[4], folded)
  end
end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[3], 'l', '')
return 1
"""


class _Claim:
    """A nick claim waiting for the writer's answer."""

    __slots__ = ("done", "granted")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.granted = True  # also the answer when Redis is away: the claim is reasserted later


class RedisBus(ClusterBus):
    """This node's link to the others (see the module docstring). ``_lock`` guards the queue,
    the pending room lines, the link state and our users' ids."""

    def __init__(self, url: str, *, node_timeout: float = 15.0, socket_timeout: float = 3.0,
                 history_max: int = 10_000, history_days: float = 30.0) -> None:
        self.url = url
        self.node = "n" + secrets.token_hex(4)
        self.node_timeout = node_timeout
        self.history_max = history_max
        self.history_ttl_ms = max(1, int(history_days * 86_400_000))
        self._block_ms = max(10, int(min(READ_BLOCK, socket_timeout / 2) * 1000))
        # A claim waits for the writer's pipeline: at most a socket timeout for the batch
        # before it and one for its own.
        self._claim_wait = 2 * socket_timeout + 1.0
        self._batches_written = 0  # pipelines the writer has had answered (under _lock)
        self.redis = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                          socket_connect_timeout=socket_timeout)
        try:
            self.redis.ping()
        except redis.RedisError as error:
            raise ClusterError(f"cannot reach Redis at {url}: {error}") from error
        self._share = self.redis.register_script(_SHARE)
        self._snapshot = self.redis.register_script(_SNAPSHOT)
        self._reap = self.redis.register_script(_REAP)
        self.history = RedisHistory(self)
        self.hub: Hub | None = None
        self.mirror: Mirror | None = None
        self._lock = threading.Lock()
        # Held while room lines go out here directly (Redis away): the lines that were waiting
        # for the stream go first, then the new ones, in order. Taken before ``_lock``.
        self._local_order = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._queue: list[tuple[list[str], list[Any], _Claim | None]] = []
        self._settled = threading.Condition(self._lock)
        self._pending: dict[int, RoomLine] = {}  # our room lines, by sequence, until read back
        self._seq = 0
        self._delivered = 0  # our room lines up to this sequence have gone out to our members
        self._read_seq = 0  # the last of our room lines read back; the reader's thread only
        self._up = True  # Redis answered; False while it is unreachable
        self._stopping = False
        self._uids: dict[User, str] = {}  # our users' ids on the bus...
        self._local: dict[str, User] = {}  # ...and back
        self._next_uid = 0
        self._epoch = ""
        self._nodes = 1  # in the set of nodes at the last heartbeat
        self.last_id = "0-0"  # the last stream id read: the reader's thread only
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=loop, name=name, daemon=True) for loop, name in
                         ((self._write_loop, "cluster-writer"), (self._read_loop, "cluster-reader"),
                          (self._heartbeat_loop, "cluster-heartbeat"))]

    # -- keys ------------------------------------------------------------------------------------

    @staticmethod
    def _key(*parts: str) -> str:
        return PREFIX + ":".join(parts)

    def _give_id(self, user: User) -> None:
        """Give one of our users its id on the bus, at its first nick claim."""
        with self._lock:
            if user not in self._uids:
                self._next_uid += 1
                uid = self._uids[user] = str(self._next_uid)
                self._local[uid] = user

    # -- start and stop --------------------------------------------------------------------------

    def start(self, hub: Hub) -> str:
        """Join the cluster: load the snapshot into ``hub``, then follow the stream. Returns
        what to log about it."""
        self.hub = hub
        self.mirror = Mirror(hub, self._to_node, self._rewrite, self._local_user)
        try:
            others = self._load_snapshot()
        except redis.RedisError as error:
            raise ClusterError(f"cannot join through Redis at {self.url}: {error}") from error
        self._up = True
        for thread in self._threads:
            thread.start()
        users = sum(len(found) for found in others.values())
        return (f"cluster node {self.node} joined through {self.url}: {users} users on "
                f"{len(others)} other nodes, following the stream from {self.last_id}")

    def close(self, timeout: float = 3.0) -> None:
        """Send what is queued (our users' QUITs), leave the cluster, stop the threads."""
        with self._lock:
            self._stopping = True
            self._queued.notify()
            self._settled.wait_for(lambda: not self._queue or not self._up, timeout)
            up = self._up
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout)
        if up:
            try:  # leave as a lost node goes: a user the shutdown gave up on is announced and freed too
                self.redis.delete(self._key("alive", self.node))
                self._reap_node(self.node)
            except redis.RedisError as error:
                log.warning("cluster: could not leave cleanly (%s); the others will reap this node", error)
        self.redis.close()

    def _load_snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Read the snapshot and stream position in one step; make the Hub's replicas match it."""
        reply = self._snapshot(
            keys=[self._key("events"), self._key("nodes"), self._key("epoch"), self._key("alive", self.node)],
            args=[self.node, self._key("users", ""), secrets.token_hex(8), int(self.node_timeout * 1000)])
        self._epoch, self.last_id = reply[0].decode(), reply[1].decode()
        assert self.hub is not None
        with self.hub.lock:  # the channels made before this position was known: the default room
            channels = list(self.hub.channels.values())
        for channel in channels:
            entries = self.history.latest(irc_fold(channel.name), self.hub.config.replay_lines)
            with self.hub.lock:
                channel.recent.clear()
                channel.recent.extend(entries)
        others: dict[str, dict[str, dict[str, Any]]] = {}
        for index in range(3, len(reply), 2):
            fields = reply[index + 1]
            records = {}
            for field in range(0, len(fields), 2):
                rec = decode_record(fields[field + 1])
                if rec is not None:
                    records[fields[field].decode()] = rec
            others[reply[index].decode()] = records
        assert self.mirror is not None
        self._nodes = len(others) + 1
        self.mirror.forget_all_but({(node, uid) for node, records in others.items() for uid in records},
                                   "Lost in a netsplit")
        for node, records in others.items():
            for uid, rec in records.items():
                try:
                    self.mirror.upsert(node, uid, rec)
                except (KeyError, TypeError, AttributeError, ValueError) as error:  # another version's shape
                    log.error("cluster: skipped the malformed record of %s/%s: %r", node, uid, error)
        return others

    # -- the hooks the Hub calls (see ClusterBus) ------------------------------------------------

    def claim_nick(self, user: User, nick: str) -> bool:
        self._give_id(user)
        assert self.hub is not None
        with self.hub.lock:
            rec = record(user)
            old = rec["f"]
        rec["nick"], rec["f"] = nick, irc_fold(nick)
        event = {"t": "nick", "nick": nick} if user.registered else None
        claim = _Claim()
        self._put(user, event, rec=rec, claim=irc_fold(nick), release=old, waiter=claim)
        # Waited for as long as the writer gets through its queue (a long queue is no outage:
        # granting then could leave two users with one nick); a writer stuck that long without
        # an error is taken for Redis away, where every claim is granted and reasserted later.
        with self._lock:
            written = self._batches_written
        while not claim.done.wait(self._claim_wait):
            with self._lock:
                progress, written = written != self._batches_written, self._batches_written
            if not progress:
                log.error("cluster: no answer to the claim of %s in time; granted here for now", nick)
                break
        return claim.granted

    def registered(self, user: User) -> None:
        rec = record(user)
        self._put(user, {"t": "user", "rec": rec}, rec=rec)

    def joined(self, user: User, channel: Channel) -> None:
        self._put(user, {"t": "join", "c": channel.name, "op": user in channel.ops}, rec=record(user))

    def parted(self, user: User, channel: Channel, reason: tuple[str, ...]) -> None:
        self._put(user, {"t": "part", "c": channel.name, "r": list(reason)}, rec=record(user))

    def kicked(self, kicker: User, channel: Channel, target: User, reason: str) -> None:
        self._put(kicker, {"t": "kick", "c": channel.name, "k": target.nick, "r": reason, "ref": self._ref(target)})
        if target.node is None:
            self._put(target, None, rec=record(target))

    def modes_changed(self, user: User, channel: Channel, applied: list[ModeChange]) -> None:
        assert self.hub is not None
        targets = [self.hub.nicks.get(irc_fold(change.param or "")) if change.letter in PREFIXES else None
                   for change in applied]
        self._put(user, {"t": "mode", "c": channel.name, "m": [list(change) for change in applied],
                         "refs": [self._ref(target) if target is not None else None for target in targets]})
        for target in targets:
            if target is not None and target.node is None:
                self._put(target, None, rec=record(target))

    def servers(self) -> int:
        return max(1, self._nodes)

    def invited(self, inviter: User, target: User, channel: Channel) -> None:
        self._put(inviter, {"t": "invite", "c": channel.name, "k": target.nick, "ref": self._ref(target)})

    def user_changed(self, user: User) -> None:
        if user.registered:
            self._put(user, {"t": "umode", "away": user.away, "modes": "".join(sorted(user.modes))},
                      rec=record(user))

    def quit(self, user: User, line: bytes | None) -> None:
        event = {"t": "quit", "r": _quit_reason(line)} if line is not None else None
        self._put(user, event, rec_delete=True, release=irc_fold(user.nick or ""))
        with self._lock:  # from here on, nothing more about it is sent
            uid = self._uids.pop(user, None)
            if uid is not None:
                del self._local[uid]

    def _ref(self, user: User) -> list[str] | None:
        """A user's [node, uid], how an event names it across renames (``Hub.lock`` held)."""
        if user.node is not None:
            assert self.mirror is not None
            key = self.mirror.keys.get(user)
            return list(key) if key is not None else None
        with self._lock:
            uid = self._uids.get(user)
        return [self.node, uid] if uid is not None else None

    def _local_user(self, node: str, uid: str) -> User | None:
        if node != self.node:
            return None
        with self._lock:
            return self._local.get(uid)

    def _rewrite(self, user: User) -> None:
        """Store one of our users' record again (another node changed its channels)."""
        assert self.hub is not None
        with self.hub.lock:
            rec = record(user)
        self._put(user, None, rec=rec)

    def _to_node(self, node: str, event: dict[str, Any], line: bytes) -> None:
        """An event for one node alone: a line for one of its users, or a KILL."""
        self._put(None, {**event, "dest": node}, line=line)

    # -- room lines (RedisHistory.append) --------------------------------------------------------

    def append_line(self, entry: HistoryEntry, payload: RoomLine) -> bool:
        """Send a room line to the stream; it is delivered here when read back. With Redis
        away, it goes to our own members at once (the Hub calls this under its order lock)."""
        with self._lock:
            # A Redis slower than our senders: they wait here (under the Hub's order lock, never
            # its lock) rather than the queue growing without bound. The writer makes room or
            # finds Redis away within its timeouts; past the wait, a stuck writer is logged.
            # (Not the reader: it may want the order lock, to stamp a private message.)
            if not self._settled.wait_for(lambda: not self._up or len(self._queue) < QUEUE_MAX, self._claim_wait):
                log.error("cluster: %d calls queued for Redis; sending anyway", len(self._queue))
            if not self._up:
                down = True
            else:
                down = False
                self._seq += 1
                seq = self._seq
                self._pending[seq] = payload
        if down:
            with self._local_order:
                self.history.on_commit([payload._replace(entry=None)], True)
            return True
        event = {"t": "msg", "c": entry.room, "cmd": entry.command, "text": entry.text, "s": seq}
        stored = {"s": entry.source, "c": entry.command, "r": entry.room, "x": entry.text}
        self._put(payload.sender, event, line=payload.stamped.line_for(Variant.PLAIN),
                  history=(entry.target, stored))
        return True

    def settle(self, timeout: float) -> None:
        with self._lock:
            wanted = self._seq
            self._settled.wait_for(lambda: self._delivered >= wanted or not self._up, timeout)

    def save_channel(self, target: str, state: str) -> None:
        self._put(None, None, channel=(target, state))

    # -- the writer --------------------------------------------------------------------------------

    def _put(self, user: User | None, event: dict[str, Any] | None, *, rec: dict[str, Any] | None = None,
             rec_delete: bool = False, claim: str = "", release: str = "", line: bytes = b"",
             history: tuple[str, dict[str, Any]] | None = None, channel: tuple[str, str] | None = None,
             waiter: _Claim | None = None) -> None:
        """Queue one call of the share script about ``user`` (None: about no user); never
        waits, for the Hub may hold its lock. Nothing is sent about a user without an id: one
        that never claimed a nick, or is gone (so no record outlives its user)."""
        with self._lock:
            uid = "" if user is None else self._uids.get(user)
        if uid is None:
            if waiter is not None:
                waiter.done.set()
            return
        self._send(uid, event, rec=rec, rec_delete=rec_delete, claim=claim, release=release, line=line,
                   history=history, channel=channel, waiter=waiter)

    def _send(self, uid: str, event: dict[str, Any] | None, *, rec: dict[str, Any] | None = None,
              rec_delete: bool = False, claim: str = "", release: str = "", line: bytes = b"",
              history: tuple[str, dict[str, Any]] | None = None, channel: tuple[str, str] | None = None,
              waiter: _Claim | None = None) -> None:
        """``_put`` for the user with id ``uid`` on this node ("": none)."""
        owner = f"{self.node}/{uid}"
        if event is not None:
            event = {**event, "n": self.node, "u": uid}
        history_key = self._key("history", history[0]) if history else self._key("events")
        keys = [self._key("events"), self._key("nicks"), self._key("users", self.node), history_key,
                self._key("channels"), self._key("nodes"), self._key("channels:saved")]
        args = [claim, release, owner, uid, "-" if rec_delete else (encode_event(rec) if rec else ""),
                encode_event(event) if event else "", line, EVENTS_MAX,
                encode_event(history[1]) if history else "", self.history_max,
                channel[0] if channel else "", channel[1] if channel else "", self.node, self.history_ttl_ms,
                irc_fold(self.hub.config.room) if self.hub is not None else "", SAVED_CHANNELS_MAX + 1]
        with self._lock:
            if not self._up:
                if waiter is not None:
                    waiter.done.set()  # granted for now; reasserted when Redis is back
                return
            self._queue.append((keys, args, waiter))
            if len(self._queue) == 1:
                self._queued.notify()

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop.is_set():
                    self._queued.wait(0.5)
                if not self._queue:
                    return
                batch, self._queue = self._queue[:WRITE_BATCH], self._queue[WRITE_BATCH:]
            pipe = self.redis.pipeline(transaction=False)
            for keys, args, _ in batch:
                self._share(keys=keys, args=args, client=pipe)
            try:
                results = pipe.execute(raise_on_error=False)
            except redis.RedisError as error:  # the connection, not one call
                for _, _, waiter in batch:
                    if waiter is not None:
                        waiter.done.set()
                self._fail(error)
                continue
            for (_, args, waiter), result in zip(batch, results):
                if isinstance(result, redis.ResponseError):  # this call alone failed: refused
                    log.error("cluster: Redis refused a change of %s: %s", args[2], result)
                if waiter is not None:  # -1 (reaped): granted for now, like with Redis away
                    waiter.granted = result not in (0, None) and not isinstance(result, Exception)
                    waiter.done.set()
            with self._lock:
                self._batches_written += 1
                self._settled.notify_all()
            if -1 in results:
                self._fail(redis.RedisError("the other nodes took this one for lost"))

    # -- the reader ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = BACKOFF_START
        while not self._stop.is_set():
            if not self._up:
                if self._stop.wait(backoff):
                    return
                backoff = min(BACKOFF_MAX, backoff * 2)
                self._guarded(self._try_rejoin)
                continue
            backoff = BACKOFF_START
            self._guarded(self._read_once)

    def _guarded(self, step) -> None:
        """One step of the reader or the heartbeat. An error that is not Redis's (a bug, or
        data no check foresaw) must not end the thread, leaving the node deaf to the others
        for good: it is logged, and Redis is taken for away, so that the node rejoins from a
        fresh snapshot."""
        try:
            step()
        except redis.RedisError as error:
            self._fail(error)
        except Exception as error:  # noqa: BLE001 -- logged with its traceback, then recovered from
            log.exception("cluster: unexpected error in %s", step.__name__)
            self._fail(error)

    def _read_once(self) -> None:
        reply = self.redis.xread({self._key("events"): self.last_id}, count=READ_COUNT, block=self._block_ms)
        # Far behind (a full read): has the stream dropped events we have not read?
        if any(len(entries) >= READ_COUNT for _, entries in reply or ()) and self._trimmed_unread():
            # Rejoining from where we are, the stream's first id is past it: a new snapshot.
            raise redis.RedisError(f"this node fell behind the stream, trimmed past {self.last_id}")
        for _, entries in reply or ():
            self._apply(entries)

    def _trimmed_unread(self) -> bool:
        """Whether the stream has been trimmed and starts after the last id we read (if just
        after it, nothing was lost, but that cannot be told apart: a snapshot is taken then
        too, for a node far behind anyway)."""
        info = self.redis.xinfo_stream(self._key("events"))
        first = info.get("first-entry")
        return (info.get("entries-added", 0) > info.get("length", 0) and first is not None
                and split_id(first[0].decode()) > split_id(self.last_id))

    def _apply(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply a batch read from the stream, in order; room lines go out together."""
        assert self.hub is not None and self.mirror is not None
        lines: list[RoomLine] = []
        for raw_id, fields in entries:
            event_id = raw_id.decode()
            self.last_id = event_id
            event = decode_event(fields.get(b"e", b""))
            if event is None:
                continue
            line = fields.get(b"l", b"")
            try:
                room_line = self._handle(event, line, event_id)
            except Exception:  # a malformed event, or a bug: this node must go on following
                log.exception("cluster: error applying event %s; skipped", event_id)
                continue
            if room_line is not None:
                lines.append(room_line)
            elif lines:  # anything else is applied after the lines before it have gone out
                self._deliver(lines)
                lines = []
        if lines:
            self._deliver(lines)

    def _deliver(self, lines: list[RoomLine]) -> None:
        """Room lines read back out to our members; then a PART, NICK or QUIT waiting for its
        sender's lines (``settle``) may go."""
        assert self.hub is not None
        self.hub.history.on_commit(lines, True)
        with self._lock:
            self._delivered = max(self._delivered, self._read_seq)
            self._settled.notify_all()

    def _handle(self, event: dict[str, Any], line: bytes, event_id: str) -> RoomLine | None:
        assert self.hub is not None and self.mirror is not None
        dest = event.get("dest")
        if dest is not None:
            if dest == self.node:
                self._to_local_user(event, line)
            return None
        if event.get("n") != self.node:
            return self.mirror.apply(event, line, event_id)
        if event["t"] == "mode":  # our own change, applied here already: again, in the stream's order
            with self._lock:
                setter = self._local.get(event["u"])
            if setter is not None:
                self.mirror.apply_modes(setter, event, ordered=True)
            return None
        if event["t"] != "msg":
            return None  # our own change, applied here already
        with self._lock:
            payload = self._pending.pop(event["s"], None)
        self._read_seq = event["s"]
        if payload is None:
            return None  # delivered already, while Redis was away
        ms, _ = split_id(event_id)
        if payload.entry is not None and payload.entry.command == "TOPIC":  # set here already: in order now
            self.hub.apply_topic(payload.channel, payload.entry.text, payload.entry.source.split("!", 1)[0],
                                 ms / 1000)
        stamped = Stamped(payload.stamped.line_for(Variant.PLAIN), event_id, ms)
        entry = payload.entry._replace(msgid=event_id, time_ms=ms) if payload.entry else None
        return payload._replace(stamped=stamped, entry=entry)

    def _to_local_user(self, event: dict[str, Any], line: bytes) -> None:
        with self._lock:
            user = self._local.get(event["to"])
        if user is None:
            return  # gone meanwhile
        assert self.hub is not None
        if event["t"] == "dm":
            self.hub.send_stamped([user], self.hub.stamp(line))
        elif event["t"] == "kill":
            user.disconnect(event.get("r", "Killed"))

    # -- heartbeats and lost nodes ---------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.node_timeout / 4):
            if self._up:
                self._guarded(self._beat)

    def _beat(self) -> None:
        nodes_key = self._key("nodes")
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._key("alive", self.node), "1", px=int(self.node_timeout * 1000))
        pipe.smembers(nodes_key)
        _, nodes = pipe.execute()
        self._nodes = len(nodes)
        if self.node.encode() not in nodes:
            self._fail(redis.RedisError("the other nodes took this one for lost"))
            return
        for raw in nodes:
            node = raw.decode()
            if node == self.node or self.redis.exists(self._key("alive", node)):
                continue
            if self._reap_node(node):
                log.warning("cluster: node %s stopped answering; its users are announced as quitting", node)

    def _reap_node(self, node: str) -> bool:
        """Free the nicks of ``node``'s users and announce them as gone, if its heartbeat has
        expired and no other node has done it yet."""
        lost = encode_event({"t": "lost", "node": node})  # no "n": the reaper applies it too
        return bool(self._reap(keys=[self._key("nodes"), self._key("alive", node), self._key("users", node),
                                     self._key("nicks"), self._key("events")], args=[node, EVENTS_MAX, lost]))

    # -- Redis away, and back ----------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        """Redis is unreachable: serve our own users alone until it is back (see the docstring)."""
        assert self.hub is not None
        with self._local_order:
            with self._lock:
                if not self._up or self._stopping:
                    self._up = False
                    return
                self._up = False
                waiting = list(self._pending.values())
                self._pending.clear()
                for _, _, waiter in self._queue:
                    if waiter is not None:
                        waiter.done.set()  # granted for now, like every claim while Redis is away
                self._queue.clear()
                self._settled.notify_all()
            if waiting:
                self.hub.history.on_commit([line._replace(entry=None) for line in waiting], True)
            with self._lock:
                self._delivered = self._seq  # every line sent so far has gone out here
        log.error("cluster: lost Redis at %s (%s); serving this node's users alone, retrying", self.url, error)
        self._tell_everyone("Lost contact with the other servers: you can still talk with the users on "
                            "this one. Reconnecting...")

    def _try_rejoin(self) -> None:
        assert self.mirror is not None
        try:
            epoch, resume = self._epoch, self.last_id
            first = self.redis.xrange(self._key("events"), count=1)
            if self.redis.get(self._key("epoch")) == epoch.encode() and (not first or split_id(
                    first[0][0].decode()) <= split_id(resume)):
                self._snapshot(  # heartbeat and membership again; the snapshot itself is not needed
                    keys=[self._key("events"), self._key("nodes"), self._key("epoch"),
                          self._key("alive", self.node)],
                    args=[self.node, self._key("users", ""), epoch, int(self.node_timeout * 1000)])
                how = f"resuming the stream after {resume}"
            else:
                self._load_snapshot()
                how = f"Redis had lost its data: a new snapshot, the stream from {self.last_id}"
            stored = self.redis.hgetall(self._key("users", self.node))
        except redis.RedisError as error:
            log.debug("cluster: Redis still unreachable: %s", error)
            return
        with self._lock:
            self._up = True
        log.warning("cluster: Redis is back; rejoined (%s)", how)
        self._reassert(stored)
        self._tell_everyone("Back in contact with the other servers.")

    def _reassert(self, stored: dict[bytes, bytes]) -> None:
        """Claim our users' nicks again and publish their records (renaming any whose nick
        was taken meanwhile); announce as gone the users in ``stored`` (our records as Redis
        has them) that left while it was away."""
        assert self.hub is not None
        with self._lock:
            users = list(self._local.values())
            gone = [(uid.decode(), data) for uid, data in stored.items() if uid.decode() not in self._local]
        for uid, data in gone:
            rec = decode_record(data) or {}
            self._send(uid, {"t": "quit", "r": "Quit"}, rec_delete=True, release=str(rec.get("f", "")))
        for user in users:
            for _ in range(5):
                with self.hub.lock:
                    rec = record(user)
                claim = _Claim()
                event = {"t": "user", "rec": rec} if user.registered else None
                self._put(user, event, rec=rec, claim=rec["f"], waiter=claim)
                claim.done.wait(self._claim_wait)
                if claim.granted:
                    break
                self._rename(user)

    def _rename(self, user: User) -> None:
        assert self.hub is not None
        old = user.nick or ""
        new = f"{old[:13]}_{secrets.randbelow(10 ** 6):06d}"
        user.deliver(self.hub.server_line(
            "NOTICE", old, f"While this server was cut off, someone on another one took the nick {old}: "
                           f"you are now {new}."))
        line = (lambda: encode_line(format_line("NICK", new, prefix=user.source))) if user.registered else None
        try:
            self.hub.claim_nick(user, new, line)
        except IRCError as error:  # taken too: the caller tries another
            log.warning("cluster: could not rename %s to %s: %s", old, new, error.numeric)

    def _tell_everyone(self, text: str) -> None:
        assert self.hub is not None
        with self.hub.lock:
            users = [user for user in self.hub.users if user.registered]
        notice = self.hub.server_line("NOTICE", "*", text)
        for user in users:
            user.deliver(notice)

    @property
    def up(self) -> bool:
        return self._up


def _quit_reason(line: bytes) -> str:
    """The reason of a QUIT line we built (``:source QUIT :reason``)."""
    return line.decode("utf-8", "replace").rstrip("\r\n").partition(" QUIT :")[2] or "Quit"


# ---------------------------------------------------------------------------------------------
# History in Redis
# ---------------------------------------------------------------------------------------------


class RedisHistory:
    """The cluster's ``HistoryStore``: a capped stream per room, ids shared with the events
    stream, so a msgid is a stream id and every node answers alike. While Redis is away,
    queries answer nothing rather than wait (``Hub`` may ask under its lock)."""

    failure: str | None = None

    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self.on_commit: OnCommit = _nothing

    def append(self, entry: HistoryEntry, payload: Any) -> bool:
        return self._bus.append_line(entry, payload)

    def settle(self, timeout: float) -> None:
        self._bus.settle(timeout)

    def save_channel(self, target: str, state: str) -> None:
        self._bus.save_channel(target, state)

    def load_channels(self) -> dict[str, str]:
        try:
            found = self._bus.redis.hgetall(PREFIX + "channels")
        except redis.RedisError as error:
            log.error("cluster: channel states not read: %s", error)
            return {}
        return {target.decode(): state.decode() for target, state in found.items()}

    def close(self) -> None:
        """Nothing of its own: the bus sends and stops."""

    # -- queries: (ms, seq) keys; a timestamp sits before every line of its millisecond ---------

    def latest(self, target: str, limit: int, after: MessageRef | None = None) -> list[HistoryEntry]:
        """The latest lines this node has read from the stream: what a new channel's recent
        lines start from (the reader appends each later one as it delivers it, so none is
        missing or twice; before the node has joined, none)."""
        low = "-"
        if after is not None:
            key = self._key_of(target, after)
            if key is None:
                return []
            low = _above(key)
        return self._range(target, low, self._bus.last_id, limit, newest_first=True)

    def before(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]:
        key = self._key_of(target, ref)
        return [] if key is None else self._range(target, "-", _below(key), limit, newest_first=True)

    def after(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]:
        key = self._key_of(target, ref)
        return [] if key is None else self._range(target, _above(key), "+", limit, newest_first=False)

    def around(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]:
        key = self._key_of(target, ref)
        if key is None:
            return []
        earlier = self._range(target, "-", _below(key), limit // 2, newest_first=True)
        start = f"{key[0]}-{max(key[1], 0)}"
        return earlier + self._range(target, start, "+", limit - len(earlier), newest_first=False)

    def between(self, target: str, start: MessageRef, end: MessageRef, limit: int) -> list[HistoryEntry]:
        low, high = self._key_of(target, start), self._key_of(target, end)
        if low is None or high is None:
            return []
        if high < low:
            return self._range(target, _above(high), _below(low), limit, newest_first=True)
        return self._range(target, _above(low), _below(high), limit, newest_first=False)

    def _key_of(self, target: str, ref: MessageRef) -> tuple[int, int] | None:
        if ref.time_ms is not None:
            return ref.time_ms, -1
        try:
            key = split_id(ref.msgid or "")
        except ValueError:
            return None
        found = self._call(lambda client: client.xrange(self._stream(target), f"{key[0]}-{key[1]}",
                                                        f"{key[0]}-{key[1]}", count=1))
        return key if found else None

    def _range(self, target: str, low: str, high: str, limit: int, *, newest_first: bool) -> list[HistoryEntry]:
        if limit <= 0:
            return []
        stream = self._stream(target)
        if newest_first:
            rows = self._call(lambda client: client.xrevrange(stream, high, low, count=limit))[::-1]
        else:
            rows = self._call(lambda client: client.xrange(stream, low, high, count=limit))
        entries = []
        for raw_id, fields in rows:
            stored = decode_record(fields.get(b"e", b""))
            if stored is None:
                continue
            event_id = raw_id.decode()
            texts = [stored.get(field) for field in ("s", "c", "r", "x")]
            if not all(isinstance(text, str) for text in texts):  # another version's shape
                log.error("cluster: skipped the malformed line %s of %s", event_id, target)
                continue
            entries.append(HistoryEntry(event_id, split_id(event_id)[0], target, *texts))
        return entries

    def _call(self, query: Any) -> list[Any]:
        if not self._bus.up:
            return []
        try:
            return query(self._bus.redis)
        except redis.RedisError as error:
            log.warning("cluster: history query failed: %s", error)
            return []

    @staticmethod
    def _stream(target: str) -> str:
        return PREFIX + "history:" + target


def _above(key: tuple[int, int]) -> str:
    """The XRANGE start just after ``key`` (a timestamp's key: its millisecond's first line)."""
    return f"{key[0]}-0" if key[1] < 0 else f"({key[0]}-{key[1]}"


def _below(key: tuple[int, int]) -> str:
    """The XRANGE end just before ``key``."""
    return f"({key[0]}-0" if key[1] < 0 else f"({key[0]}-{key[1]}"


def _nothing(payloads: list[Any], stored: bool) -> None:
    """``on_commit`` until the Hub sets its own."""
