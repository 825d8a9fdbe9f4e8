"""The message store behind the pane: whole entries, wrapped rows, and the scroll position.

Entries are kept whole (up to ``limit``; the oldest are dropped) and wrapped to the pane's
width only when shown, with a cache per width, so a resize simply re-wraps. The scroll
position is an anchor on an entry, not a row number: ``(entry number, rows of it hidden
below the pane)``, or None while following the newest message. Re-wrapping keeps the same
entry at the bottom of the pane, and new messages never move a reader who scrolled up;
``more_below`` counts the entries they have not reached yet.

The unread marker is a row drawn above one entry (``set_marker``), not an entry of its own,
so moving it changes no numbers. ``find`` searches the stored text for ``/search``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from curses_client.entries import STYLE_MARKER, Entry, Styled, render
from curses_client.width import wrap

DEFAULT_LIMIT = 20_000
MIN_TEXT_CELLS = 10  # a hanging indent never leaves less than this for the text
MARKER_TEXT = "─── unread ───"


@dataclass(frozen=True)
class Row:
    """One screen row: a slice of a rendered entry, drawn after ``indent`` blank cells."""

    styled: Styled
    start: int
    end: int
    indent: int


class Scrollback:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._entries: deque[Entry] = deque()
        self._first = 0  # number of the oldest entry kept (numbers grow forever)
        self._width = 0
        self._rows: dict[int, list[Row]] = {}  # entry number -> rows at self._width
        self._anchor: tuple[int, int] | None = None  # None: follow the newest entry
        self._marker: int | None = None  # number of the entry the unread marker sits above

    # -- storing -------------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        self._entries.append(entry)
        if len(self._entries) > self.limit:
            self._entries.popleft()
            self._rows.pop(self._first, None)
            self._first += 1
            if self._anchor is not None and self._anchor[0] < self._first:
                self._anchor = (self._first, 0)

    def prepend(self, entries: list[Entry], replace_oldest: bool = False) -> None:
        """Put older entries before the oldest (in place of it, if ``replace_oldest``), as many as
        the limit leaves room for. Numbers of the entries already here do not change, so the
        view does not move."""
        if replace_oldest and self._entries:
            self._entries.popleft()
            self._rows.pop(self._first, None)
            self._first += 1
        room = max(0, self.limit - len(self._entries))
        if room < len(entries):
            entries = entries[len(entries) - room:]  # keep the newest of them: next to ours
        for entry in reversed(entries):
            self._entries.appendleft(entry)
            self._first -= 1

    def oldest(self) -> Entry | None:
        return self._entries[0] if self._entries else None

    def at_top(self, width: int, height: int) -> bool:
        """Whether the oldest row is in the pane (scrolling up can go no further)."""
        rows = self.visible(width, height)
        return bool(rows) and rows[0] is self.rows_of(self._first, width)[0]

    def __len__(self) -> int:
        return len(self._entries)

    def end(self) -> int:
        return self._first + len(self._entries)  # one past the newest entry's number (the next one's)

    def set_marker(self, number: int | None) -> None:
        """Draw the unread marker above entry ``number`` (None: nowhere)."""
        for old_or_new in (self._marker, number):
            if old_or_new is not None:
                self._rows.pop(old_or_new, None)
        self._marker = number

    # -- wrapping ------------------------------------------------------------------------

    def rows_of(self, number: int, width: int) -> list[Row]:
        if width != self._width:
            self._rows.clear()
            self._width = width
        rows = self._rows.get(number)
        if rows is None:
            styled = render(self._entries[number - self._first])
            indent = min(styled.indent, max(0, width - MIN_TEXT_CELLS))
            rows = [Row(styled, start, end, row_indent) for start, end, row_indent in wrap(styled.text, width, indent)]
            if number == self._marker:
                marker = Styled(MARKER_TEXT, ((0, len(MARKER_TEXT), STYLE_MARKER, ""),), 0)
                rows[:0] = [Row(marker, start, end, 0) for start, end, _ in wrap(MARKER_TEXT, width, 0)]
            self._rows[number] = rows
        return rows

    # -- what the pane shows -----------------------------------------------------------------

    @property
    def following(self) -> bool:
        return self._anchor is None

    def visible(self, width: int, height: int) -> list[Row]:
        """The rows of a pane ``height`` rows high, oldest first; fewer if there are few."""
        if not self._entries or height <= 0:
            return []
        number, hidden = self._anchor if self._anchor is not None else (self.end() - 1, 0)
        shown: list[Row] = []
        while number >= self._first and len(shown) < height:
            rows = self.rows_of(number, width)
            take = rows[: max(1, len(rows) - hidden)]  # a re-wrap may leave fewer rows
            shown[:0] = take[-(height - len(shown)) :]
            number, hidden = number - 1, 0
        return shown

    def more_below(self) -> int:
        """Entries below the pane that the reader has not reached (0 while following)."""
        if self._anchor is None:
            return 0
        number, hidden = self._anchor
        return self.end() - 1 - number + (1 if hidden else 0)

    # -- scrolling ---------------------------------------------------------------------------

    def _position(self, width: int) -> tuple[int, int]:
        """The anchor (or the newest row), with ``hidden`` cut to what the entry has now."""
        if self._anchor is None:
            return self.end() - 1, 0
        number, hidden = self._anchor
        return number, min(hidden, len(self.rows_of(number, width)) - 1)

    def scroll_up(self, count: int, width: int, height: int) -> None:
        if not self._entries:
            return
        number, hidden = self._position(width)
        for _ in range(count):
            rows = len(self.rows_of(number, width))
            if hidden + 1 < rows:
                candidate = (number, hidden + 1)
            elif number > self._first:
                candidate = (number - 1, 0)
            else:
                break
            if not self._fills_pane(candidate, width, height):
                break  # the oldest row is already at the top of the pane
            number, hidden = candidate
        self._anchor = (number, hidden)
        if self._anchor == (self.end() - 1, 0):
            self._anchor = None

    def scroll_down(self, count: int, width: int) -> None:
        if self._anchor is None:
            return
        number, hidden = self._position(width)
        for _ in range(count):
            if hidden > 0:
                hidden -= 1
            elif number + 1 < self.end():
                number, hidden = number + 1, len(self.rows_of(number + 1, width)) - 1
            else:
                break
        self._anchor = None if (number, hidden) == (self.end() - 1, 0) else (number, hidden)

    def scroll_to_bottom(self) -> None:
        self._anchor = None

    def scroll_to(self, number: int) -> None:
        """Put entry ``number`` at the bottom of the pane (a search result: held there even if it
        is the newest, so that the next search goes on from it)."""
        if self._first <= number < self.end():
            self._anchor = (number, 0)

    def settle(self, width: int, height: int) -> None:
        """Move a held position down until the pane is full (a search can hold it near the top)."""
        if self._anchor is None:
            return
        number, hidden = self._position(width)
        while not self._fills_pane((number, hidden), width, height):
            if hidden > 0:
                hidden -= 1
            elif number + 1 < self.end():
                number, hidden = number + 1, len(self.rows_of(number + 1, width)) - 1
            else:
                self._anchor = None
                return
        self._anchor = (number, hidden)

    def find(self, text: str, older: bool = True, start: int | None = None) -> int | None:
        """The number of the nearest entry holding ``text`` (any case) before entry ``start``
        (``older``) or after it; None if there is none. Without ``start``: from the pane's bottom."""
        needle = text.casefold()
        bottom = start if start is not None else self._anchor[0] if self._anchor is not None else self.end()
        numbers = range(bottom - 1, self._first - 1, -1) if older else range(bottom + 1, self.end())
        return next((number for number in numbers
                     if needle in self._entries[number - self._first].text.casefold()), None)

    def _fills_pane(self, anchor: tuple[int, int], width: int, height: int) -> bool:
        """Whether the pane is still full when ``anchor``'s row is at its bottom."""
        number, hidden = anchor
        rows = len(self.rows_of(number, width)) - hidden
        while rows < height and number > self._first:
            number -= 1
            rows += len(self.rows_of(number, width))
        return rows >= height
