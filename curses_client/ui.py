"""Everything that touches curses: terminal setup and restore, key reading, drawing.

Only the UI thread calls into this module. Every string goes through ``width.drawable`` on its
way to curses, so curses' count of cells agrees with ``text_width`` (emoji sequences). ``Screen`` draws the whole layout into the one
standard window (pane rows, status line, input line) with ``noutrefresh`` and a single
``doupdate``; curses itself works out which cells changed. The input line, on the bottom
row, never uses the last column, so nothing is ever written into the bottom-right cell.
"""

from __future__ import annotations

import contextlib
import curses
import locale
import logging
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from curses_client.entries import (
    STYLE_DIM,
    STYLE_ERROR,
    STYLE_HIGHLIGHT,
    STYLE_JOIN,
    STYLE_MARKER,
    STYLE_PRIVATE,
    STYLE_TIME,
)
from curses_client.scrollback import Row
from curses_client.width import drawable, fit, text_width

if TYPE_CHECKING:
    from curses_client.net import Wakeup

log = logging.getLogger(__name__)

KEY_TIMEOUT_MS = 100  # how long a key is waited for: an idle UI loop wakes ~10 times a second at most
MIN_ROWS, MIN_COLUMNS = 4, 20  # smaller than this: a notice instead of the layout
BRACKETED_PASTE_ON = "\x1b[?2004h"
BRACKETED_PASTE_OFF = "\x1b[?2004l"
# Nick colours chosen to read on dark and light backgrounds alike (no yellow, white, black).
NICK_COLOURS_256 = (160, 28, 33, 127, 37, 166, 92, 130, 62, 31, 125, 64)
NICK_COLOURS_8 = (curses.COLOR_RED, curses.COLOR_GREEN, curses.COLOR_BLUE, curses.COLOR_MAGENTA, curses.COLOR_CYAN)
PAIR_STATUS, PAIR_ERROR, PAIR_JOIN, PAIR_PRIVATE, PAIR_FIRST_NICK = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class StatusLine:
    server: str
    security: str  # "", "TLS" or "TLS UNVERIFIED"
    nick: str
    room: str
    online: int | None
    link: str
    more_below: int
    number: int = 1  # the active window's number
    activity: tuple[tuple[int, int], ...] = ()  # (window number, windows.Activity) with something unseen
    search: str = ""  # how the last search went


def key_names() -> dict[int, str]:
    """curses key codes -> the names ``keys.KeyDecoder`` and the app understand."""
    names = {
        curses.KEY_LEFT: "left", curses.KEY_RIGHT: "right", curses.KEY_UP: "up", curses.KEY_DOWN: "down",
        curses.KEY_HOME: "home", curses.KEY_END: "end", curses.KEY_BACKSPACE: "backspace",
        curses.KEY_DC: "delete", curses.KEY_PPAGE: "page-up", curses.KEY_NPAGE: "page-down",
        curses.KEY_ENTER: "enter", curses.KEY_RESIZE: "resize",
    }
    for name, meaning in (("PADENTER", "enter"), ("CTL_LEFT", "ctrl-left"), ("CTL_RIGHT", "ctrl-right"),
                          ("ALT_LEFT", "ctrl-left"), ("ALT_RIGHT", "ctrl-right"), ("KEY_A1", "home"),
                          ("KEY_C1", "end"), ("KEY_SLEFT", "ctrl-left"), ("KEY_SRIGHT", "ctrl-right")):
        code = getattr(curses, name, None)  # PADENTER and CTL_* exist only on Windows
        if isinstance(code, int):
            names.setdefault(code, meaning)
    return names


# ncurses reports Ctrl/Alt + arrows and End as extended keys known only by their terminfo names.
EXTENDED_KEY_NAMES = {b"kLFT5": "ctrl-left", b"kRIT5": "ctrl-right", b"kLFT3": "ctrl-left", b"kRIT3": "ctrl-right",
                      b"kEND5": "scroll-end", b"kEND3": "scroll-end"}
# Mouse wheel notches; BUTTON5 exists only with ncurses 6 (0 elsewhere: no wheel-down).
WHEEL_UP = curses.BUTTON4_PRESSED
WHEEL_DOWN = getattr(curses, "BUTTON5_PRESSED", 0)
ACTIVITY_EVENT, ACTIVITY_MESSAGE, ACTIVITY_HIGHLIGHT = 1, 2, 3  # windows.Activity values


def colour_index(nick: str, colours: int) -> int:
    """Which of ``colours`` a name gets: the same in every session, whatever its case.

    CRC-32 rather than ``hash()``, which Python salts differently in every process.
    """
    return zlib.crc32(nick.lower().encode("utf-8")) % colours


class TerminalUnavailable(Exception):
    """Standard input/output is not a terminal curses can drive."""


@contextlib.contextmanager
def terminal(mouse: bool = True) -> Iterator[curses.window]:
    """Set the terminal up for the chat and restore it on every way out, like curses.wrapper."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TerminalUnavailable("standard input and output must be a terminal")
    locale.setlocale(locale.LC_ALL, "")
    os.environ.setdefault("ESCDELAY", "25")  # a lone ESC should not freeze input for a second
    try:
        stdscr = curses.initscr()
    except curses.error as error:  # e.g. TERM names a terminal without a terminfo entry
        raise TerminalUnavailable(f"curses could not start ({error}); check TERM") from error
    try:
        curses.noecho()
        curses.cbreak()  # not raw(): Ctrl-C stays an interrupt, so it can end the program
        stdscr.keypad(True)
        stdscr.timeout(KEY_TIMEOUT_MS)
        if curses.has_colors():
            curses.start_color()
            try:
                curses.use_default_colors()  # keeps the terminal's own background (-1)
            except curses.error as error:
                log.info("no default colours (%s): drawing without colour", error)
        if mouse:
            # wheel notches only; the terminal still lets Shift + drag select text
            curses.mousemask(WHEEL_UP | WHEEL_DOWN)
            curses.mouseinterval(0)  # a wheel notch is a press, not a click to wait for
        _write_raw(BRACKETED_PASTE_ON)
        yield stdscr
    finally:
        _write_raw(BRACKETED_PASTE_OFF)
        stdscr.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()


def _write_raw(sequence: str) -> None:
    if sys.platform == "win32":
        return  # the Windows console does not take these through curses' output
    sys.stdout.write(sequence)
    sys.stdout.flush()


class Screen:
    """Draws a frame; owns the curses colour pairs and the input line's sideways scroll."""

    def __init__(self, stdscr: curses.window, wakeup: Wakeup | None = None) -> None:
        self.stdscr = stdscr
        self.wakeup = wakeup  # rung by the network thread: stop waiting for a key, draw
        self.input_offset = 0
        self._codes = key_names()
        self._colours = curses.has_colors()
        self._nick_pairs: dict[str, int] = {}
        self._palette: tuple[int, ...] = ()
        if self._colours:
            self._set_up_colours()

    def _set_up_colours(self) -> None:
        background = -1
        self._palette = NICK_COLOURS_256 if curses.COLORS >= 256 else NICK_COLOURS_8
        try:
            curses.init_pair(PAIR_STATUS, curses.COLOR_WHITE, curses.COLOR_BLUE)
            curses.init_pair(PAIR_ERROR, curses.COLOR_RED, background)
            curses.init_pair(PAIR_JOIN, curses.COLOR_GREEN, background)
            curses.init_pair(PAIR_PRIVATE, curses.COLOR_MAGENTA, background)
            for index, colour in enumerate(self._palette):
                curses.init_pair(PAIR_FIRST_NICK + index, colour, background)
        except curses.error as error:  # e.g. no default colours: draw without colour
            log.info("colours unavailable: %s", error)
            self._colours = False

    # -- keys ---------------------------------------------------------------------------------

    def read_key(self, wait: bool = True) -> str | None:
        """One key as a str (a character or a key name), or None if none came.

        With ``wait`` it waits up to KEY_TIMEOUT_MS, which is what keeps an idle client
        asleep; a ring of ``wakeup`` ends the wait at once (POSIX: curses is asked only for
        what it holds or what is already there, and ``select`` sleeps on the terminal and
        the wake pipe together). Without ``wait``, it only takes a key already there.
        """
        if self.wakeup is None:
            key = self._get_wch(KEY_TIMEOUT_MS if wait else 0)
        else:
            key = self._get_wch(0)  # first what curses may hold (the rest of an escape sequence)
            if key is None and wait and self.wakeup.wait(sys.stdin.fileno(), KEY_TIMEOUT_MS / 1000):
                key = self._get_wch(0)
        if key is None:
            return None
        if isinstance(key, str):
            return key
        if key == curses.KEY_MOUSE:
            return self._mouse()
        name = self._codes.get(key)
        if name is None:
            name = EXTENDED_KEY_NAMES.get(curses.keyname(key), f"key-{key}")
        if name == "resize":
            if sys.platform == "win32":
                curses.resize_term(0, 0)
            curses.update_lines_cols()
        return name

    def _get_wch(self, timeout_ms: int) -> int | str | None:
        self.stdscr.timeout(timeout_ms)
        try:
            return self.stdscr.get_wch()
        except curses.error:
            return None  # get_wch reports its timeout as an error: no key this time

    def _mouse(self) -> str:
        try:
            _, _, _, _, buttons = curses.getmouse()
        except curses.error:
            return "mouse"  # an event curses could not read: nothing to do
        if buttons & WHEEL_UP:
            return "wheel-up"
        if WHEEL_DOWN and buttons & WHEEL_DOWN:
            return "wheel-down"
        return "mouse"

    def beep(self) -> None:
        try:
            curses.beep()
        except curses.error as error:
            log.info("no bell: %s", error)

    def size(self) -> tuple[int, int]:
        return self.stdscr.getmaxyx()

    # -- drawing --------------------------------------------------------------------------------

    def style(self, style: str, nick: str) -> int:
        if style == "nick":
            return self.nick_attr(nick)
        if style == STYLE_PRIVATE:
            return curses.A_BOLD | self._pair(PAIR_PRIVATE)
        if style == STYLE_ERROR:
            return curses.A_BOLD | self._pair(PAIR_ERROR)
        if style == STYLE_JOIN:
            return self._pair(PAIR_JOIN)
        if style == STYLE_HIGHLIGHT:
            return curses.A_BOLD | curses.A_REVERSE
        if style == STYLE_MARKER:
            return curses.A_BOLD | self._pair(PAIR_ERROR)
        if style in (STYLE_TIME, STYLE_DIM):
            return curses.A_DIM
        return curses.A_NORMAL

    def _pair(self, number: int) -> int:
        return curses.color_pair(number) if self._colours else 0

    def nick_attr(self, nick: str) -> int:
        """Bold in the name's own colour; just bold on a terminal without colours."""
        if not self._colours or not nick:
            return curses.A_BOLD
        pair = self._nick_pairs.get(nick)
        if pair is None:
            pair = self._nick_pairs[nick] = PAIR_FIRST_NICK + colour_index(nick, len(self._palette))
        return curses.A_BOLD | curses.color_pair(pair)

    def draw(self, rows: list[Row], status: StatusLine, prompt: str, view: tuple[str, int]) -> None:
        """One whole frame: pane rows from the top, status line, then the input line."""
        height, width = self.size()
        self.stdscr.erase()
        if height < MIN_ROWS or width < MIN_COLUMNS:
            self._draw_too_small(height, width)
        else:
            for y, row in enumerate(rows[: height - 2]):
                self._draw_row(y, row, width)
            self._draw_status(height - 2, width, status)
            self._draw_input(height - 1, width, prompt, view)
        self.stdscr.noutrefresh()
        curses.doupdate()

    def _draw_too_small(self, height: int, width: int) -> None:
        if height < 1 or width < 2:
            return
        notice = fit("Terminal too small", width - 1)
        self.stdscr.addstr(0, 0, notice)
        self.stdscr.move(0, 0)

    def _draw_row(self, y: int, row: Row, width: int) -> None:
        x = row.indent
        for start, end, style, nick in row.styled.runs:
            start, end = max(start, row.start), min(end, row.end)
            if start >= end:
                continue
            piece = row.styled.text[start:end]
            cells = text_width(piece)
            if x + cells > width:  # cannot happen with rows wrapped to ``width``; be safe anyway
                piece = fit(piece, width - x)
                cells = text_width(piece)
            if piece:
                try:
                    self.stdscr.addstr(y, x, drawable(piece), self.style(style, nick))
                except curses.error:  # curses counted cells differently from us (a character newer than its wcwidth?)
                    log.info("could not draw %r at row %d column %d", piece[:40], y, x)
                    return
            x += cells

    def _draw_status(self, y: int, width: int, status: StatusLine) -> None:
        parts = [status.security] if status.security else []
        parts += [status.nick or "(no name yet)", f"{status.number}:{status.room}"]
        if status.online is not None:
            parts.append(f"{status.online} online")
        if status.more_below:  # before the link: it is what a narrow terminal must still show
            parts.append(f"{status.more_below} more below")
        if status.search:
            parts.append(status.search)
        parts.append(status.link)
        text = " " + " | ".join(parts)
        if text_width(text) + text_width(status.server) + 3 <= width:
            text = f" {status.server} |{text}"  # the server name goes first when it fits
        attr = curses.A_REVERSE if not self._colours else self._pair(PAIR_STATUS) | curses.A_BOLD
        pieces = [(text, attr)]
        if status.activity:  # "[Act: 2 3 4]", each number as urgent as what waits there
            pieces.append((" | Act:", attr))
            for number, level in status.activity:
                look = attr & ~curses.A_BOLD if level == ACTIVITY_EVENT else attr
                if level == ACTIVITY_HIGHLIGHT:
                    look = curses.A_REVERSE | curses.A_BOLD | self._pair(PAIR_PRIVATE)
                pieces.append((" ", attr))
                pieces.append((str(number), look))
        x = 0
        for piece, look in pieces:
            piece = fit(piece, width - x)
            if piece:
                self.stdscr.addstr(y, x, drawable(piece), look)
                x += text_width(piece)
        if x < width:
            self.stdscr.addstr(y, x, " " * (width - x), attr)

    def _draw_input(self, y: int, width: int, prompt: str, view: tuple[str, int]) -> None:
        usable = width - 1  # the bottom-right cell is never written
        prompt = fit(prompt, usable // 2)
        visible, cursor = view
        self.stdscr.addstr(y, 0, prompt, curses.A_BOLD)
        x = text_width(prompt)
        if visible:
            self.stdscr.addstr(y, x, drawable(fit(visible, usable - x)))
        self.stdscr.move(y, min(x + cursor, usable - 1))

    def input_width(self, prompt: str) -> int:
        _, width = self.size()
        usable = max(1, width - 1)
        return max(1, usable - text_width(fit(prompt, usable // 2)))
