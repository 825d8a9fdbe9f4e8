"""The SQLite history store on real files: order, queries, retention, failures, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ircchat.history
from ircchat.history import HistoryEntry, HistoryError, MessageRef, SqliteHistory, format_timestamp

T0 = int(time.time() * 1000) - 3_600_000  # an hour ago, in ms: inside the retention


def opened(path, **limits) -> SqliteHistory:
    """A store whose payloads are callbacks, each told whether its entry was stored."""
    store = SqliteHistory(str(path), **limits)
    store.on_commit = lambda callbacks, stored: [callback(stored) for callback in callbacks]
    return store


def entry(i: int, target: str = "#chat", time_ms: int | None = None) -> HistoryEntry:
    return HistoryEntry(f"id{i}", T0 + i * 10 if time_ms is None else time_ms, target,
                        f"ann!~a@h", "PRIVMSG", target, f"line {i}")


class Recorder:
    """on_stored callbacks that remember what they were told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.event = threading.Event()
        self.expected = 0

    def callback(self, msgid: str):
        def on_stored(ok: bool) -> None:
            self.calls.append((msgid, ok))
            if len(self.calls) >= self.expected:
                self.event.set()
        return on_stored

    def append_all(self, store: SqliteHistory, entries: list[HistoryEntry]) -> None:
        self.expected += len(entries)
        self.event.clear()
        for item in entries:
            store.append(item, self.callback(item.msgid))
        assert self.event.wait(10), self.calls


@pytest.fixture
def store(tmp_path):
    store = opened(tmp_path / "history.sqlite3")
    yield store
    store.close()


def texts(entries: list[HistoryEntry]) -> list[str]:
    return [item.text for item in entries]


def test_appends_are_reported_in_order_and_queries_return_oldest_first(store):
    recorder = Recorder()
    recorder.append_all(store, [entry(i) for i in range(10)] + [entry(99, "#other")])
    assert recorder.calls == [(f"id{i}", True) for i in range(10)] + [("id99", True)]
    assert texts(store.latest("#chat", 3)) == ["line 7", "line 8", "line 9"]
    assert texts(store.latest("#chat", 3, after=MessageRef(msgid="id8"))) == ["line 9"]
    assert texts(store.before("#chat", MessageRef(msgid="id5"), 2)) == ["line 3", "line 4"]
    assert texts(store.after("#chat", MessageRef(msgid="id5"), 2)) == ["line 6", "line 7"]
    assert texts(store.around("#chat", MessageRef(msgid="id5"), 4)) == ["line 3", "line 4", "line 5", "line 6"]
    assert texts(store.between("#chat", MessageRef(msgid="id2"), MessageRef(msgid="id6"), 10)) == \
        ["line 3", "line 4", "line 5"]
    # Backwards: the ones nearest the start, still oldest first.
    assert texts(store.between("#chat", MessageRef(msgid="id6"), MessageRef(msgid="id1"), 2)) == \
        ["line 4", "line 5"]
    by_time = MessageRef(time_ms=T0 + 50)  # the time of id5: "before" excludes it, "after" keeps it
    assert texts(store.before("#chat", by_time, 1)) == ["line 4"]
    assert texts(store.after("#chat", by_time, 1)) == ["line 5"]
    assert store.before("#chat", MessageRef(msgid="id99"), 5) == []  # another room's message
    assert store.after("#chat", MessageRef(msgid="nope"), 5) == []
    assert texts(store.latest("#other", 50)) == ["line 99"]


def test_many_threads_appending_are_committed_together_and_in_order(store):
    done, order, lock = threading.Event(), [], threading.Lock()
    count = 2000

    def on_stored_for(msgid):
        def on_stored(ok):
            assert ok
            order.append(msgid)
            if len(order) == count:
                done.set()
        return on_stored

    appended: list[str] = []

    def sender(worker: int) -> None:
        for i in range(count // 4):
            with lock:  # stamp and append under one lock, as the server does
                item = entry(worker * 10_000 + i, time_ms=T0 + len(appended))
                appended.append(item.msgid)
                store.append(item, on_stored_for(item.msgid))

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done.wait(20)
    assert order == appended
    assert [item.msgid for item in store.latest("#chat", count)] == appended


def test_retention_keeps_the_newest_per_room_and_drops_old_ones(tmp_path):
    store = opened(tmp_path / "h.sqlite3", max_per_room=5, max_age_days=1, prune_every=10)
    try:
        old = int((time.time() - 3 * 86400) * 1000)
        now = int(time.time() * 1000)
        recorder = Recorder()
        recorder.append_all(store, [entry(i, "#old", time_ms=old + i) for i in range(3)])
        recorder.append_all(store, [entry(100 + i, time_ms=now + i) for i in range(30)])
        assert texts(store.latest("#chat", 50)) == [f"line {i}" for i in range(125, 130)]
        assert store.latest("#old", 50) == []
    finally:
        store.close()


def test_a_full_disk_is_logged_once_and_appends_report_not_stored(store, caplog):
    recorder = Recorder()
    recorder.append_all(store, [entry(0)])
    pages = store._writer_db.execute("PRAGMA page_count").fetchone()[0]
    store._writer_db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
    big = [HistoryEntry(f"big{i}", T0 + 100 + i, "#chat", "a!b@c", "PRIVMSG", "#chat", "x" * 4000)
           for i in range(20)]
    recorder.append_all(store, big)
    recorder.append_all(store, [entry(500)])
    assert [ok for _, ok in recorder.calls] == [True] + [False] * 21
    assert store.failure and "full" in store.failure
    assert sum("history stopped" in record.getMessage() for record in caplog.records) == 1
    assert texts(store.latest("#chat", 50)) == ["line 0"]  # what was stored can still be read


def test_a_file_from_a_newer_version_is_refused_in_one_sentence(tmp_path):
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(HistoryError, match=r"newer version of chat_server\.py \(history schema 99"):
        SqliteHistory(str(path))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a database" * 200)
    with pytest.raises(HistoryError, match="cannot use"):
        SqliteHistory(str(garbage))


def test_reopening_keeps_everything(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    store = opened(path)
    Recorder().append_all(store, [entry(i) for i in range(5)])
    store.close()
    again = opened(path)
    try:
        assert texts(again.latest("#chat", 10)) == [f"line {i}" for i in range(5)]
    finally:
        again.close()


WRITER_SCRIPT = """
import sys, threading, time
from ircchat.history import HistoryEntry, SqliteHistory
store = SqliteHistory(sys.argv[1])
store.on_commit = lambda callbacks, stored: [callback(stored) for callback in callbacks]
def reported(msgid):
    def on_stored(ok):
        if ok:
            sys.stdout.write(msgid + "\\n"); sys.stdout.flush()
    return on_stored
for i in range(10**9):  # until killed
    store.append(HistoryEntry(f"m{i}", int(time.time() * 1000), "#chat", "a!b@c", "PRIVMSG", "#chat", "x"), reported(f"m{i}"))
    if i % 100 == 99:
        threading.Event().wait(0.001)  # let the writer keep up
"""


@pytest.mark.slow
def test_kill_9_loses_nothing_that_was_reported_stored(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, path], stdout=subprocess.PIPE,
                            text=True, cwd=root)
    reported = []
    try:
        while len(reported) < 3000:  # well into a stream of commits
            line = proc.stdout.readline()
            assert line, "the writer process died"
            reported.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)  # the process this test started, by its pid
    finally:
        proc.wait(timeout=10)
    reported += [line.strip() for line in proc.stdout]  # what it printed before dying
    with sqlite3.connect(path) as db:
        stored = {row[0] for row in db.execute("SELECT msgid FROM messages")}
    missing = [msgid for msgid in reported if msgid not in stored]
    assert not missing, missing[:5]


def test_timestamps_round_trip():
    assert MessageRef.parse("timestamp=" + format_timestamp(T0 + 7)).time_ms == T0 + 7
    for bad in ("timestamp=yesterday", "msgid=", "id=x", "timestamp=2023-11-14 22:13:20Z"):
        with pytest.raises(ValueError):
            MessageRef.parse(bad)


def test_channel_states_are_kept_replaced_and_forgotten_after_max_age(tmp_path):
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:  # a file from before channel states (schema 1)
        db.executescript("CREATE TABLE messages (id INTEGER PRIMARY KEY, msgid TEXT NOT NULL UNIQUE, "
                         "target TEXT NOT NULL, time_ms INTEGER NOT NULL, source TEXT NOT NULL, "
                         "command TEXT NOT NULL, room TEXT NOT NULL, text TEXT NOT NULL); "
                         "PRAGMA user_version = 1;")
    store = opened(path, max_age_days=1)
    store.save_channel("#a", '{"v": 1}')
    store.save_channel("#a", '{"v": 2}')  # the newer state of a room replaces the older
    store.save_channel("#b", '{"v": 3}')
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO channels VALUES ('#old', '{}', ?)", (int(time.time()) - 3 * 86400,))
    store = opened(path, max_age_days=1)
    assert store.load_channels() == {"#a": '{"v": 2}', "#b": '{"v": 3}'}
    store.close()


def test_a_pinned_channel_state_outlives_the_count_and_age_limits(tmp_path, monkeypatch):
    """The default room's state is pinned: throwaway rooms saved after it, or a month without
    a change, must not take its bans away."""
    monkeypatch.setattr(ircchat.history, "SAVED_CHANNELS_MAX", 3)
    path = tmp_path / "h.sqlite3"
    store = opened(path, max_age_days=1, pinned_channels=("#chat",))
    store.save_channel("#chat", '{"bans": 1}')
    store.close()
    now = int(time.time())
    with sqlite3.connect(path) as db:  # saved long ago, then three rooms after it
        db.execute("UPDATE channels SET saved_at = ?", (now - 3 * 86400,))
        db.executemany("INSERT INTO channels VALUES (?, '{}', ?)", [("#a", now - 40), ("#b", now - 30), ("#c", now - 20)])
    store = opened(path, max_age_days=1, pinned_channels=("#chat",))
    store.save_channel("#d", "{}")  # the limits are applied as a save is written
    store.close()
    store = opened(path, max_age_days=1, pinned_channels=("#chat",))
    assert store.load_channels() == {"#chat": '{"bans": 1}', "#b": "{}", "#c": "{}", "#d": "{}"}
    store.close()
    store = opened(path, max_age_days=1)  # not pinned: the count and the age both drop it
    store.save_channel("#e", "{}")
    store.close()
    store = opened(path, max_age_days=1)
    assert store.load_channels() == {"#c": "{}", "#d": "{}", "#e": "{}"}
    store.close()
