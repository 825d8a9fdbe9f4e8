"""Slash-command parsing (curses_client.commands): pure, fast."""

import pytest

from curses_client.commands import (
    Action, BadUsage, ChangeNick, ListUsers, PrivateMessage, Quit, Say, ShowHelp, Unknown, parse_input,
)


@pytest.mark.parametrize(("line", "parsed"), [
    ("hello", Say("hello")),
    ("//etc is a dir", Say("/etc is a dir")),
    ("/me waves", Action("waves")),
    ("/msg bob hi there", PrivateMessage("bob", "hi there")),
    ("/nick alice_2", ChangeNick("alice_2")),
    ("/users", ListUsers()),
    ("/help", ShowHelp()),
    ("/exit", Quit("Leaving")),
    ("/quit gone fishing", Quit("gone fishing")),
    ("/QUIT", Quit("Leaving")),
    ("/dance", Unknown("dance")),
])
def test_parse(line, parsed):
    assert parse_input(line) == parsed


@pytest.mark.parametrize("line", ["/msg", "/msg bob", "/msg bob   ", "/me", "/nick", "/nick a!", "/nick ab"])
def test_bad_usage_says_how(line):
    parsed = parse_input(line)
    assert isinstance(parsed, BadUsage) and parsed.message.startswith("Usage: /")
