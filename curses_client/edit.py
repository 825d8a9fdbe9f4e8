"""The input line editor: text, a cursor, history and completion. No curses in here.

``LineEditor`` holds the line being typed as a string and the cursor as an index into it
(0..len). Every key the UI understands maps to one method. ``view`` works out which part of
a line longer than the screen is shown, so the input scrolls sideways with the cursor.
Pasted newlines stay in the text as "\\n" until Enter; ``submit`` then hands back the lines.
Lines of a paste are text, never commands: ``submit`` gives each pasted line that starts
with "/" a second "/", the command parser's escape for saying it. A paste of more than
``PASTE_SUMMARY_LINES`` lines is shown as a one-line summary until it is sent or cleared.
"""

from __future__ import annotations

from collections.abc import Iterable

from curses_client.width import (
    cluster_width,
    is_boundary,
    next_boundary,
    previous_boundary,
)

HISTORY_LIMIT = 500
NEWLINE_SHOWN_AS = "\u21b5"  # ↵: a pasted line break, as drawn in the input line
PASTE_SUMMARY_LINES = 3  # a paste longer than this is summarised in the input line
TEXT_LIMIT = 32 * 1024 * 1024  # characters the input line holds; more is not taken in
COMMAND_ESCAPE = "/"  # "//text" says "/text" (commands.parse_input)


def _is_word(char: str) -> bool:
    return not char.isspace()


class LineEditor:
    """One editable line with its history of sent lines."""

    def __init__(self) -> None:
        self.text = ""
        self.cursor = 0
        self.history: list[str] = []
        self._history_index = 0  # == len(history) while editing a fresh line
        self._draft = ""  # the fresh line, kept while browsing history
        self._completion: tuple[str, int, list[str], int] | None = None  # (text, start, matches, index)
        self._starts_pasted = False  # the text's first line begins with pasted text
        self.lines = 1  # lines in the text (pastes add line breaks)

    def _set(self, text: str, cursor: int) -> None:
        cursor = max(0, min(cursor, len(text)))
        while not is_boundary(text, cursor):
            cursor -= 1  # never inside a cluster (a character and its marks, an emoji sequence)
        if text is not self.text:
            self.lines = text.count("\n") + 1
            if not text:
                self._starts_pasted = False
        self.text, self.cursor = text, cursor
        self._completion = None

    # -- typing and deleting ------------------------------------------------------------

    def insert(self, chars: str) -> None:
        chars = chars[: max(0, TEXT_LIMIT - len(self.text))]
        if self.cursor == 0 and chars:
            self._starts_pasted = False
        self._set(self.text[: self.cursor] + chars + self.text[self.cursor :], self.cursor + len(chars))

    def paste(self, text: str) -> None:
        """Insert pasted text (line breaks as "\\n"): one edit, however large."""
        starts_pasted = self.cursor == 0 and bool(text)
        self.insert(text)
        self._starts_pasted = self._starts_pasted or starts_pasted

    def escape(self) -> None:
        """Esc: a paste shown as a summary is cleared; otherwise nothing happens."""
        if self.summarised:
            self.clear()

    @property
    def summarised(self) -> bool:
        return self.lines > PASTE_SUMMARY_LINES

    def backspace(self) -> None:
        if self.cursor:
            start = previous_boundary(self.text, self.cursor)  # the whole cluster goes
            self._set(self.text[:start] + self.text[self.cursor :], start)

    def delete(self) -> None:
        end = next_boundary(self.text, self.cursor)
        self._set(self.text[: self.cursor] + self.text[end:], self.cursor)

    def kill_to_start(self) -> None:  # Ctrl-U
        self._set(self.text[self.cursor :], 0)

    def kill_to_end(self) -> None:  # Ctrl-K
        self._set(self.text[: self.cursor], self.cursor)

    def delete_word_before(self) -> None:  # Ctrl-W
        start = self._word_start(self.cursor)
        self._set(self.text[:start] + self.text[self.cursor :], start)

    def clear(self) -> None:
        self._set("", 0)

    # -- moving ---------------------------------------------------------------------------

    def left(self) -> None:
        self._set(self.text, previous_boundary(self.text, self.cursor))

    def right(self) -> None:
        self._set(self.text, next_boundary(self.text, self.cursor))

    def home(self) -> None:
        self._set(self.text, 0)

    def end(self) -> None:
        self._set(self.text, len(self.text))

    def word_left(self) -> None:
        self._set(self.text, self._word_start(self.cursor))

    def word_right(self) -> None:
        position, text = self.cursor, self.text
        while position < len(text) and not _is_word(text[position]):
            position += 1
        while position < len(text) and _is_word(text[position]):
            position += 1
        self._set(text, position)

    def _word_start(self, position: int) -> int:
        text = self.text
        while position > 0 and not _is_word(text[position - 1]):
            position -= 1
        while position > 0 and _is_word(text[position - 1]):
            position -= 1
        return position

    # -- history ----------------------------------------------------------------------------

    def history_up(self) -> None:
        if self._history_index == 0:
            return
        if self._history_index == len(self.history):
            self._draft = self.text
        self._history_index -= 1
        self._recall(self.history[self._history_index])

    def _recall(self, line: str) -> None:
        self._set(line, len(line))
        self._starts_pasted = False  # what was pasted first is stored escaped already

    def history_down(self) -> None:
        if self._history_index >= len(self.history):
            return
        self._history_index += 1
        self._recall(self._draft if self._history_index == len(self.history) else self.history[self._history_index])

    def submit(self, remember: bool = True) -> list[str]:
        """Enter: empty the editor, remember the text, return its lines (several if pasted).

        Pasted lines that start with "/" come back escaped, as text; history keeps a pasted
        first line escaped too, so a recalled paste shows what it will do.
        """
        text = self.text
        if self._starts_pasted and text.startswith(COMMAND_ESCAPE):
            text = COMMAND_ESCAPE + text
        if remember and text.strip() and (not self.history or self.history[-1] != text):
            self.history.append(text)
            del self.history[:-HISTORY_LIMIT]
        self._history_index, self._draft = len(self.history), ""
        self._set("", 0)
        return [
            COMMAND_ESCAPE + line if index and line.startswith(COMMAND_ESCAPE) else line
            for index, line in enumerate(text.split("\n"))
            if line.strip()
        ]

    # -- completion -------------------------------------------------------------------------

    def complete(self, commands: Iterable[str], nicks: Iterable[str]) -> None:
        """Tab: complete the word before the cursor; pressing Tab again cycles the matches.

        The first word of a line that starts with "/" completes from ``commands``; any other
        word from ``nicks``, and a nick at the start of the line gets ": " after it.
        """
        if self._completion is not None and self._completion[0] == self.text:
            _, start, matches, index = self._completion
            index = (index + 1) % len(matches)
        else:
            start = self._word_start(self.cursor)
            word = self.text[start : self.cursor]
            if not word:
                return
            pool = commands if start == 0 and word.startswith("/") else nicks
            folded = word.lower()
            matches = sorted({name for name in pool if name.lower().startswith(folded)}, key=str.lower)
            if not matches:
                return
            index = 0
        match = matches[index]
        suffix = ": " if start == 0 and not match.startswith("/") else " "
        previous_end = self.cursor
        text = self.text[:start] + match + suffix + self.text[previous_end:]
        self._set(text, start + len(match) + len(suffix))
        # remembered so that the next Tab replaces what this one inserted
        self._completion = (self.text, start, matches, index)

    # -- display ----------------------------------------------------------------------------

    def view(self, width: int, offset: int = 0, mask: str | None = None) -> tuple[str, int, int]:
        """What the input line shows in ``width`` cells: (visible text, cursor cell, offset).

        ``offset`` is the index of the first character shown last time; it moves only as
        far as needed to keep the cursor on screen, so the line does not jump while typing.
        Pasted line breaks are shown as "↵". With ``mask`` (one narrow character) every
        cluster shows as that, as a password should. The work done is what is shown, near
        the cursor, however long the text: a pasted megabyte costs no more to draw than a word.

        >>> editor = LineEditor()
        >>> editor.insert("s3crét")
        >>> editor.view(20, mask="*")
        ('******', 6, 0)
        """
        width = max(1, width)
        if self.summarised and not mask:
            summary = f"[paste: {self.lines} lines, Enter sends, Esc clears]"
            if len(summary) >= width:
                summary = f"[paste: {self.lines} lines]"
            summary = summary[: width - 1]
            return summary, len(summary), 0
        text, cursor = self.text, self.cursor

        def cells(start: int, end: int) -> int:
            if mask:
                return 1
            return 1 if end == start + 1 and text[start].isascii() else cluster_width(text[start:end])

        offset = min(max(0, offset), cursor)
        while not is_boundary(text, offset):
            offset -= 1  # never start the view inside a cluster
        # keep the cursor inside the window, with its own cell free at the right edge: the
        # earliest start allowed is found walking back from the cursor, one cluster at a time
        lowest, used = cursor, 0
        while lowest > offset:
            before = previous_boundary(text, lowest)
            used += cells(before, lowest)
            if used > width - 1:
                break
            lowest = before
        offset = max(offset, lowest)
        cursor_cell = sum_cells = 0
        position = offset
        while position < cursor:  # at most ``width`` cells of clusters, by the walk above
            end = next_boundary(text, position)
            cursor_cell += cells(position, end)
            position = end
        # but leave no blank space at the right while text is hidden at the left (after a
        # deletion, or when the window got wider): only when what follows the start fits
        tail, position = cursor_cell, cursor
        while position < len(text) and tail <= width:
            end = next_boundary(text, position)
            tail += cells(position, end)
            position = end
        room_for_cursor = 1 if cursor == len(text) else 0
        while offset > 0:
            before = previous_boundary(text, offset)
            extra = cells(before, offset)
            if tail + extra + room_for_cursor > width or cursor_cell + extra > width - 1:
                break
            offset, tail, cursor_cell = before, tail + extra, cursor_cell + extra
        visible, sum_cells, position = [], 0, offset
        while position < len(text):
            end = next_boundary(text, position)
            shown = cells(position, end)
            if sum_cells + shown > width:
                break
            visible.append(mask if mask else text[position:end].replace("\n", NEWLINE_SHOWN_AS))
            sum_cells += shown
            position = end
        return "".join(visible), cursor_cell, offset
