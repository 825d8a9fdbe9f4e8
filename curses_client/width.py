"""Display width, sanitising and word wrapping: text as the terminal will lay it out.

Three pure functions, no curses:

- ``char_width`` / ``text_width``: how many terminal cells a character or string takes
  (a small wcwidth: East Asian Wide/Fullwidth = 2, combining and format marks = 0).
- ``sanitize``: text from the network made safe to show: IRC formatting codes dropped,
  escape sequences removed, other control characters replaced, so no message can move the
  cursor, change colours or retitle the terminal.
- ``wrap``: split a line into rows of at most ``width`` cells at word boundaries, with a
  hanging indent for the rows after the first.
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"  # shown in place of a control character
ZERO_WIDTH_JOINER = "\u200d"

# IRC formatting: bold, colour (\x03 with up to two foreground and two background digits),
# hex colour (\x04 RRGGBB[,RRGGBB]), reset, monospace, reverse, italic, strike, underline.
_IRC_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?"
    r"|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
# Terminal escape sequences, 7-bit and 8-bit: CSI ... final, OSC/DCS/APC/PM/SOS ... ST or
# BEL (unterminated ones run to the end of the text), and two-character ESC x.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
# Characters that reorder text on screen (bidi overrides/isolates) are replaced as well:
# they could make a message appear to say something else.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def char_width(char: str) -> int:
    """Cells one character takes on a terminal.

    >>> char_width("a"), char_width("漢"), char_width("\\u0301"), char_width("😀")
    (1, 2, 0, 2)
    """
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    return 1


def text_width(text: str) -> int:
    """Cells a whole string takes (its characters' widths summed).

    >>> text_width("héllo"), text_width("日本語")
    (5, 6)
    """
    if text.isascii():
        return len(text)
    return sum(char_width(char) for char in text)


def _replace_control(char: str) -> str:
    if char == "\t":
        return " "
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0 or char in _BIDI_CONTROLS:
        return REPLACEMENT
    if unicodedata.category(char) in ("Cs", "Co", "Cn"):  # surrogates, private use, unassigned
        return REPLACEMENT
    return char


def sanitize(text: str) -> str:
    """Text from the network, made inert: formatting and escapes removed, controls replaced.

    >>> sanitize("\\x02bold\\x02 \\x0304,01red\\x03 \\x1b[2J\\x1b]0;title\\x07done\\x07")
    'bold red done\\ufffd'
    """
    text = _IRC_FORMATTING.sub("", text)
    text = _ESCAPE_SEQUENCE.sub("", text)
    if not text.isprintable():
        text = "".join(_replace_control(char) for char in text)
    if text and char_width(text[0]) == 0:
        text = " " + text  # a mark with nothing to combine with gets a base to sit on
    return text


def wrap(text: str, width: int, indent: int = 0) -> list[tuple[int, int]]:
    """Split ``text`` into rows of at most ``width`` cells; return each row as (start, end).

    Rows after the first are meant to be drawn after ``indent`` blank cells, so they get
    ``width - indent`` cells. Rows break at the last space that fits, or beside a wide (CJK)
    character, else between any two characters (never between a character and its
    combining marks). The space a row breaks
    at is left out of both rows. Every row holds at least one character, so a character
    wider than the room left still gets a row of its own.

    >>> text = "the quick brown fox"
    >>> [text[a:b] for a, b in wrap(text, 10, indent=2)]
    ['the quick', 'brown', 'fox']
    """
    rows: list[tuple[int, int]] = []
    start, length = 0, len(text)
    room = max(1, width)
    while start < length:
        used, position, last_break = 0, start, None
        while position < length:
            char = text[position]
            cells = char_width(char)
            if used + cells > room and position > start and cells > 0:
                break
            if char == " ":
                last_break = (position, position + 1)
            elif position > start and cells and (cells == 2 or char_width(text[position - 1]) == 2):
                last_break = (position, position)  # CJK text may break beside any wide character
            used += cells
            position += 1
        if position >= length:
            rows.append((start, length))
            break
        if text[position] == " ":
            end, next_start = position, position + 1  # the row is full right before a space
        elif char_width(text[position]) == 2 or char_width(text[position - 1]) == 2:
            end, next_start = position, position
        elif last_break is not None and last_break[0] > start:
            end, next_start = last_break
        else:
            end, next_start = position, position
        rows.append((start, end))
        start = next_start
        while start < length and text[start] == " ":
            start += 1  # a continuation row does not start with the spaces it broke at
        room = max(1, width - indent)
    return rows or [(0, 0)]


def fit(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits in ``width`` cells.

    >>> fit("日本語", 5)
    '日本'
    """
    used = 0
    for index, char in enumerate(text):
        used += char_width(char)
        if used > width:
            return text[:index]
    return text
