"""Keys in, editing commands out: the part of input handling that needs no curses.

The UI reads keys with ``get_wch`` and passes them here: a ``str`` character, or the name
of a special key (the UI turns curses key codes into names such as "left" or "ctrl-left").
``KeyDecoder`` recognises what curses leaves undecoded: Alt-prefixed keys and CSI sequences
arriving as ESC plus characters, and bracketed paste (ESC [200~ ... ESC [201~), whose text
is delivered whole as one ``Paste`` so that a pasted line break never acts as Enter.

Text that arrived all at once (``feed_batch``, fed by ``keyboard.Keyboard``) is taken in
bulk: a run of ordinary characters becomes one "char:..." item, and a batch with a line
break followed by more text is a paste from a terminal without bracketed paste: it too
becomes one ``Paste``, never lines sent one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
ESCAPE = "\x1b"
PASTE_LIMIT = 32 * 1024 * 1024  # characters one paste may hold; the rest is dropped

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
    "s": "search-newer",  # Alt-S (Ctrl-S is flow control in many terminals)
    **{str(digit): f"window-{digit or 10}" for digit in range(10)},  # Alt-1..Alt-9, Alt-0
    "[200~": "paste-start",
    "r": "retry",  # Alt-r: reconnect now instead of waiting
}
_PREFIXES = {sequence[:n] for sequence in ESCAPE_SEQUENCES for n in range(1, len(sequence))}


@dataclass(frozen=True)
class Paste:
    text: str  # newlines normalised to "\n"; no other control characters (tabs become spaces)
    marked: bool = True  # False: recognised by its shape, without bracketed paste's markers


Decoded = str | Paste  # a named key ("left"), printable characters ("char:a"), or a paste

# Pasted text keeps its line breaks; other C0 and C1 controls go, a tab becomes a space.
_PASTE_CLEAN = {code: None for code in [*range(0x20), *range(0x7F, 0xA0)] if code != 0x0A} | {0x09: " "}
_PLAIN_RUN = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")


def clean_paste(text: str) -> str:
    """Pasted text as it goes into the input line: "\n" line breaks, no control characters.

    >>> clean_paste("a\\tb\\r\\nc\\rd\\x07\\x1b[31m")
    'a b\\nc\\nd[31m'
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_PASTE_CLEAN)


def looks_pasted(text: str) -> bool:
    """Text that arrived at once holds a line break with more text after it: a paste.

    A typist's keys come one at a time; even typed fast, only an Enter at the very end.

    >>> looks_pasted("one\\ntwo"), looks_pasted("hello\\r"), looks_pasted("x" + PASTE_START + "a\\nb")
    (True, False, False)
    """
    body = text.rstrip("\r\n")
    return ("\n" in body or "\r" in body) and PASTE_START not in text
def _named(char: str) -> str:
    return "char:" + char


class KeyDecoder:
    """Feed keys one at a time; get back named keys, characters ("char:x") and pastes."""

    def __init__(self) -> None:
        self._pending = ""  # an escape sequence begun but not finished
        self._paste: list[str] | None = None  # text of a paste in progress, in chunks
        self._paste_size = 0  # characters in _paste
        self._paste_tail = ""  # its last few characters: the end marker may straddle two feeds
        self._skipping = False  # inside an unknown CSI sequence, up to its final byte

    @property
    def idle(self) -> bool:
        """Not inside an escape sequence (a paste in progress counts as idle)."""
        return not self._pending and not self._skipping

    def feed_batch(self, text: str, after_paste: bool = False) -> list[Decoded]:
        """Characters that arrived all at once: a paste if ``looks_pasted``, else as typed.

        ``after_paste``: the batch came right after an unmarked paste, so it is the rest of
        it (a large paste arrives in pieces): a line break in it makes it a paste too, unless
        it is nothing but an Enter.
        """
        rest_of_paste = (
            after_paste and text.strip("\r\n") and ("\n" in text or "\r" in text) and PASTE_START not in text
        )
        if self._paste is None and self.idle and (looks_pasted(text) or rest_of_paste):
            return [Paste(clean_paste(text), marked=False)]
        return self.feed_text(text)

    def feed_text(self, text: str) -> list[Decoded]:
        """Many characters: like ``feed`` on each, with runs of ordinary ones kept together."""
        out: list[Decoded] = []
        position, length = 0, len(text)
        while position < length:
            if self._paste is not None:
                position, pasted = self._feed_paste(text, position)
                out += pasted
                continue
            run = _PLAIN_RUN.match(text, position) if self.idle else None
            if run is not None:
                out.append(_named(run.group()))
                position = run.end()
            else:
                out += self.feed(text[position])
                position += 1
        return out

    def feed(self, key: str) -> list[Decoded]:
        """One key from the UI: a named key, or a one-character string."""
        if len(key) != 1:
            if self._paste is not None:
                return []  # keys curses decoded inside a paste mean nothing: skip them
            return self._flush_pending() + [key]
        if self._paste is not None:
            return self._feed_paste(key, 0)[1]
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
        lone = self._pending == ESCAPE
        self._flush_pending()
        return ["escape"] if lone else []

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

    def _feed_paste(self, text: str, position: int) -> tuple[int, list[Decoded]]:
        """Take paste text from ``text[position:]`` up to the end marker; (new position, done)."""
        assert self._paste is not None
        chunk = text[position:]
        probe = self._paste_tail + chunk
        marker = probe.find(PASTE_END)
        if marker < 0:
            self._add_to_paste(chunk)
            self._paste_tail = probe[-(len(PASTE_END) - 1) :]
            return len(text), []
        cut = marker - len(self._paste_tail)  # where the marker starts in chunk (< 0: in the tail)
        self._add_to_paste(chunk[: max(cut, 0)])
        pasted = "".join(self._paste)
        if cut < 0:
            pasted = pasted[:cut]
        self._paste, self._paste_size, self._paste_tail = None, 0, ""
        return position + cut + len(PASTE_END), [Paste(clean_paste(pasted))]

    def _add_to_paste(self, chunk: str) -> None:
        assert self._paste is not None
        room = PASTE_LIMIT - self._paste_size
        if len(chunk) > room:
            chunk = chunk[:room]  # a paste that never ends must not fill the memory
        self._paste.append(chunk)
        self._paste_size += len(chunk)
