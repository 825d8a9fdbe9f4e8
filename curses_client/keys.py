"""Keys in, editing commands out: the part of input handling that needs no curses.

The UI reads keys with ``get_wch`` and passes them here: a ``str`` character, or the name
of a special key (the UI turns curses key codes into names such as "left" or "ctrl-left").
``KeyDecoder`` recognises what curses leaves undecoded: Alt-prefixed keys and CSI sequences
arriving as ESC plus characters, and bracketed paste (ESC [200~ ... ESC [201~), whose text
is delivered whole as one ``Paste`` so that a pasted line break never acts as Enter.
"""

from __future__ import annotations

from dataclasses import dataclass

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
ESCAPE = "\x1b"

# Control characters and what they do. Ctrl-C is not here: it arrives as SIGINT.
CONTROL_KEYS = {
    "\n": "enter",
    "\r": "enter",
    "\x7f": "backspace",
    "\x08": "backspace",
    "\x01": "home",
    "\x05": "end",
    "\x15": "kill-to-start",
    "\x0b": "kill-to-end",
    "\x17": "delete-word",
    "\t": "tab",
    "\x02": "left",
    "\x06": "right",
    "\x04": "delete",
    "\x0c": "redraw",
    "\x10": "previous-window",  # Ctrl-P
    "\x0e": "next-window",  # Ctrl-N
    "\x12": "search-older",  # Ctrl-R
}

# Sequences after ESC that curses may pass through undecoded (depends on the terminfo).
ESCAPE_SEQUENCES = {
    "[A": "up", "[B": "down", "[C": "right", "[D": "left",
    "OA": "up", "OB": "down", "OC": "right", "OD": "left",
    "[H": "home", "[F": "end", "OH": "home", "OF": "end",
    "[1~": "home", "[4~": "end", "[7~": "home", "[8~": "end",
    "[3~": "delete", "[5~": "page-up", "[6~": "page-down",
    "[1;5C": "ctrl-right", "[1;5D": "ctrl-left", "[1;3C": "ctrl-right", "[1;3D": "ctrl-left",
    "OM": "enter",
    "b": "ctrl-left", "f": "ctrl-right",  # Alt-b / Alt-f, as in readline
    "\x7f": "delete-word", "\x08": "delete-word",  # Alt-Backspace
    "[1;5F": "scroll-end", "[1;3F": "scroll-end",  # Ctrl-End, Alt-End
    "r": "search-newer",  # Alt-R
    **{str(digit): f"window-{digit or 10}" for digit in range(10)},  # Alt-1..Alt-9, Alt-0
    "[200~": "paste-start",
}
_PREFIXES = {sequence[:n] for sequence in ESCAPE_SEQUENCES for n in range(1, len(sequence))}


@dataclass(frozen=True)
class Paste:
    text: str  # newlines normalised to "\n"


Decoded = str | Paste  # a named key ("left"), a printable character ("a"), or a paste


def _named(char: str) -> str:
    return "char:" + char


class KeyDecoder:
    """Feed keys one at a time; get back named keys, characters ("char:x") and pastes."""

    def __init__(self) -> None:
        self._pending = ""  # an escape sequence begun but not finished
        self._paste: list[str] | None = None  # text of a paste in progress
        self._skipping = False  # inside an unknown CSI sequence, up to its final byte

    @property
    def pasting(self) -> bool:
        return self._paste is not None

    def feed(self, key: str) -> list[Decoded]:
        """One key from the UI: a named key, or a one-character string."""
        if len(key) != 1:
            if self._paste is not None:
                return []  # keys curses decoded inside a paste mean nothing: skip them
            return self._flush_pending() + [key]
        if self._paste is not None:
            return self._feed_paste(key)
        if self._skipping:
            self._skipping = not ("\x40" <= key <= "\x7e")
            return []
        if self._pending or key == ESCAPE:
            return self._feed_escape(key)
        name = CONTROL_KEYS.get(key)
        if name is not None:
            return [name]
        if ord(key) < 0x20 or 0x7F <= ord(key) < 0xA0:
            return []  # other control keys do nothing
        return [_named(key)]

    def timeout(self) -> list[Decoded]:
        """No key came for a while: an unfinished escape was a lone ESC press."""
        return self._flush_pending()

    def _flush_pending(self) -> list[Decoded]:
        self._pending, self._skipping = "", False
        return []

    def _feed_escape(self, key: str) -> list[Decoded]:
        if not self._pending:
            self._pending = key
            return []
        body = self._pending[1:] + key
        if body in ESCAPE_SEQUENCES:
            self._pending = ""
            name = ESCAPE_SEQUENCES[body]
            if name == "paste-start":
                self._paste = []
                return []
            return [name]
        if body in _PREFIXES:
            self._pending += key
            return []
        self._pending = ""
        if key == ESCAPE:
            self._pending = ESCAPE  # ESC ESC: the first was lone, the second may start one
            return []
        if len(body) > 1 and body[0] in "[O":
            # an unknown sequence is swallowed whole rather than typed as text
            self._skipping = body[0] == "[" and not ("\x40" <= key <= "\x7e")
            return []
        return self.feed(key)  # ESC then an ordinary key: just the key

    def _feed_paste(self, key: str) -> list[Decoded]:
        assert self._paste is not None
        self._paste.append(key)
        if key == "~" and "".join(self._paste[-len(PASTE_END) :]) == PASTE_END:
            text = "".join(self._paste[: -len(PASTE_END)])
            self._paste = None
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            return [Paste(text)]
        return []
