"""Room history over real sockets and a real SQLite file: tags, replay, CHATHISTORY, failures."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from irc_peer import Peer
from test_server_cli import SERVER

from ircchat.history import SqliteHistory
from ircchat.network import ChatServer
from ircchat.protocol import parse_message
from ircchat.state import ServerConfig

TAGS = "batch server-time message-tags"


class Servers:
    """Servers sharing one history file, started and restarted by the test."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.running: list[tuple[ChatServer, SqliteHistory]] = []

    def start(self, **overrides) -> ChatServer:
        overrides.setdefault("flood_rate", 0)  # tests send bursts; flood control has its own tests
        store = SqliteHistory(self.path)
        server = ChatServer(dataclasses.replace(ServerConfig(), **overrides), "127.0.0.1", 0, history=store)
        server.start()
        self.running.append((server, store))
        return server

    def stop(self, server: ChatServer) -> None:
        for pair in self.running:
            if pair[0] is server:
                self.running.remove(pair)
                server.shutdown()
                pair[1].close()
                return

    def stop_all(self) -> None:
        for server, _ in list(self.running):
            self.stop(server)


@pytest.fixture
def servers(tmp_path):
    started = Servers(str(tmp_path / "history.sqlite3"))
    yield started
    started.stop_all()


def join(server: ChatServer, nick: str, caps: str = "") -> Peer:
    """A registered peer, with ``caps`` negotiated first; its registration lines are in ``seen``."""
    peer = Peer(server.address)
    peer.nick = nick
    if caps:
        peer.send("CAP LS 302", f"CAP REQ :{caps}")
        peer.expect(r" CAP \* ACK ")
        peer.send("CAP END")
    peer.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
    peer.expect(" 366 ")
    return peer


def between(lines: list[str], first: str, last: str) -> list[str]:
    """The lines from the first matching ``first`` to the next matching ``last``, both in."""
    start = next(i for i, line in enumerate(lines) if re.search(first, line))
    end = next(i for i in range(start, len(lines)) if re.search(last, lines[i]))
    return lines[start:end + 1]


def said(peer: Peer, *texts: str) -> None:
    """Send lines to #chat and wait until the server has handled them all."""
    peer.send(*(f"PRIVMSG #chat :{text}" for text in texts))
    peer.sync()


def wait_stored(path: str, count: int) -> None:
    """Until ``count`` room lines are in the file (delivery follows storing; a test may look first)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(path) as db:
            if db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] >= count:
                return
        assert time.monotonic() < deadline, f"fewer than {count} lines stored"
        time.sleep(0.02)


# -- live lines: tags, echo, labels --------------------------------------------------------


def test_room_lines_carry_msgid_and_time_only_to_clients_that_asked(servers):
    server = servers.start()
    ann, tagged, timed, plain = (join(server, "ann"), join(server, "tagged", "message-tags server-time"),
                                 join(server, "timed", "server-time"), join(server, "plain"))
    isupport = " ".join(line for line in plain.seen if " 005 " in line)
    assert "CHATHISTORY=100" in isupport and "MSGREFTYPES=msgid,timestamp" in isupport
    ann.send("PRIVMSG #chat :hello all")
    line = tagged.expect("PRIVMSG #chat :hello all$")
    tags = dict(line.tags)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tags["time"]) and tags["msgid"]
    assert dict(timed.expect("PRIVMSG #chat :hello all$").tags) == {"time": tags["time"]}
    assert plain.expect("PRIVMSG #chat :hello all$").tags == ()
    ann.send("PRIVMSG tagged :just you")
    assert dict(tagged.expect("PRIVMSG tagged :just you").tags)["msgid"] != tags["msgid"]


def test_asking_for_tags_after_joining_gets_them_on_the_next_lines(servers):
    server = servers.start()
    ann, late = join(server, "ann"), join(server, "late")
    ann.send("PRIVMSG #chat :before")
    assert late.expect("PRIVMSG #chat :before$").tags == ()
    late.send("CAP REQ :message-tags server-time")
    late.expect(" CAP late ACK ")
    ann.send("PRIVMSG #chat :after")
    assert set(dict(late.expect("PRIVMSG #chat :after$").tags)) == {"time", "msgid"}


def test_echo_message_and_labeled_responses(servers):
    server = servers.start()
    ann = join(server, "ann", "echo-message labeled-response batch message-tags")
    bob = join(server, "bob")
    ann.send("@label=m1 PRIVMSG #chat :echoed")
    echo = ann.expect("PRIVMSG #chat :echoed$")
    assert dict(echo.tags)["label"] == "m1" and dict(echo.tags)["msgid"]
    bob.expect("PRIVMSG #chat :echoed$")
    ann.send("@label=p1 PING :x")
    assert dict(ann.expect("PONG").tags) == {"label": "p1"}
    ann.send("@label=w1 WHO #chat")
    start = ann.expect(r"BATCH \+\S+ :?labeled-response$")
    ref = start.params[0][1:]
    assert dict(start.tags) == {"label": "w1"}
    lines = ann.collect_until(rf"BATCH :?-{ref}$")
    assert all(line.startswith(f"@batch={ref} ") for line in lines[:-1]) and len(lines) == 4  # 2 x 352, 315
    ann.send("@label=n1 PRIVMSG nobody_here :hi")
    assert dict(ann.expect(" 401 ").tags) == {"label": "n1"}
    ann.send("@label=a1 MODE ann +w")
    assert dict(ann.expect("MODE ann :\\+w").tags) == {"label": "a1"}
    ann.send("@label=a2 MODE ann +w")  # nothing to change: no reply at all, so an ACK
    assert dict(ann.expect(r" ACK$").tags) == {"label": "a2"}


# -- replay on join ----------------------------------------------------------------------------


def test_history_survives_a_restart_and_is_replayed_framed_to_a_plain_client(servers):
    server = servers.start()
    ann = join(server, "ann")
    said(ann, "first", "\x01ACTION waves\x01")
    ann.send("TOPIC #chat :a new topic")
    ann.expect("TOPIC #chat :a new topic")
    wait_stored(servers.path, 3)
    servers.stop(server)
    again = servers.start()
    bob = join(again, "bob")
    replay = between(bob.seen, "Replaying the last", "End of replay")  # between JOIN and NAMES
    texts = [line.split(" :", 1)[1] for line in replay]
    assert len(texts) == 5, replay
    assert texts[0] == "Replaying the last 3 messages of #chat (times in UTC)"
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] first", texts[1])
    assert re.fullmatch(r"\x01ACTION \[[\d: -]+\] waves\x01", texts[2])
    assert re.fullmatch(r"\[[\d: -]+\] ann set the topic: a new topic", texts[3])
    assert replay[1].startswith(":ann!") and replay[3].startswith(":chat.local NOTICE #chat :")


def test_replay_to_a_capable_client_is_a_chathistory_batch_ending_where_live_lines_begin(servers):
    server = servers.start()
    ann, watcher = join(server, "ann", "message-tags"), join(server, "watcher")
    said(ann, *(f"old {i}" for i in range(60)))
    watcher.expect("PRIVMSG #chat :old 59$")  # all delivered: a joiner now gets all in the replay
    bob = join(server, "bob", TAGS)
    batch = between(bob.seen, r"BATCH \+", r"BATCH :?-")  # between JOIN and NAMES
    joined = next(i for i, line in enumerate(bob.seen) if re.search(r"^:bob!\S+ JOIN", line))
    assert joined < bob.seen.index(batch[0])  # the joiner's own JOIN comes first
    start = parse_message(batch[0])
    ref = start.params[0][1:]
    assert start.params[1:] == ("chathistory", "#chat") and batch[-1].endswith(f"-{ref}")
    replay = batch[1:-1]
    assert [line.rsplit(" :", 1)[1] for line in replay] == [f"old {i}" for i in range(10, 60)]
    for line in replay:
        tags = dict(item.split("=", 1) for item in line[1:].split(" ", 1)[0].split(";"))
        assert tags["batch"] == ref and tags["time"] and tags["msgid"]
    said(ann, "live one")
    assert bob.expect("PRIVMSG #chat :").params[-1] == "live one"  # nothing replayed twice


def test_joining_during_a_burst_replays_and_then_goes_live_without_a_gap_or_a_repeat(servers):
    server = servers.start()
    ann = join(server, "ann")
    ann.send(*(f"PRIVMSG #chat :n {i}" for i in range(400)))
    bob = join(server, "bob")  # while the burst is being stored and delivered
    pattern = r"PRIVMSG #chat :(\[[^]]*\] )?n \d+$"
    # The replay came before NAMES (already read by join()); the live lines follow.
    seen = [int(line.rsplit(" ", 1)[1]) for line in bob.seen if re.search(pattern, line)]
    while not seen or seen[-1] != 399:
        seen.append(int(bob.expect(pattern).params[-1].rsplit(" ", 1)[1]))
    assert seen == list(range(seen[0], 400)), seen  # contiguous: nothing lost, nothing twice


def test_lines_before_a_part_nick_or_quit_reach_members_before_it(servers):
    server = servers.start()
    ann, carol, tagged = join(server, "ann"), join(server, "carol"), join(server, "tagged", "server-time")
    ann.send("PRIVMSG #chat :before nick", "NICK anna", "PRIVMSG #chat :before part", "PART #chat",
             "JOIN #chat", "PRIVMSG #chat :before quit", "QUIT :bye")
    for peer in (carol, tagged):  # one follows the room's log, one is sent lines one by one
        order = [line for line in peer.collect_until(r" QUIT :")
                 if re.search(r"PRIVMSG|NICK|PART|QUIT", line)]
        kinds = [re.search(r"(PRIVMSG #chat :before \w+|NICK|PART|QUIT)", line).group(1) for line in order]
        assert kinds == ["PRIVMSG #chat :before nick", "NICK", "PRIVMSG #chat :before part", "PART",
                         "PRIVMSG #chat :before quit", "QUIT"], order


def test_labeled_chathistory_nests_its_batch(servers):
    server = servers.start()
    ann = join(server, "ann", "labeled-response batch server-time message-tags draft/chathistory")
    said(ann, "one")
    wait_stored(servers.path, 1)
    ann.send("@label=h1 CHATHISTORY LATEST #chat * 5")
    outer = ann.expect(r"BATCH \+\S+ :?labeled-response$")
    lines = ann.collect_until(rf"BATCH :?-{outer.params[0][1:]}$")
    inner_start = next(line for line in lines if "chathistory" in line)
    assert inner_start.startswith(f"@batch={outer.params[0][1:]} ")  # the inner batch is in the outer
    message = next(line for line in lines if "PRIVMSG #chat :one" in line)
    assert message.count("batch=") == 1  # its own batch only


def test_a_client_with_draft_chathistory_gets_no_automatic_replay(servers):
    server = servers.start()
    said(join(server, "ann"), "before")
    wait_stored(servers.path, 1)
    bob = join(server, "bob", "draft/chathistory batch server-time")
    lines = bob.sync()
    assert not any("before" in line or "BATCH" in line for line in bob.seen + lines)


# -- CHATHISTORY --------------------------------------------------------------------------------


def test_chathistory_subcommands(servers):
    server = servers.start()
    ann = join(server, "ann", "message-tags server-time batch")
    said(ann, *(f"m{i}" for i in range(10)))
    wait_stored(servers.path, 10)
    bob = join(server, "bob", "draft/chathistory batch server-time message-tags")

    def history(command: str) -> list[tuple[str, dict]]:
        bob.send(command)
        start = bob.expect(r"BATCH \+\S+ chathistory :?#chat$")
        ref = start.params[0][1:]
        lines = bob.collect_until(rf"BATCH :?-{ref}$")[:-1]
        out = []
        for line in lines:
            tags = dict(item.split("=", 1) for item in line[1:].split(" ", 1)[0].split(";"))
            out.append((line.rsplit(" :", 1)[1], tags))
        return out

    latest = history("CHATHISTORY LATEST #chat * 3")
    assert [text for text, _ in latest] == ["m7", "m8", "m9"]
    ids = {text: tags["msgid"] for text, tags in history("CHATHISTORY LATEST #chat * 100")}
    times = {text: tags["time"] for text, tags in history("CHATHISTORY LATEST #chat * 100")}
    assert [t for t, _ in history(f"CHATHISTORY BEFORE #chat msgid={ids['m5']} 2")] == ["m3", "m4"]
    assert [t for t, _ in history(f"CHATHISTORY AFTER #chat msgid={ids['m5']} 2")] == ["m6", "m7"]
    assert [t for t, _ in history(f"CHATHISTORY AROUND #chat msgid={ids['m5']} 3")] == ["m4", "m5", "m6"]
    assert [t for t, _ in history(f"CHATHISTORY BETWEEN #chat msgid={ids['m1']} msgid={ids['m4']} 10")] == \
        ["m2", "m3"]
    assert [t for t, _ in history(f"CHATHISTORY LATEST #chat msgid={ids['m8']} 10")] == ["m9"]
    assert [t for t, _ in history("CHATHISTORY AFTER #chat timestamp=2000-01-01T00:00:00.000Z 2")] == \
        ["m0", "m1"]
    assert [t for t, _ in history("CHATHISTORY BEFORE #chat timestamp=2100-01-01T00:00:00Z 2")] == \
        ["m8", "m9"]
    assert history("CHATHISTORY BEFORE #chat timestamp=2000-01-01T00:00:00.000Z 5") == []
    # A timestamp sits just before every line of its millisecond: m0's own time includes m0.
    between = f"CHATHISTORY BETWEEN #chat timestamp={times['m0']} timestamp=2100-01-01T00:00:00Z 100"
    assert [t for t, _ in history(between)] == [f"m{i}" for i in range(10)]
    assert history("CHATHISTORY AFTER #chat msgid=unknown 5") == []


@pytest.mark.parametrize("command, reply", [
    ("CHATHISTORY LATEST #chat * 0", "FAIL CHATHISTORY INVALID_PARAMS LATEST 0 :"),
    ("CHATHISTORY LATEST #chat * 101", "FAIL CHATHISTORY INVALID_PARAMS LATEST 101 :"),
    ("CHATHISTORY BEFORE #chat yesterday 5", "FAIL CHATHISTORY INVALID_PARAMS BEFORE yesterday :"),
    ("CHATHISTORY SIDEWAYS #chat * 5", "FAIL CHATHISTORY INVALID_PARAMS SIDEWAYS :Unknown subcommand"),
    ("CHATHISTORY BETWEEN #chat * 5", "FAIL CHATHISTORY NEED_MORE_PARAMS BETWEEN :"),
    ("CHATHISTORY LATEST #elsewhere * 5", "FAIL CHATHISTORY INVALID_TARGET LATEST #elsewhere :"),
    ("CHATHISTORY LATEST bob * 5", "FAIL CHATHISTORY INVALID_TARGET LATEST bob :"),
])
def test_chathistory_refusals(servers, command, reply):
    server = servers.start()
    ann = join(server, "ann")
    join(server, "bob").send("JOIN #elsewhere")
    ann.send(command)
    ann.expect(" FAIL ")
    assert reply in ann.seen[-1]


def test_chathistory_without_batch_is_framed_by_notices(servers):
    server = servers.start()
    ann = join(server, "ann")
    said(ann, "one", "two")
    wait_stored(servers.path, 2)
    ann.send("CHATHISTORY LATEST #chat * 5")
    lines = ann.collect_until("End of history")
    assert "History of #chat: 2 messages" in lines[0]
    assert [line.rsplit("] ", 1)[1] for line in lines[1:3]] == ["one", "two"]


# -- failures -----------------------------------------------------------------------------------


def test_a_read_only_database_is_told_once_and_the_chat_goes_on(servers):
    server = servers.start()
    ann, bob = join(server, "ann"), join(server, "bob")
    store = servers.running[0][1]
    # The file as a read-only mount or permissions would leave it (root ignores chmod).
    store._writer_db = sqlite3.connect(f"file:{servers.path}?mode=ro", uri=True, check_same_thread=False)
    said(ann, "not stored 1", "not stored 2")
    assert bob.expect("PRIVMSG #chat :not stored 1$") and bob.expect("PRIVMSG #chat :not stored 2$")
    bob.sync()
    notices = [line for line in bob.seen if "History is unavailable" in line]
    assert len(notices) == 1 and "readonly" in notices[0]
    said(ann, "still chatting")
    bob.expect("PRIVMSG #chat :still chatting$")
    assert not any("History is unavailable" in line for line in bob.sync())


def test_a_foreign_file_as_history_is_one_sentence_and_exit_1(tmp_path):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my shopping list\n" * 100)
    out = subprocess.run([sys.executable, str(SERVER), "--port", "0", "--history", str(foreign)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"chat_server.py: cannot use {foreign} as the history file")
    assert out.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_kill_9_in_a_burst_loses_nothing_a_member_received(tmp_path):
    path = tmp_path / "history.sqlite3"
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--history", str(path),
                             "--no-flood-control", "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(re.search(r"listening on [\d.]+:(\d+)", proc.stdout.readline()).group(1))
        sender, member = Peer(("127.0.0.1", port)), Peer(("127.0.0.1", port))
        sender.register("sender")
        member.register("member")
        sender.send(*(f"PRIVMSG #chat :burst {i}" for i in range(3000)))
        received = []
        while len(received) < 500:  # well into the burst
            received.append(member.expect("PRIVMSG #chat :burst").params[-1])
        os.kill(proc.pid, signal.SIGKILL)  # the server this test started, by its pid
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (line := member.read_line(deadline)) is not None:
            if "PRIVMSG #chat :burst" in line:
                received.append(line.rsplit(" :", 1)[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(path) as db:
        stored = {row[0] for row in db.execute("SELECT text FROM messages")}
    assert len(received) >= 500 and not [text for text in received if text not in stored]
