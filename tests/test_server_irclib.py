"""A real third-party IRC client (the ``irc`` package from PyPI) registers, chats and quits."""

from __future__ import annotations

import queue
import threading
import time

import irc.client

from irc_peer import Peer


def test_irc_package_client_registers_chats_and_quits(server, connect):
    bob = connect("bob")
    events: queue.Queue = queue.Queue()
    reactor = irc.client.Reactor()
    conn = reactor.server().connect(*server.address, nickname="jaraco", username="jaraco")
    for kind in ("welcome", "join", "pubmsg", "privmsg", "namreply"):
        conn.add_global_handler(kind, lambda c, e: events.put(e))
    stop = threading.Event()
    loop = threading.Thread(target=lambda: [reactor.process_once(0.05) for _ in iter(stop.is_set, True)])
    loop.start()
    try:
        def wait_for(kind: str):
            deadline = time.monotonic() + 5
            while True:
                event = events.get(timeout=max(0.01, deadline - time.monotonic()))
                if event.type == kind:
                    return event

        wait_for("welcome")
        join = wait_for("join")
        assert join.target == "#chat" and join.source.nick == "jaraco"
        names = wait_for("namreply")
        assert "bob" in names.arguments[-1].split()
        bob.expect(r"^:jaraco!\S+ JOIN :#chat$")
        conn.privmsg("#chat", "hello from the irc package")
        bob.expect(r"^:jaraco!\S+ PRIVMSG #chat :hello from the irc package$")
        bob.send("PRIVMSG #chat :hi jaraco", "PRIVMSG jaraco :a secret")
        public = wait_for("pubmsg")
        assert public.source.nick == "bob" and public.arguments == ["hi jaraco"]
        private = wait_for("privmsg")
        assert private.arguments == ["a secret"]
        conn.quit("done testing")
        bob.expect(r"^:jaraco!\S+ QUIT :Quit: done testing$")
    finally:
        stop.set()
        loop.join(5)
        conn.close()
