"""The network thread (curses_client.net) against a bare listening socket: pause and resume."""

from __future__ import annotations

import queue
import select
import socket

from client_harness import DEADLINE, wait_until
from curses_client import net

QUIET = 0.3  # how long "no reconnection" is watched for: a bounded look for a negative


def next_event(events, kind):
    def found():
        while True:
            try:
                event = events.get(timeout=DEADLINE)
            except queue.Empty:
                return None
            if isinstance(event, kind):
                return event

    return wait_until(found, f"a {kind.__name__} event")


def test_paused_thread_does_not_reconnect_until_resumed():
    listener = socket.create_server(("127.0.0.1", 0))
    events: queue.Queue[net.Event] = queue.Queue()
    thread = net.NetworkThread("127.0.0.1", listener.getsockname()[1], events, net.Sender(), first_retry_delay=0.05)
    thread.start()
    try:
        first, _ = listener.accept()
        next_event(events, net.Connected)
        thread.pause()
        first.close()
        next_event(events, net.Disconnected)
        assert select.select([listener], [], [], QUIET)[0] == []  # held back, well past the retry delay
        thread.resume()
        assert select.select([listener], [], [], DEADLINE)[0], "resume() connects at once"
        second, _ = listener.accept()
        next_event(events, net.Connected)
        thread.resume()  # with a connection up: it is ended, and the next one comes without a wait
        next_event(events, net.Disconnected)
        assert select.select([listener], [], [], DEADLINE)[0]
        listener.accept()[0].close()
        second.close()
    finally:
        thread.stop()
        thread.join(DEADLINE)
        listener.close()
    assert not thread.is_alive()
