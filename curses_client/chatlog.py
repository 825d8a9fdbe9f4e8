"""Chat logs (``--log-dir``): one file per window and day, as irssi's autolog keeps them.

``DIR/<window>/<YYYY-MM-DD>.log``, one line per message as the pane shows it. A window's
name comes from the network, so it is made safe for a file name first (``safe_file_name``):
no path separators, no leading dot, nothing a file system could take as special, and a
name that had to change gets a short digest of itself, so two windows never share a file. Files
are opened when first written and kept open (at most ``MAX_OPEN`` of them). A directory that
cannot be made is an ``OSError`` at once; a write that fails later is one too, for the app to
say once and stop logging.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import TextIO

from curses_client.entries import Entry, render

MAX_OPEN = 32
_UNSAFE = re.compile(r"[^A-Za-z0-9#&+_.=-]")
_WINDOWS_DEVICE = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\.|$)")


def safe_file_name(name: str) -> str:
    """A window name as a file name: unsafe characters as ``_``, never hidden or empty, and
    different names (once folded to lower case) never the same file name.

    >>> safe_file_name("#chat"), safe_file_name("Bob"), safe_file_name("bob|away"), safe_file_name("../etc")
    ('#chat', 'bob', 'bob_away~e276431fb4', '_._etc~f7f9121fdb')
    """
    folded = name.lower()
    cleaned = _UNSAFE.sub("_", folded)[:100]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if _WINDOWS_DEVICE.match(cleaned):  # "nul", "com1.txt": a device on Windows, not a file
        cleaned = "_" + cleaned
    if cleaned != folded:  # changed: a digest after "~" (never left in a name) keeps names apart
        cleaned += "~" + hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()[:10]
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
