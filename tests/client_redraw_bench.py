"""Measure the client's frame time with 5,000 messages of scrollback, a full window (not a test).

Run ``python tests/client_redraw_bench.py``: it starts itself again inside a pseudo-terminal
(TERM=xterm-256color, 24x80 and 50x200), where it fills a real ``ChatApp`` with a full window of
messages and times ``ChatApp.draw`` (wrapping, drawing, ``doupdate``) 200 times per case:
following the newest message, scrolled back, right after a re-wrap (as after a resize, every
visible message wrapped again), and with a new message arriving before every frame.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curses_client.windows import WINDOW_LINES  # noqa: E402  (after the path is set)

MESSAGES = WINDOW_LINES
FRAMES = 200


def measure(out: Path) -> None:
    from curses_client import net, ui
    from curses_client.app import ChatApp
    from curses_client.entries import Entry, Kind
    from curses_client.model import ChatState

    results = []
    with ui.terminal() as stdscr:
        app = ChatApp(ui.Screen(stdscr), ChatState("host:5555", "#chat", "alice"), net.EventQueue(), net.Sender())
        scrollback = app.state.current.scrollback
        for number in range(MESSAGES):
            text = f"message {number} " + "lorem ipsum dolor sit amet " * (number % 5)
            scrollback.add(Entry(Kind.CHAT, text, f"user{number % 37}", time.time()))

        def timed(label, before=None):
            samples = []
            for _ in range(FRAMES):
                if before is not None:
                    before()
                start = time.perf_counter()
                app.draw()
                samples.append(time.perf_counter() - start)
            samples.sort()
            results.append(f"{label}: median {samples[len(samples) // 2] * 1000:.2f} ms, "
                           f"max {samples[-1] * 1000:.2f} ms")

        timed("following the newest")
        height, width = app.screen.size()
        scrollback.scroll_up(MESSAGES // 2, width, height - 2)
        timed("scrolled back")
        timed("after a re-wrap", lambda: scrollback.rows_of(0, width + 1))  # width change empties the cache
        scrollback.scroll_to_bottom()
        timed("a new message each frame",
              lambda: scrollback.add(Entry(Kind.CHAT, "new message", "bob", time.time())))
    out.write_text("\n".join(results) + "\n")


def main() -> None:
    from ptyprocess import PtyProcess

    env = dict(os.environ, TERM="xterm-256color", LANG="C.UTF-8")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.txt"
        for rows, cols in ((24, 80), (50, 200)):
            child = PtyProcess.spawn([sys.executable, __file__, "--inside", str(out)], env=env, dimensions=(rows, cols))
            while True:  # drain the pty so the child's drawing never blocks
                try:
                    child.read(65536)
                except EOFError:
                    break
            child.wait()
            print(f"{rows}x{cols}, {MESSAGES} messages:")
            print(out.read_text())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        measure(Path(sys.argv[2]))
    else:
        main()
