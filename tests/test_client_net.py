"""The network thread (curses_client.net) against a bare listening socket: pause and resume."""

from __future__ import annotations

import os
import queue
import select
import socket
import threading
import time

from client_harness import DEADLINE, wait_until

from curses_client import net
from ircchat.protocol import LineFramer

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


def start_thread(listener, events=None, sender=None, **options):
    events = queue.Queue() if events is None else events
    thread = net.NetworkThread("127.0.0.1", listener.getsockname()[1], events, sender or net.Sender(), **options)
    thread.start()
    return thread, events


def stop_thread(thread):
    thread.stop()
    thread.join(DEADLINE)
    assert not thread.is_alive()


def read_lines(sock, count):
    framer, lines = LineFramer(), []
    sock.settimeout(DEADLINE)
    while len(lines) < count:
        data = sock.recv(65536)
        assert data, f"closed after {lines}"
        lines += [line.decode() for line in framer.feed(data)]
    return lines


def test_sending_never_blocks_when_the_server_stops_reading_and_a_full_queue_disconnects():
    listener = socket.create_server(("127.0.0.1", 0))
    sender = net.Sender(burst=10**9, rate=1.0, limit=2_000_000)
    thread, events = start_thread(listener, sender=sender, first_retry_delay=30)
    try:
        server, _ = listener.accept()  # accepts, never reads
        next_event(events, net.Connected)
        line = "PRIVMSG #chat :" + "x" * 400
        sent = 0
        while sender.send(line):  # each call returns at once; the kernel buffers fill, then the queue
            sent += 1
            assert sent < 100_000, "the queue never filled"
        assert sent > 1000
        disconnected = next_event(events, net.Disconnected)
        assert "KB waiting to be sent" in disconnected.reason
        assert not sender.send("PRIVMSG #chat :after"), "no connection to send on any more"
        server.close()
    finally:
        stop_thread(thread)
        listener.close()


def test_quit_and_pong_go_before_a_paced_backlog():
    listener = socket.create_server(("127.0.0.1", 0))
    sender = net.Sender(burst=2, rate=0.01)  # after two lines, one a hundred seconds
    thread, events = start_thread(listener, sender=sender)
    try:
        server, _ = listener.accept()
        next_event(events, net.Connected)
        for number in range(5):
            assert sender.send(f"PRIVMSG #chat :line {number}")
        assert read_lines(server, 2) == ["PRIVMSG #chat :line 0", "PRIVMSG #chat :line 1"]
        sender.send("PONG :x")
        assert read_lines(server, 1) == ["PONG :x"]
        sender.send("QUIT :bye")  # drops the backlog: the goodbye is not held behind it
        sender.finish_writing()
        assert read_lines(server, 1) == ["QUIT :bye"]
        server.settimeout(DEADLINE)
        assert server.recv(100) == b"", "our side was shut for writing after QUIT"
        server.close()
    finally:
        stop_thread(thread)
        listener.close()


def test_a_registration_that_never_completes_times_out_and_reconnects(monkeypatch):
    monkeypatch.setattr(net, "REGISTRATION_TIMEOUT", 0.3)
    monkeypatch.setattr(net, "POLL_SECONDS", 0.05)
    listener = socket.create_server(("127.0.0.1", 0))
    sender = net.Sender()
    thread, events = start_thread(listener, sender=sender, first_retry_delay=0.05)
    try:
        server, _ = listener.accept()
        next_event(events, net.Connected)
        server.sendall(b":srv NOTICE * :hello\r\n")  # talk, but never welcome
        sender.send("NICK alice")
        disconnected = next_event(events, net.Disconnected)
        assert "did not complete our registration" in disconnected.reason
        assert select.select([listener], [], [], DEADLINE)[0], "the usual reconnection follows"
        again, _ = listener.accept()
        next_event(events, net.Connected)
        again.sendall(b":srv 001 alice :Welcome\r\n")
        next_event(events, net.Received)
        sender.send("NICK alice")  # after the welcome (a /nick): no deadline starts
        assert read_lines(again, 1) == ["NICK alice"]
        assert select.select([again], [], [], 2 * net.REGISTRATION_TIMEOUT)[0] == []  # not cut
        again.close()
        server.close()
    finally:
        stop_thread(thread)
        listener.close()


def test_retry_now_cuts_the_wait_short():
    listener = socket.create_server(("127.0.0.1", 0))
    thread, events = start_thread(listener, first_retry_delay=60)
    try:
        listener.accept()[0].close()
        next_event(events, net.Disconnected)
        retrying = next_event(events, net.Retrying)
        assert retrying.due - time.monotonic() > 30  # jitter shortens a wait by a quarter at most
        thread.retry_now()
        assert select.select([listener], [], [], DEADLINE)[0], "retry_now() connects at once"
        listener.accept()[0].close()
    finally:
        stop_thread(thread)
        listener.close()


def test_backoff_is_capped_and_jittered(monkeypatch):
    waits = []
    thread = net.NetworkThread("127.0.0.1", 1, queue.Queue(), net.Sender())
    monkeypatch.setattr(thread._wake, "wait_for", lambda predicate, timeout=None: waits.append(timeout) or True)
    delay = 1.0
    for attempt in range(1, 10):
        thread._wait(delay, attempt)
        delay = min(delay * 2, net.MAX_RETRY_DELAY)
    timed = [wait for wait in waits if wait is not None]
    assert max(timed) <= net.MAX_RETRY_DELAY
    assert min(timed[-4:]) >= net.MAX_RETRY_DELAY * (1 - net.RETRY_JITTER)
    assert len(set(timed)) == len(timed)  # jittered: no two alike


def test_a_full_event_queue_holds_the_reader_back_and_stop_still_ends_it():
    listener = socket.create_server(("127.0.0.1", 0))
    events: queue.Queue[net.Event] = queue.Queue(maxsize=5)
    thread, _ = start_thread(listener, events=events)
    try:
        server, _ = listener.accept()
        server.sendall(b":srv NOTICE * :flood\r\n" * 1000)
        wait_until(events.full, "the event queue to fill")
        assert events.qsize() == 5  # bounded: the reader waits instead of growing it
        assert thread.is_alive()
        server.close()
    finally:
        stop_thread(thread)  # never stuck on the full queue
        listener.close()


def test_drain_takes_at_most_a_pass_worth():
    events: queue.Queue[net.Event] = queue.Queue()
    for _ in range(10):
        events.put(net.Connected())
    assert len(list(net.drain(events, limit=4))) == 4
    assert len(list(net.drain(events))) == 6


def test_a_queue_full_of_paced_lines_ends_the_connection_with_a_sentence():
    listener = socket.create_server(("127.0.0.1", 0))
    sender = net.Sender(burst=1, rate=0.01, limit=10_000)  # the server reads; our pace holds lines
    thread, events = start_thread(listener, sender=sender, first_retry_delay=30)
    try:
        server, _ = listener.accept()
        next_event(events, net.Connected)
        while sender.send("PRIVMSG #chat :" + "x" * 400):
            pass
        assert "KB waiting to be sent" in next_event(events, net.Disconnected).reason
        server.close()
    finally:
        stop_thread(thread)
        listener.close()


def _waiting_for_the_terminal(wakeup, terminal_fd):
    """The UI's wait for a key, in a thread, with a timeout far past the test's deadline:
    only a ring (or the terminal) can end it in time."""
    woken = []
    waiter = threading.Thread(target=lambda: woken.append(wakeup.wait(terminal_fd, 600)), daemon=True)
    waiter.start()
    return waiter, woken


def test_a_put_on_the_event_queue_wakes_the_ui_waiting_for_a_key():
    events = net.EventQueue()
    terminal_read, terminal_write = os.pipe()  # stands for the terminal: no key comes
    try:
        for _ in range(2):  # a ring is used up by the wait it ends; the next put rings again
            waiter, woken = _waiting_for_the_terminal(events.wakeup, terminal_read)
            events.put(net.Connected())
            waiter.join(DEADLINE)
            assert not waiter.is_alive(), "the wait for a key went on after the put"
            assert woken == [False]  # woken by the queue, not by a key
            assert len(list(net.drain(events))) == 1
        events.put(net.Connected())
        os.write(terminal_write, b"k")
        assert events.wakeup.wait(terminal_read, 0) is True  # a key: readable (the ring read too)
        os.read(terminal_read, 1)
        assert events.wakeup.wait(terminal_read, 0) is False  # nothing left to wake for
    finally:
        os.close(terminal_read)
        os.close(terminal_write)


def test_a_ring_that_comes_while_the_ui_reads_the_pipe_leaves_the_next_ring_working(monkeypatch):
    # The network thread rings between the UI clearing the flag and reading the pipe: the
    # read swallowed that ring's byte with the flag left set, and every later ring was lost.
    wakeup = net.Wakeup()
    terminal_read, terminal_write = os.pipe()  # stands for the terminal: no key comes
    real_read = os.read
    rings_during_read = [wakeup.ring]

    def read_with_a_ring_first(fd, size):
        while rings_during_read:
            rings_during_read.pop()()  # the network thread's ring, at the worst moment
        return real_read(fd, size)

    try:
        wakeup.ring()
        monkeypatch.setattr(os, "read", read_with_a_ring_first)
        assert wakeup.wait(terminal_read, 0) is False
        monkeypatch.setattr(os, "read", real_read)
        wakeup.ring()  # a later event: the UI must wake for it
        waiter, woken = _waiting_for_the_terminal(wakeup, terminal_read)
        waiter.join(DEADLINE)
        assert not waiter.is_alive(), "a ring after the race did not wake the UI"
        assert woken == [False]  # woken by the ring, not by a key
    finally:
        os.close(terminal_read)
        os.close(terminal_write)
