"""The input line editor: text, a cursor, history and completion. No curses in here.

``LineEditor`` holds the line being typed as a string and the cursor as an index into it
(0..len). Every key the UI understands maps to one method. ``view`` works out which part of
a line longer than the screen is shown, so the input scrolls sideways with the cursor.
Pasted newlines stay in the text as "\\n" until Enter; ``submit`` then hands back the lines.
"""

from __future__ import annotations

from collections.abc import Iterable

from curses_client.width import char_width, text_width

HISTORY_LIMIT = 500
NEWLINE_SHOWN_AS = "\u21b5"  # ↵: a pasted line break, as drawn in the input line


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

    def _set(self, text: str, cursor: int) -> None:
        cursor = max(0, min(cursor, len(text)))
        while 0 < cursor < len(text) and char_width(text[cursor]) == 0:
            cursor -= 1  # never between a character and its combining marks
        self.text, self.cursor = text, cursor
        self._completion = None

    # -- typing and deleting ------------------------------------------------------------

    def insert(self, chars: str) -> None:
        self._set(self.text[: self.cursor] + chars + self.text[self.cursor :], self.cursor + len(chars))

    def backspace(self) -> None:
        if self.cursor:
            start = self.cursor - 1
            while start > 0 and char_width(self.text[start]) == 0:
                start -= 1  # a combining mark goes together with its base character
            self._set(self.text[:start] + self.text[self.cursor :], start)

    def delete(self) -> None:
        end = self._next_char(self.cursor)
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
        position = self.cursor - 1
        while position > 0 and char_width(self.text[position]) == 0:
            position -= 1
        self._set(self.text, position)

    def right(self) -> None:
        self._set(self.text, self._next_char(self.cursor))

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

    def _next_char(self, position: int) -> int:
        if position >= len(self.text):
            return len(self.text)
        position += 1
        while position < len(self.text) and char_width(self.text[position]) == 0:
            position += 1
        return position

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
        line = self.history[self._history_index]
        self._set(line, len(line))

    def history_down(self) -> None:
        if self._history_index >= len(self.history):
            return
        self._history_index += 1
        line = self._draft if self._history_index == len(self.history) else self.history[self._history_index]
        self._set(line, len(line))

    def submit(self, remember: bool = True) -> list[str]:
        """Enter: empty the editor, remember the text, return its lines (several if pasted)."""
        text = self.text
        if remember and text.strip() and (not self.history or self.history[-1] != text):
            self.history.append(text)
            del self.history[:-HISTORY_LIMIT]
        self._history_index, self._draft = len(self.history), ""
        self._set("", 0)
        return [line for line in text.split("\n") if line.strip()]

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
        character shows as that, as a password should.

        >>> editor = LineEditor()
        >>> editor.insert("s3crét")
        >>> editor.view(20, mask="*")
        ('******', 6, 0)
        """
        width = max(1, width)
        shown = mask * len(self.text) if mask else self.text.replace("\n", NEWLINE_SHOWN_AS)
        offset = min(offset, self.cursor)
        while 0 < offset < len(shown) and char_width(shown[offset]) == 0:
            offset -= 1  # never start the view on a combining mark
        # keep the cursor inside the window, with its own cell free at the right edge
        while text_width(shown[offset : self.cursor]) > width - 1 and offset < self.cursor:
            offset += 1
        # but leave no blank space at the right while text is hidden at the left (after a
        # deletion, or when the window got wider)
        cursor_cell = 1 if self.cursor == len(shown) else 0
        while (
            offset > 0
            and text_width(shown[offset - 1 :]) + cursor_cell <= width
            and text_width(shown[offset - 1 : self.cursor]) <= width - 1
        ):
            offset -= 1
        visible, used = [], 0
        for char in shown[offset:]:
            cells = char_width(char)
            if used + cells > width:
                break
            visible.append(char)
            used += cells
        return "".join(visible), text_width(shown[offset : self.cursor]), offset
