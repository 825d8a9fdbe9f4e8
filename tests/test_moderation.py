"""Moderation over real sockets: channel operators and voice, modes, bans, KICK, INVITE,
server operators (OPER, KILL), the default room's rule, and channel state across a restart."""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from irc_peer import Peer
from test_handlers import registered

from chat_server import read_opers
from ircchat.history import SqliteHistory
from ircchat.logs import log
from ircchat.modes import Ban, BanList, channel_state
from ircchat.network import ChatServer
from ircchat.protocol import parse_message
from ircchat.state import Channel, Hub, ServerConfig

SERVER = Path(__file__).resolve().parent.parent / "chat_server.py"
OPERS = (("root", "hunter2"),)


@pytest.fixture
def server(start_server):
    """The default server, with one server operator."""
    return start_server(opers=OPERS)


def joined(peer: Peer, channel: str, *extra: str) -> None:
    """JOIN and wait for the end of the channel's NAMES."""
    peer.send(f"JOIN {channel} {' '.join(extra)}".rstrip())
    peer.expect(rf" 366 {peer.nick} {re.escape(channel)} ")


def names(peer: Peer, channel: str) -> str:
    peer.send(f"NAMES {channel}")
    return peer.expect(rf" 353 {peer.nick} = {re.escape(channel)} ").params[-1]


def oper(peer: Peer) -> None:
    peer.send("OPER root hunter2")
    peer.expect(f" 381 {peer.nick} ")
    peer.expect(rf"^:{peer.nick}!\S+ MODE {peer.nick} :?\+o$")


def test_the_first_member_of_a_new_channel_is_its_operator_and_names_show_prefixes(connect):
    ann, bob = connect("ann"), connect("bob")
    joined(ann, "#r")
    joined(bob, "#r")
    assert names(bob, "#r") == "@ann bob"
    assert names(bob, "#chat") == "ann bob"  # the default room: nobody is opped by arriving
    ann.send("MODE #r +v bob")
    for peer in (ann, bob):
        peer.expect(r"^:ann!~tester@\S+ MODE #r \+v :?bob$")  # the setter as source, to everyone
    assert names(bob, "#r") == "@ann +bob"
    ann.send("MODE #r +o bob")
    bob.expect(r"MODE #r \+o :?bob$")
    assert names(bob, "#r") == "@ann @bob"
    cat = connect()
    cat.send("CAP REQ multi-prefix", "NICK cat", "USER cat 0 * :Cat", "CAP END")
    cat.expect(r"CAP \* ACK :?multi-prefix")
    cat.expect(" 366 cat #chat ")
    cat.nick = "cat"
    assert names(cat, "#r") == "@ann @+bob"
    ann.send("MODE #r -o+v+m-v bob bob bob")  # several changes; +v, held already, is no change
    bob.expect(r"MODE #r -o\+m-v bob :?bob$")
    assert names(cat, "#r") == "@ann bob"


def test_isupport_and_myinfo_describe_the_modes(connect):
    ann = connect()
    ann.send("NICK ann", "USER ann 0 * :Ann")
    myinfo = ann.expect(" 004 ann ")
    assert myinfo.params[-2:] == ("biklmnostv", "bklov")
    isupport = ann.expect(" 005 ann ").params
    for token in ("PREFIX=(ov)@+", "CHANMODES=b,k,l,imnst", "MODES=6", "MAXLIST=b:100"):
        assert token in isupport
    assert "KICK:4" in next(token for token in isupport if token.startswith("TARGMAX="))


def test_refusals_have_their_numerics(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    joined(ann, "#r")
    joined(bob, "#r")
    bob.send("MODE #r +m", "KICK #r ann", "TOPIC #r :mine")
    bob.expect(" 482 bob #r ")
    bob.expect(" 482 bob #r ")
    bob.expect(" 482 bob #r ")
    ann.send("MODE #r +o nobody", "MODE #r +o cat", "MODE #r +zq", "MODE #nope +m")
    ann.expect(" 401 ann nobody ")
    ann.expect(" 441 ann cat #r ")
    ann.expect(" 472 ann z ")
    ann.expect(" 472 ann q ")
    ann.expect(" 403 ann #nope ")
    ann.send("KICK #r cat", "KICK #r nobody", "KICK #nope bob", "INVITE bob #r", "KILL bob :x")
    for pattern in (" 441 ann cat #r ", " 401 ann nobody ", " 403 ann #nope ", " 443 ann bob #r ", " 481 ann "):
        ann.expect(pattern)
    cat.send("KICK #r bob", "MODE #r +k x")
    cat.expect(" 442 cat #r ")
    cat.expect(" 482 cat #r ")


def test_mode_query_shows_the_key_only_to_members(connect):
    ann, cat = connect("ann"), connect("cat")
    joined(ann, "#r")
    ann.send("MODE #r +kl secret 5")
    ann.expect(r"MODE #r \+kl secret :?5$")
    ann.send("MODE #r")
    assert ann.expect(" 324 ann #r ").params[2:] == ("+ntkl", "secret", "5")
    ann.expect(r" 329 ann #r :?\d+$")
    cat.send("MODE #r")
    assert cat.expect(" 324 cat #r ").params[2:] == ("+ntkl", "*", "5")
    ann.send("MODE #r +k other")
    ann.expect(" 467 ann #r ")
    ann.send("MODE #r -k *", "MODE #r +k :two words", "MODE #r +k ::x", "MODE #r +l \u00b2",
             "MODE #r +l 0", "MODE #r +b :a b", "MODE #r +b " + "x" * 101)
    ann.expect(r"MODE #r -k :?\*$")
    for _ in range(6):
        ann.expect(" 696 ann #r ")


def test_a_banned_user_cannot_speak_rejoin_or_take_a_banned_nick(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    joined(ann, "#r")
    joined(bob, "#r")
    ann.send("MODE #r +b BOB")
    bob.expect(r"MODE #r \+b :?bob!\*@\*$")
    bob.send("PRIVMSG #r :let me talk")
    bob.expect(" 404 bob #r .*banned")
    bob.send("PART #r", "JOIN #r")
    bob.expect(" 474 bob #r ")
    cat.send("MODE #r b")  # the list is anyone's to see
    ban = cat.expect(" 367 cat #r ").params
    assert ban[2] == "bob!*@*" and ban[3].startswith("ann!~tester@") and ban[4].isdigit()
    cat.expect(" 368 cat #r ")
    # A nick that is banned, while in the room: refused with 435.
    ann.send("MODE #r +b evil*")
    ann.expect(r"MODE #r \+b :?evil\*!\*@\*$")
    joined(cat, "#r")
    cat.send("NICK evilcat")
    cat.expect(" 435 cat evilcat #r ")
    cat.send("PRIVMSG #r :still cat")
    ann.expect(r"^:cat!\S+ PRIVMSG #r :still cat$")
    # KICKed, then back: the ban still holds.
    ann.send("MODE #r -b bob", "INVITE bob #r")
    bob.expect(r"INVITE bob :?#r$")
    joined(bob, "#r")
    ann.send("KICK #r bob :out", "MODE #r +b bob")
    bob.expect(r"^:ann!\S+ KICK #r bob :out$")
    ann.expect(r"MODE #r \+b :?bob!\*@\*$")
    bob.send("JOIN #r")
    bob.expect(" 474 bob #r ")


def test_voice_and_operators_speak_through_bans_and_moderation(connect):
    ann, bob = connect("ann"), connect("bob")
    joined(ann, "#r")
    joined(bob, "#r")
    ann.send("MODE #r +m")
    bob.expect(r"MODE #r :?\+m$")
    bob.send("PRIVMSG #r :hello?")
    bob.expect(" 404 bob #r .*\\+m")
    ann.send("MODE #r +vb bob bob")
    bob.expect(r"MODE #r \+vb bob :?bob!\*@\*$")
    bob.send("PRIVMSG #r :voiced now")
    ann.expect(r"^:bob!\S+ PRIVMSG #r :voiced now$")
    ann.send("MODE #r -v bob")
    bob.expect(r"MODE #r -v :?bob$")
    bob.send("PRIVMSG #r :and now?")
    bob.expect(" 404 bob #r ")
    ann.send("PRIVMSG #r :the op speaks")
    bob.expect("PRIVMSG #r :the op speaks$")


def test_invite_only_key_and_limit(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    joined(ann, "#r")
    ann.send("MODE #r +i")
    ann.expect(r"MODE #r :?\+i$")
    bob.send("JOIN #r")
    bob.expect(" 473 bob #r ")
    cat.send("INVITE bob #r")
    cat.expect(" 442 cat #r ")
    ann.send("INVITE bob #r")
    ann.expect(" 341 ann bob :?#r$")
    bob.expect(r"^:ann!\S+ INVITE bob :?#r$")
    joined(bob, "#r")
    ann.send("MODE #r -i+k sesame")
    ann.expect(r"MODE #r -i\+k :?sesame$")
    cat.send("JOIN #r nope")
    cat.expect(" 475 cat #r ")
    joined(cat, "#r", "x,sesame")
    ann.send("KICK #r bob,cat", "MODE #r -k+l * 2")
    ann.expect(r"KICK #r bob ")
    ann.expect(r"KICK #r cat ")
    ann.expect(r"MODE #r -k\+l \* :?2$")
    joined(bob, "#r")
    cat.send("JOIN #r")
    cat.expect(" 471 cat #r ")


def test_topic_lock_no_outside_messages_and_secret(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    joined(ann, "#r")
    joined(bob, "#r")
    bob.send("TOPIC #r :mine")
    bob.expect(" 482 bob #r ")
    ann.send("MODE #r -t")
    bob.expect(r"MODE #r :?-t$")
    bob.send("TOPIC #r :mine")
    ann.expect(r"^:bob!\S+ TOPIC #r :mine$")
    cat.send("PRIVMSG #r :from outside")
    cat.expect(" 404 cat #r ")
    ann.send("MODE #r -n")
    ann.expect(r"MODE #r :?-n$")
    cat.send("PRIVMSG #r :from outside")
    bob.expect(r"^:cat!\S+ PRIVMSG #r :from outside$")
    cat.send("WHOIS ann")
    assert "#r" in cat.expect(" 319 cat ann ").params[-1]
    cat.expect(" 318 cat ")
    ann.send("MODE #r +s")
    ann.expect(r"MODE #r :?\+s$")
    cat.send("WHOIS ann")
    assert not [line for line in cat.collect_until(" 318 cat ") if " 319 cat ann " in line and "#r" in line]
    bob.send("WHOIS ann")
    assert "@#r" in bob.expect(" 319 bob ann ").params[-1]
    cat.send("NAMES #r")  # nor its members
    assert not [line for line in cat.collect_until(" 366 cat #r ") if " 353 " in line]


def test_kick_reaches_everyone_the_kicked_one_included_then_it_is_out(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    for peer in (ann, bob, cat):
        joined(peer, "#r")
    ann.send("KICK #r bob :enough")
    for peer in (ann, bob, cat):
        peer.expect(r"^:ann!\S+ KICK #r bob :enough$")
    bob.send("PRIVMSG #r :am I in?")
    bob.expect(" 404 bob #r ")
    ann.send("PRIVMSG #r :bob is gone")
    cat.expect("PRIVMSG #r :bob is gone$")
    assert not [line for line in bob.sync() if "bob is gone" in line]
    assert names(cat, "#r") == "@ann cat"


def test_a_kick_from_the_room_whose_log_the_kicked_one_follows_reaches_it_first(connect):
    ann, bob, root = connect("ann"), connect("bob"), connect("boss")  # each follows #chat's log
    oper(root)
    root.send("KICK #chat bob :out of the log")
    for peer in (ann, bob, root):
        peer.expect(r"^:boss!\S+ KICK #chat bob :out of the log$")
    ann.send("PRIVMSG #chat :after the kick")
    root.expect("PRIVMSG #chat :after the kick$")
    assert not [line for line in bob.sync() if "after the kick" in line]
    joined(bob, "#chat")  # no ban: back in, and following the room again
    ann.send("PRIVMSG #chat :welcome back")
    bob.expect("PRIVMSG #chat :welcome back$")


def test_oper_wrong_password_unknown_name_and_back_off(start_server, caplog):
    server = start_server(opers=OPERS, password_backoff=30)
    ann = Peer(server.address)
    try:
        ann.register("ann")
        ann.send("OPER nobody x")
        ann.expect(" 491 ann ")
        ann.send("OPER root wrong")
        ann.expect(" 464 ann :Too many wrong passwords")  # the first failure's wait still runs
        ann.send("MODE ann")
        ann.expect(r" 221 ann :?\+$")
    finally:
        ann.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "OPER as unknown 'nobody' refused for ann from 127.0.0.1" in logged


def test_a_wrong_oper_password_gives_no_powers(connect):
    root = connect("boss")
    root.send("OPER root wrongpass")
    root.expect(" 464 boss :Password incorrect")
    root.send("MODE #chat +o boss")
    root.expect(" 482 boss #chat ")
    root.send("MODE boss +o")
    assert not [line for line in root.sync() if " MODE boss " in line]  # +o only comes from OPER


def test_server_operators_op_themselves_join_past_everything_and_kill(start_server, caplog):
    caplog.set_level(logging.INFO, logger=log.name)
    server = start_server(opers=OPERS)
    peers = [Peer(server.address) for _ in range(3)]
    ann, bob, root = peers
    try:
        for peer, nick in zip(peers, ("ann", "bob", "boss")):
            peer.register(nick)
        oper(root)
        root.send("MODE boss")
        root.expect(r" 221 boss :?\+o$")
        assert any("is now server operator 'root'" in record.getMessage() for record in caplog.records)
        root.send("WHOIS ann")
        root.expect(" 378 boss ann :is connecting from \\*@127.0.0.1")
        # The default room: its operators are server operators' doing.
        root.send("MODE #chat +o boss")
        ann.expect(r"^:boss!\S+ MODE #chat \+o :?boss$")
        root.send("MODE #chat +o ann")
        bob.expect(r"MODE #chat \+o :?ann$")
        for mode in ("+i", "+k key", "+l 3", "+b *!*@*", "+b *", "+b *!*@*.cloak"):
            ann.send(f"MODE #chat {mode}")
            ann.expect(" 696 ann #chat ")
        ann.send("MODE #chat +b bob")
        bob.expect(r"MODE #chat \+b :?bob!\*@\*$")
        bob.send("PRIVMSG #chat :hi")
        bob.expect(" 404 bob #chat ")
        # A channel shut every way: a server operator still gets in, and acts as its operator.
        ann.send("JOIN #shut", "MODE #shut +iklb key 1 *!*@*")
        ann.expect(r"MODE #shut \+iklb key 1 :?\*!\*@\*$")
        joined(root, "#shut")
        root.send("MODE #shut -l")
        ann.expect(r"^:boss!\S+ MODE #shut :?-l$")
        root.send("PART #shut", "MODE #shut +m")
        root.expect(r"^:boss!\S+ MODE #shut :?\+m$")  # not a member: told directly
        root.send("KILL bob :spamming")
        ann.expect(r"^:bob!\S+ QUIT :Killed \(boss \(spamming\)\)$")
        assert any("Killed (boss (spamming))" in line for line in bob.expect_closed())
        # Banned from the default room: registered all the same, told why it is not in it.
        again = Peer(server.address)
        peers.append(again)
        again.send("NICK bob", "USER bob 0 * :Bob")
        again.expect(" 474 bob #chat ")
        again.send("JOIN #elsewhere")
        again.expect(r"^:bob!\S+ JOIN :?#elsewhere$")
        root.send("MODE boss -o", "KILL ann :again")
        root.expect(r"MODE boss :?-o$")
        root.expect(" 481 boss ")
    finally:
        for peer in peers:
            peer.close()


def test_server_operators_come_from_flags_a_file_and_the_environment(tmp_path):
    oper_file = tmp_path / "opers"
    oper_file.write_text("# name:password\nfile_op:pw:with:colons\n\n")
    assert read_opers(["flag_op:a"], str(oper_file), "env_op:b, env2:c") == (
        ("flag_op", "a"), ("env_op", "b"), ("env2", "c"), ("file_op", "pw:with:colons"))
    with pytest.raises(ValueError, match="entry 2 ") as refused:  # numbered, never quoted: it may be a password
        read_opers(["ann:pw", "hunter2"], None, "")
    assert "hunter2" not in str(refused.value)
    out = subprocess.run([sys.executable, str(SERVER), "--oper", "x", "--port", "0"],
                         check=False, capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "expected NAME:PASSWORD" in out.stderr


def _start_process(history: Path) -> tuple[subprocess.Popen, tuple[str, int]]:
    proc = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--history", str(history),
                             "--oper", "root:hunter2", "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    port = int(re.search(r"listening on [\d.]+:(\d+)", line).group(1))
    return proc, ("127.0.0.1", port)


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the server this test started, by its own handle
        proc.wait(timeout=10)


def test_topic_modes_and_bans_survive_a_restart_but_operator_status_does_not(tmp_path):
    history = tmp_path / "history.sqlite3"
    proc, address = _start_process(history)
    try:
        ann, root = Peer(address), Peer(address)
        ann.register("ann")
        root.register("boss")
        joined(ann, "#keep")
        ann.send("TOPIC #keep :kept topic", "MODE #keep +kmb pw evil*!*@*")
        ann.expect(r"MODE #keep \+kmb pw :?evil\*!\*@\*$")
        oper(root)
        root.send("MODE #chat +o boss", "MODE #chat +tb spam", "TOPIC #chat :room rules")
        root.expect("TOPIC #chat :room rules$")
        ann.close()
        root.close()
    finally:
        _stop_process(proc)
    proc, address = _start_process(history)
    try:
        ann = Peer(address)
        ann.send("NICK ann", "USER ann 0 * :Ann")
        ann.expect(" 332 ann #chat :room rules$")
        ann.expect(" 353 ann = #chat :ann$")  # nobody is opped: operator status is not kept
        ann.send("TOPIC #chat :mine")
        ann.expect(" 482 ann #chat ")
        ann.send("JOIN #keep")
        ann.expect(" 475 ann #keep ")
        ann.send("JOIN #keep pw")
        ann.expect(" 332 ann #keep :kept topic$")
        ann.send("MODE #keep", "MODE #keep b", "MODE #chat b")
        assert ann.expect(" 324 ann #keep ").params[2:] == ("+mntk", "pw")
        assert ann.expect(" 367 ann #keep ").params[2] == "evil*!*@*"
        assert ann.expect(" 367 ann #chat ").params[2] == "spam!*@*"
        ann.close()
    finally:
        _stop_process(proc)


ODD_WORDS = ["ann", "bob", "cat", "nobody", "#r", "#chat", "#x", "*", "*!*@*", ":", "::x", ":a b",
             "\u00b2", "0", "7", "-1", "k3y", "a,b", "x" * 120, "+", "-", "!@", "?*a", "[a]"]
WORDS = st.sampled_from(ODD_WORDS)
MODE_STRINGS = st.text("+-ovbklimnstzq", max_size=10)
LINES = st.one_of(
    st.builds(lambda sign, letter, word: f"MODE #r {sign}{letter} {word}",
              st.sampled_from("+-"), st.sampled_from("ovbkl"), WORDS),
    st.builds(lambda target, modes, params: " ".join(["MODE", target, modes, *params]).rstrip(),
              st.sampled_from(["#r", "#chat", "ann", "bob"]), MODE_STRINGS, st.lists(WORDS, max_size=8)),
    st.builds(lambda *words: " ".join(words),
              st.sampled_from(["KICK", "INVITE", "JOIN", "PART", "NICK", "TOPIC", "PRIVMSG", "NAMES",
                               "WHOIS", "OPER", "KILL"]),
              WORDS, WORDS, st.sampled_from(["", ":a reason", ":"])),
)


def test_every_mode_letter_with_every_odd_parameter_is_answered_without_a_crash():
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat"))
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    ann.do("JOIN #r")
    bob.do("JOIN #r")
    for room in ("#r", "#chat"):
        for sign in "+-":
            for letter in "ovbklimnstz":
                for word in ODD_WORDS:
                    ann.do(f"MODE {room} {sign}{letter} {word}")
                    bob.do(f"MODE {room} {sign}{letter} {word}")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), LINES), max_size=25))
def test_any_moderation_sequence_is_answered_without_a_crash(script):
    """Random MODE, KICK, INVITE, JOIN... lines from three users: every one is handled (no
    exception escapes a handler) and every line sent fits the protocol (Client checks it)."""
    hub = Hub(ServerConfig(server_name="irc.test", room="#chat", opers=OPERS, password_backoff=0))
    clients = [registered(hub, nick) for nick in ("ann", "bob", "cat")]
    clients[0].do("JOIN #r", "OPER root hunter2")
    for who, line in script:
        clients[who].do(line)


def test_who_whox_and_list_show_channel_status_and_keep_secret_rooms_hidden(connect):
    """The queries (queries.py) read the moderation state: prefixes in WHO's flags, +s in LIST."""
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    joined(ann, "#r")
    joined(bob, "#r")
    ann.send("MODE #r +v bob")
    bob.expect(r"MODE #r \+v :?bob$")
    ann.send("WHO #r")
    who = [parse_message(line).params for line in ann.collect_until(" 315 ann #r ") if " 352 " in line]
    flags = {params[5]: params[6] for params in who}
    assert flags == {"ann": "H@", "bob": "H+"}
    ann.send("WHO #r %tnf,7")
    rows = [parse_message(line).params[1:] for line in ann.collect_until(" 315 ann #r ") if " 354 " in line]
    assert sorted(rows) == [("7", "ann", "H@"), ("7", "bob", "H+")]
    cat.send("LIST #r")
    assert [line for line in cat.collect_until(" 323 cat ") if " 322 cat #r " in line]
    ann.send("MODE #r +s")
    ann.expect(r"MODE #r :?\+s$")
    cat.send("LIST")
    assert not [line for line in cat.collect_until(" 323 cat ") if " 322 cat #r " in line]
    cat.send("WHO #r")
    assert not [line for line in cat.collect_until(" 315 cat #r ") if " 352 " in line]
    bob.send("LIST #r")
    assert [line for line in bob.collect_until(" 323 bob ") if " 322 bob #r 2 " in line]


def test_a_member_banned_by_nick_cannot_shed_the_ban_by_changing_nick(connect):
    ann, bob = connect("ann"), connect("bob")
    joined(ann, "#r")
    joined(bob, "#r")
    ann.send("MODE #r +b bob")
    bob.expect(r"MODE #r \+b :?bob!\*@\*$")
    bob.send("NICK bobby")  # the new nick is not banned, but bob is, while in the room
    bob.expect(" 435 bob bobby #r ")
    bob.send("PRIVMSG #r :still banned?")
    bob.expect(" 404 bob #r .*banned")


def test_a_default_room_state_saved_under_another_room_name_shuts_nobody_out(tmp_path):
    """#chat's state from a run where it was an ordinary room (another --room): its bans that
    name no one nick or host go, as +i, +k and +l do, when it becomes the default room."""
    path = str(tmp_path / "history.sqlite3")
    room = Channel("#chat")
    room.modes = {"i", "n", "t"}
    room.key, room.limit = "pw", 1
    room.bans = BanList([Ban("*!*@*", "op", 1), Ban("*!*@*.cloak", "op", 1), Ban("troll!*@*", "op", 1)])
    store = SqliteHistory(path)
    store.save_channel("#chat", json.dumps(channel_state(room)))
    store.close()
    store = SqliteHistory(path)
    server = ChatServer(ServerConfig(), "127.0.0.1", 0, history=store)
    server.start()
    try:
        ann = Peer(server.address)
        ann.register("ann")  # the automatic join reached the end of NAMES
        ann.send("MODE #chat b")
        assert ann.expect(" 367 ann #chat ").params[2] == "troll!*@*"
        ann.expect(" 368 ann #chat ")
        ann.close()
    finally:
        server.shutdown()
        store.close()


def test_parallel_oper_tries_from_one_address_are_spaced_out_too(monkeypatch):
    """Connections from one address that try OPER at once, when its wait has run out: the
    first takes the slot and the rest are refused unchecked, as PASS's back-off does."""
    now = [1000.0]
    monkeypatch.setattr("ircchat.state.time.monotonic", lambda: now[0])
    hub = Hub(ServerConfig(opers=OPERS, password_backoff=1.0))
    hub.password_result("203.0.113.9", False, hub.oper_backoff)
    assert hub.oper_wait("203.0.113.9") == 1.0
    now[0] += 1.0  # the wait has run out: one try, not one per open connection
    assert hub.oper_wait("203.0.113.9") == 0.0
    assert hub.oper_wait("203.0.113.9") > 0.0


def test_an_operator_who_kicks_itself_hears_its_kick_once(connect):
    ann, bob = connect("ann"), connect("bob")
    joined(ann, "#r")
    joined(bob, "#r")
    ann.send("KICK #r ann :me")
    bob.expect(r"^:ann!\S+ KICK #r ann :me$")
    ann.sync()  # everything the server sent ann before this point
    kicks = [line for line in ann.seen if " KICK #r ann " in line]
    assert len(kicks) == 1, kicks


def test_saved_states_read_at_start_are_forgotten_oldest_first(tmp_path, monkeypatch):
    """Past the bound, the state dropped from memory is the one saved longest ago, for the
    states read back at start-up as for those saved since."""
    path = str(tmp_path / "history.sqlite3")
    SqliteHistory(path).close()  # the file, with its channels table
    state = json.dumps(channel_state(Channel("#x")))
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO channels VALUES (?, ?, ?)",
                       [("#old", state, int(time.time()) - 60), ("#new", state, int(time.time()))])
    monkeypatch.setattr("ircchat.state.SAVED_CHANNELS_MAX", 2)
    store = SqliteHistory(path)
    try:
        hub = Hub(ServerConfig(), history=store)
        ann = registered(hub, "ann")
        ann.do("JOIN #third", "TOPIC #third :changed")
        assert sorted(hub.saved) == ["#new", "#third"]
    finally:
        store.close()


def test_a_mode_echo_too_long_for_one_line_is_split_never_cut(connect):
    """Six long bare-nick bans fit the MODE that sets them, but not the echo, where each is
    normalized (``!*@*``) behind the setter's source: the echo is split, each line whole."""
    ann, bob = connect("ann"), connect("bob")
    joined(ann, "#r")
    joined(bob, "#r")
    nicks = [f"{letter}" * 76 for letter in "abcdef"]
    line = "MODE #r +bbbbbb " + " ".join(nicks)
    assert len(line) <= 510
    ann.send(line)
    masks: list[str] = []
    while len(masks) < 6:
        echo = bob.expect(r"^:ann!\S+ MODE #r \+b+ ")
        assert len(bob.seen[-1].encode()) + 2 <= 512
        masks += echo.params[2:]
    assert masks == [nick + "!*@*" for nick in nicks]
