"""Chat logs (``--log-dir``): one file per window and day, as irssi's autolog keeps them.

``DIR/<window>/<YYYY-MM-DD>.log``, one line per message as the pane shows it. A window's
name comes from the network, so it is made safe for a file name first (``safe_file_name``):
no path separators, no leading dot, nothing a file system could take as special. Files
are opened when first written and kept open (at most ``MAX_OPEN`` of them). A directory that
cannot be made is an ``OSError`` at once; a write that fails later is one too, for the app to
say once and stop logging.
"""

from __future__ import annotations

import os
import re
import time
from typing import TextIO

from curses_client.entries import Entry, render

MAX_OPEN = 32
_UNSAFE = re.compile(r"[^A-Za-z0-9#&+_.=-]")
_WINDOWS_DEVICE = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\.|$)")


def safe_file_name(name: str) -> str:
    """A window name as a file name: unsafe characters as ``_``, never hidden or empty.

    >>> safe_file_name("#chat"), safe_file_name("../../etc"), safe_file_name("127.0.0.1:5555"), safe_file_name("NUL")
    ('#chat', '_._.._etc', '127.0.0.1_5555', '_nul')
    """
    cleaned = _UNSAFE.sub("_", name)[:100].lower()
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if _WINDOWS_DEVICE.match(cleaned):  # "nul", "com1.txt": a device on Windows, not a file
        cleaned = "_" + cleaned
    return cleaned or "_"


class ChatLog:
    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._files: dict[str, tuple[str, TextIO]] = {}  # window file name -> (day, open file)

    def write(self, window: str, entry: Entry) -> None:
        if entry.replayed:
            return  # history replayed by the server was logged when it was live
        name = safe_file_name(window)
        day = time.strftime("%Y-%m-%d", time.localtime(entry.when))
        handle = self._file(name, day)
        handle.write(render(entry).text + "\n")
        handle.flush()

    def _file(self, name: str, day: str) -> TextIO:
        opened = self._files.get(name)
        if opened is not None and opened[0] == day:
            return opened[1]
        if opened is not None:
            opened[1].close()
        elif len(self._files) >= MAX_OPEN:
            oldest = next(iter(self._files))
            self._files.pop(oldest)[1].close()
        folder = os.path.join(self.directory, name)
        os.makedirs(folder, exist_ok=True)
        handle = open(os.path.join(folder, f"{day}.log"), "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        self._files[name] = (day, handle)
        return handle

    def close(self) -> None:
        for _, handle in self._files.values():
            handle.close()
        self._files.clear()
