"""Display width, sanitising and word wrapping: text as the terminal will lay it out.

Pure functions, no curses:

- ``clusters``: a string cut into grapheme clusters, what the terminal draws as one thing
  (a base character with its combining marks, a ZWJ emoji sequence, a flag, an emoji with
  its skin tone or presentation selector), each with the cells it takes.
  ``next_boundary``/``previous_boundary`` step over one cluster, for the line editor.
- ``char_width`` / ``text_width``: how many terminal cells a character or string takes
  (a small wcwidth: East Asian Wide/Fullwidth = 2, combining and format marks = 0; a
  cluster in emoji presentation = 2).
- ``drawable``: text as curses can draw it in the cells ``text_width`` gives it.
- ``sanitize``: text from the network made safe to show: IRC formatting codes dropped,
  escape sequences removed, other control characters replaced, invisible characters that
  could disguise a message (zero-width, bidi) shown by name, so no message can move the
  cursor, change colours, retitle the terminal or hide what it says.
- ``wrap``: split a line into rows of at most ``width`` cells at word boundaries, with a
  hanging indent for the rows after the first; never inside a cluster, and never a URL
  indented in the middle.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

REPLACEMENT = "\ufffd"  # shown in place of a control character
ZERO_WIDTH_JOINER = "\u200d"
EMOJI_PRESENTATION = "\ufe0f"
KEYCAP = "\u20e3"

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
# Characters that take no cell or reorder text on screen (zero-width spaces and joiners, word
# joiners, direction marks, bidi embeddings, overrides and isolates, the byte order mark):
# shown by name, as "<U+200B>", since they could make a message appear to say something
# else. A ZWJ between two emoji is the exception: it builds one emoji of them.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u061c\ufeff\u180e\u2060\u2061\u2062\u2063\u2064"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_SHOWN_BY_NAME = re.compile("[" + "".join(sorted(_INVISIBLE)) + "]")


def _is_pictographic(char: str) -> bool:
    """Roughly Unicode's Extended_Pictographic (not in unicodedata): the emoji blocks."""
    code = ord(char)
    return (
        0x1F000 <= code <= 0x1FAFF
        or 0x2600 <= code <= 0x27BF
        or 0x2300 <= code <= 0x23FF
        or 0x2B00 <= code <= 0x2BFF
        or code in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D, 0x3297, 0x3299)
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _extends(char: str) -> bool:
    """Belongs to the cluster before it: marks, joiners, selectors, skin tones, tag characters."""
    if char.isascii():
        return False
    code = ord(char)
    return (
        0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences (subdivision flags)
        or unicodedata.combining(char) != 0
        or unicodedata.category(char) in ("Mn", "Me", "Cf")
    )


def char_width(char: str) -> int:
    """Cells one character takes on a terminal, on its own.

    >>> char_width("a"), char_width("漢"), char_width("\\u0301"), char_width("😀")
    (1, 2, 0, 2)
    """
    if char.isascii():
        return 1
    if _extends(char):
        return 0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    return 1


def next_boundary(text: str, position: int) -> int:
    """Where the cluster starting at ``position`` ends (``len(text)`` at most).

    >>> next_boundary("a\\u0301b", 0), next_boundary("🇫🇷🇩🇪", 0), next_boundary("👩\\u200d💻!", 0)
    (2, 2, 3)
    """
    length = len(text)
    if position >= length:
        return length
    base = text[position]
    end = position + 1
    if _is_regional_indicator(base) and end < length and _is_regional_indicator(text[end]):
        return end + 1  # a flag: exactly two regional indicators
    pictographic = _is_pictographic(base)
    while end < length and _extends(text[end]):
        end += 1
        if text[end - 1] == ZERO_WIDTH_JOINER and pictographic and end < length and _is_pictographic(text[end]):
            end += 1  # the joiner glues the next emoji on
    return end


def is_boundary(text: str, position: int) -> bool:
    """True where a cursor may stand: not inside a cluster."""
    if position <= 0 or position >= len(text):
        return True
    char, before = text[position], text[position - 1]
    if _extends(char) or (before == ZERO_WIDTH_JOINER and _is_pictographic(char)):
        return False
    if _is_regional_indicator(char) and _is_regional_indicator(before):
        run = 0  # flags pair from the start of a run of indicators
        while position - run - 1 >= 0 and _is_regional_indicator(text[position - run - 1]):
            run += 1
        return run % 2 == 0
    return True


def previous_boundary(text: str, position: int) -> int:
    """Where the cluster that ends at ``position`` starts (0 at least)."""
    position = min(position, len(text))
    if position <= 0:
        return 0
    position -= 1
    while position > 0 and not is_boundary(text, position):
        position -= 1
    return position


def cluster_width(cluster: str) -> int:
    """Cells one cluster takes: its base's, or 2 for an emoji drawn as emoji.

    >>> [cluster_width(c) for c in ("e\\u0301", "❤\\ufe0f", "🇫🇷", "👩\\u200d💻", "👍🏽", "1\\ufe0f\\u20e3")]
    [1, 2, 2, 2, 2, 2]
    """
    base = cluster[0]
    if len(cluster) == 1:
        return char_width(base)
    if _is_regional_indicator(base) and _is_regional_indicator(cluster[1]):
        return 2
    if _is_pictographic(base) and (EMOJI_PRESENTATION in cluster or ZERO_WIDTH_JOINER in cluster):
        return 2
    if KEYCAP in cluster and EMOJI_PRESENTATION in cluster:
        return 2
    return char_width(base)


def clusters(text: str, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """The clusters of ``text`` from ``start``, as (start, end, cells)."""
    length = len(text)
    while start < length:
        end = next_boundary(text, start)
        yield start, end, (1 if end == start + 1 and text[start].isascii() else cluster_width(text[start:end]))
        start = end


def text_width(text: str) -> int:
    """Cells a whole string takes (its clusters' widths summed).

    >>> text_width("héllo"), text_width("日本語"), text_width("🇫🇷👩\\u200d💻")
    (5, 6, 4)
    """
    if text.isascii():
        return len(text)
    return sum(cells for _, _, cells in clusters(text))


def code_point_width(char: str) -> int:
    """Cells curses counts for one code point, as the C library's ``wcwidth`` does: unlike
    ``char_width``, a skin-tone modifier is 2 (it is wide on its own)."""
    if unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def drawable(text: str) -> str:
    """``text`` with each cluster curses would count differently replaced by a stand-in.

    curses counts cells per code point (``wcwidth``), so a cluster of several code points that
    the terminal draws as one (a ZWJ family, a thumb with its skin tone, a heart or a keycap
    with the emoji selector) would take 0, 4 or 6 cells in curses' count, not the 2 we give
    it, and shift or cut what follows on its row. Such a cluster is drawn as its first
    character, padded with spaces to its width: what curses, the terminal and ``text_width``
    all agree on. Flags and accented letters are drawn as they are.

    >>> drawable("a👨\u200d👩\u200d👧b"), drawable("❤\ufe0f!"), drawable("👍🏽 1\ufe0f\u20e3"), drawable("🇫🇷é\u0301")
    ('a👨b', '❤ !', '👍 1 ', '🇫🇷é\u0301')
    """
    if text.isascii():
        return text
    pieces = []
    for start, end, cells in clusters(text):
        cluster = text[start:end]
        if sum(code_point_width(char) for char in cluster) != cells:
            base = cluster[0] if code_point_width(cluster[0]) <= cells else ""  # a lone skin tone: nothing fits
            cluster = base + " " * (cells - code_point_width(base) if base else cells)
        pieces.append(cluster)
    return "".join(pieces)


def _replace_control(char: str) -> str:
    if char == "\t":
        return " "
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return REPLACEMENT
    if unicodedata.category(char) in ("Cs", "Co", "Cn"):  # surrogates, private use, unassigned
        return REPLACEMENT
    return char


def _name_invisible(match: re.Match[str]) -> str:
    char, text, at = match.group(), match.string, match.start()
    if char == ZERO_WIDTH_JOINER and 0 < at < len(text) - 1:
        before = previous_boundary(text, at)  # the joiner ends the cluster before it
        if _is_pictographic(text[before]) and _is_pictographic(text[at + 1]):
            return char
    return f"<U+{ord(char):04X}>"


def sanitize(text: str) -> str:
    """Text from the network, made inert: formatting and escapes removed, controls replaced,
    invisible characters named.

    >>> sanitize("\\x02bold\\x02 \\x0304,01red\\x03 \\x1b[2J\\x1b]0;title\\x07done\\x07")
    'bold red done\\ufffd'
    >>> sanitize("pay\\u200bpal \\u202eevil")
    'pay<U+200B>pal <U+202E>evil'
    """
    text = _IRC_FORMATTING.sub("", text)
    text = _ESCAPE_SEQUENCE.sub("", text)
    if not text.isascii():
        text = _SHOWN_BY_NAME.sub(_name_invisible, text)
    if not text.isprintable():
        text = "".join(_replace_control(char) for char in text)
    if text and _extends(text[0]):
        text = " " + text  # a mark with nothing to combine with gets a base to sit on
    return text


def _is_url_at(text: str, start: int) -> bool:
    head = text[start : start + 12].lower()
    return head.startswith(("http://", "https://", "ftp://", "irc://", "ircs://", "www."))


def _word_end(text: str, start: int) -> int:
    end = text.find(" ", start)
    return len(text) if end < 0 else end


def wrap(text: str, width: int, indent: int = 0) -> list[tuple[int, int, int]]:
    """Split ``text`` into rows of at most ``width`` cells; return each as (start, end, indent).

    Rows after the first are drawn after ``indent`` blank cells (their third item), so they
    get ``width - indent`` cells. Rows break at the last space that fits, or beside a wide
    (CJK) character, else between any two clusters. The space a row breaks at is left out
    of both rows. Every row holds at least one cluster, so a cluster wider than the room
    left still gets a row of its own. A URL that does not fit where it is starts a row of
    its own; one too long for an indented row is drawn unindented, over as many full rows
    as it needs, so that it stays one unbroken run of text for the terminal to find.

    >>> text = "the quick brown fox"
    >>> [text[a:b] for a, b, _ in wrap(text, 10, indent=2)]
    ['the quick', 'brown', 'fox']
    """
    rows: list[tuple[int, int, int]] = []
    start, length = 0, len(text)
    url_end = -1  # rows that start before this go on with a URL: unindented
    while start < length:
        if rows and start >= url_end and _is_url_at(text, start):
            word_end = _word_end(text, start)
            if text_width(text[start:word_end]) > width - indent:
                url_end = word_end
        row_indent = 0 if not rows or start < url_end else indent
        room = max(1, width - row_indent)
        used, position, last_break = 0, start, None
        cells = previous_cells = 0
        end = next_start = -1
        while position < length:
            if text[position].isascii() and (position + 1 == length or text[position + 1].isascii()):
                cluster_end, cells = position + 1, 1  # the common case, without the general rules
            else:
                cluster_end = next_boundary(text, position)
                cells = cluster_width(text[position:cluster_end])
            if (
                position > start
                and text[position - 1] == " "
                and _is_url_at(text, position)
                and used + text_width(text[position : _word_end(text, position)]) > room
            ):
                end, next_start = position - 1, position  # the URL starts the next row
                break
            if used + cells > room and position > start and cells > 0:
                break
            if text[position] == " ":
                last_break = (position, position + 1)
            elif position > start and cells and (cells == 2 or previous_cells == 2):
                last_break = (position, position)  # CJK text may break beside any wide character
            used += cells
            previous_cells = cells
            position = cluster_end
        if end < 0:
            if position >= length:
                rows.append((start, length, row_indent))
                break
            if text[position] == " ":
                end, next_start = position, position + 1  # the row is full right before a space
            elif cells == 2 or previous_cells == 2:
                end, next_start = position, position
            elif last_break is not None and last_break[0] > start:
                end, next_start = last_break
            else:
                end, next_start = position, position  # one word fills the row: split it
                if start < url_end or _is_url_at(text, start):
                    url_end = _word_end(text, start)
        rows.append((start, end, row_indent))
        start = next_start
        while start < length and text[start] == " ":
            start += 1  # a continuation row does not start with the spaces it broke at
    return rows or [(0, 0, 0)]


def fit(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits in ``width`` cells, whole clusters only.

    >>> fit("日本語", 5)
    '日本'
    """
    if text.isascii():
        return text[: max(0, width)]
    used = 0
    for start, _, cells in clusters(text):
        used += cells
        if used > width:
            return text[:start]
    return text
