"""What a line typed into the input means: text to say in the window, or a slash command.

``run(state, line)`` looks the command up in ``COMMANDS`` (one small function each, with its
usage and help) and returns the ``Reaction``: lines to send, lines to show, windows opened or
switched. ``//text`` says something that starts with a slash. No I/O.

>>> split_command("/msg bob hi there")
('msg', 'bob hi there')
>>> split_command("//etc/hosts is a file") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from curses_client.entries import Kind
from curses_client.irc import format_line
from curses_client.model import (
    CTCP_MARK,
    MAX_TEXT_BYTES,
    ChatState,
    Phase,
    Reaction,
    clean_typed,
    is_safe_name,
    is_safe_raw,
    split_text,
)
from curses_client.width import sanitize
from curses_client.windows import Window

DEFAULT_QUIT_REASON = "Leaving"


@dataclass(frozen=True)
class Command:
    run: Callable[[ChatState, str, Reaction], None]
    usage: str
    meaning: str


def split_command(line: str) -> tuple[str, str] | None:
    """A command's name (lower case) and the rest; None if the line is text to say."""
    if not line.startswith("/") or line.startswith("//"):
        return None
    name, _, args = line[1:].partition(" ")
    return name.lower(), args


def is_quit(line: str) -> bool:
    """Whether a line is /exit or /quit (also honoured at the name and password prompts)."""
    parts = split_command(line.strip())
    return parts is not None and parts[0] in ("exit", "quit")


def works_offline(line: str) -> bool:
    """Whether a typed line does something without a connection (else it waits in the input)."""
    parts = split_command(line)
    return parts is not None and (parts[0] in OFFLINE_COMMANDS or parts[0] not in COMMANDS)


def run(state: ChatState, line: str) -> Reaction:
    reaction = Reaction()
    parts = split_command(line)
    if parts is None:
        say(state, line[1:] if line.startswith("//") else line, reaction)
        return reaction
    name, args = parts
    command = COMMANDS.get(name)
    if command is None:
        shown = sanitize(name)
        reaction.error(f"Unknown command /{shown}. Type /help for the list, or //{shown} to send it as text.")
    else:
        command.run(state, args, reaction)
    return reaction


# -- helpers -------------------------------------------------------------------------------------

def _online(state: ChatState, reaction: Reaction) -> bool:
    if not state.registered:
        reaction.error("Not connected yet: wait until the status line says online.")
        return False
    return True


def _words(args: str) -> list[str]:
    return clean_typed(args).split()


def _is_target(name: str, reaction: Reaction) -> bool:
    """Whether a nick or room typed as a target can go into a line as one parameter (else say so)."""
    if not is_safe_name(name):
        reaction.error(f"{sanitize(name)!r} is not a name.")
        return False
    return True


def _room_here(state: ChatState, reaction: Reaction, usage: str) -> Window | None:
    """The room of the active window, for commands that act on "this room"."""
    window = state.current
    if not window.is_room:
        reaction.error(f"{usage}: go to a room's window first (Alt-number or /window N).")
        return None
    return window


def _send_text(state: ChatState, target: str, text: str, reaction: Reaction, window: Window) -> None:
    # said in its own room: as you said it; anywhere else (a /msg): "-> *target*"; shown as
    # the others see it, invisible and bidi characters named (what is sent is as typed)
    private = window.key != state.fold(target) or not window.is_room
    for piece in split_text(text):
        reaction.send.append(format_line("PRIVMSG", target, piece))
        reaction.info(sanitize(piece), Kind.PRIVATE_OUT if private else Kind.OWN, target if private else state.nick or "",
                      window=window)


def say(state: ChatState, text: str, reaction: Reaction) -> None:
    text = clean_typed(text)
    if not text.strip() or not _online(state, reaction):
        return
    window = state.current
    if window.is_room and not window.joined:
        reaction.error(f"You are not in {window.name}: /join {window.name} to go back.")
    elif window.is_room or window.is_query:
        _send_text(state, window.name, text, reaction, window)
    else:
        reaction.error("This is the server window: /join a room, /query someone, or switch with Alt-2.")


# -- talking -------------------------------------------------------------------------------------

def _me(state: ChatState, args: str, reaction: Reaction) -> None:
    text = clean_typed(args)
    window = state.current
    if not text.strip():
        reaction.error("Usage: /me TEXT")
    elif not _online(state, reaction):
        return
    elif window.is_room and not window.joined or not (window.is_room or window.is_query):
        reaction.error(f"You are not in a room or a conversation here ({window.name}).")
    else:
        for piece in split_text(text, MAX_TEXT_BYTES - len("\x01ACTION \x01")):
            reaction.send.append(format_line("PRIVMSG", window.name, f"{CTCP_MARK}ACTION {piece}{CTCP_MARK}"))
            reaction.info(sanitize(piece), Kind.ACTION, state.nick or "", window=window)


def _msg(state: ChatState, args: str, reaction: Reaction) -> None:
    target, _, text = clean_typed(args).strip().partition(" ")
    if not target or not text.strip():
        reaction.error("Usage: /msg NAME TEXT")
        return
    if _is_target(target, reaction) and _online(state, reaction):
        window = state.window_of(target) or (state.current if state.rules.is_channel(target) else
                                             state.open_window(target))
        _send_text(state, target, text, reaction, window)


def _query(state: ChatState, args: str, reaction: Reaction) -> None:
    target, _, text = clean_typed(args).strip().partition(" ")
    if not target:
        reaction.error("Usage: /query NICK [TEXT]")
        return
    if not _is_target(target, reaction):
        return
    if state.rules.is_channel(target):
        reaction.error(f"{sanitize(target)} is a room: /join it.")
        return
    window = state.open_window(target)
    state.windows.show(window)
    if text.strip() and _online(state, reaction):
        _send_text(state, target, text, reaction, window)


def _reply(state: ChatState, args: str, reaction: Reaction) -> None:
    if state.last_private is None:
        reaction.error("Nobody has sent you a private message yet.")
    elif not args.strip():
        reaction.error("Usage: /r TEXT (replies to the last private message)")
    else:
        _msg(state, f"{state.last_private} {args}", reaction)


def _nick(state: ChatState, args: str, reaction: Reaction) -> None:
    nick = args.strip()
    if not state.rules.valid_nick(nick):
        reaction.error(f"Usage: /nick NAME (at most {state.rules.nicklen} characters, no spaces or , * ? ! @ :)")
    elif _online(state, reaction):
        reaction.send.append(format_line("NICK", nick))


# -- rooms and windows ---------------------------------------------------------------------------

def _join(state: ChatState, args: str, reaction: Reaction) -> None:
    words = _words(args)
    if not words or not state.rules.is_channel(words[0]) or not is_safe_name(words[0]) or len(words) > 2:
        reaction.error(f"Usage: /join ROOM [KEY] (a room name starts with {' or '.join(state.rules.chantypes)})")
        return
    if not _online(state, reaction):
        return
    window = state.open_window(words[0])
    if not window.is_room:
        reaction.error("Too many windows are open: /close some first.")
        return
    window.room_key = words[1] if len(words) > 1 else ""
    if window.joined:
        state.windows.show(window)
        return
    window.wants_focus = True
    reaction.send.append(format_line("JOIN", *words))


def _part(state: ChatState, args: str, reaction: Reaction) -> None:
    words = clean_typed(args).strip().split(" ", 1)
    if words[0] and state.rules.is_channel(words[0]):
        window, reason = state.window_of(words[0]), words[1] if len(words) > 1 else ""
    else:
        window, reason = _room_here(state, reaction, "/part [ROOM] [REASON]"), clean_typed(args).strip()
    if window is None:
        if words[0]:
            reaction.error(f"You have no window for {sanitize(words[0])}.")
        return
    if not window.joined:
        reaction.error(f"You are not in {window.name}.")
    elif _online(state, reaction):
        reaction.send.append(format_line("PART", window.name, *((reason,) if reason else ())))


def _close(state: ChatState, args: str, reaction: Reaction) -> None:
    window = state.current
    if not state.windows.close(window):
        reaction.error("The server window stays open (/exit to leave).")
        return
    if window.is_room and window.joined and state.registered:
        reaction.send.append(format_line("PART", window.name))


def _window(state: ChatState, args: str, reaction: Reaction) -> None:
    number = args.strip()
    if not number:
        listed = ", ".join(f"{index}: {window.name}" for index, window in enumerate(state.windows.windows, 1))
        reaction.info(f"Windows: {listed}")
    elif not number.isdigit() or not state.windows.switch(int(number)):
        reaction.error(f"Usage: /window N, with N from 1 to {len(state.windows.windows)}")


def _names(state: ChatState, args: str, reaction: Reaction) -> None:
    window = _room_here(state, reaction, "/names")
    if window is not None and _online(state, reaction):
        state.names_wanted.add(window.key)
        reaction.send.append(format_line("NAMES", window.name))


def _topic(state: ChatState, args: str, reaction: Reaction) -> None:
    window = _room_here(state, reaction, "/topic [TEXT]")
    if window is None or not _online(state, reaction):
        return
    text = clean_typed(args).strip()
    if text:
        reaction.send.append(format_line("TOPIC", window.name, text))
    else:
        reaction.info(f"Topic of {window.name}: {window.topic}" if window.topic else f"No topic is set in {window.name}.",
                      window=window)


def _list(state: ChatState, args: str, reaction: Reaction) -> None:
    if _online(state, reaction):
        reaction.send.append("LIST")


def _search(state: ChatState, args: str, reaction: Reaction) -> None:
    text = clean_typed(args).strip()
    window = state.current
    if text:
        window.search, window.search_at = text, None
    if not window.search:
        reaction.error("Usage: /search TEXT (then Ctrl-R for older matches, Alt-S for newer)")
        return
    find(window, older=True)


def find(window: Window, older: bool) -> None:
    """Show the next match of the window's search, older or newer than the one shown."""
    number = window.scrollback.find(window.search, older, window.search_at)
    where = "older" if older else "newer"
    if number is None:
        window.search_status = f"no {where} {window.search!r}"
    else:
        window.scrollback.scroll_to(number)
        window.search_at = number
        window.search_status = f"found {window.search!r}"


# -- people and moderation -----------------------------------------------------------------------

def _whois(state: ChatState, args: str, reaction: Reaction) -> None:
    words = _words(args)
    if len(words) != 1:
        reaction.error("Usage: /whois NICK")
    elif _is_target(words[0], reaction) and _online(state, reaction):
        reaction.send.append(format_line("WHOIS", words[0]))


def _away(state: ChatState, args: str, reaction: Reaction) -> None:
    text = clean_typed(args).strip()
    if _online(state, reaction):
        reaction.send.append(format_line("AWAY", text) if text else "AWAY")


def _invite(state: ChatState, args: str, reaction: Reaction) -> None:
    words = _words(args)
    if len(words) == 2 and state.rules.is_channel(words[1]):
        room = words[1]
    elif len(words) == 1:
        window = _room_here(state, reaction, "/invite NICK [ROOM]")
        if window is None:
            return
        room = window.name
    else:
        reaction.error("Usage: /invite NICK [ROOM]")
        return
    if _is_target(words[0], reaction) and _is_target(room, reaction) and _online(state, reaction):
        reaction.send.append(format_line("INVITE", words[0], room))


def _kick(state: ChatState, args: str, reaction: Reaction) -> None:
    nick, _, reason = clean_typed(args).strip().partition(" ")
    window = _room_here(state, reaction, "/kick NICK [REASON]")
    if window is None:
        return
    if not nick:
        reaction.error("Usage: /kick NICK [REASON]")
    elif _is_target(nick, reaction) and _online(state, reaction):
        reaction.send.append(format_line("KICK", window.name, nick, *((reason.strip(),) if reason.strip() else ())))


def ban_mask(nick_or_mask: str) -> str:
    """A bare nick bans everyone using it: ``bob`` -> ``bob!*@*``.

    >>> ban_mask("bob"), ban_mask("*!*@evil.example")
    ('bob!*@*', '*!*@evil.example')
    """
    return nick_or_mask if any(char in nick_or_mask for char in "!@") else f"{nick_or_mask}!*@*"


def _member_mode(mode: str, usage: str, mask: bool = False) -> Callable[[ChatState, str, Reaction], None]:
    """/op, /deop, /voice, /devoice, /ban, /unban: one mode change on one person in this room."""

    def change(state: ChatState, args: str, reaction: Reaction) -> None:
        words = _words(args)
        window = _room_here(state, reaction, usage)
        if window is None:
            return
        if len(words) != 1:
            reaction.error(f"Usage: {usage}")
            return
        target = ban_mask(words[0]) if mask else words[0]
        if _is_target(target, reaction) and _online(state, reaction):
            reaction.send.append(format_line("MODE", window.name, mode, target))

    return change


def _is_mode_change(word: str) -> bool:
    """``+o``, ``-v+m``: a change, not a target (``+`` may start a room name, as on ngircd).

    >>> _is_mode_change("+m"), _is_mode_change("-o+v"), _is_mode_change("+chat!"), _is_mode_change("#a")
    (True, True, False, False)
    """
    return bool(re.fullmatch(r"[+-][A-Za-z+-]*", word))


def _mode(state: ChatState, args: str, reaction: Reaction) -> None:
    words = _words(args)
    if words and (_is_mode_change(words[0]) or not (state.rules.is_channel(words[0]) or state.is_me(words[0]))):
        window = _room_here(state, reaction, "/mode [ROOM] CHANGES [ARGS]")
        if window is None:
            return
        words.insert(0, window.name)
    elif not words:
        window = _room_here(state, reaction, "/mode [ROOM] CHANGES [ARGS]")
        if window is None:
            return
        words = [window.name]
    if all(is_safe_name(word) or word.startswith(("+", "-")) and word.isprintable() for word in words) \
            and _online(state, reaction):
        reaction.send.append(format_line("MODE", *words))
    elif state.registered:
        reaction.error("Usage: /mode [ROOM] CHANGES [ARGS]")


def _oper(state: ChatState, args: str, reaction: Reaction) -> None:
    words = _words(args)
    if len(words) != 1 or not is_safe_name(words[0]):
        reaction.error("Usage: /oper NAME (the password is asked for, and hidden)")
    elif _online(state, reaction):
        state.oper_name = words[0]  # the app now asks for the password, masked


def _quote(state: ChatState, args: str, reaction: Reaction) -> None:
    line = args.strip()
    if not is_safe_raw(line):
        reaction.error("Usage: /quote RAW IRC LINE (one line of at most 510 bytes)")
    elif _online(state, reaction):
        reaction.send.append(line)


# -- the rest ------------------------------------------------------------------------------------

def _help(state: ChatState, args: str, reaction: Reaction) -> None:
    for command in dict.fromkeys(COMMANDS.values()):
        reaction.info(f"{command.usage:<28} {command.meaning}")
    for keys, meaning in KEYS_HELP:
        reaction.info(f"{keys:<28} {meaning}")


def _reconnect(state: ChatState, args: str, reaction: Reaction) -> None:
    if state.phase is not Phase.WAITING:
        reaction.info("Still connected: /reconnect retries at once only while the connection is down.")
        return
    reaction.reconnect = True


def _quit(state: ChatState, args: str, reaction: Reaction) -> None:
    reaction.quit = clean_typed(args).strip() or DEFAULT_QUIT_REASON


KEYS_HELP = (
    ("Alt-1..Alt-9, Alt-0", "go to window 1..9, 10"),
    ("Ctrl-N / Ctrl-P", "next / previous window"),
    ("PgUp / PgDn, mouse wheel", "scroll; Ctrl-End or Alt-End: back to the newest line"),
    ("Ctrl-R / Alt-S", "older / newer match of /search"),
    ("Alt-R", "reconnect now (as /reconnect)"),
    ("Up / Down, Tab", "input history; complete a name or command"),
    ("Ctrl-A/E/U/K/W", "edit the input line"),
)

_QUIT = Command(_quit, "/exit or /quit [REASON]", "leave the chat")
_USERS = Command(_names, "/names or /users", "who is in this room (@ operator, + voice)")
COMMANDS: dict[str, Command] = {
    "msg": Command(_msg, "/msg NAME TEXT", "send a private message"),
    "query": Command(_query, "/query NICK [TEXT]", "open a private conversation window"),
    "r": Command(_reply, "/r TEXT", "reply to the last private message"),
    "me": Command(_me, "/me TEXT", "describe what you are doing"),
    "nick": Command(_nick, "/nick NAME", "change your name"),
    "join": Command(_join, "/join ROOM [KEY]", "join a room (it gets a window)"),
    "part": Command(_part, "/part [ROOM] [REASON]", "leave a room (its window stays)"),
    "close": Command(_close, "/close", "close this window (leaving its room)"),
    "window": Command(_window, "/window [N]", "go to window N; without N, list the windows"),
    "names": _USERS,
    "users": _USERS,
    "topic": Command(_topic, "/topic [TEXT]", "show or set this room's topic"),
    "list": Command(_list, "/list", "the rooms on the server"),
    "whois": Command(_whois, "/whois NICK", "who someone is"),
    "away": Command(_away, "/away [TEXT]", "mark yourself away (no text: back)"),
    "invite": Command(_invite, "/invite NICK [ROOM]", "invite someone to this room"),
    "kick": Command(_kick, "/kick NICK [REASON]", "put someone out of this room"),
    "ban": Command(_member_mode("+b", "/ban MASK", mask=True), "/ban MASK", "ban a nick or nick!user@host mask"),
    "unban": Command(_member_mode("-b", "/unban MASK", mask=True), "/unban MASK", "lift a ban"),
    "op": Command(_member_mode("+o", "/op NICK"), "/op NICK", "make someone a room operator"),
    "deop": Command(_member_mode("-o", "/deop NICK"), "/deop NICK", "take operator status away"),
    "voice": Command(_member_mode("+v", "/voice NICK"), "/voice NICK", "let someone speak in a moderated room"),
    "devoice": Command(_member_mode("-v", "/devoice NICK"), "/devoice NICK", "take voice away"),
    "mode": Command(_mode, "/mode [ROOM] CHANGES [ARGS]", "change or show modes"),
    "oper": Command(_oper, "/oper NAME", "become an IRC operator (password asked, hidden)"),
    "search": Command(_search, "/search TEXT", "find TEXT in this window's scrollback"),
    "quote": Command(_quote, "/quote RAW LINE", "send a raw IRC line"),
    "reconnect": Command(_reconnect, "/reconnect", "connect again now, not at the next retry"),
    "help": Command(_help, "/help", "this list"),
    "exit": _QUIT,
    "quit": _QUIT,
}
OFFLINE_COMMANDS = frozenset({"window", "close", "search", "reconnect", "help", "exit", "quit"})
COMMAND_NAMES = tuple(f"/{name}" for name in COMMANDS)  # for Tab completion
