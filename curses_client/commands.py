"""What a line typed into the input means: text to say, or a slash command. No I/O.

``parse_input(line)`` returns one small frozen dataclass per meaning; the model decides
what to send. ``//text`` is the escape for saying something that starts with a slash.

>>> parse_input("hello")
Say(text='hello')
>>> parse_input("//etc/hosts is a file")
Say(text='/etc/hosts is a file')
>>> parse_input("/msg bob hi there")
PrivateMessage(target='bob', text='hi there')
>>> parse_input("/frobnicate")
Unknown(name='frobnicate')
"""

from __future__ import annotations

from dataclasses import dataclass

from curses_client.irc import NICK_RE

DEFAULT_QUIT_REASON = "Leaving"


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Action:  # /me
    text: str


@dataclass(frozen=True)
class PrivateMessage:  # /msg
    target: str
    text: str


@dataclass(frozen=True)
class ChangeNick:  # /nick
    nick: str


@dataclass(frozen=True)
class ListUsers:  # /users
    pass


@dataclass(frozen=True)
class ShowHelp:  # /help
    pass


@dataclass(frozen=True)
class Quit:  # /exit, /quit
    reason: str = DEFAULT_QUIT_REASON


@dataclass(frozen=True)
class Unknown:
    name: str


@dataclass(frozen=True)
class BadUsage:
    """A known command used wrongly; ``message`` says how to use it."""

    message: str


Parsed = Say | Action | PrivateMessage | ChangeNick | ListUsers | ShowHelp | Quit | Unknown | BadUsage

HELP = (
    ("/msg NAME TEXT", "send a private message"),
    ("/me TEXT", "describe what you are doing"),
    ("/nick NAME", "change your name"),
    ("/users", "who is in the room"),
    ("/help", "this list"),
    ("/exit or /quit [REASON]", "leave the chat"),
    ("//text", "say something that starts with /"),
    ("Keys", "PgUp/PgDn scroll, Up/Down history, Tab completes, Ctrl-A/E/U/K/W edit"),
)


def _quit(args: str) -> Parsed:
    return Quit(args.strip() or DEFAULT_QUIT_REASON)


def _me(args: str) -> Parsed:
    return Action(args) if args.strip() else BadUsage("Usage: /me TEXT")


def _msg(args: str) -> Parsed:
    target, _, text = args.strip().partition(" ")
    if not target or not text.strip():
        return BadUsage("Usage: /msg NAME TEXT")
    return PrivateMessage(target, text)


def _nick(args: str) -> Parsed:
    nick = args.strip()
    if not NICK_RE.match(nick):
        return BadUsage("Usage: /nick NAME (3-20 letters, digits or _)")
    return ChangeNick(nick)


def _users(args: str) -> Parsed:
    return ListUsers()


def _help(args: str) -> Parsed:
    return ShowHelp()


COMMANDS = {
    "exit": _quit,
    "quit": _quit,
    "help": _help,
    "users": _users,
    "msg": _msg,
    "me": _me,
    "nick": _nick,
}
COMMAND_NAMES = tuple(f"/{name}" for name in COMMANDS)  # for Tab completion


def parse_input(line: str) -> Parsed:
    """The meaning of one submitted line (without its line break)."""
    if not line.startswith("/"):
        return Say(line)
    if line.startswith("//"):
        return Say(line[1:])
    name, _, args = line[1:].partition(" ")
    parse = COMMANDS.get(name.lower())
    if parse is None:
        return Unknown(name)
    return parse(args)
