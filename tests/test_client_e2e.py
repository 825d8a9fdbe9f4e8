"""End to end: the real client in a pseudo-terminal, against the real server, with raw peers.

Each test starts ``python -m curses_client`` in a pty (see client_harness.Terminal), reads
the screen through pyte, and waits for conditions with deadlines: no fixed sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import pytest

from ircchat.network import ChatServer
from ircchat.state import ServerConfig
from client_harness import free_port, peers, run_client, terminals  # noqa: F401  (fixtures)
from curses_client.width import text_width

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]

LEFT, RIGHT, HOME, END = "\x1bOD", "\x1bOC", "\x1bOH", "\x1bOF"  # as xterm sends in keypad mode
UP, PAGE_UP, PAGE_DOWN = "\x1bOA", "\x1b[5~", "\x1b[6~"
CTRL_LEFT, CTRL_RIGHT = "\x1b[1;5D", "\x1b[1;5C"


@pytest.fixture
def server(start_server):
    """The real server (conftest's ``start_server``), without flood control: peers here send
    bursts of lines, and waiting out the server's rate limit would only slow the tests down."""
    return start_server(flood_rate=0)




def joined_client(terminals, port, nick="alice", rows=24, cols=80, extra=()):
    terminal = terminals(["--port", str(port), "--username", nick, *extra], rows, cols)
    terminal.wait_for("You joined #chat")
    return terminal


def bottom_right_is_empty(terminal):
    screen = terminal.screen
    return screen.buffer[screen.lines - 1][screen.columns - 1].data == " "


def privmsg(peer, text=None):
    return peer.expect(lambda m: m.command == "PRIVMSG" and (text is None or m.params[-1] == text),
                       f"PRIVMSG {text!r}")


def test_username_prompt_validates_locally_and_comes_back_on_nick_in_use(server, terminals, peers):
    port = server.address[1]
    peers(port, "bob")
    terminal = terminals(["--port", str(port)])
    terminal.wait_for("Username:")
    terminal.type("no!\r")
    terminal.wait_for("'no!' is not a valid name")
    terminal.type("bob\r")
    terminal.wait_for("Nickname is already in use. Choose another name.")
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("Username:"), "the name prompt again")
    terminal.type("alice\r")
    terminal.wait_for("You joined #chat")
    terminal.wait_screen(lambda: "| alice | 2:#chat | 2 online | online" in terminal.text(), "status line")
    assert bottom_right_is_empty(terminal)


def test_chatting_both_ways(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    terminal.wait_for("bob joined #chat")
    bob.send("PRIVMSG", "#chat", "hello alice")
    bob.send("PRIVMSG", "#chat", "\x01ACTION waves\x01")
    bob.send("PRIVMSG", "alice", "a secret")
    terminal.wait_for("<bob> hello alice")
    terminal.wait_for("* bob waves")
    # the private message opened window 3: the status line lists it as active, Alt-3 shows it
    terminal.wait_screen(lambda: terminal.lines()[-2].rstrip().endswith("| Act: 3"), "window 3 in the activity list")
    assert "a secret" not in terminal.text()
    terminal.type("\x1b3")
    terminal.wait_for("*bob* a secret")
    terminal.wait_screen(lambda: "| 3:bob |" in terminal.text() and "Act:" not in terminal.text(), "window 3 seen")
    terminal.type("\x1b2")
    terminal.wait_for("<bob> hello alice")
    terminal.type("hi bob\r")
    privmsg(bob, "hi bob")
    terminal.wait_for("<alice> hi bob")
    terminal.type("/me smiles\r")
    privmsg(bob, "\x01ACTION smiles\x01")
    terminal.type("/msg bob just you\r")
    message = privmsg(bob, "just you")
    assert message.params[0] == "bob"
    terminal.type("\x0e")  # Ctrl-N: the next window, bob's
    terminal.wait_for("-> *bob* just you")
    terminal.type("\x10")  # Ctrl-P: back to the room
    terminal.type("//slash text\r")
    privmsg(bob, "/slash text")
    terminal.type("/users\r")
    terminal.wait_for("2 in #chat: alice, bob")
    terminal.type("/dance\r")
    terminal.wait_for("Unknown command /dance")
    terminal.type("/nick alicia\r")
    bob.expect(lambda m: m.command == "NICK" and m.params[0] == "alicia", "NICK alicia")
    terminal.wait_for("You are now known as alicia")
    bob.send("QUIT", "off to lunch")
    terminal.wait_for("bob quit (Quit: off to lunch)")


def test_line_editing_keys_history_and_completion(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    terminal.wait_for("bob joined")
    terminal.type("helo" + LEFT + "l" + HOME + "X" + END + "!\r")
    privmsg(bob, "Xhello!")
    terminal.type("one two three\x17\x17four\r")  # Ctrl-W twice
    privmsg(bob, "one four")
    terminal.type("junk\x15kept\x01\x0b" + "gone\r")  # Ctrl-U, Ctrl-A, Ctrl-K
    privmsg(bob, "gone")
    terminal.type(UP + UP + "\r")
    privmsg(bob, "one four")
    terminal.type("bo\tthere\r")
    privmsg(bob, "bob: there")
    terminal.type("/ms\tbob x\r")
    privmsg(bob, "x")
    terminal.type("日本\x7f語\r")
    privmsg(bob, "日語")
    terminal.type("one two" + CTRL_LEFT + "X" + CTRL_RIGHT + "Y\r")  # word jumps
    privmsg(bob, "one XtwoY")
    terminal.type("left\x1b[D\x1b[DX\r")  # CSI arrows, in case the terminal sends those
    privmsg(bob, "leXft")
    terminal.type("keypad\x1bOM")  # keypad Enter (KEY_ENTER)
    privmsg(bob, "keypad")
    terminal.type("newline\n")
    privmsg(bob, "newline")
    terminal.type("abc" + HOME + "\x1b[3~\r")  # Delete
    privmsg(bob, "bc")


def test_long_input_scrolls_sideways(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port, cols=40)
    bob = peers(port, "bob")
    text = "".join(f"{n:02d}-" for n in range(40))  # 120 characters
    terminal.type(text)
    terminal.wait_screen(lambda: terminal.lines()[-1].rstrip().endswith("38-39-"), "the end of the input")
    assert bottom_right_is_empty(terminal)
    terminal.type(HOME)
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("> 00-01-"), "the start of the input")
    terminal.type("\r")
    privmsg(bob, text)


def test_bracketed_paste_sends_nothing_until_enter(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    terminal.wait_for("bob joined")
    terminal.type("\x1b[200~first line\rsecond line\x1b[201~")
    terminal.wait_for("first line\u21b5second line")
    # local echo and sending happen together: no echo in the pane means nothing was sent
    assert "<alice> first" not in terminal.text()
    terminal.type("\r")
    privmsg(bob, "first line")
    privmsg(bob, "second line")
    terminal.wait_for("<alice> second line")


def test_resizes_rewrap_keep_input_and_survive_tiny_sizes(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    long_text = "lorem ipsum dolor sit amet " * 4 + "THE-END"
    bob.send("PRIVMSG", "#chat", long_text)
    terminal.wait_for("THE-END")
    terminal.type("draft text")
    for rows, cols in ((10, 40), (30, 120), (3, 10), (1, 1), (6, 20), (15, 33), (24, 80)):
        terminal.resize(rows, cols)
        if rows < 4 or cols < 20:
            if cols > 1:
                terminal.wait_for("Terminal too small"[: cols - 1])
            else:
                terminal.pump(0.2)  # a 1x1 terminal shows nothing; the check is that it lives on
            continue
        terminal.wait_screen(lambda: terminal.lines()[-1].startswith("> draft text"), f"input kept at {rows}x{cols}")
        terminal.wait_screen(lambda: "THE-END" in terminal.text() or rows < 8, f"message at {rows}x{cols}")
        assert bottom_right_is_empty(terminal)
        assert all(len(line) == cols for line in terminal.lines())
    assert terminal.process.isalive()
    terminal.resize(12, 40)
    terminal.wait_screen(lambda: sum("lorem" in line for line in terminal.lines()) >= 2, "the message re-wrapped")
    continuation = [line for line in terminal.lines() if line.startswith(" " * 6) and line.strip()]
    assert continuation, "wrapped rows hang under the text"
    terminal.type(" more\r")
    privmsg(bob, "draft text more")


def test_scrollback_keeps_the_reader_in_place(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port, rows=12)
    bob = peers(port, "bob")
    for number in range(40):
        bob.send("PRIVMSG", "#chat", f"line {number:02d}")
    terminal.wait_for("line 39")
    terminal.type(PAGE_UP)
    terminal.wait_for("more below")
    terminal.wait_screen(lambda: "line 39" not in terminal.text(), "line 39 scrolled out")
    pane_before = terminal.lines()[:-2]
    bob.send("PRIVMSG", "#chat", "a new message")
    terminal.wait_screen(lambda: "10 more below" in terminal.text() or "11 more below" in terminal.text(),
                         "the count to go up")
    assert terminal.lines()[:-2] == pane_before
    terminal.resize(12, 50)  # a resize while scrolled back keeps the same place
    terminal.wait_screen(lambda: len(terminal.lines()[0]) == 50 and "more below" in terminal.text(), "resized")
    terminal.wait_screen(lambda: terminal.lines()[:-2] == [line[:50] for line in pane_before], "the same rows")
    terminal.type(PAGE_UP + PAGE_UP + PAGE_UP + PAGE_UP + PAGE_UP)
    terminal.wait_screen(lambda: "You joined #chat." in terminal.lines()[0], "the top of the history")
    for _ in range(10):
        terminal.type(PAGE_DOWN)
    terminal.wait_screen(lambda: "a new message" in terminal.text() and "more below" not in terminal.text(),
                         "back at the bottom")


def test_wide_characters_take_two_cells_and_wrap_cleanly(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port, cols=30)
    bob = peers(port, "bob")
    message = "漢字かな交じり文と絵文字😀😀😀の長い行です。終"
    bob.send("PRIVMSG", "#chat", message)
    terminal.wait_for("終")
    lines = terminal.lines()
    first = next(index for index, line in enumerate(lines) if "<bob>" in line)
    rows = lines[first : first + 4]
    assert rows[0].startswith(" ".join(rows[0].split()[:2]))
    shown = rows[0].split("<bob> ", 1)[1].strip() + "".join(row.strip() for row in rows[1:])
    assert shown.startswith(message)  # every character, in order, none lost at a row's edge
    assert all(text_width(line) == 30 for line in lines)  # cells, as the terminal counts them
    terminal.type("日本語テキスト\r")
    privmsg(bob, "日本語テキスト")


def cells_of(terminal, y):
    """Row ``y`` cell by cell (a wide character's second cell is "")."""
    return [terminal.screen.buffer[y][x].data for x in range(terminal.screen.columns)]


def test_emoji_sequences_take_the_cells_we_measure_and_what_follows_lands_there(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    family, heart, thumb, keycap = "👨\u200d👩\u200d👧", "❤\ufe0f", "👍🏽", "1\ufe0f\u20e3"
    # (no flag: pyte's wcwidth counts each regional indicator as 2 cells, the C library as 1,
    # so pyte cannot stand for a terminal there; flags are drawn as they are)
    message = f"a{family}b {heart}c {thumb}d {keycap}e end"
    bob.send("PRIVMSG", "#chat", message)
    terminal.wait_screen(lambda: any("<bob>" in line and line.rstrip().endswith("end") for line in terminal.lines()),
                         "bob's line, to its end")
    y = next(index for index, line in enumerate(terminal.lines()) if "<bob>" in line)
    row = cells_of(terminal, y)
    start = next(x for x in range(len(row)) if "".join(row[x:x + 6]) == "<bob> ") + 6
    for letter in "abcde":  # each where our width puts it: nothing before it took more or less
        column = start + text_width(message[:message.index(letter)])
        assert row[column] == letter, f"{letter!r} at column {column}: {row}"
    assert "".join(row[start + text_width(message) - 3:]).rstrip() == "end"
    # the input line: the cursor stands where our width says, after an emoji sequence
    terminal.type(f"{thumb}{family}x")
    terminal.wait_screen(lambda: "x" in terminal.lines()[-1], "the typed line")
    input_row = cells_of(terminal, terminal.screen.lines - 1)
    assert input_row[2 + 4] == "x"  # "> ", then two clusters of two cells each
    assert terminal.screen.cursor.x == 2 + 5
    terminal.type("\r")
    privmsg(bob, f"{thumb}{family}x")


def test_escape_sequences_from_the_network_are_neutralised(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    bob.send("PRIVMSG", "#chat", "\x1b]0;pwned\x07\x1b[2J\x1b[H\x1b[31mred\x1b[0m \x1b[10;10Hmoved \x9b2J\x07bell END")
    terminal.wait_for("END")
    assert b"pwned" not in terminal.raw and b"\x1b[10;10H" not in terminal.raw
    assert "pwned" not in terminal.screen.title
    assert "<bob> red moved" in terminal.text()
    assert "You joined #chat" in terminal.text()  # the screen was not cleared


def test_reconnects_after_a_server_restart(terminals, peers):
    port = free_port()
    first = ChatServer(ServerConfig(), "127.0.0.1", port)
    first.start()
    terminal = joined_client(terminals, port, extra=("--retry-delay", "0.2"))
    first.shutdown()
    terminal.wait_for("Lost the connection")
    terminal.wait_for("disconnected, retry")
    second = ChatServer(ServerConfig(), "127.0.0.1", port)
    second.start()
    try:
        terminal.wait_screen(lambda: terminal.text().count("You joined #chat") == 2, "the client to rejoin")
        bob = peers(port, "bob")
        terminal.wait_for("bob joined")
        terminal.type("back again\r")
        privmsg(bob, "back again")
    finally:
        second.shutdown()


def test_exit_quits_restores_the_terminal_and_others_see_it(server, terminals, peers):
    port = server.address[1]
    bob = peers(port, "bob")
    terminal = joined_client(terminals, port)
    bob.expect(lambda m: m.command == "JOIN" and m.nick == "alice", "alice's JOIN")
    terminal.type("/exit\r")
    assert terminal.wait_exit() == 0
    quit_message = bob.expect(lambda m: m.command == "QUIT" and m.nick == "alice", "alice's QUIT")
    assert quit_message.params == ("Quit: Leaving",)
    assert b"\x1b[?2004l" in terminal.raw  # bracketed paste switched off again
    assert terminal.raw.rfind(b"\x1b[?1049l") > terminal.raw.rfind(b"\x1b[?1049h")  # left the alt screen


def test_ctrl_c_quits_cleanly(server, terminals, peers):
    port = server.address[1]
    bob = peers(port, "bob")
    terminal = joined_client(terminals, port)
    terminal.type("\x03")
    assert terminal.wait_exit() == 130
    bob.expect(lambda m: m.command == "QUIT" and m.params == ("Quit: Interrupted",), "alice's QUIT")
    assert b"Traceback" not in terminal.raw
    assert terminal.raw.rfind(b"\x1b[?1049l") > terminal.raw.rfind(b"\x1b[?1049h")


def test_unreachable_server_is_one_sentence_and_nonzero_exit():
    port = free_port()
    result = run_client("--port", str(port), "--username", "alice")
    assert result.returncode == 1
    assert result.stderr.strip() == f"Cannot connect to the chat server at 127.0.0.1:{port}: Connection refused."
    assert result.stdout == ""


def test_exit_works_while_the_server_is_away(terminals):
    port = free_port()
    chat = ChatServer(ServerConfig(), "127.0.0.1", port)
    chat.start()
    terminal = joined_client(terminals, port, extra=("--retry-delay", "5"))
    chat.shutdown()
    terminal.wait_for("Lost the connection")
    terminal.wait_for("disconnected, retry #1")
    terminal.type("/quit\r")
    assert terminal.wait_exit() == 0


def test_exit_at_the_name_prompt(server, terminals):
    terminal = terminals(["--port", str(server.address[1])])
    terminal.wait_for("Username:")
    terminal.type("/exit\r")
    assert terminal.wait_exit() == 0


def test_not_a_terminal_is_one_sentence(server):
    result = run_client("--port", str(server.address[1]), "--username", "alice")
    assert result.returncode == 1
    assert result.stderr.strip() == "Cannot start the chat screen: standard input and output must be a terminal."


def test_sigterm_restores_the_terminal_and_quits(server, terminals, peers):
    port = server.address[1]
    bob = peers(port, "bob")
    terminal = joined_client(terminals, port)
    os.kill(terminal.process.pid, signal.SIGTERM)  # the client this test started, by its pid
    assert terminal.wait_exit() == 128 + signal.SIGTERM
    bob.expect(lambda m: m.command == "QUIT" and m.params == ("Quit: Terminated",), "alice's QUIT")
    assert terminal.raw.rfind(b"\x1b[?1049l") > terminal.raw.rfind(b"\x1b[?1049h")


def test_nick_colours_on_a_colour_terminal_and_none_on_a_monochrome_one(server, terminals, peers):
    port = server.address[1]
    colour = terminals(["--port", str(port), "--username", "alice"])
    mono = terminals(["--port", str(port), "--username", "carol"], term="xterm-mono")
    colour.wait_for("You joined #chat")
    mono.wait_for("You joined #chat")
    bob = peers(port, "bob")
    bob.send("PRIVMSG", "#chat", "colourful?")
    colour.wait_for("<bob> colourful?")
    mono.wait_for("<bob> colourful?")
    bob_cell = next(cell for line in colour.screen.buffer.values() for cell in line.values() if cell.data == "b"
                    and cell.bold)
    assert bob_cell.fg != "default"
    # No colour escapes at all: no SGR with a foreground 30-38 (cursor moves like ESC[3B are fine).
    assert not re.search(rb"\x1b\[(?:[0-9]*;)*3[0-8](?:;[0-9]*)*m", mono.raw)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads CPU time from /proc")
def test_an_idle_client_sleeps(server, terminals):
    terminal = joined_client(terminals, server.address[1])

    def cpu_seconds():
        fields = open(f"/proc/{terminal.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    before, start = cpu_seconds(), time.monotonic()
    while time.monotonic() - start < 3.0:  # a measuring window, not a synchronisation
        terminal.pump(0.5)
    used = cpu_seconds() - before
    assert used < 0.3, f"the idle client used {used:.2f}s of CPU in 3s: a busy loop?"


def page_up_until(terminal, needle, presses=40):
    """Press PgUp until ``needle`` is on the screen (each press waits briefly for it)."""
    for _ in range(presses):
        terminal.type(PAGE_UP)
        try:
            terminal.wait_for(needle, timeout=0.3)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{needle!r} never showed: {terminal.text()}")


def test_history_is_replayed_apart_from_live_chat_and_scrolling_up_fetches_older(tmp_path, terminals, peers):
    from ircchat.history import SqliteHistory

    store = SqliteHistory(str(tmp_path / "history.sqlite3"))
    server = ChatServer(ServerConfig(flood_rate=0, replay_lines=5), "127.0.0.1", 0, history=store)
    server.start()
    try:
        port = server.address[1]
        bob = peers(port, "bob")
        watcher = peers(port, "watcher")
        for i in range(30):
            bob.send("PRIVMSG", "#chat", f"history line {i:02d}")
        privmsg(watcher, "history line 29")  # all stored and delivered before alice comes
        terminal = joined_client(terminals, port, rows=12)
        terminal.wait_for("live chat from here")
        text = terminal.text()
        assert "history line 25" in text and "history line 29" in text and "history line 24" not in text
        bob.send("PRIVMSG", "#chat", "a live line")
        terminal.wait_for("a live line")
        screen = terminal.screen

        def bold_bob(row_text_part):
            y = next(i for i, line in enumerate(terminal.lines()) if row_text_part in line)
            x = terminal.lines()[y].index("<bob>") + 1
            return screen.buffer[y][x].bold

        assert bold_bob("a live line") and not bold_bob("history line 29")  # replay is dimmed
        # Up past the oldest line: the page before it is fetched and put on top, the view
        # staying where it is; further up, the client says where the history starts.
        page_up_until(terminal, "history line 00")
        page_up_until(terminal, "This is the start of #chat's history.")
    finally:
        server.shutdown()
        store.close()
