"""Reading the keyboard: one key from curses, then everything already waiting, at once.

``Keyboard.read`` waits for a key with curses (``Screen.read_key``, which also reports
resizes and decodes the keypad; the wait also ends early when the network wakes the UI, so
an ESC is taken for the Esc key only after ``LONE_ESCAPE_WAIT`` without a key). What follows it without a pause (a paste, keys typed over
a slow link) is read straight from the terminal in as few reads as the kernel allows and
handed to ``KeyDecoder.feed_batch`` as one string: a 5 MB paste is one edit, not five
million keys, and several lines arriving together are held as a paste, never sent line by
line, even where the terminal does not mark pastes (bracketed paste).

Reading past curses is safe only while curses holds nothing back: ncurses reads one byte
at a time, except while it matches an escape sequence, whose leftovers it keeps and returns
first. So the direct read happens only when the decoder is between escape sequences;
inside one, keys come from curses one by one. On Windows (no ``select`` on the console)
every key comes from curses, as many as are waiting, up to ``MAX_KEYS_PER_PASS``, and the
characters among them are still decoded as one batch.
"""

from __future__ import annotations

import codecs
import locale
import logging
import math
import os
import select
import sys
import time
from collections.abc import Callable
from typing import Protocol

from curses_client.keys import ESCAPE, Decoded, KeyDecoder, Paste

log = logging.getLogger(__name__)

PASTE_GAP = 0.02  # seconds of quiet that end what "arrived at once" means
AFTER_PASTE = 0.2  # text this soon after a paste is the rest of it
READ_BYTES = 65536
MAX_BATCH_BYTES = 16 * 1024 * 1024  # read per pass at most; the rest comes in the next pass
MAX_KEYS_PER_PASS = 4096  # keys read one by one (Windows) before the screen is drawn again
UTF8_COMPLETION_WAIT = 0.2  # how long the rest of a character cut by a read may take
LONE_ESCAPE_WAIT = 0.1  # no key this long after ESC: it was the Esc key, not a sequence's start


class KeySource(Protocol):
    def read_key(self, wait: bool = True) -> str | None: ...


class Keyboard:
    """The decoder plus the terminal it reads: ``read`` returns what one pass of the UI handles."""

    def __init__(self, fd: int | None, encoding: str = "utf-8",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.decoder = KeyDecoder()
        self._clock = clock
        self._last_key = -math.inf
        self._fd = fd  # None: read through curses only
        self._text = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._last_paste = -math.inf

    @classmethod
    def for_terminal(cls) -> Keyboard:
        if sys.platform == "win32" or not sys.stdin.isatty():
            return cls(None)
        return cls(sys.stdin.fileno(), locale.getpreferredencoding(False))

    def read(self, screen: KeySource) -> list[Decoded]:
        key = screen.read_key()
        if key is None:
            if self._clock() - self._last_key < LONE_ESCAPE_WAIT:
                return []  # woken early (a line from the server): an escape may still be arriving
            return self.decoder.timeout()
        self._last_key = self._clock()
        if self._fd is None:
            return self._read_through_curses(screen, key)
        first, out = "", []
        if len(key) == 1 and key != ESCAPE and self.decoder.idle:
            first = key
        else:
            out = self.decoder.feed(key)
        if not self.decoder.idle:
            return out  # inside an escape sequence: curses may hold its rest; key by key
        text = first + self._read_waiting()
        if text:
            decoded = self.decoder.feed_batch(text, after_paste=time.monotonic() - self._last_paste < AFTER_PASTE)
            if any(isinstance(item, Paste) and not item.marked for item in decoded):
                self._last_paste = time.monotonic()
            out += decoded
        return out

    def _read_waiting(self) -> str:
        """Everything the terminal has sent and goes on sending without a PASTE_GAP pause."""
        assert self._fd is not None
        pieces: list[str] = []
        size, wait = 0, 0.0
        while size < MAX_BATCH_BYTES:
            if not select.select([self._fd], [], [], wait)[0]:
                if not self._text.getstate()[0]:
                    break  # quiet, and no character cut in two by the last read
                if wait >= UTF8_COMPLETION_WAIT:
                    log.info("an incomplete character from the terminal was dropped")
                    pieces.append(self._text.decode(b"", final=True))
                    break
                wait = UTF8_COMPLETION_WAIT  # the rest of that character is on its way
                continue
            data = os.read(self._fd, READ_BYTES)
            if not data:
                break
            pieces.append(self._text.decode(data))
            size += len(data)
            wait = PASTE_GAP  # input is streaming in: wait a moment for the rest of it
        return "".join(pieces)

    def _read_through_curses(self, screen: KeySource, key: str) -> list[Decoded]:
        """Every key from curses, as many as wait: characters still go through ``feed_batch``
        together, so a paste is recognised here too."""
        out: list[Decoded] = []
        text: list[str] = []
        for _ in range(MAX_KEYS_PER_PASS):
            if len(key) == 1:
                text.append(key)
            else:
                out += self.decoder.feed_batch("".join(text)) + self.decoder.feed(key)
                text = []
            next_key = screen.read_key(wait=False)
            if next_key is None:
                break
            key = next_key
        return out + self.decoder.feed_batch("".join(text))
