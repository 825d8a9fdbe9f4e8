"""What an adversarial review broke (issue 8), each over real sockets: the fix and its proof."""

from __future__ import annotations

import logging
import re
import resource
import socket
import subprocess
import sys
import time

import pytest

from ircchat.state import Hub, ServerConfig
from irc_peer import Peer
from test_handlers import numerics, registered
from test_server_cli import SERVER


def register_many(server, prefix: str, count: int) -> list[Peer]:
    """``count`` registered peers, registering all at once rather than one after another."""
    peers = [Peer(server.address) for _ in range(count)]
    for i, peer in enumerate(peers):
        peer.nick = f"{prefix}{i:03d}"
        peer.send(f"NICK {peer.nick}", f"USER u 0 * :{peer.nick}")
    for peer in peers:
        peer.expect(r" 366 ", timeout=20)
    return peers


def answered_within(peer: Peer, seconds: float, token: str) -> bool:
    """Send a PING; True if its PONG comes back within ``seconds``."""
    peer.send(f"PING :{token}")
    try:
        peer.expect(rf"PONG \S+ :{token}$", timeout=seconds)
    except AssertionError:
        return False
    return True


# -- 1. a connection that cannot get a thread ----------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs prlimit (Linux)")
def test_connection_without_a_thread_is_refused_and_accepting_goes_on(tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, str(SERVER), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=log_file, text=True)
    peers: list[Peer] = []
    try:
        port = int(re.search(r"listening on [\d.]+:(\d+)", proc.stdout.readline()).group(1))
        status = open(f"/proc/{proc.pid}/status").read()
        vm_bytes = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
        # Room for a few more thread stacks, far fewer than --max-clients: what a container's
        # memory or pid limit does to a server that believes it may take 10,000 clients.
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (vm_bytes + (32 << 20), resource.RLIM_INFINITY))
        refusal = None
        for i in range(400):
            peer = Peer(("127.0.0.1", port))
            peers.append(peer)
            peer.send(f"NICK n{i:03d}", "USER u 0 * :U")
            first = peer.read_line(time.monotonic() + 10)
            if first is not None and first.startswith("ERROR"):
                refusal = first
                break
            assert first is not None and " 001 " in first, first
        assert refusal is not None and "out of resources" in refusal, "no connection was ever refused"
        for peer in peers:
            peer.close()
        # Accepting goes on, and the refused connection left nothing behind: once the others'
        # QUITs are through, LUSERS counts just the newcomer, with no unknown connections.
        deadline = time.monotonic() + 10
        while True:  # until the closed connections' threads have ended and freed their stacks
            late = Peer(("127.0.0.1", port))
            peers.append(late)
            late.send("NICK late", "USER u 0 * :U")
            if " 001 " in (late.read_line(deadline) or ""):
                break
            assert time.monotonic() < deadline, late.seen
        late.expect(" 366 ")
        while True:
            late.send("LUSERS")
            lusers = late.collect_until(" 255 ")
            if any("There are 1 users" in line for line in lusers):
                break
            assert time.monotonic() < deadline, lusers
        assert not any(" 253 " in line for line in lusers), lusers
    finally:
        for peer in peers:
            peer.close()
        proc.terminate()
        proc.wait(timeout=10)
    log = log_path.read_text()
    assert "cannot start a thread" in log
    assert "Exception in thread acceptor" not in log


# -- 2. repeated and too many targets; what a command costs ---------------------------------


def test_repeated_targets_deliver_once_and_too_many_draw_407(connect):
    ann, bob = connect("ann"), connect("bob")
    isupport = next(line for line in ann.seen if " 005 " in line)
    assert "TARGMAX=JOIN:20,PART:20,PRIVMSG:4,NOTICE:4,NAMES:4,WHOIS:4,KICK:4" in isupport.split()
    ann.send("PRIVMSG " + ",".join(["#chat", "#CHAT", "bob", "BOB"] * 11) + " :once each")
    ann.send("PRIVMSG #chat,#a,#b,#c,#d :five targets")
    ann.expect(r" 407 ann #chat,#a,#b,#c,#d :Too many targets")
    ann.sync()
    got = [line for line in bob.sync() if "PRIVMSG" in line]
    assert got == [":ann!~tester@" + line.split("@", 1)[1] for line in got]  # from ann
    assert [line.split(" ", 2)[2] for line in got] == ["#chat :once each", "bob :once each"]


def test_reply_size_is_charged_to_flood_control():
    hub = Hub(ServerConfig())
    members = [registered(hub, f"m{i:03d}") for i in range(100)]
    asker = members[0]
    asker.user.flood_debt = 0.0
    reply = asker.do("WHO #chat")
    assert numerics(reply) == ["352"] * 100 + ["315"]
    size = sum(len(line) + 2 for line in reply)
    assert asker.user.flood_debt == pytest.approx(size / 4096)


def test_a_big_query_delays_the_asker_but_nobody_else(start_server):
    server = start_server(flood_burst=20, flood_rate=0.1)
    asker, control, *others = register_many(server, "m", 40)
    # 15 WHOs of a 40-member room: 15 lines, but about 3.4 KB of reply each. Charged one
    # line apiece, the asker would still be inside its burst of 20.
    control.send(*[f"PING :warm{i}" for i in range(15)])
    assert answered_within(control, 5, "control")
    asker.send(*["WHO #chat"] * 15)
    assert len(others) == 38  # (still open: members who leave would shrink the replies)
    assert not answered_within(asker, 1, "asker")


# -- 3. blank lines ------------------------------------------------------------------------


def test_blank_lines_count_against_flood_control(start_server):
    server = start_server(flood_burst=10, flood_rate=0.1)
    blank, control = Peer(server.address), Peer(server.address)
    blank.register("blank")
    control.register("control")
    blank.send_raw(b"\n" * 30 + b"   \r\n" * 10)
    control.send_raw(b"\n" * 5)
    assert answered_within(control, 5, "control")
    assert not answered_within(blank, 1, "blank")


# -- 4. the server's console log -----------------------------------------------------------


def test_terminal_escapes_from_the_network_are_logged_escaped(connect, caplog):
    caplog.set_level(logging.INFO, logger="chat_server")
    stranger = connect()
    stranger.send("QUIT :\x1b]0;owned\x07 \x9b31m")
    stranger.expect_closed()
    ann = connect("ann")
    ann.send("JOIN #\x1b[2Jroom", "QUIT :\u202eevil")
    ann.expect_closed()
    messages = [record.getMessage() for record in caplog.records]
    assert not any(re.search("[\x00-\x1f\x7f-\x9f\u202e]", message) for message in messages)
    text = "\n".join(messages)
    assert r"Quit: \x1b]0;owned\x07 \x9b31m" in text
    assert r"joined #\x1b[2Jroom" in text and r"Quit: \u202eevil" in text


# -- 5. replies that list names --------------------------------------------------------------


def test_names_in_a_long_multibyte_channel_lists_every_member(start_server):
    server = start_server()
    room = "#" + "\U0001d11e" * 49  # 197 bytes of channel name on every 353 line
    peers = register_many(server, "member_with_long_", 120)
    for peer in peers:
        peer.send(f"JOIN {room}")
    for peer in peers:
        peer.expect(" 366 ", timeout=20)
    asker = peers[0]
    asker.send(f"NAMES {room}")
    lines = asker.collect_until(" 366 ")
    names = [name.lstrip("@+") for line in lines if " 353 " in line for name in line.split(" :", 1)[1].split()]
    assert sorted(names) == sorted(peer.nick for peer in peers)  # the first, their operator, as @...
    assert all(len(line.encode()) + 2 <= 512 for line in lines)


def test_whois_lists_every_channel_however_long_the_names():
    hub = Hub(ServerConfig(max_channels=20))
    ann = registered(hub, "ann")
    channels = ["#" + "\u00e9" * 40 + f"{i:02d}" for i in range(19)]
    ann.do("JOIN " + ",".join(channels))
    listed = [name.lstrip("@") for line in ann.do("WHOIS ann") if " 319 " in line
              for name in line.split(" :", 1)[1].split()]  # @: ann made each channel
    assert sorted(listed) == sorted(channels + ["#chat"])


# -- 8. a password server --------------------------------------------------------------------


def test_without_the_password_no_nick_is_held_or_revealed(start_server):
    server = start_server(password="pw", password_backoff=0.01)
    ann = Peer(server.address)
    ann.send("PASS pw")
    ann.register("ann")
    squatter = Peer(server.address)
    squatter.send("NICK bob", "NICK ann", "USER s 0 * :S")
    lines = squatter.expect_closed()
    assert any(" 464 * :Password required" in line for line in lines)
    assert not any(" 433 " in line for line in lines)  # not told that ann is online
    guesser = Peer(server.address)
    guesser.send("PASS wrong", "NICK carol", "USER g 0 * :G")
    assert any(" 464 * :Password incorrect" in line for line in guesser.expect_closed())
    for nick in ("bob", "carol"):  # neither name was ever taken
        peer = Peer(server.address)
        peer.send("PASS pw")
        peer.register(nick)


def test_failed_passwords_from_one_address_slow_down_exponentially(start_server):
    server = start_server(password="pw", password_backoff=0.1)
    waits = []
    for _ in range(5):
        guesser = Peer(server.address)
        started = time.monotonic()
        guesser.send("PASS wrong", "NICK guesser", "USER g 0 * :G")
        guesser.expect(" 464 ")
        waits.append(time.monotonic() - started)
        guesser.close()
    # After four failures the next try waits at least 0.1 * 2**3 s (a lower bound: a slow
    # machine can only make it longer).
    assert waits[4] >= 0.75, waits
    right = Peer(server.address)
    right.send("PASS pw")
    right.register("right", realname="got in")  # the right password still gets in, after its wait


# -- 9. privacy ------------------------------------------------------------------------------


def test_addresses_are_cloaked_except_to_their_owner(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("WHOIS bob", "WHO #chat", "PRIVMSG #chat :hi")
    seen = ann.collect_until(" 318 ") + ann.collect_until(" 315 ")
    whois_user = next(line for line in seen if " 311 " in line).split()
    assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.cloak", whois_user[5])
    assert not any("127.0.0.1" in line for line in seen)
    assert not any(" 378 " in line for line in seen)  # the real address is not for others
    said = bob.expect("PRIVMSG #chat :hi")
    assert said.prefix.endswith("@" + whois_user[5])  # the same cloak everywhere, stable
    bob.send("WHOIS bob")
    assert "127.0.0.1" in bob.expect(" 378 bob bob ").params[-1]


def test_cloaking_can_be_turned_off(start_server):
    server = start_server(cloak_secret=None)
    ann, bob = Peer(server.address), Peer(server.address)
    ann.register("ann")
    bob.register("bob")
    ann.send("WHOIS bob")
    assert ann.expect(" 311 ").params[3] == "127.0.0.1"
