"""The client's moderation commands (issue 11) in a pty against our real server.

Two real clients in pseudo-terminals: alice, who becomes a server operator with ``/oper``
(the password typed at the masked prompt), and bob, who is opped, voiced, banned, kicked and
invited. Every reply and refusal must read as one sentence: no pane line shows a raw numeric.
"""

from __future__ import annotations

import re
import sys

import pytest
from client_harness import terminals  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]

OPER_PASSWORD = "hunter2"
UP = "\x1bOA"
# What a numeric shown raw would look like: a three-digit word (``482 bob #chat ...``,
# ``!! 404``); no sentence the client writes has one.
RAW_NUMERIC = re.compile(r"(?<![\d:.])\b\d{3}\b(?![\d:.])")


def status(terminal):
    return terminal.lines()[-2]


def no_raw_numerics(terminal):
    shown = [line for line in terminal.lines() if RAW_NUMERIC.search(line)]
    assert not shown, f"raw numerics on screen: {shown}\n{terminal.text()}"


def client(terminals, port, nick):
    # tall enough that nothing this test waits for scrolls off the top
    terminal = terminals(["--port", str(port), "--username", nick], rows=50)
    terminal.wait_for("You joined #chat")
    return terminal


def test_moderation_commands_against_the_real_server(start_server, terminals):
    # no password back-off: bob's wrong /oper would hold back alice's, from the same address
    port = start_server(opers=(("root", OPER_PASSWORD),), flood_rate=0, password_backoff=0).address[1]
    alice = client(terminals, port, "alice")
    bob = client(terminals, port, "bob")
    alice.wait_screen(lambda: "| 2 online |" in status(alice), "bob in the count")

    # Not an operator yet: refusals are sentences.
    alice.type("/op bob\r")
    alice.wait_for("You are not a room operator in #chat.")
    alice.type("/mode +m\r")
    bob.type("/kick alice go away\r")
    bob.wait_for("You are not a room operator in #chat.")
    bob.type("/oper nobody\r")
    bob.wait_screen(lambda: bob.lines()[-1].startswith("Operator password:"), "bob's masked prompt")
    bob.type("guess\r")
    bob.wait_screen(lambda: "password was refused" in bob.text() or "no operator entry" in bob.text(),
                    "the /oper refusal")
    no_raw_numerics(alice)
    no_raw_numerics(bob)

    # /oper with the password at the masked prompt: never on screen, never in the history.
    alice.type("/oper root\r")
    alice.wait_screen(lambda: alice.lines()[-1].startswith("Operator password:"), "the masked prompt")
    alice.type(OPER_PASSWORD)
    alice.wait_screen(lambda: alice.lines()[-1].startswith("Operator password: " + "*" * len(OPER_PASSWORD)),
                      "the password shown as stars")
    alice.type("\r")
    alice.wait_for("You are now an IRC operator.")
    alice.type(UP)  # the last line in the history is /oper's, not the password
    alice.wait_screen(lambda: alice.lines()[-1].startswith("> /oper root"), "the history without the password")
    alice.type("\x15")  # Ctrl-U: clear the input line

    # Room operator commands, each seen by both.
    alice.type("/op alice\r")
    alice.wait_for("alice set mode +o alice on #chat")
    alice.type("/op bob\r")
    bob.wait_for("alice set mode +o bob on #chat")
    alice.type("/deop bob\r")
    bob.wait_for("alice set mode -o bob on #chat")
    alice.type("/users\r")
    alice.wait_for("2 in #chat: @alice, bob")
    alice.type("/topic moderated today\r")
    bob.wait_for("alice set the topic: moderated today")
    alice.type("/mode +m\r")
    bob.wait_for("alice set mode +m on #chat")
    alice.type("/mode +t\r")  # the topic for operators only
    bob.wait_for("alice set mode +t on #chat")
    bob.type("can I talk?\r")
    bob.wait_screen(lambda: "Cannot send to #chat:" in bob.text(), "the +m refusal")
    alice.type("/voice bob\r")
    bob.wait_for("alice set mode +v bob on #chat")
    bob.type("now I can\r")
    alice.wait_for("<bob> now I can")

    # Ban, kick (one line each side, counts updated), the ban keeps bob out, unban, invite.
    alice.type("/ban bob\r")
    bob.wait_for("alice set mode +b bob!*@* on #chat")
    alice.type("/kick bob enough\r")
    alice.wait_for("bob was kicked from #chat by alice (enough)")
    bob.wait_for("You were kicked from #chat by alice (enough). /join #chat to go back.")
    alice.wait_screen(lambda: "| 1 online |" in status(alice), "alice alone in the count")
    bob.type("/join #chat\r")
    bob.wait_for("Cannot join #chat: you are banned from it.")
    alice.type("/unban bob\r")
    alice.wait_for("alice set mode -b bob!*@* on #chat")
    alice.type("/mode +i\r")  # refused in the default room, with the server's reason
    alice.wait_for("Cannot set mode i on #chat: The default room stays open to everyone")
    alice.type("/invite bob\r")
    alice.wait_for("You invited bob to #chat.")
    bob.wait_for("alice invites you to #chat: /join #chat to accept.")
    bob.type("/join #chat\r")
    alice.wait_screen(lambda: "| 2 online |" in status(alice), "bob back in the count")

    # Away and back; whois.
    bob.type("/away out for lunch\r")
    bob.wait_for("You are now marked as away.")
    alice.type("/whois bob\r")
    alice.wait_for("bob is away: out for lunch")
    alice.wait_screen(lambda: re.search(r"bob is \S+@\S+ \(", alice.text()), "the whois user line")
    bob.type("/away\r")
    bob.wait_for("You are no longer marked as away.")

    # bob, no room operator, tries the room operator's commands.
    refusal = "You are not a room operator in #chat."
    for number, command in enumerate(("/topic mine now", "/ban alice", "/mode -m", "/kick alice bye"), 2):
        bob.type(command + "\r")  # one at a time: lines typed together would be a paste
        bob.wait_screen(lambda count=number: bob.text().count(refusal) >= count, f"{command} refused")
    alice.type("/whois nobody\r")
    alice.wait_for("There is nobody called nobody here.")

    no_raw_numerics(alice)
    no_raw_numerics(bob)
    for terminal in (alice, bob):
        assert OPER_PASSWORD.encode() not in terminal.raw  # never written to the terminal at all
