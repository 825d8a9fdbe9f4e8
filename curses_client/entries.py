"""What the message pane shows: one ``Entry`` per message, and how it reads as styled text.

An Entry is stored whole; ``render`` turns it into one logical line of plain text with style
runs over it (time stamp, the sender's colour, the kind's look) and the indent that wrapped
rows hang at. Wrapping to a width happens later, in the scrollback, so a resize can re-wrap.
All text here has already been through ``width.sanitize``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from curses_client.width import text_width


class Kind(Enum):
    CHAT = "chat"  # <ann> hello
    OWN = "own"  # what you said yourself
    ACTION = "action"  # * ann waves
    PRIVATE_IN = "private_in"  # *ann* psst
    PRIVATE_OUT = "private_out"  # -> *bob* psst
    NOTICE = "notice"  # -ann- note
    JOIN = "join"  # --> ann joined #chat
    PART = "part"  # <-- ann left #chat (reason)
    QUIT = "quit"  # <-- ann quit (reason)
    NICK = "nick"  # -- ann is now known as anna
    INFO = "info"  # -- server text, numerics, help
    ERROR = "error"  # !! something went wrong


@dataclass(frozen=True)
class Entry:
    kind: Kind
    text: str
    sender: str = ""  # whose message it is; its colour is the sender's
    when: float = 0.0  # time.time() of arrival, or when the server says it was sent
    replayed: bool = False  # from the room's history, not live: drawn dimmed
    highlight: bool = False  # mentions your name: highlighted, and the window list says so


def make(kind: Kind, text: str, sender: str = "", highlight: bool = False) -> Entry:
    return Entry(kind, text, sender, time.time(), highlight=highlight)


# Style names the UI maps to curses attributes; "nick" styles carry the name for its colour.
STYLE_TIME = "time"
STYLE_TEXT = "text"
STYLE_DIM = "dim"
STYLE_PRIVATE = "private"
STYLE_ERROR = "error"
STYLE_JOIN = "join"
STYLE_MARKER = "marker"  # the unread marker line
STYLE_HIGHLIGHT = "highlight"  # the text of a line that mentions you


@dataclass(frozen=True)
class Styled:
    """A rendered entry: ``text``, ``runs`` of (start, end, style, nick) and the wrap indent."""

    text: str
    runs: tuple[tuple[int, int, str, str], ...]
    indent: int


def render(entry: Entry) -> Styled:
    """Lay an entry out as one styled line.

    >>> render(Entry(Kind.CHAT, "hi", "ann", 0.0)).text[-9:]
    ' <ann> hi'
    """
    parts: list[str] = []
    runs: list[tuple[int, int, str, str]] = []

    def add(text: str, style: str, nick: str = "") -> None:
        start = sum(len(part) for part in parts)
        parts.append(text)
        runs.append((start, start + len(text), style, nick))

    when = time.localtime(entry.when)
    older = entry.replayed and when[:3] != time.localtime()[:3]
    add(time.strftime("%Y-%m-%d %H:%M" if older else "%H:%M", when) + " ", STYLE_TIME)  # history: its date
    kind, sender = entry.kind, entry.sender
    if kind in (Kind.CHAT, Kind.OWN):
        add(f"<{sender}>", "nick", sender)
        add(" ", STYLE_TEXT)
    elif kind is Kind.ACTION:
        add(f"* {sender} ", "nick", sender)
    elif kind is Kind.PRIVATE_IN:
        add(f"*{sender}*", STYLE_PRIVATE, sender)
        add(" ", STYLE_TEXT)
    elif kind is Kind.PRIVATE_OUT:
        add(f"-> *{sender}*", STYLE_PRIVATE, sender)
        add(" ", STYLE_TEXT)
    elif kind is Kind.NOTICE:
        add(f"-{sender}-", "nick", sender)
        add(" ", STYLE_TEXT)
    elif kind is Kind.JOIN:
        add("--> ", STYLE_JOIN)
    elif kind in (Kind.PART, Kind.QUIT):
        add("<-- ", STYLE_DIM)
    elif kind is Kind.ERROR:
        add("!! ", STYLE_ERROR)
    else:
        add("-- ", STYLE_DIM)
    indent = text_width("".join(parts))
    body_style = {
        Kind.JOIN: STYLE_JOIN,
        Kind.PART: STYLE_DIM,
        Kind.QUIT: STYLE_DIM,
        Kind.NICK: STYLE_DIM,
        Kind.INFO: STYLE_DIM,
        Kind.ERROR: STYLE_ERROR,
        Kind.PRIVATE_IN: STYLE_PRIVATE,
        Kind.PRIVATE_OUT: STYLE_PRIVATE,
    }.get(kind, STYLE_TEXT)
    if entry.highlight:
        add(entry.text, STYLE_HIGHLIGHT)
    elif kind is Kind.ACTION:
        add(entry.text, "nick", sender)
    else:
        add(entry.text, body_style)
    if entry.replayed:  # history looks apart from live chat: all of it dimmed
        runs = [(start, end, STYLE_DIM, "") for start, end, _, _ in runs]
    return Styled("".join(parts), tuple(runs), indent)
