"""The commands clients use besides chatting (ircchat/queries.py): WHO and WHOX as irssi and
WeeChat send them, AWAY and away-notify, USERHOST, ISON, LIST, WHOWAS, TIME, VERSION, ADMIN,
INFO, HELP, and their refusals. Over real sockets, but for what needs a server operator (no
OPER here yet) and the pure parts, which use an in-memory hub."""

from __future__ import annotations

import doctest
import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ircchat.queries
import ircchat.state
from ircchat.history import SqliteHistory
from ircchat.network import ChatServer
from ircchat.protocol import glob_match, parse_message
from ircchat.state import Hub, ServerConfig
from irc_peer import Peer
from test_handlers import numerics, registered

HOST = r"[0-9a-f]{8}\.[0-9a-f]{8}\.cloak"


def commands(lines: list[str]) -> list[str]:
    return [parse_message(line).command for line in lines]


def answers(peer) -> list[str]:
    """The server's replies to what ``peer`` sent so far (other users' lines left out)."""
    return [line for line in peer.sync() if line.startswith(":chat.local ")]


def register_with_caps(peer, nick: str, caps: str) -> None:
    peer.nick = nick
    peer.send("CAP LS 302", f"CAP REQ :{caps}", f"NICK {nick}", "USER tester 0 * :Test User")
    peer.expect(rf"CAP \S+ ACK :{re.escape(caps)}$")
    peer.send("CAP END")
    peer.expect(" 366 ")


# -- WHO and WHOX ---------------------------------------------------------------------------


def test_irssi_who_and_whox_queries_of_a_channel(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("WHO #chat")  # irssi without WHOX, and on joining a channel
    assert answers(ann)[-3:] == [
        f":chat.local 352 ann #chat ~tester {m} chat.local {nick} H :0 Test User"
        for nick, m in (("ann", ann_host(ann)), ("bob", ann_host(bob)))
    ] + [":chat.local 315 ann #chat :End of /WHO list"]
    ann.send("WHO #chat %tcuhnfdar,743")  # irssi 1.3 and later, with WHOX
    lines = answers(ann)
    assert re.fullmatch(rf":chat.local 354 ann 743 #chat ~tester {HOST} ann H 0 0 :Test User", lines[0])
    assert re.fullmatch(rf":chat.local 354 ann 743 #chat ~tester {HOST} bob H 0 0 :Test User", lines[1])
    assert lines[2] == ":chat.local 315 ann #chat :End of /WHO list"
    ann.send("WHO bob %tna,745")  # irssi asking for one nick's account
    assert answers(ann) == [":chat.local 354 ann 745 bob :0", ":chat.local 315 ann bob :End of /WHO list"]


def ann_host(peer) -> str:
    """A peer's cloaked host, read from its own JOIN."""
    join = next(line for line in peer.seen if " JOIN " in line)
    return parse_message(join).prefix.split("@", 1)[1]


def test_weechat_whox_query_gives_fields_in_the_spec_order(connect):
    ann, bob = connect("ann"), connect("bob")
    bob.send("AWAY :gone fishing")
    bob.expect(" 306 ")
    ann.send("WHO #chat %cuhsnfdar")  # WeeChat's away check when the server offers WHOX
    lines = answers(ann)
    assert lines[0] == f":chat.local 354 ann #chat ~tester {ann_host(ann)} chat.local ann H 0 0 :Test User"
    assert lines[1] == f":chat.local 354 ann #chat ~tester {ann_host(bob)} chat.local bob G 0 0 :Test User"
    ann.send("WHO #chat %nrcf")  # asked in any order, answered in the spec's
    assert answers(ann)[0] == ":chat.local 354 ann #chat ann H :Test User"


def test_isupport_offers_whox_and_awaylen(connect):
    ann = connect()
    ann.send("NICK ann", "USER tester 0 * :Test User")
    tokens = " ".join(line for line in ann.collect_until(" 366 ") if " 005 " in line).split()
    assert "WHOX" in tokens and "AWAYLEN=200" in tokens


def test_who_masks_list_whom_the_asker_may_see(connect):
    ann, bob, carol = connect("ann"), connect("bob"), connect("carol")
    carol.send("MODE carol +i", "PART #chat", "JOIN #side")
    carol.expect(r"JOIN :#side$")
    for query in ("WHO", "WHO *", "WHO 0"):
        ann.send(query)
        listed = [parse_message(line).params[5] for line in answers(ann) if " 352 " in line]
        assert sorted(listed) == ["ann", "bob"], query  # carol is +i and shares no channel
    ann.send("WHO bo*")  # not "b*": a hex cloak may start with b
    assert [line.split()[7] for line in answers(ann) if " 352 " in line] == ["bob"]
    ann.send("WHO *test*")  # the username, for everyone visible
    assert len([line for line in answers(ann) if " 352 " in line]) == 2
    ann.send("WHO carol")  # a nick asked for by name is shown, +i or not
    assert re.fullmatch(rf":chat.local 352 ann \* ~tester {HOST} chat.local carol H :0 Test User", answers(ann)[0])
    bob.send("JOIN #side")
    bob.expect(r"JOIN :#side$")
    bob.send("WHO c?rol")  # sharing a channel shows a +i user
    assert [line.split()[7] for line in answers(bob) if " 352 " in line] == ["carol"]
    ann.send("WHO #side")  # a channel ann is not in: its +i members are not shown to her
    assert [line.split()[7] for line in answers(ann) if " 352 " in line] == ["bob"]
    ann.send("WHO * o")  # server operators only: there are none
    assert commands(answers(ann)) == ["315"]


def test_who_by_mask_is_bounded(monkeypatch):
    monkeypatch.setattr(ircchat.queries, "WHO_MASK_MAX", 3)
    hub = Hub(ServerConfig(server_name="irc.test"))
    clients = [registered(hub, f"user{n}") for n in range(5)]
    assert numerics(clients[0].do("WHO user*")) == ["352"] * 3 + ["315"]
    assert numerics(clients[0].do("WHO #chat")) == ["352"] * 5 + ["315"]  # a channel: all members


def test_operators_see_addresses_and_are_flagged():
    hub = Hub(ServerConfig(server_name="irc.test"))
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    bob.user.address = "198.51.100.7"
    bob.user.modes.add("o")
    assert ann.do("WHO bob")[0] == ":irc.test 352 ann * ~bob 10.0.0.1 irc.test bob H* :0 bob Real"
    assert ann.do("WHO bob %ihnf")[0] == ":irc.test 354 ann 255.255.255.255 10.0.0.1 bob :H*"
    ann.user.modes.add("o")  # an operator sees the real address (the host stays the cloak,
    # which bans are checked against), and matches masks on it
    assert ann.do("WHO bob %ihnf")[0] == ":irc.test 354 ann 198.51.100.7 10.0.0.1 bob :H*"
    assert ann.do("WHO bob")[0] == ":irc.test 352 ann * ~bob 10.0.0.1 irc.test bob H* :0 bob Real"
    assert ann.do("USERHOST bob")[0] == ":irc.test 302 ann :bob*=+~bob@10.0.0.1"
    assert ann.do("WHO 198.51.*")[0].split()[7] == "bob"
    assert " 313 ann bob :is an IRC operator" in "\n".join(ann.do("WHOIS bob"))
    ann.user.modes.discard("o")
    assert numerics(ann.do("WHO 198.51.*")) == ["315"]


def test_who_fields_parse_as_the_clients_send_them():
    failures, tried = doctest.testmod(ircchat.queries)
    assert tried > 0 and failures == 0


@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="abAB", max_size=10))
def test_glob_match_agrees_with_fnmatch_case_folded(mask, text):
    assert glob_match(mask, text) == fnmatch.fnmatchcase(text.lower(), mask)


QUERIES = ["WHO", "WHOIS", "WHOWAS", "USERHOST", "ISON", "LIST", "AWAY", "HELP", "TIME", "VERSION", "ADMIN",
           "INFO", "PRIVMSG"]
param = st.one_of(st.sampled_from(["#chat", "*", "0", "o", "%tcuihsnfdlaor,999", "%", "bob", "b?b", ":", "-5"]),
                  st.text(min_size=1, max_size=40).filter(lambda text: " " not in text and not text.startswith(":")))


@given(st.sampled_from(QUERIES), st.lists(param, max_size=4), st.text(max_size=300))
def test_any_query_gets_well_formed_replies(command, params, trailing):
    hub = Hub(ServerConfig(server_name="irc.test"))
    ann, bob = registered(hub, "ann"), registered(hub, "bob")
    bob.do("AWAY :out")
    line = " ".join([command, *params]) + (f" :{trailing}" if trailing else "")
    line = line.replace("\r", "").replace("\n", "").replace("\x00", "")
    ann.do(line)  # Client checks every line it is sent: CRLF-terminated, at most 512 bytes
    assert ann.user.quit_reason is None


def test_glob_match_stays_fast_on_a_hostile_mask():
    mask, text = "*a" * 100 + "b", "a" * 400  # exponential for a backtracking regex
    assert not glob_match(mask, text)


# -- AWAY ---------------------------------------------------------------------------------


def test_away_is_shown_to_private_messages_whois_and_who(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("AWAY :at lunch")
    assert answers(ann) == [":chat.local 306 ann :You have been marked as being away"]
    bob.send("PRIVMSG ann :hi", "NOTICE ann :psst", "PRIVMSG #chat :all")
    assert answers(bob) == [":chat.local 301 bob ann :at lunch"]  # once: not for a NOTICE or a room
    bob.send("WHOIS ann", "USERHOST ann")
    lines = answers(bob)
    assert ":chat.local 301 bob ann :at lunch" in lines
    assert re.fullmatch(rf":chat.local 302 bob :ann=-~tester@{HOST}", lines[-1])
    ann.send("AWAY")
    assert answers(ann)[-1] == ":chat.local 305 ann :You are no longer marked as being away"
    bob.send("PRIVMSG ann :back?", "WHO ann")
    assert " H :0 " in answers(bob)[0]


def test_away_text_is_bounded(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("AWAY :" + "x" * 300)
    ann.expect(" 306 ")
    bob.send("PRIVMSG ann :hi")
    assert answers(bob) == [":chat.local 301 bob ann :" + "x" * 200]


def test_away_notify_goes_to_members_that_asked_for_it_once(connect):
    ann, bob, carol = connect("ann"), connect(), connect("carol")
    register_with_caps(bob, "bob", "away-notify")
    bob.send("JOIN #side")
    bob.expect(" 366 bob #side ")
    ann.send("JOIN #side")  # ann and bob share two channels: bob is told once
    bob.expect(r"^:ann!\S+ JOIN :#side$")
    ann.send("AWAY :brb")
    bob.expect(rf"^:ann!~tester@{HOST} AWAY :brb$")
    ann.send("AWAY")
    assert [line for line in ann.sync() if " AWAY" in line] == []  # handled: bob was told first
    assert bob.sync() == [f":ann!~tester@{ann_host(ann)} AWAY"]
    assert [line for line in carol.sync() if " AWAY" in line] == []
    ann.send("AWAY :away again", "PART #side")
    bob.expect(r"PART :#side$")
    ann.send("JOIN #side")  # an away user joining is announced as away, after the JOIN
    ann.expect(" 366 ann #side ")
    assert [line.split(" ", 1)[1] for line in bob.sync()] == ["JOIN :#side", "AWAY :away again"]


# -- USERHOST, ISON, LIST, WHOWAS -----------------------------------------------------------


def test_userhost_answers_for_up_to_five_online_nicks(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("USERHOST bob ghost ann")
    assert answers(ann) == [f":chat.local 302 ann :bob=+~tester@{ann_host(bob)} ann=+~tester@127.0.0.1"]
    ann.send("USERHOST a1 a2 a3 a4 a5 bob")  # the sixth is not looked at
    assert answers(ann) == [":chat.local 302 ann :"]
    ann.send("USERHOST")
    assert commands(answers(ann)) == ["461"]


def test_ison_as_weechat_notify_sends_it(connect):
    ann, _ = connect("ann"), connect("bob")
    ann.send("ISON :ghost BOB ann")
    assert answers(ann) == [":chat.local 303 ann :bob ann"]
    ann.send("ISON ghost")
    assert answers(ann) == [":chat.local 303 ann :"]
    ann.send("ISON")
    assert commands(answers(ann)) == ["461"]


def test_ison_reply_never_runs_over_a_line():
    hub = Hub(ServerConfig(server_name="irc.test"))
    nicks = [f"n{index:02d}" + "x" * 17 for index in range(30)]
    asker = registered(hub, nicks[0])
    for nick in nicks[1:]:
        registered(hub, nick)
    query = "ISON :" + " ".join(nicks[:23])  # as many as fit in the query's own 512 bytes
    (reply,) = asker.do(query)
    listed = parse_message(reply).params[1].split()
    assert len(reply.encode()) <= 510 and listed == nicks[:len(listed)] and len(listed) >= 20


def test_list_with_and_without_masks(connect):
    ann = connect("ann")
    ann.send("JOIN #side", "TOPIC #side :side talk", "JOIN #other")
    ann.expect(" 366 ann #other ")
    ann.send("LIST")
    lines = answers(ann)
    assert lines[0] == ":chat.local 321 ann Channel :Users  Name" and lines[-1] == ":chat.local 323 ann :End of /LIST"
    assert sorted(lines[1:-1]) == [":chat.local 322 ann #chat 1 :", ":chat.local 322 ann #other 1 :",
                                   ":chat.local 322 ann #side 1 :side talk"]
    ann.send("LIST #s*")
    assert commands(answers(ann)) == ["321", "322", "323"]
    ann.send("LIST #chat,#OTHER")
    assert sorted(parse_message(line).params[1] for line in answers(ann)[1:-1]) == ["#chat", "#other"]


def test_whowas_remembers_quits_and_nick_changes(connect):
    ann, bob = connect("ann"), connect("bob")
    bob.send("QUIT :bye")
    bob.expect_closed()
    ann.expect(r"^:bob!\S+ QUIT ")
    ann.send("WHOWAS bob")
    lines = answers(ann)
    assert re.fullmatch(rf":chat.local 314 ann bob ~tester {HOST} \* :Test User", lines[0])
    assert re.fullmatch(r":chat.local 312 ann bob chat.local :\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[1])
    assert lines[2] == ":chat.local 369 ann bob :End of WHOWAS"
    ann.send("NICK anna", "NICK ann2")
    ann.expect(r"NICK :ann2$")
    ann.send("WHOWAS ann", "WHOWAS anna 1", "WHOWAS ghost", "WHOWAS")
    assert commands(answers(ann)) == ["314", "312", "369", "314", "312", "369", "406", "369", "431"]


def test_whowas_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(ircchat.state, "WHOWAS_NICKS", 2)
    hub = Hub(ServerConfig(nick_changes_per_minute=100))
    ann = registered(hub, "ann")
    for nick in ("bob", "cat", "dan", "bob", "eve"):
        ann.do(f"NICK {nick}", "NICK ann")
    assert list(hub.whowas) == ["ann", "eve"]  # the two nicks given up last
    assert len(hub.find_whowas("ann", 100)) == ircchat.state.WHOWAS_PER_NICK


# -- about the server, and refusals ---------------------------------------------------------


def test_time_version_admin_info_and_help(connect):
    ann = connect("ann")
    ann.send("TIME")
    assert re.fullmatch(r":chat.local 391 ann chat.local \d+ 0 :\w+ \w+ \d\d \d{4} -- [\d:]{8} UTC", answers(ann)[0])
    ann.send("VERSION")
    lines = answers(ann)
    assert lines[0].startswith(":chat.local 351 ann ircchat-") and set(commands(lines[1:])) == {"005"}
    ann.send("ADMIN", "INFO")
    assert commands(answers(ann)) == ["256", "257", "258", "259", "371", "371", "371", "374"]
    ann.send("HELP", "HELP away", "HELP frobnicate")
    lines = answers(ann)
    assert commands(lines) == ["704", "705", "706", "704", "706", "524"]
    assert "ISON" in lines[1].split() and lines[3].startswith(":chat.local 704 ann AWAY :AWAY [:message]")
    assert lines[-1] == ":chat.local 524 ann FROBNICATE :No help available on this topic"


def test_every_command_has_help():
    from ircchat.handlers import COMMANDS

    assert sorted(COMMANDS) == sorted(ircchat.queries.HELP_TOPICS)


@pytest.mark.parametrize("line", ["USER x 0 * :", "USER :"])
def test_user_with_an_empty_realname_or_too_few_parameters_is_refused(connect, line):
    ann = connect()
    ann.send("NICK ann", line)
    assert commands(answers(ann)) == ["461"]
    ann.send("USER x 0 * :X")
    ann.expect(" 001 ann ")


def test_438_names_the_refused_nick_and_how_long_to_wait(start_server, connect):
    ann = connect("ann")
    for nick in ("a_1", "a_2", "a_3", "a_4", "a_5"):
        ann.send(f"NICK {nick}")
    ann.send("NICK a_6")
    lines = answers(ann)
    assert re.fullmatch(r":chat.local 438 a_5 a_6 :Nick change too fast. Please wait (60|59) seconds", lines[-1])


# -- extended-join --------------------------------------------------------------------------


@pytest.mark.parametrize("history", [False, True], ids=["no-history", "history"])
def test_extended_join_gives_account_and_realname_to_those_that_asked(start_server, history, tmp_path):
    store = SqliteHistory(str(tmp_path / "history.sqlite3")) if history else None
    server = ChatServer(ServerConfig(), "127.0.0.1", 0, history=store)
    server.start()
    peers = [Peer(server.address) for _ in range(4)]
    try:
        ann, bob, carol, dave = peers
        register_with_caps(ann, "ann", "extended-join")
        assert f":ann!~tester@{ann_host(ann)} JOIN #chat * :Test User" in ann.seen  # its own JOIN too
        register_with_caps(bob, "bob", "extended-join message-tags")
        carol.register("carol", realname="Carol Real")
        for peer in (ann, bob):
            peer.expect(rf"^(@\S+ )?:carol!~tester@{HOST} JOIN #chat \* :Carol Real$")
        assert [line for line in carol.seen if " JOIN " in line] == [
            f":carol!~tester@{ann_host(carol)} JOIN :#chat"]  # no extended-join: the plain form
        ann.send("CAP REQ :-extended-join")
        ann.expect(r"ACK :-extended-join$")
        carol.send("CAP REQ :extended-join")  # carol read #chat's log: now she is sent lines herself
        carol.expect(r"ACK :extended-join$")
        dave.register("dave", realname="Dave Real")
        ann.expect(rf"^:dave!~tester@{HOST} JOIN :#chat$")
        carol.expect(rf"^:dave!~tester@{HOST} JOIN #chat \* :Dave Real$")
        dave.send("PRIVMSG #chat :hello")
        carol.expect(r"PRIVMSG #chat :hello$")  # and still every room line
    finally:
        for peer in peers:
            peer.close()
        server.shutdown()
        if store is not None:
            store.close()


def test_a_who_mask_matching_nobody_still_costs_its_asker_the_users_it_looked_at():
    """WHO *zz* answers one line but matches every user's nick, username, host and realname:
    that work is charged to the asker's flood control, as a long reply's size is."""
    hub = Hub(ServerConfig())
    asker = registered(hub, "ann")
    with hub.lock:
        for i in range(5000):
            user = ircchat.state.User(host="h", nick=f"u{i}", username="~u", registered=True)
            hub.users.add(user)
            hub.nicks[f"u{i}"] = user
    asker.user.flood_debt = 0.0
    assert numerics(asker.do("WHO *zz*")) == ["315"]
    assert asker.user.flood_debt >= 5000 / ircchat.queries.SCAN_PER_TOKEN
    asker.user.flood_debt = 0.0
    asker.do("WHO ann")  # one nick, no scan: only its reply's size
    assert asker.user.flood_debt < 1


def test_a_list_by_masks_matching_nothing_still_costs_its_asker_the_matches_it_made():
    hub = Hub(ServerConfig())
    asker = registered(hub, "ann")
    with hub.lock:
        for i in range(1000):
            hub.channels[f"#c{i}"] = ircchat.state.Channel(f"#c{i}")
    asker.user.flood_debt = 0.0
    assert numerics(asker.do("LIST " + ",".join(["*zz*"] * 10))) == ["321", "323"]
    assert asker.user.flood_debt >= 1001 * 10 / ircchat.queries.SCAN_PER_TOKEN
