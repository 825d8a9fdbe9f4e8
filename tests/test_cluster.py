"""Cluster mode: real ``redis-server`` and chat server nodes as processes (cluster_harness).

Skipped as a whole only when redis-server is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from types import SimpleNamespace

import pytest
from cluster_harness import REDIS_SERVER, Node, RedisProcess
from irc_peer import Peer

from ircchat.history import MessageRef

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server)"),
]
redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install redis)")

# Quick fault handling for tests: a lost node is noticed in about 2 s, a silent Redis in 0.5 s.
NODE_FLAGS = ("--node-timeout", "2", "--redis-timeout", "0.5", "--oper", "root:secret")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One Redis and two nodes, shared by the tests that leave them as they found them."""
    logs = str(tmp_path_factory.mktemp("nodes"))
    server = RedisProcess.start()
    nodes = []
    try:
        nodes = [Node.start(server.url, *NODE_FLAGS, log_dir=logs) for _ in range(2)]
        yield server, nodes
    finally:
        for node in nodes:
            node.stop()
        server.stop()


@pytest.fixture
def peers():
    """Open peers, each closed (QUIT) when the test ends."""
    opened: list[Peer] = []

    def open_peer(node: Node, nick: str | None = None) -> Peer:
        peer = Peer(node.address)
        opened.append(peer)
        if nick is not None:
            peer.register(nick)
        return peer

    yield open_peer
    for peer in opened:
        if not peer.closed:
            try:
                peer.send("QUIT :done")
                peer.expect_closed()
            except (AssertionError, OSError):
                pass
        peer.close()


def wait_for_member(peer: Peer, nick: str, channel: str = "#chat") -> None:
    """Until ``peer`` sees ``nick`` joined to ``channel`` (it may be on another node)."""
    peer.expect(rf"^:{nick}!\S+ JOIN :?{channel}$")


def send_at_once(lines: dict[Peer, str]) -> None:
    """Each peer sends its line from a thread of its own, all started together."""
    threads = [threading.Thread(target=peer.send, args=(line,)) for peer, line in lines.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def caught_up(speaker: Peer, hearer: Peer, token: str) -> None:
    """Until ``hearer``'s node has applied everything ``speaker``'s node published before:
    a room line from ``speaker`` follows all of it on the stream."""
    speaker.send(f"PRIVMSG #chat :{token}")
    hearer.expect(f"PRIVMSG #chat :{token}")


def privmsgs(lines: list[str]) -> list[str]:
    return [line for line in lines if " PRIVMSG " in line]


def test_chat_crosses_nodes_and_never_reaches_its_sender(cluster, peers):
    _, (a, b) = cluster
    ann, cat = peers(a, "ann1"), peers(a, "cat1")
    bob = peers(b, "bob1")
    wait_for_member(ann, "bob1")
    ann.send("PRIVMSG #chat :hello from a")
    assert bob.expect("PRIVMSG #chat").prefix.startswith("ann1!")
    assert cat.expect("PRIVMSG #chat").params == ("#chat", "hello from a")
    bob.send("PRIVMSG #chat :hello from b")
    assert ann.expect("PRIVMSG #chat").params == ("#chat", "hello from b")
    assert privmsgs(ann.sync()) == []  # never its own line
    assert privmsgs(bob.sync()) == []


def test_every_member_sees_the_same_order_under_concurrent_senders(cluster, peers):
    _, (a, b) = cluster
    senders = [peers(a, "sendA"), peers(b, "sendB")]
    listeners = [peers(a, "hearA"), peers(b, "hearB")]
    # No waiting for the other node: a user's registration precedes its lines on the stream.
    count = 40

    def flood(peer: Peer) -> None:
        peer.send(*[f"PRIVMSG #chat :{peer.nick} {index}" for index in range(count)])

    threads = [threading.Thread(target=flood, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    orders = []
    for listener in listeners:
        seen = []
        while len(seen) < 2 * count:
            message = listener.expect("PRIVMSG #chat")
            seen.append(message.params[1])
        orders.append(seen)
    assert orders[0] == orders[1]
    for sender in senders:  # each sender's lines in the order it sent them
        assert [text for text in orders[0] if text.startswith(sender.nick)] == [
            f"{sender.nick} {index}" for index in range(count)]


def test_lines_before_a_part_reach_every_member_before_it(cluster, peers):
    _, (a, b) = cluster
    talker, near, far = peers(a, "wes1"), peers(a, "xia1"), peers(b, "yan1")
    for peer in (talker, near, far):
        peer.send("JOIN #talk")
        peer.expect(" 366 ")
    wait_for_member(talker, "yan1", "#talk")
    talker.send(*[f"PRIVMSG #talk :line {index}" for index in range(30)], "PART #talk :done")
    for member in (near, far):
        lines = member.collect_until(r"^:wes1!\S+ PART #talk")
        assert [line.rsplit(":", 1)[1] for line in privmsgs(lines)] == [f"line {index}" for index in range(30)]


def test_nicks_are_unique_across_nodes_without_regard_to_case(cluster, peers):
    _, (a, b) = cluster
    peers(a, "Dora")
    twin = peers(b)
    twin.send("NICK dORA", "USER x 0 * :x")
    assert twin.expect(r" 433 ").params[1] == "dORA"
    twin.send("NICK dora2")
    twin.expect(" 001 ")
    other = peers(a, "evan1")
    other.send("NICK DORA2")  # a registered user's change, against a user of the other node
    assert other.expect(" 433 ").params[1] == "DORA2"


def test_a_race_for_one_nick_on_two_nodes_has_one_winner(cluster, peers):
    _, (a, b) = cluster
    for round_ in range(3):
        nick = f"racer{round_}"
        racers = [peers(a), peers(b)]
        threads = [threading.Thread(target=racer.send, args=(f"NICK {nick}", "USER x 0 * :x")) for racer in racers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes = [racer.expect(r" (001|433) ").command for racer in racers]
        assert sorted(outcomes) == ["001", "433"], outcomes


def test_names_who_whois_lusers_and_ison_cover_every_node(cluster, peers):
    _, (a, b) = cluster
    fay = peers(a, "fay1")
    gus = peers(b, "gus1")
    wait_for_member(fay, "gus1")
    caught_up(fay, gus, "here")
    gus.send("NAMES #chat")
    names = " ".join(line.split(" :", 1)[1] for line in gus.collect_until(" 366 ") if " 353 " in line)
    assert {"fay1", "gus1"} <= set(names.replace("@", "").split())
    gus.send("WHOIS fay1")
    assert gus.expect(" 311 ").params[1:3] == ("fay1", "~tester")
    gus.send("WHO fay1")
    assert gus.expect(" 352 ").params[5] == "fay1"
    gus.send("ISON fay1 nobody")
    assert gus.expect(" 303 ").params[-1].strip() == "fay1"
    gus.send("LUSERS")  # on the node started second: it found the first in its snapshot
    users, servers = map(int, re.search(r"There are (\d+) users and 0 invisible on (\d+) servers",
                                        gus.expect(" 251 ").params[-1]).groups())
    assert users >= 2 and servers >= 2


def test_private_messages_cross_nodes(cluster, peers):
    _, (a, b) = cluster
    hal = peers(a, "hal1")
    ivy = peers(b, "ivy1")
    wait_for_member(hal, "ivy1")
    hal.send("PRIVMSG ivy1 :just for you")
    message = ivy.expect("PRIVMSG ivy1")
    assert message.prefix.startswith("hal1!") and message.params[1] == "just for you"
    ivy.send("AWAY :lunch")
    ivy.expect(" 306 ")
    caught_up(ivy, hal, "brb")
    hal.send("PRIVMSG ivy1 :still there?")
    assert hal.expect(" 301 ").params[1:] == ("ivy1", "lunch")


def test_invite_and_kill_reach_the_other_node(cluster, peers):
    _, (a, b) = cluster
    uma, vic = peers(a, "uma1"), peers(b, "vic1")
    uma.send("JOIN #closed", "MODE #closed +i")
    uma.expect(r"MODE #closed :?\+i")
    caught_up(uma, vic, "closing")
    vic.send("JOIN #closed")
    vic.expect(" 473 ")
    uma.send("INVITE vic1 #closed")
    uma.expect(" 341 ")
    vic.expect("INVITE vic1 :?#closed")
    vic.send("JOIN #closed")
    wait_for_member(uma, "vic1", "#closed")
    uma.send("OPER root secret")
    uma.expect(" 381 ")
    uma.send("KILL vic1 :enough")
    assert "Killed (uma1 (enough))" in vic.expect("^ERROR").params[0]
    assert uma.expect(r"^:vic1!\S+ QUIT").params[0].startswith("Killed")


def test_join_part_nick_and_topic_reach_the_other_node(cluster, peers):
    _, (a, b) = cluster
    jay = peers(a, "jay1")
    kim = peers(b, "kim1")
    jay.send("JOIN #side")
    jay.expect(" 366 ")
    caught_up(jay, kim, "made #side")  # kim's node knows #side: kim joins it, not makes it
    kim.send("JOIN #side")
    wait_for_member(jay, "kim1", "#side")
    jay.send("TOPIC #side :side talk")
    assert kim.expect("TOPIC #side").params[1] == "side talk"
    kim.send("NICK kim2")
    assert jay.expect(r"NICK :?kim2").prefix.startswith("kim1!")
    jay.send("MODE #side +m")  # jay made #side: its operator, on every node
    kim.expect(r"MODE #side :?\+m")
    assert sum(" NICK " in line for line in kim.seen) == 1  # from its own node only
    kim.send("PRIVMSG #side :may I?")
    kim.expect(" 404 ")  # refused on kim's own node, which applied jay's mode
    kim.send("PART #side :bye")
    assert jay.expect("PART #side").prefix.startswith("kim2!")
    kim.send("TOPIC #side")
    kim.expect(" 332 ")  # a channel kim left: its topic, from the replica of #side
    kim.send("JOIN #side")
    wait_for_member(jay, "kim2", "#side")
    jay.send("KICK #side kim2 :out")
    assert kim.expect("KICK #side kim2").params[-1] == "out"
    kim.send("NAMES #side")
    names = [line for line in kim.collect_until(" 366 ") if " 353 " in line]
    assert "kim2" not in names[0].split(" :", 1)[1]


def test_a_killed_node_is_announced_lost_and_frees_its_nicks(cluster, peers, tmp_path):
    server, (a, b) = cluster
    doomed = Node.start(server.url, *NODE_FLAGS, log_dir=str(tmp_path))
    try:
        watcher = peers(a, "lia1")
        peers(doomed, "max1")
        wait_for_member(watcher, "max1")
        start = time.monotonic()
        doomed.kill()
        quit_line = watcher.expect(r"^:max1!\S+ QUIT", timeout=15)
        assert quit_line.params == ("node lost",)
        assert time.monotonic() - start < 15
        again = peers(b)
        again.send("NICK max1", "USER x 0 * :x")
        again.expect(" 001 ")
    finally:
        doomed.stop()


def test_a_frozen_node_is_taken_for_lost_and_renames_a_user_whose_nick_was_taken(cluster, peers, tmp_path):
    server, (a, _) = cluster
    frozen = Node.start(server.url, *NODE_FLAGS, log_dir=str(tmp_path))
    try:
        watcher = peers(a, "quin1")
        sleeper = peers(frozen, "rex1")
        wait_for_member(watcher, "rex1")
        frozen.proc.send_signal(signal.SIGSTOP)  # no heartbeat: the others take it for lost
        assert watcher.expect(r"^:rex1!\S+ QUIT").params == ("node lost",)
        thief = peers(a)
        thief.send("NICK rex1", "USER x 0 * :x")
        thief.expect(" 001 ")
        frozen.proc.send_signal(signal.SIGCONT)  # it learns it was taken for lost, and rejoins
        sleeper.expect("Lost contact with the other servers")
        sleeper.expect("someone on another one took the nick rex1")
        renamed = sleeper.expect(r"^:rex1!\S+ NICK").params[0]
        assert renamed.startswith("rex1_")
        wait_for_member(watcher, renamed)  # back in the cluster, under its new nick
        sleeper.expect("Back in contact")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
        frozen.stop()


def test_a_restarted_node_does_not_replay_old_lines_as_new(cluster, peers, tmp_path):
    server, (a, b) = cluster
    ned, hearer = peers(a, "ned1"), peers(b, "pia1")
    ned.send("PRIVMSG #chat :said before the node started")
    hearer.expect("said before the node started")  # read back from the stream: stored
    late = Node.start(server.url, *NODE_FLAGS, log_dir=str(tmp_path))
    try:
        ola = peers(late, "ola1")
        ola.send("PRIVMSG #chat :first on the new node")
        ned.expect("first on the new node")
        lines = ola.sync()
        live = [line for line in privmsgs(lines) if line.endswith(" :said before the node started")]
        assert live == []  # only in the replay, with its time in front
        assert any("said before the node started" in line for line in ola.seen)
    finally:
        late.stop()


def test_history_gives_the_same_answer_on_every_node(cluster, peers):
    _, (a, b) = cluster
    askers = []
    for node in (a, b):
        peer = peers(node)
        peer.send("CAP LS 302", "CAP REQ :draft/chathistory batch message-tags server-time",
                  f"NICK q{node.address[1]}", "USER x 0 * :x", "CAP END")
        peer.expect(" 366 ")
        askers.append(peer)
    pat = peers(a, "pat1")
    pat.send("PRIVMSG #chat :for the record")
    answers = []
    for peer in askers:
        live = peer.expect("PRIVMSG #chat :for the record")
        peer.send("CHATHISTORY LATEST #chat * 5")
        lines = peer.collect_until(r"BATCH :?-")
        answers.append([re.search(r"msgid=([^; ]+)", line).group(1) + line.split(" PRIVMSG ", 1)[1]
                        for line in lines if " PRIVMSG " in line])
        assert dict(live.tags)["msgid"] in answers[-1][-1]  # the live line's msgid is the stored one
    assert answers[0] == answers[1] and answers[0][-1].endswith("for the record")


def test_redis_away_and_back(tmp_path, peers):
    """Paused Redis: each node serves its own users and says so once; back, it rejoins with
    nothing lost, doubled or reordered. Restarted Redis (its data gone): nodes rejoin and
    reclaim their users' nicks."""
    server = RedisProcess.start()
    nodes = []
    try:
        # A node timeout well over the outage: no node is taken for lost meanwhile (that case
        # is the frozen node's test), however slow the machine.
        flags = ("--node-timeout", "30", "--redis-timeout", "0.5")
        nodes = [Node.start(server.url, *flags, log_dir=str(tmp_path)) for _ in range(2)]
        a, b = nodes
        ann, cat, dan = peers(a, "ann"), peers(a, "cat"), peers(a, "dan")
        bob = peers(b, "bob")
        wait_for_member(ann, "bob")
        ann.send("PRIVMSG #chat :before")
        bob.expect("before")
        cat.expect("before")

        server.pause()
        ann.send("PRIVMSG #chat :while away")
        for peer in (ann, cat, bob):
            peer.expect("Lost contact with the other servers")
        if not any(line.endswith(" :while away") for line in cat.seen):  # before or after the notice
            cat.expect(" :while away$")
        dan.send("QUIT :gone while away")
        dan.expect_closed()
        server.resume()
        for peer in (ann, cat, bob):
            peer.expect("Back in contact", timeout=10)
        bob.expect(r"^:dan!\S+ QUIT")  # its node told the others when it was back
        heir = peers(b)
        heir.send("NICK dan", "USER x 0 * :x")
        heir.expect(" 001 ")
        ann.send("PRIVMSG #chat :after")
        bob.expect("after")
        cat_lines = cat.collect_until("after")
        assert [line for line in cat_lines if "while away" in line] == []  # not twice
        bob_lines = privmsgs(bob.seen)
        assert [line.rsplit(":", 1)[1] for line in bob_lines] == ["before", "after"]
        for peer in (ann, cat, bob):
            assert sum("Lost contact" in line for line in peer.seen) == 1

        server.stop()
        server.run()  # same port, no data
        for peer in (ann, bob):
            peer.expect("Back in contact", timeout=15)
        ann.send("PRIVMSG #chat :after restart")
        bob.expect("after restart", timeout=10)
        twin = peers(b)
        twin.send("NICK ANN", "USER x 0 * :x")
        twin.expect(" 433 ")
        assert "Redis is back" in a.log()
    finally:
        for node in nodes:
            node.stop()
        server.stop()


def test_history_in_redis_answers_every_query_as_the_sqlite_store_does(cluster):
    """RedisHistory's queries on a room stream written here, against the same expectations as
    tests/test_history_store.py's first test (a stream id is the msgid)."""
    # Imported here: it needs the redis package, which this module may have skipped for.
    from ircchat.redisbus import RedisHistory

    server, _ = cluster
    client = redis.Redis.from_url(server.url)
    start = 1_700_000_000_000
    ids = []
    for index in range(10):
        stored = {"s": "ann!~a@h", "c": "PRIVMSG", "r": "#q", "x": f"line {index}"}
        ids.append(client.xadd("chat:history:#q", {"e": json.dumps(stored)}, id=f"{start + 10 * index}-{index}").decode())
    client.close()
    store = RedisHistory(SimpleNamespace(redis=redis.Redis.from_url(server.url), up=True, last_id="+"))

    def texts(entries):
        return [entry.text for entry in entries]

    ref = MessageRef(msgid=ids[5])
    assert texts(store.latest("#q", 3)) == ["line 7", "line 8", "line 9"]
    assert texts(store.latest("#q", 3, after=MessageRef(msgid=ids[8]))) == ["line 9"]
    assert texts(store.before("#q", ref, 2)) == ["line 3", "line 4"]
    assert texts(store.after("#q", ref, 2)) == ["line 6", "line 7"]
    assert texts(store.around("#q", ref, 4)) == ["line 3", "line 4", "line 5", "line 6"]
    assert texts(store.between("#q", MessageRef(msgid=ids[2]), MessageRef(msgid=ids[6]), 10)) == \
        ["line 3", "line 4", "line 5"]
    assert texts(store.between("#q", MessageRef(msgid=ids[6]), MessageRef(msgid=ids[1]), 2)) == ["line 4", "line 5"]
    by_time = MessageRef(time_ms=start + 50)  # the time of line 5: "before" excludes it, "after" keeps it
    assert texts(store.before("#q", by_time, 1)) == ["line 4"]
    assert texts(store.after("#q", by_time, 1)) == ["line 5"]
    assert store.after("#q", MessageRef(msgid="nope"), 5) == []
    assert store.after("#q", MessageRef(msgid="1-1"), 5) == []  # no such line in this room
    assert store.latest("#q", 3)[0].msgid == ids[7] and store.latest("#q", 1)[0].time_ms == start + 90


def test_a_node_starts_and_reaps_past_malformed_records_another_node_left(tmp_path, peers):
    """Records an older or newer node wrote in a shape this one does not know: skipped (logged)
    when loading the snapshot and when reaping their node, never a failed start or a Redis
    taken for lost."""
    server = RedisProcess.start()
    node = None
    try:
        store = redis.Redis.from_url(server.url)
        store.sadd("chat:nodes", "nold")  # no heartbeat: the new node reaps it
        store.hset("chat:users:nold", mapping={
            "1": json.dumps({"reg": True, "f": "zoe"}), "2": "not json", "3": json.dumps({"reg": True, "f": 7}),
            "4": json.dumps({"f": "yan", "reg": True, "nick": "yan", "user": "~y", "host": "h", "real": "Y",
                             "ch": {}})})
        store.hset("chat:nicks", mapping={"zoe": "nold/1", "yan": "nold/4"})
        node = Node.start(server.url, *NODE_FLAGS, log_dir=str(tmp_path))
        deadline = time.monotonic() + 10
        while store.sismember("chat:nodes", "nold") and time.monotonic() < deadline:
            time.sleep(0.05)  # polling Redis for the reaping, with a deadline
        assert not store.sismember("chat:nodes", "nold")
        assert store.hgetall("chat:nicks") == {}
        peers(node, "zoe")  # its nick free again, and the node serving
        assert "lost Redis" not in node.log()
    finally:
        if node is not None:
            node.stop()
        server.stop()


def test_room_lines_wait_for_room_in_a_full_queue_to_redis(cluster, monkeypatch):
    """A Redis slower than this node's senders (reachable, so no call fails): a room line
    waits for the writer to make room (the senders slow down) rather than the queue growing
    without bound."""
    from ircchat import redisbus
    from ircchat.history import HistoryEntry
    from ircchat.ircv3 import Stamped
    from ircchat.state import Channel, RoomLine, User

    server, _ = cluster
    monkeypatch.setattr(redisbus, "QUEUE_MAX", 3)
    bus = redisbus.RedisBus(server.url, socket_timeout=0.5)  # not started: nothing takes from the queue
    try:
        sender = User(host="h", address="", nick="ann", username="~a", registered=True)
        bus._give_id(sender)
        entry = HistoryEntry("1-1", 1, "#q", sender.source, "PRIVMSG", "#q", "hi")
        line = RoomLine(sender, Channel("#q"), Stamped(b":ann PRIVMSG #q :hi\r\n", "1-1", 1), False, None, entry)
        for _ in range(3):
            bus.append_line(entry, line)
        sending = threading.Thread(target=bus.append_line, args=(entry, line), daemon=True)
        sending.start()
        sending.join(0.3)
        assert sending.is_alive() and len(bus._queue) == 3
        with bus._lock:  # what the writer does once a batch has gone
            bus._queue.clear()
            bus._settled.notify_all()
        sending.join(5)
        assert not sending.is_alive() and len(bus._queue) == 1
    finally:
        bus.redis.close()


class _ScriptedWait:
    """A claim's ``done`` whose waits follow a script: each False is a wait that timed out
    (after which ``on_timeout`` runs), True the answer (refused)."""

    def __init__(self, claim, answers: list[bool], on_timeout) -> None:
        self.claim, self.answers, self.on_timeout = claim, answers, on_timeout
        self.waits = 0

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        answered = self.answers.pop(0)
        if answered:
            self.claim.granted = False
        else:
            self.on_timeout()
        return answered


def test_a_nick_claim_waits_while_the_writer_gets_through_its_queue_and_no_longer(cluster, monkeypatch, caplog):
    """A long queue to Redis is no outage: the claim waits for its answer (granting it there
    could leave two users with one nick). A writer that answers nothing for a whole wait is
    taken for Redis away, and the claim is granted for now (reasserted later)."""
    from ircchat import redisbus
    from ircchat.state import Hub, ServerConfig, User

    server, _ = cluster
    bus = redisbus.RedisBus(server.url, socket_timeout=0.5)  # not started: the test plays the writer
    bus.hub = Hub(ServerConfig())
    waits = []

    def claim_with(answers: list[bool], progress: bool):
        def make() -> redisbus._Claim:
            claim = original()
            def writer_wrote() -> None:
                if progress:
                    bus._batches_written += 1
            claim.done = _ScriptedWait(claim, answers, writer_wrote)
            waits.append(claim.done)
            return claim
        return make

    original = redisbus._Claim
    try:
        user = User(host="h", address="", nick=None, username="~a")
        monkeypatch.setattr(redisbus, "_Claim", claim_with([False, False, False, True], progress=True))
        assert bus.claim_nick(user, "bob") is False  # waited through three slow batches for the refusal
        assert waits[-1].waits == 4
        monkeypatch.setattr(redisbus, "_Claim", claim_with([False, True], progress=False))
        with caplog.at_level("ERROR", logger="chat_server"):
            assert bus.claim_nick(user, "cat") is True
        assert waits[-1].waits == 1  # a whole wait without a batch answered
        assert "no answer to the claim of cat in time" in caplog.text
    finally:
        bus.redis.close()


def test_an_unexpected_error_in_the_reader_is_logged_and_taken_for_redis_away(cluster, caplog):
    """A bug or unforeseen data must not end the reader thread (the node would stop hearing
    the others for good): it is logged, and the node rejoins from a snapshot."""
    from ircchat import redisbus
    from ircchat.state import Hub, ServerConfig

    server, _ = cluster
    bus = redisbus.RedisBus(server.url, socket_timeout=0.5)
    bus.hub = Hub(ServerConfig())
    bus._up = True

    def _read_once() -> None:
        raise KeyError("a field no check foresaw")

    try:
        with caplog.at_level("ERROR", logger="chat_server"):
            bus._guarded(_read_once)
        assert not bus._up
        assert "unexpected error in _read_once" in caplog.text and "KeyError" in caplog.text
    finally:
        bus.redis.close()


def test_a_node_taken_for_lost_writes_nothing_until_it_has_rejoined(cluster, peers, tmp_path):
    """Reaped while it still runs (its heartbeat late), a node must not claim nicks or store
    records for a node the cluster no longer lists (killed then, nobody would ever free them):
    it takes Redis for away, then rejoins."""
    server, (a, _) = cluster
    late = Node.start(server.url, "--node-timeout", "30", "--redis-timeout", "0.5", log_dir=str(tmp_path))
    store = redis.Redis.from_url(server.url)
    try:
        watcher = peers(a, "uma1")
        victim = peers(late, "vic1")
        wait_for_member(watcher, "vic1")
        node_id = store.hget("chat:nicks", "vic1").decode().partition("/")[0]
        store.delete(f"chat:alive:{node_id}")  # its next heartbeat is seconds away: reaped first
        watcher.expect(r"^:vic1!\S+ QUIT")
        victim.send("NICK vic2")
        victim.expect(r"NICK :?vic2")
        # Read in this order: once it has rejoined (listed again), it may hold vic2 again.
        owner = store.hget("chat:nicks", "vic2")
        assert owner is None or owner.decode().partition("/")[0].encode() in store.smembers("chat:nodes")
    finally:
        late.stop()
        store.close()


def test_a_rooms_history_in_redis_expires_after_history_days_without_a_line(cluster, peers):
    """--history-days holds in cluster mode too: a room's stream outlives its last line by that
    long (30 days here) and then goes, so rooms made and left do not pile up in Redis."""
    server, (a, _) = cluster
    speaker = peers(a, "ida1")
    speaker.send("JOIN #aged")
    speaker.expect(" 366 ")
    speaker.send("PRIVMSG #aged :soon gone")
    speaker.sync()
    store = redis.Redis.from_url(server.url)
    try:
        deadline = time.monotonic() + 5
        while not store.exists("chat:history:#aged") and time.monotonic() < deadline:
            time.sleep(0.02)  # polling Redis for the writer's call, with a deadline
        assert 0 < store.pttl("chat:history:#aged") <= 30 * 86_400_000
    finally:
        store.close()


def test_channel_states_in_redis_are_capped_as_the_sqlite_store_caps_them(monkeypatch):
    """Rooms made, moded and left do not pile up in ``chat:channels``: past the cap the least
    recently saved go, and those unchanged for --history-days; never the default room's."""
    from ircchat import redisbus

    server = RedisProcess.start()
    bus = None
    try:
        monkeypatch.setattr(redisbus, "SAVED_CHANNELS_MAX", 2)
        bus = redisbus.RedisBus(server.url, socket_timeout=0.5)  # not started: its calls are run here
        bus.hub = SimpleNamespace(config=SimpleNamespace(room="#chat"))
        bus.redis.sadd("chat:nodes", bus.node)  # a member of the cluster, as start() makes it

        def save(*names: str) -> None:
            for name in names:
                bus._send("", None, channel=(name, "{}"))
            for keys, args, _ in bus._queue:
                bus._share(keys=keys, args=args)
            bus._queue.clear()

        save("#chat", "#a", "#b", "#c", "#d")
        assert sorted(bus.redis.hkeys("chat:channels")) == [b"#c", b"#chat", b"#d"]
        bus.history_ttl_ms = 1  # --history-days: what was saved a millisecond ago has aged
        deadline = time.monotonic() + 5
        while bus.redis.hlen("chat:channels") > 2 and time.monotonic() < deadline:
            save("#e")
        assert sorted(bus.redis.hkeys("chat:channels")) == [b"#chat", b"#e"]
    finally:
        if bus is not None:
            bus.redis.close()
        server.stop()


def test_a_malformed_line_in_a_rooms_history_is_skipped_not_a_failed_join(cluster, peers):
    """A room's stream holding an entry of another version's shape: the joiner is replayed
    the readable lines around it, and CHATHISTORY answers."""
    server, (a, _) = cluster
    store = redis.Redis.from_url(server.url)
    try:
        good = {"s": "old!~o@h", "c": "PRIVMSG", "r": "#odd", "x": "readable"}
        # Ids before the stream's position: lines said before these nodes started.
        store.xadd("chat:history:#odd", {"e": json.dumps({"s": "old!~o@h", "text": "another shape"})}, id="1-1")
        store.xadd("chat:history:#odd", {"e": json.dumps(good)}, id="1-2")
    finally:
        store.close()
    joiner, hearer = peers(a, "joy1"), peers(a, "kit1")
    caught_up(joiner, hearer, "tick")  # the node has read the stream (replay reads up to there)
    joiner.send("JOIN #odd")
    joiner.expect(r"PRIVMSG #odd :.*readable")
    joiner.expect(" 366 ")
    joiner.send("CHATHISTORY LATEST #odd * 10")
    joiner.expect(r"PRIVMSG #odd :.*readable")


def test_topics_set_at_once_on_two_nodes_end_the_same_on_both(cluster, peers):
    """Each node sets its user's topic at once, before the stream has ordered it: the last
    in the stream's order must be the topic on every node (with the same setter and time),
    not each node's own."""
    _, (a, b) = cluster
    ann, bob = peers(a, "tan1"), peers(b, "tob1")
    wait_for_member(ann, "tob1")
    for round_ in range(5):
        send_at_once({peer: f"TOPIC #chat :{peer.nick} {round_}" for peer in (ann, bob)})
        for peer in (ann, bob):  # each hears both TOPIC lines (its own echoed): both applied
            for _ in range(2):
                peer.expect(rf"TOPIC #chat :\S+ {round_}$")
        answers = []
        for peer in (ann, bob):
            peer.send("TOPIC #chat")
            answers.append((peer.expect(" 332 ").params[2], peer.expect(" 333 ").params[2:]))
        assert answers[0] == answers[1]


def test_modes_set_at_once_on_two_nodes_end_the_same_on_both(cluster, peers):
    """Two operators on two nodes set the key at once: each node applied its own first, so the
    stream's order must have the last word on both, as for topics."""
    _, (a, b) = cluster
    ann, bob = peers(a, "kan1"), peers(b, "kob1")
    ann.send("JOIN #keys")
    ann.expect(" 366 ")
    caught_up(ann, bob, "made")  # bob's node knows #keys: bob joins it, not makes it (and its +o)
    bob.send("JOIN #keys")
    bob.expect(" 366 ")
    wait_for_member(ann, "kob1", "#keys")
    ann.send("MODE #keys +o kob1")
    bob.expect(r"MODE #keys \+o :?kob1")
    for round_ in range(5):
        send_at_once({peer: f"MODE #keys +k {peer.nick}{round_}" for peer in (ann, bob)})
        caught_up(ann, bob, f"tick {round_}")
        caught_up(bob, ann, f"tock {round_}")
        answers = []
        for peer in (ann, bob):
            peer.send("MODE #keys")
            answers.append(peer.expect(" 324 ").params[2:])
        assert answers[0] == answers[1]


def test_a_node_closing_with_a_user_left_announces_it_and_frees_its_nick(cluster, peers):
    """A shutdown that gave up on a connection (it did not close in time) leaves its user
    unannounced: leaving the cluster must not make it a replica and a nick held for ever
    elsewhere (a node no longer listed is never reaped)."""
    from test_handlers import registered

    from ircchat import redisbus
    from ircchat.state import Hub, ServerConfig

    server, (a, _) = cluster
    bus = redisbus.RedisBus(server.url, node_timeout=30, socket_timeout=0.5)
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"), history=bus.history, bus=bus)
    bus.start(hub)
    try:
        watcher = peers(a, "wat1")
        registered(hub, "lefty")  # in-process: no connection to close
        wait_for_member(watcher, "lefty")
    finally:
        bus.close()
    watcher.expect(r"^:lefty!\S+ QUIT")
    store = redis.Redis.from_url(server.url)
    try:
        assert store.hget("chat:nicks", "lefty") is None
    finally:
        store.close()


def test_a_node_that_fell_behind_a_trimmed_stream_takes_a_new_snapshot(cluster, peers, tmp_path):
    """Frozen while the stream moved on and was trimmed past what it had read (here trimmed
    hard, rather than by 100,000 events), a node must not go on from the trimmed stream as if
    nothing was lost: it would never know the users who came meanwhile."""
    server, (a, _) = cluster
    slow = Node.start(server.url, "--node-timeout", "30", "--redis-timeout", "0.5", log_dir=str(tmp_path))
    store = redis.Redis.from_url(server.url)
    try:
        hearer = peers(slow, "hea1")
        slow.proc.send_signal(signal.SIGSTOP)
        newcomer = peers(a, "gap1")  # its registration goes by while the node is frozen...
        filler = json.dumps({"t": "filler", "n": "nfill", "u": "1"})
        pipe = store.pipeline(transaction=False)
        for _ in range(600):  # ...and out of the stream: more than a read's worth after it
            pipe.xadd("chat:events", {"e": filler, "l": ""}, maxlen=600, approximate=False)
        pipe.execute()
        slow.proc.send_signal(signal.SIGCONT)
        wait_for_member(hearer, "gap1")
        newcomer.send("PRIVMSG #chat :can you hear me")
        hearer.expect("can you hear me")
    finally:
        slow.proc.send_signal(signal.SIGCONT)
        slow.stop()
        store.close()
