"""The real server over real loopback sockets: registration, chat, drops, limits, shutdown."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from irc_peer import Peer


def test_register_in_either_order_with_cap_and_pass(connect):
    ann = connect()
    ann.send("CAP LS 302", "PASS secret", "USER ann 0 * :Ann", "NICK ann")
    ann.expect(r"CAP \* LS :away-notify batch .*server-time$")
    ann.send("CAP END")
    for pattern in (" 001 ann ", " 002 ", " 003 ", " 004 ", " 005 ann .*NICKLEN=20", " 376 ",
                    r"^:ann!~ann@[0-9a-f]{8}\.[0-9a-f]{8}\.cloak JOIN :#chat$", " 353 ann = #chat :ann$", " 366 "):
        ann.expect(pattern)


def test_ping_answered_before_registration_and_451_for_other_commands(connect):
    peer = connect()
    peer.send("PING :early")
    peer.expect(r"PONG \S+ :early$")
    peer.send("PRIVMSG #chat :too soon")
    peer.expect(r" 451 \* :You have not registered")


def test_bad_and_taken_nicks_can_be_retried_on_the_same_connection(connect):
    connect("Ann_1")
    peer = connect()
    peer.send("NICK x", "NICK this_nick_is_far_too_long", "NICK bad-nick", "NICK aNN_1")
    peer.expect(" 432 \\* x ")
    peer.expect(" 432 \\* this_nick_is_far_too_long ")
    peer.expect(" 432 \\* bad-nick ")
    peer.expect(" 433 \\* aNN_1 ")
    peer.send("NICK ann_2", "USER a 0 * :A")
    peer.expect(" 001 ann_2 ")


def test_unknown_command_and_missing_parameters(connect):
    ann = connect("ann")
    ann.send("FROBNICATE", "JOIN", "TOPIC")
    ann.expect(" 421 ann FROBNICATE ")
    ann.expect(" 461 ann JOIN ")
    ann.expect(" 461 ann TOPIC ")


def test_room_message_reaches_every_other_member_never_the_sender(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    ann.send("PRIVMSG #chat :hello, room")
    for peer in (bob, cat):
        peer.expect(r"^:ann!~tester@\S+\.cloak PRIVMSG #chat :hello, room$")
    assert not [line for line in ann.sync() if "hello, room" in line]


def test_private_message_reaches_only_its_target(connect):
    ann, bob, cat = connect("ann"), connect("bob"), connect("cat")
    ann.send("PRIVMSG bob :just you", "PRIVMSG ghost :anyone?")
    bob.expect(r"PRIVMSG bob :just you$")
    ann.expect(" 401 ann ghost ")
    assert not [line for line in cat.sync() if "just you" in line]


def test_join_and_quit_are_announced_and_the_quitter_gets_error(connect):
    ann = connect("ann")
    bob = connect("bob")
    ann.expect(r"^:bob!\S+ JOIN :#chat$")
    bob.send("QUIT :off to lunch")
    ann.expect(r"^:bob!\S+ QUIT :Quit: off to lunch$")
    closing = bob.expect_closed()
    assert any(line.startswith("ERROR :Closing Link") for line in closing)


def test_abrupt_drop_is_announced_as_quit(connect):
    ann, bob = connect("ann"), connect("bob")
    bob.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    bob.close()  # linger 0: a reset, no QUIT
    message = ann.expect(r"^:bob!\S+ QUIT ")
    assert message.params[0] in ("Connection closed",) or message.params[0].startswith("Read error")


def test_messages_from_one_sender_arrive_complete_and_in_order(start_server):
    server = start_server(flood_rate=0)
    ann, bob = Peer(server.address), Peer(server.address)
    ann.register("ann")
    bob.register("bob")
    ann.send(*(f"PRIVMSG #chat :message {i}" for i in range(500)))
    for i in range(500):
        bob.expect(rf"PRIVMSG #chat :message (\d+)$")
        assert bob.seen[-1].endswith(f"message {i}")


def test_nick_change_is_announced_and_the_old_nick_is_freed(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("NICK Annie")
    ann.expect(r"^:ann!\S+ NICK :Annie$")
    bob.expect(r"^:ann!\S+ NICK :Annie$")
    cat = connect()
    cat.register("ANN")
    bob.send("PRIVMSG annie :found you")
    ann.expect("PRIVMSG annie :found you$")


def test_channels_topic_who_whois_mode_motd_lusers(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("JOIN #side", "TOPIC #side :side talk")
    ann.expect(r"TOPIC #side :side talk$")
    bob.send("JOIN #side")
    bob.expect(" 332 bob #side :side talk$")
    bob.expect(" 353 bob = #side :@ann bob$")  # the first member of a new channel is its operator
    ann.expect(r"^:bob!\S+ JOIN :#side$")
    bob.send("WHO #side", "WHOIS ann", "MODE #side", "MODE bob", "MOTD", "LUSERS", "NAMES #chat")
    for pattern in (" 352 bob #side ", " 315 bob #side ", " 311 bob ann ", " 318 bob ann ",
                    " 324 bob #side :\\+nt", " 221 bob :\\+$", " 376 bob ", " 251 bob ", " 366 bob #chat "):
        bob.expect(pattern)
    bob.send("PART #side :bye")
    ann.expect(r"^:bob!\S+ PART #side :bye$")


def test_overlong_line_gets_417_and_the_connection_stays_up(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("PRIVMSG #chat :" + "x" * 600)
    ann.expect(" 417 ann :Input line was too long")
    ann.send_raw(b"PRIVMSG #chat :" + b"y" * 200_000)  # no line end at all
    ann.send("", "PRIVMSG #chat :still here")
    bob.expect("PRIVMSG #chat :still here$")
    assert not [line for line in bob.seen if "xxxx" in line or "yyyy" in line]


def test_invalid_utf8_becomes_replacement_characters(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send_raw(b"PRIVMSG #chat :caf\xe9 \xff\xfe ok\r\n")
    message = bob.expect("PRIVMSG #chat :caf")
    assert message.params[-1] == "caf\ufffd \ufffd\ufffd ok"


def test_cr_and_nul_cannot_inject_a_command(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send_raw(b"PRIVMSG #chat :hi\rQUIT :pwned\x00\r\n")
    message = bob.expect("PRIVMSG #chat :hi")
    assert message.params[-1] == "hiQUIT :pwned"
    assert not [line for line in bob.sync() if " QUIT " in line]


def test_idle_client_is_pinged_and_kept_when_it_answers(start_server):
    server = start_server(ping_interval=0.2, ping_timeout=5)
    peer = Peer(server.address)
    peer.register("pingy")
    for _ in range(2):
        ping = peer.expect(r"^PING ")
        peer.send(f"PONG :{ping.params[0]}")
    peer.send("PRIVMSG #chat :still alive")
    peer.sync()
    peer.close()


def test_silent_client_is_dropped_with_ping_timeout(start_server):
    server = start_server(ping_interval=0.2, ping_timeout=0.3)
    watcher, silent = Peer(server.address), Peer(server.address)
    watcher.register("watcher")
    silent.register("silent")
    silent.expect(r"^PING ")  # and never answer
    # The watcher answers its own PINGs while waiting for the news.
    deadline = time.monotonic() + 5
    while True:
        line = watcher.read_line(deadline)
        if line.startswith("PING "):
            watcher.send("PONG " + line.split(" ", 1)[1])
        elif " QUIT " in line:
            assert line.startswith(":silent!") and " QUIT :Ping timeout: " in line
            break
    assert any(line.startswith("ERROR ") for line in silent.expect_closed())
    watcher.close()


def test_connection_that_never_registers_is_closed(start_server):
    server = start_server(register_timeout=0.3)
    lurker = Peer(server.address)
    lurker.send("NICK lurker")  # but never USER
    lines = lurker.expect_closed()
    assert any("Registration timed out" in line for line in lines)


def test_stalled_reader_is_evicted_and_does_not_hold_up_the_others(start_server):
    server = start_server(room_backlog=64 * 1024, flood_rate=0)
    ann, bob = Peer(server.address), Peer(server.address)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, to count
    stalled.connect(server.address)
    ann.register("ann")
    bob.register("bob")
    stalled.sendall(b"NICK stalled\r\nUSER s 0 * :never reads\r\n")
    ann.expect(r"^:stalled!\S+ JOIN ")
    text = "z" * 400
    evicted = False
    # ~3.5 MB in all: past what the kernel buffers for the stalled reader (its send buffer
    # grows to a few MB on loopback) and past the room backlog it may lag behind. Sent in
    # batches that bob reads as they come, so bob never lags by more than one batch.
    per_batch = 40
    for batch in range(200):
        ann.send(*(f"PRIVMSG #chat :{batch * per_batch + i} {text}" for i in range(per_batch)))
        received = 0
        while received < per_batch:
            message = bob.expect(r"PRIVMSG #chat :|QUIT")
            if message.command == "QUIT":
                assert message.nick == "stalled" and message.params[0].startswith("Backlog exceeded")
                evicted = True
            else:
                assert message.params[1].startswith(f"{batch * per_batch + received} ")
                received += 1
    if not evicted:
        bob.expect(r"^:stalled!\S+ QUIT :Backlog exceeded")
    stalled.close()
    for peer in (ann, bob):
        peer.close()


def test_shutdown_tells_clients_and_frees_the_port(start_server):
    server = start_server()
    address = server.address
    ann = Peer(address)
    ann.register("ann")
    lurker = Peer(address)
    server.shutdown()
    assert any("Server shutting down" in line for line in ann.expect_closed())
    assert lurker.expect_closed() is not None
    with socket.create_server(address):  # the port is free again
        pass


def test_many_clients_chat_at_once_and_everyone_gets_everything(start_server):
    server = start_server(flood_rate=0)
    peers = [Peer(server.address) for _ in range(20)]
    for i, peer in enumerate(peers):
        peer.register(f"user{i:02d}")
    per_sender = 20
    threads = [
        threading.Thread(target=peer.send, args=[f"PRIVMSG #chat :{peer.nick} {n}" for n in range(per_sender)])
        for peer in peers
    ]
    for thread in threads:
        thread.start()
    for peer in peers:
        next_from = {other.nick: 0 for other in peers if other is not peer}
        while any(n < per_sender for n in next_from.values()):
            sender, n = peer.expect(r"PRIVMSG #chat :").params[1].split()
            assert next_from[sender] == int(n), f"{peer.nick} got {sender} {n} out of order"
            next_from[sender] += 1
    for thread in threads:
        thread.join(5)
    for peer in peers:
        peer.close()
