"""Room history: stored in SQLite by a writer thread with group commit, read for CHATHISTORY.

Map of this module:

1. ``HistoryEntry``, what one stored line is, and ``MessageRef``, how a client points at one
   (``msgid=...`` or ``timestamp=YYYY-MM-DDThh:mm:ss.sssZ``), with the IRCv3 time format.
2. ``HistoryStore``, the small interface the server's handlers use, so the single-process
   SQLite default and a shared store for cluster mode can serve the same handlers.
3. ``SqliteHistory``: the default. ``append`` hands an entry to a writer thread, which commits
   everything queued meanwhile in one transaction (group commit, WAL) and then hands the whole
   batch, in order, to ``on_commit``. The server delivers the lines from there: each is stored
   before anyone receives it, no sender waits for its own commit, and a batch goes out to the
   room in one pass. Channel states (topic, modes, bans) are kept beside the lines: written
   by the same thread (``save_channel``), read once at start-up (``load_channels``).

Durability: WAL with ``synchronous=NORMAL``. A committed entry is in the WAL file, so it
survives the server process being killed at any moment (``kill -9``); an operating-system
crash or power loss may lose the last commits, which ``synchronous=FULL`` would prevent at the
price of an fsync per commit.

When the disk fails (full, read-only, removed), the store logs it once, reports it through
``failure`` and from then on reports every append as not stored: the chat goes on without
history rather than stopping.
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

from ircchat.logs import log

SCHEMA_VERSION = 2
_SCHEMA_V1 = """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,   -- order of arrival: the order every member saw
    msgid TEXT NOT NULL UNIQUE,
    target TEXT NOT NULL,     -- the room's folded name
    time_ms INTEGER NOT NULL, -- server receive time, ms since the epoch (UTC)
    source TEXT NOT NULL,     -- nick!user@host as members saw it
    command TEXT NOT NULL,    -- PRIVMSG, NOTICE or TOPIC
    room TEXT NOT NULL,       -- the room's name as written in the line
    text TEXT NOT NULL
);
CREATE INDEX messages_by_target ON messages (target, id);
CREATE INDEX messages_by_time ON messages (target, time_ms);
"""
_SCHEMA_V2 = """
CREATE TABLE channels (
    target TEXT PRIMARY KEY,  -- the room's folded name
    state TEXT NOT NULL,      -- its topic, modes and bans, as JSON (see ircchat.modes)
    saved_at INTEGER NOT NULL -- seconds since the epoch
);
"""
_MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2)  # the step from schema version i to i + 1 at [i]
SAVED_CHANNELS_MAX = 1000  # channel states kept, the least recently saved dropped first


class HistoryError(Exception):
    """The history file cannot be used at start-up (newer schema, not a database, ...)."""


# ---------------------------------------------------------------------------------------------
# 1. Entries and references
# ---------------------------------------------------------------------------------------------


class HistoryEntry(NamedTuple):
    """One stored line, its fields in the table's column order (so rows go to SQLite as they are)."""

    msgid: str
    time_ms: int
    target: str  # folded room name, the key of a room's history
    source: str
    command: str
    room: str
    text: str

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.time_ms)


def format_timestamp(time_ms: int) -> str:
    """The IRCv3 ``server-time`` form of a time in ms since the epoch.

    >>> format_timestamp(1_700_000_000_123)
    '2023-11-14T22:13:20.123Z'
    """
    seconds, ms = divmod(time_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


_TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def parse_timestamp(text: str) -> int:
    """ms since the epoch from ``YYYY-MM-DDThh:mm:ss[.sss]Z``; ValueError otherwise.

    >>> parse_timestamp("2023-11-14T22:13:20.123Z")
    1700000000123
    """
    if not _TIMESTAMP_RE.match(text):
        raise ValueError(f"not a timestamp: {text!r}")
    moment = datetime.strptime(text[:-1] + ("" if "." in text else ".0"), "%Y-%m-%dT%H:%M:%S.%f")
    return int(round(moment.replace(tzinfo=timezone.utc).timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A point in a room's history, as CHATHISTORY names it: by msgid or by time."""

    msgid: str | None = None
    time_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> MessageRef:
        """``msgid=ID`` or ``timestamp=...``; ValueError for anything else.

        >>> MessageRef.parse("msgid=abc")
        MessageRef(msgid='abc', time_ms=None)
        >>> MessageRef.parse("timestamp=2023-11-14T22:13:20.123Z").time_ms
        1700000000123
        """
        kind, _, value = text.partition("=")
        if kind == "msgid" and value:
            return cls(msgid=value)
        if kind == "timestamp":
            return cls(time_ms=parse_timestamp(value))
        raise ValueError(f"not a message reference: {text!r}")


# ---------------------------------------------------------------------------------------------
# 2. The interface handlers use
# ---------------------------------------------------------------------------------------------

OnCommit = Callable[[list[Any], bool], None]


class HistoryStore(Protocol):
    """Where room history lives. Every method is safe to call from any thread.

    ``append`` is how the server keeps "stored before delivered" without making each sender
    wait for its own commit: once a batch of entries is durable, the store calls
    ``on_commit`` with their payloads, in the order they were appended, and the server
    delivers the lines from there. Entries are appended in the order of their ``time_ms``
    (the caller stamps and appends under one lock). Queries return entries oldest first,
    ordered by (time, arrival); a reference that names no stored message gives an empty
    list, as the IRCv3 draft asks.
    """

    failure: str | None  # why history stopped working, once it has
    # Set by the server before the first append: (payloads, stored) for each committed batch,
    # stored False when they could not be (the lines still go out).
    on_commit: OnCommit

    def append(self, entry: HistoryEntry, payload: Any) -> bool:
        """Queue ``entry``, its ``payload`` to be handed to ``on_commit``. False if the store
        is closed: then nothing was queued."""

    def settle(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until everything appended so far has been handed to
        ``on_commit``: so that a sender's lines go out before its PART, NICK or QUIT."""

    def latest(self, target: str, limit: int, after: MessageRef | None = None) -> list[HistoryEntry]: ...

    def before(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]: ...

    def after(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]: ...

    def around(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]: ...

    def between(self, target: str, start: MessageRef, end: MessageRef, limit: int) -> list[HistoryEntry]: ...

    def save_channel(self, target: str, state: str) -> None:
        """Keep a room's state (text), replacing the one it had; written in the background."""

    def load_channels(self) -> dict[str, str]:
        """Every room's kept state: read once, at start-up."""

    def close(self) -> None:
        """Commit what is queued (handing it to ``on_commit``), then release the store."""


# ---------------------------------------------------------------------------------------------
# 3. SQLite
# ---------------------------------------------------------------------------------------------

_COLUMNS = "msgid, time_ms, target, source, command, room, text"
AGE_PRUNE_INTERVAL = 60.0  # seconds between two deletions of lines past their age
ROWS_PER_INSERT = 256  # 7 parameters a row: well under SQLite's 32,766 per statement
_KEY = "time_ms, id"  # rows are ordered by receive time, then by arrival


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO messages ({_COLUMNS}) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


class SqliteHistory:
    """History in one SQLite file; see the module docstring for durability and failures.

    ``_lock`` guards the queue of entries waiting for the writer and ``failure``. Only the
    writer thread writes to the database; queries share one read connection under
    ``_read_lock`` (WAL lets them run while the writer commits).
    """

    def __init__(self, path: str, *, max_age_days: float = 30.0, max_per_room: int = 10_000,
                 prune_every: int = 1000, pinned_channels: tuple[str, ...] = ()) -> None:
        self.path = path
        # Rooms whose state is never forgotten, by age or by count (the default room: its bans
        # must not go because throwaway rooms were saved after it).
        self.pinned_channels = tuple(pinned_channels)
        self._pinned_list = f"({', '.join('?' * len(self.pinned_channels))})"  # SQLite takes ()
        self.max_age_days = max_age_days
        self.max_per_room = max_per_room
        self.prune_every = prune_every  # entries committed between two passes over their rooms
        self.failure: str | None = None
        self.on_commit: OnCommit = _drop
        self._writer_db = _open(path, writer=True)
        self._reader_db = _open(path, writer=False)
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._queue: list[tuple[HistoryEntry, Any]] = []
        self._channel_saves: dict[str, str] = {}  # target -> state, for the writer's next commit
        self._closing = False
        self._appended = self._delivered = 0  # entries queued, and handed to on_commit
        self._delivered_cv = threading.Condition(self._lock)
        self._read_lock = threading.Lock()
        self._since_prune = prune_every  # prune at the first commit: the limits may have shrunk
        self._grown: set[str] = set()  # rooms appended to since the last pass; writer only
        self._aged_at = float("-inf")  # when lines past --history-days were last deleted
        self._writer = threading.Thread(target=self._write_loop, name="history-writer", daemon=True)
        self._writer.start()

    # -- appends -----------------------------------------------------------------------------

    def append(self, entry: HistoryEntry, payload: Any) -> bool:
        with self._lock:
            if self._closing:
                return False
            self._queue.append((entry, payload))
            self._appended += 1
            if len(self._queue) == 1:
                self._queued.notify()
            return True

    def save_channel(self, target: str, state: str) -> None:
        with self._lock:
            if self._closing:
                log.warning("channel state of %s not saved: the history is closing", target)
                return
            self._channel_saves[target] = state  # a newer state of the same room replaces it
            self._queued.notify()

    def load_channels(self) -> dict[str, str]:
        """Every kept room state, after dropping those saved more than ``max_age_days`` ago
        (but the pinned ones); the least recently saved first (the order in which the server
        forgets them)."""
        oldest = int(time.time() - self.max_age_days * 86400)
        with self._read_lock:
            rows = self._reader_db.execute(
                f"SELECT target, state FROM channels WHERE saved_at >= ? OR target IN {self._pinned_list} "
                "ORDER BY saved_at DESC LIMIT ?",
                (oldest, *self.pinned_channels, SAVED_CHANNELS_MAX + len(self.pinned_channels))).fetchall()
        return dict(reversed(rows))

    def settle(self, timeout: float) -> None:
        with self._lock:
            wanted = self._appended
            self._delivered_cv.wait_for(lambda: self._delivered >= wanted or self._closing, timeout)

    def _write_loop(self) -> None:
        """Commit everything queued in one transaction, then report it, in order; repeat."""
        while True:
            with self._lock:
                while not self._queue and not self._channel_saves and not self._closing:
                    self._queued.wait()
                batch, self._queue = self._queue, []
                saves, self._channel_saves = self._channel_saves, {}
            if saves:
                self._save_channels(saves)
            if not batch:
                if saves:
                    continue
                break  # closing, and nothing left
            stored = self._commit([entry for entry, _ in batch])
            try:
                self.on_commit([payload for _, payload in batch], stored)
            except Exception:  # a delivery's bug must not stop history for everyone
                log.exception("error delivering stored lines")
            with self._lock:
                self._delivered += len(batch)
                self._delivered_cv.notify_all()
        self._writer_db.close()

    def _commit(self, entries: list[HistoryEntry]) -> bool:
        if self.failure is not None:
            return False
        try:
            with self._writer_db:  # one transaction for the whole batch
                # Many rows per INSERT: executemany steps once per row, and each step gives up
                # the GIL, which a busy server then makes the writer wait for, row after row.
                for start in range(0, len(entries), ROWS_PER_INSERT):
                    chunk = entries[start:start + ROWS_PER_INSERT]
                    self._writer_db.execute(_insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        except sqlite3.Error as error:
            self._fail(str(error))
            return False
        self._since_prune += len(entries)
        self._grown.update(entry.target for entry in entries)
        if self._since_prune >= self.prune_every:
            try:
                self._prune()
            except sqlite3.Error as error:  # the batch is stored; history stops from here
                self._fail(f"retention: {error}")
        return True

    def _save_channels(self, saves: dict[str, str]) -> None:
        """Write room states in one short transaction, dropping those past the limits."""
        if self.failure is not None:
            log.warning("channel states of %s not saved: history has stopped", ", ".join(saves))
            return
        now = int(time.time())
        try:
            with self._writer_db:
                self._writer_db.executemany(
                    "INSERT OR REPLACE INTO channels (target, state, saved_at) VALUES (?, ?, ?)",
                    [(target, state, now) for target, state in saves.items()])
                pinned = self.pinned_channels
                self._writer_db.execute(f"DELETE FROM channels WHERE saved_at < ? AND target NOT IN {self._pinned_list}",
                                        (int(now - self.max_age_days * 86400), *pinned))
                self._writer_db.execute(
                    f"DELETE FROM channels WHERE target NOT IN {self._pinned_list} AND target NOT IN "
                    "(SELECT target FROM channels ORDER BY saved_at DESC LIMIT ?)", (*pinned, SAVED_CHANNELS_MAX))
        except sqlite3.Error as error:
            self._fail(str(error))

    def _prune(self) -> None:
        """Apply the retention limits (by the writer, between commits): the line count of the
        rooms that grew, and, at most once a minute, the age of every line."""
        targets, self._grown, self._since_prune = self._grown, set(), 0
        now = time.monotonic()
        with self._writer_db:
            if now - self._aged_at >= AGE_PRUNE_INTERVAL:
                self._aged_at = now
                oldest = int((time.time() - self.max_age_days * 86400) * 1000)
                rooms = [row[0] for row in self._writer_db.execute("SELECT DISTINCT target FROM messages")]
                for room in rooms:  # by room: the (target, time) index finds the old lines
                    self._writer_db.execute("DELETE FROM messages WHERE target = ? AND time_ms < ?",
                                            (room, oldest))
            for target in targets:
                self._writer_db.execute(
                    f"DELETE FROM messages WHERE target = ? AND ({_KEY}) <= (SELECT {_KEY} FROM messages "
                    f"WHERE target = ? ORDER BY {_ORDER_DESC} LIMIT 1 OFFSET ?)",
                    (target, target, self.max_per_room))

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self.failure = reason
        log.error("history stopped: %s (%s); the chat goes on without it", reason, self.path)

    # -- queries -----------------------------------------------------------------------------

    def latest(self, target: str, limit: int, after: MessageRef | None = None) -> list[HistoryEntry]:
        if after is None:
            return self._query(target, None, ">", limit, newest_first=True)
        bound = self._bound(target, after)
        return [] if bound is None else self._query(target, bound, ">", limit, newest_first=True)

    def before(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]:
        bound = self._bound(target, ref)
        return [] if bound is None else self._query(target, bound, "<", limit, newest_first=True)

    def after(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]:
        bound = self._bound(target, ref)
        return [] if bound is None else self._query(target, bound, ">", limit, newest_first=False)

    def around(self, target: str, ref: MessageRef, limit: int) -> list[HistoryEntry]:
        """``limit`` entries centred on ``ref``: half before it, the rest from it on."""
        bound = self._bound(target, ref)
        if bound is None:
            return []
        earlier = self._query(target, bound, "<", limit // 2, newest_first=True)
        return earlier + self._query(target, bound, ">=", limit - len(earlier), newest_first=False)

    def between(self, target: str, start: MessageRef, end: MessageRef, limit: int) -> list[HistoryEntry]:
        """Entries strictly between the two; the ``limit`` nearest ``start``, oldest first."""
        low, high = self._bound(target, start), self._bound(target, end)
        if low is None or high is None:
            return []
        backwards = high < low
        if backwards:
            low, high = high, low
        return self._query(target, low, ">", limit, newest_first=backwards, below=high)

    def _bound(self, target: str, ref: MessageRef) -> tuple[int, int] | None:
        """A reference as a (time_ms, id) key; None if it names no message of ``target``.

        A timestamp sits before every row of its millisecond: (time, -1).
        """
        if ref.time_ms is not None:
            return ref.time_ms, -1
        with self._read_lock:
            row = self._reader_db.execute(
                "SELECT time_ms, id FROM messages WHERE msgid = ? AND target = ?", (ref.msgid, target)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def _query(self, target: str, bound: tuple[int, int] | None, op: str, limit: int, *,
               newest_first: bool, below: tuple[int, int] | None = None) -> list[HistoryEntry]:
        """Up to ``limit`` entries whose key is ``op`` ``bound`` (and under ``below``), oldest
        first; taken from the newest end when ``newest_first``."""
        if limit <= 0:
            return []
        where, args = ["target = ?"], [target]
        if bound is not None:
            where.append(f"({_KEY}) {op} (?, ?)")
            args += bound
        if below is not None:
            where.append(f"({_KEY}) < (?, ?)")
            args += below
        order = _ORDER_DESC if newest_first else _ORDER_ASC
        with self._read_lock:
            rows = self._reader_db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
                (*args, limit)).fetchall()
        entries = [HistoryEntry(*row) for row in rows]
        return entries[::-1] if newest_first else entries

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._queued.notify()
        self._writer.join()
        with self._read_lock:
            self._reader_db.close()


_ORDER_ASC = "time_ms ASC, id ASC"
_ORDER_DESC = "time_ms DESC, id DESC"


def _drop(payloads: list[Any], stored: bool) -> None:
    """``on_commit`` until the server sets its own."""


def _open(path: str, writer: bool) -> sqlite3.Connection:
    """Open the history file (the writer creates or migrates its schema); HistoryError if unusable."""
    try:
        # The reader runs in autocommit mode, so it never holds a transaction open.
        db = sqlite3.connect(path, check_same_thread=False, isolation_level="" if writer else None)
        db.execute("PRAGMA busy_timeout = 5000")
        if writer:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            _migrate(db, path)
        return db
    except sqlite3.DatabaseError as error:
        raise HistoryError(f"cannot use {path} as the history file: {error}") from error


def _migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the schema to SCHEMA_VERSION; a file from a newer version is refused."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path} was written by a newer version of chat_server.py (history schema {version}, "
            f"this one knows up to {SCHEMA_VERSION}); upgrade it, or use another --history file.")
    if version < SCHEMA_VERSION:
        steps = " ".join(_MIGRATIONS[version:])
        db.executescript(f"BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
