"""End to end, windows: the real client in a pty against a scripted server (exact lines).

Several windows with traffic in each, the switching keys, the activity list in the status
line (plain, bold, highlighted), the bell, the unread marker, search, being kicked, and a
line typed while offline that waits in the input line.
"""

from __future__ import annotations

import sys

import pytest

from curses_client.chatlog import safe_file_name
from client_harness import Terminal, run_client, terminals  # noqa: F401  (terminals: a fixture)
from test_client_scripted import ScriptedServer, scripted  # noqa: F401  (scripted: a fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]

ALT = "\x1b"
CTRL_N, CTRL_P, CTRL_R, CTRL_END = "\x0e", "\x10", "\x12", "\x1b[1;5F"
MARKER = "─── unread ───"


def online(scripted: ScriptedServer, terminals, *extra: str) -> Terminal:
    """alice, registered and in #den with carol (@) and dave (+)."""
    terminal = terminals(["--port", str(scripted.port), "--username", "alice", "--room", "#den", *extra])
    scripted.accept()
    register(scripted)
    terminal.wait_for("You joined #den.")
    return terminal


def register(scripted: ScriptedServer) -> None:
    scripted.expect("USER alice 0 * :alice")
    scripted.send(":irc.test 001 alice :Welcome alice", ":irc.test 005 alice PREFIX=(ov)@+ CHANTYPES=# :ok")
    scripted.expect("PING :curses-client-autojoin")
    scripted.send(":irc.test PONG irc.test :curses-client-autojoin")
    scripted.expect("JOIN :#den")
    scripted.send(":alice!a@h JOIN #den", ":irc.test 353 alice = #den :alice @carol +dave",
                  ":irc.test 366 alice #den :End")


def status(terminal: Terminal) -> str:
    return terminal.lines()[-2]


def activity_cell(terminal: Terminal, number: int):
    """The character cell of window ``number`` in the status line's activity list."""
    line = status(terminal)
    column = line.index("Act:") + line[line.index("Act:"):].index(f" {number}") + 1
    return terminal.screen.buffer[terminal.screen.lines - 2][column]


def test_windows_switching_activity_bell_marker_and_search(scripted, terminals):
    terminal = online(scripted, terminals)
    terminal.wait_screen(lambda: "| alice | 2:#den | 3 online | online" in status(terminal), "the room's status")
    terminal.type("/join #two\r")
    scripted.expect("JOIN :#two")
    scripted.send(":alice!a@h JOIN #two", ":irc.test 353 alice = #two :alice erin", ":irc.test 366 alice #two :End")
    terminal.wait_screen(lambda: "| 3:#two | 2 online" in status(terminal), "the new window shown")
    bells = terminal.raw.count(b"\x07")

    scripted.send(":frank!f@h JOIN #den")  # an event: listed plain
    terminal.wait_screen(lambda: status(terminal).rstrip().endswith("Act: 2"), "window 2 listed")
    assert not activity_cell(terminal, 2).bold
    scripted.send(":carol!c@h PRIVMSG #den :hello all")  # a message: bold
    terminal.wait_screen(lambda: activity_cell(terminal, 2).bold, "window 2 in bold")
    assert not activity_cell(terminal, 2).reverse
    scripted.send(":carol!c@h PRIVMSG #den :alice: look here")  # a mention: highlighted, and the bell
    terminal.wait_screen(lambda: activity_cell(terminal, 2).reverse, "window 2 highlighted")
    terminal.wait_screen(lambda: terminal.raw.count(b"\x07") == bells + 1, "one bell for the mention")
    scripted.send(":erin!e@h PRIVMSG alice :a private word")  # a private message: a window, highlighted
    terminal.wait_screen(lambda: status(terminal).rstrip().endswith("Act: 2 4"), "window 4 listed")
    terminal.wait_screen(lambda: activity_cell(terminal, 4).reverse, "window 4 highlighted")
    terminal.wait_screen(lambda: terminal.raw.count(b"\x07") == bells + 2, "one bell for the private message")
    scripted.send(":erin!e@h PRIVMSG #two :here in two")  # the window shown: no activity, no bell
    terminal.wait_screen(lambda: "<erin> here in two" in terminal.text() and "Act: 2 4" in status(terminal),
                         "the line shown, the list unchanged")
    assert "hello all" not in terminal.text()
    assert terminal.raw.count(b"\x07") == bells + 2
    scripted.send(":erin!e@h PRIVMSG #two :alice, still there?")  # a mention where you look: the bell too
    terminal.wait_for("<erin> alice, still there?")
    terminal.wait_screen(lambda: terminal.raw.count(b"\x07") == bells + 3, "the bell for a mention in view")

    terminal.type(ALT + "2")  # Alt-2: the room, with the marker above what came while away
    # the status line is drawn after the pane: wait for it, not only for the pane's last line
    terminal.wait_screen(lambda: status(terminal).rstrip().endswith("Act: 4") and "| 2:#den | 4 online" in status(terminal),
                         "window 2 shown, 4 left in the list")
    lines = [line.strip() for line in terminal.lines()]
    marker = lines.index(MARKER)
    assert "frank joined #den" in lines[marker + 1] and "You joined #den." in lines[marker - 1]
    assert "<carol> alice: look here" in lines[marker + 3]
    terminal.type(CTRL_N)  # Ctrl-N: the next window
    terminal.wait_screen(lambda: "| 3:#two |" in status(terminal), "window 3")
    assert MARKER not in terminal.text()  # nothing came while away
    terminal.type(CTRL_N)
    terminal.wait_for("*erin* a private word")
    terminal.type(CTRL_N + CTRL_N)  # round to the server window, then on to #den
    terminal.wait_screen(lambda: "| 2:#den |" in status(terminal), "back in window 2")
    assert MARKER not in terminal.text()  # read now
    terminal.type(CTRL_P)
    terminal.wait_for("Welcome alice")  # the server window holds the welcome
    terminal.type("/window 2\r")
    terminal.wait_screen(lambda: "| 2:#den |" in status(terminal), "/window 2")

    for number in range(30):  # enough to push the first lines out of the pane
        scripted.send(f":dave!d@h PRIVMSG #den :filler {number:02d}")
    terminal.wait_for("filler 29")
    terminal.type("/search HELLO\r")
    terminal.wait_screen(lambda: "found 'HELLO'" in status(terminal) and "more below" in status(terminal),
                         "the search said in the status line")
    assert "<carol> hello all" in terminal.text() and "filler 29" not in terminal.text()  # drawn before the status
    pane = terminal.lines()[:-2]
    terminal.type(CTRL_R)  # no older match: said in the status line, the pane stays
    terminal.wait_screen(lambda: "no older 'HELLO'" in status(terminal), "no older match")
    assert terminal.lines()[:-2] == pane
    terminal.type(CTRL_END)
    terminal.wait_screen(lambda: "more below" not in status(terminal), "back at the newest line")
    assert terminal.lines()[-3].rstrip().endswith("filler 29")


def test_no_bell_and_no_mouse_flags(scripted, terminals):
    terminal = online(scripted, terminals, "--no-bell", "--no-mouse")
    scripted.send(":erin!e@h PRIVMSG alice :psst", ":carol!c@h PRIVMSG #den :alice?")
    terminal.wait_for("<carol> alice?")
    terminal.wait_screen(lambda: "Act: 3" in status(terminal), "the private window listed")
    assert b"\x07" not in terminal.raw
    assert b"1000h" not in terminal.raw  # mouse reporting never switched on: selection stays the terminal's


def test_kick_forced_part_and_modes_update_the_window(scripted, terminals):
    terminal = online(scripted, terminals)
    terminal.type("/users\r")
    scripted.expect("NAMES :#den")
    scripted.send(":irc.test 353 alice = #den :alice @carol +dave", ":irc.test 366 alice #den :End")
    terminal.wait_for("3 in #den: alice, @carol, +dave")
    scripted.send(":carol!c@h MODE #den +o alice")
    terminal.wait_for("carol set mode +o alice on #den")
    terminal.type("/users\r")
    scripted.expect("NAMES :#den")
    scripted.send(":irc.test 366 alice #den :End")  # no new list: what the client knows is shown
    terminal.wait_for("3 in #den: @alice, @carol, +dave")
    terminal.type("/kick dave too loud\r")
    scripted.expect("KICK #den dave :too loud")
    scripted.send(":alice!a@h KICK #den dave :too loud")
    terminal.wait_for("dave was kicked from #den by alice (too loud)")
    terminal.wait_screen(lambda: "| 2 online |" in status(terminal), "two left")
    terminal.type("/ban dave\r")
    scripted.expect("MODE #den +b :dave!*@*")
    scripted.send(":alice!a@h MODE #den +b dave!*@*")
    terminal.wait_for("alice set mode +b dave!*@* on #den")
    terminal.type("/unban *!*@bad.example\r")
    scripted.expect("MODE #den -b :*!*@bad.example")
    terminal.type("/invite erin\r")
    scripted.expect("INVITE erin :#den")
    scripted.send(":irc.test 341 alice erin #den")
    terminal.wait_for("You invited erin to #den.")
    terminal.type("/away lunch\r")
    scripted.expect("AWAY :lunch")
    scripted.send(":irc.test 306 alice :You have been marked as being away")
    terminal.wait_for("You are now marked as away.")
    terminal.type("/oper root\r")
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("Operator password:"), "the masked prompt")
    terminal.type("hunter2")
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("Operator password: *******"), "shown as *")
    terminal.type("\r")
    scripted.expect("OPER root :hunter2")
    scripted.send(":irc.test 464 alice :Password incorrect")
    terminal.wait_screen(lambda: "The password was refused (Password incorrect)." in terminal.text()
                         and terminal.lines()[-1].startswith("> "), "the refusal, and the chat prompt back")
    assert "hunter2" not in terminal.text()
    scripted.send(":irc.test 482 alice #den :You're not channel operator")
    terminal.wait_for("You are not a room operator in #den.")
    scripted.send(":carol!c@h KICK #den alice :bye now")
    terminal.wait_for("You were kicked from #den by carol (bye now). /join #den to go back.")
    terminal.wait_screen(lambda: "online |" not in status(terminal).replace("| online", ""), "no member count")
    terminal.type("anyone?\r")
    terminal.wait_for("You are not in #den: /join #den to go back.")
    terminal.type("/join #den\r")
    scripted.expect("JOIN :#den")
    scripted.send(":alice!a@h JOIN #den", ":irc.test 366 alice #den :End")
    terminal.wait_screen(lambda: "| 1 online |" in status(terminal), "back in")
    scripted.send(":alice!a@h PART #den :forced by the server")
    terminal.wait_for("You left #den (forced by the server)")
    scripted.send(":irc.test 474 alice #den :Cannot join channel (+b)")
    terminal.wait_for("Cannot join #den: you are banned from it.")
    assert "474" not in terminal.text() and "482" not in terminal.text()


def test_a_line_typed_offline_stays_in_the_input_and_a_lost_name_gets_a_variant(scripted, terminals):
    terminal = online(scripted, terminals, "--retry-delay", "0.2")
    assert scripted.conn is not None
    scripted.conn.close()
    scripted.conn = None
    terminal.wait_for("Lost the connection")
    terminal.type("typed while away\r")
    # Waited for whole: the pane's line and the input line may reach the terminal in two writes.
    terminal.wait_screen(lambda: "Not connected: your line stays below" in terminal.text()
                         and terminal.lines()[-1].startswith("> typed while away"), "the line kept offline")
    scripted.accept()
    scripted.framer = type(scripted.framer)()
    scripted.lines.clear()
    scripted.expect("USER alice 0 * :alice")
    scripted.send(":irc.test 433 * alice :Nickname is already in use")  # someone took the name meanwhile
    scripted.expect("NICK :alice_")
    terminal.wait_for("The name alice is taken (Nickname is already in use); trying alice_.")
    scripted.send(":irc.test 001 alice_ :Welcome back")
    scripted.expect("PING :curses-client-autojoin")
    scripted.send(":irc.test PONG irc.test :curses-client-autojoin")
    scripted.expect("JOIN :#den")  # the room it was in
    scripted.send(":alice_!a@h JOIN #den", ":irc.test 366 alice_ #den :End")
    terminal.wait_screen(lambda: terminal.text().count("You joined #den.") == 2 and "| alice_ | 2:#den | 1 online |"
                         in status(terminal) and terminal.lines()[-1].startswith("> typed while away"),
                         "joined again, under the new name, the line still kept")
    terminal.type("\r")
    scripted.expect("PRIVMSG #den :typed while away")


def test_mouse_wheel_scrolls_and_chat_logs_are_kept_per_window(scripted, terminals, tmp_path):
    terminal = online(scripted, terminals, "--log-dir", str(tmp_path / "logs"))
    for number in range(30):
        scripted.send(f":carol!c@h PRIVMSG #den :logged {number:02d}")
    scripted.send(":erin!e@h PRIVMSG alice :psst, for the log", ":evil!e@h PRIVMSG alice :../../escape")
    terminal.wait_for("logged 29")
    assert b"1000h" in terminal.raw  # mouse reporting on (wheel notches)
    terminal.type("\x1b[<64;10;10M")  # a wheel notch up, as xterm reports it (SGR mouse mode)
    terminal.wait_screen(lambda: "more below" in status(terminal), "scrolled up by the wheel")
    assert "logged 29" not in terminal.text()
    terminal.type("\x1b[<65;10;10M")  # and down again
    terminal.wait_screen(lambda: "more below" not in status(terminal), "scrolled down by the wheel")
    terminal.type("/exit\r")
    assert terminal.wait_exit() == 0
    day_files = {path.parent.name: path.read_text(encoding="utf-8") for path in (tmp_path / "logs").glob("*/*.log")}
    server_window = safe_file_name(f"127.0.0.1:{scripted.port}")  # "127.0.0.1_PORT~digest"
    assert set(day_files) == {"#den", "erin", "evil", server_window}
    assert server_window.startswith(f"127.0.0.1_{scripted.port}~")
    assert "<carol> logged 00" in day_files["#den"] and "<carol> logged 29" in day_files["#den"]
    assert "*erin* psst, for the log" in day_files["erin"]
    assert "Welcome alice" in day_files[server_window]


def test_a_log_dir_that_cannot_be_made_is_one_sentence(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_client("--log-dir", str(blocker / "logs"), "--port", "1", "--username", "alice")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"Cannot keep chat logs in {blocker / 'logs'}: Not a directory."
