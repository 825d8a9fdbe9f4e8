"""The program: command line, start-up, and the one UI loop that ties the pieces together.

``main`` connects first (an unreachable server, or a TLS certificate that does not verify,
is one sentence on stderr and exit status 1), then starts the network thread and enters
the terminal. ``ChatApp.run`` is the loop:
read keys (waiting a short timeout, so an idle client sleeps, or until the network thread
rings the event queue's ``Wakeup``, so a server line is drawn as soon as it arrives), drain
the event queue into the chat state, and redraw once, only when something changed. A ``Reaction`` from
the state is carried out in one place (``_show``): its lines go into their windows (and the
chat logs), the bell rings for a mention or private message, its IRC lines are sent.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import ssl
import sys
import time

from curses_client import commands, handle, net, tls, ui
from curses_client.chatlog import ChatLog
from curses_client.edit import LineEditor
from curses_client.entries import Entry, Kind, make
from curses_client.irc import format_line
from curses_client.keyboard import Keyboard
from curses_client.keys import Paste
from curses_client.model import (
    ChatState,
    Phase,
    Reaction,
    Transport,
    clean_typed,
    is_safe_name,
)
from curses_client.rules import ServerRules
from curses_client.scrollback import Row
from curses_client.windows import Activity, activity_of

log = logging.getLogger(__name__)

QUIT_WAIT = 2.0  # seconds to let the server see our QUIT and close before we go
NAME_PROMPT = "Username: "
PASSWORD_PROMPT = "Password: "
OPER_PROMPT = "Operator password: "
PASSWORD_MASK = "*"
CHAT_PROMPT = "> "
PASSWORD_VARIABLE = "CHAT_PASSWORD"  # the password from the environment keeps it out of ps
PLAIN_PORT, TLS_PORT = 5555, 6697
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_SIGNAL_BASE = 128  # exit status 128 + signal number, as shells report it


def program_name() -> str:
    """The command as the user typed it, for usage lines: ``chat`` when run as the installed
    command, ``python -m curses_client`` from a clone (where argv[0] is ``__main__.py``)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m curses_client" if name in ("", "__main__.py", "-c") else name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="Terminal chat client for the chat server (and any IRC server).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default %(default)s)")
    parser.add_argument("--port", type=int, help=f"server port (default {PLAIN_PORT}, or {TLS_PORT} with --tls)")
    parser.add_argument("--username", help="your name (the server's rules apply); asked on screen if not given")
    parser.add_argument("--room", default="#chat", help="room to join if the server does not put you in one (default %(default)s)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS, verifying the server's certificate")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="with --tls: trust the certificate authorities in this PEM file instead of the system's")
    parser.add_argument("--tls-insecure", action="store_true",
                        help="with --tls: do not verify the certificate (anyone on the way could read the chat)")
    parser.add_argument("--password", help=f"server password (visible in ps: prefer the {PASSWORD_VARIABLE} "
                                           "environment variable; asked on screen if the server wants one)")
    parser.add_argument("--log-file", help="write a debug log to this file (nothing is logged otherwise)")
    parser.add_argument("--log-dir", metavar="DIR",
                        help="keep chat logs here: one file per window and day (nothing is kept otherwise)")
    parser.add_argument("--no-bell", dest="bell", action="store_false",
                        help="do not ring the terminal bell on a mention or a private message")
    parser.add_argument("--no-mouse", dest="mouse", action="store_false",
                        help="leave the mouse to the terminal (no wheel scrolling, plain text selection)")
    parser.add_argument("--retry-delay", type=float, default=net.FIRST_RETRY_DELAY,
                        help=f"seconds before the first reconnection attempt; doubles up to {net.MAX_RETRY_DELAY:.0f} (default %(default)s)")
    args = parser.parse_args(argv)
    rules = ServerRules()  # the server's own rules are known only once it is connected
    if args.username is not None and not rules.valid_nick(args.username):
        parser.error(f"--username {args.username!r} is not a name an IRC server would take")
    if not rules.is_channel(args.room) or not is_safe_name(args.room):
        parser.error(f"--room {args.room!r} is not a room name like #chat")
    if args.port is None:
        args.port = TLS_PORT if args.tls else PLAIN_PORT
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    if (args.tls_ca is not None or args.tls_insecure) and not args.tls:
        parser.error("--tls-ca and --tls-insecure go with --tls")
    if args.tls_ca is not None and args.tls_insecure:
        parser.error("--tls-ca and --tls-insecure contradict each other: choose one")
    if args.password is None:
        args.password = os.environ.get(PASSWORD_VARIABLE) or None
    if args.password is not None and any(char in args.password for char in "\r\n\x00"):
        parser.error("the password cannot hold a line break or NUL")
    if args.retry_delay <= 0:
        parser.error("--retry-delay must be positive")
    return args


def set_up_logging(path: str | None) -> None:
    package = logging.getLogger("curses_client")
    if path is None:
        # Never to the terminal: it belongs to curses. NullHandler also keeps logging's
        # last-resort handler from printing warnings onto the chat screen.
        package.addHandler(logging.NullHandler())
        package.propagate = False
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)


class ChatApp:
    """The UI loop. Holds the pure parts (state and its windows, editor, key decoder) together."""

    def __init__(
        self,
        screen: ui.Screen,
        state: ChatState,
        events: net.EventQueue,
        sender: net.Sender,
        network: net.NetworkThread | None = None,
        chat_log: ChatLog | None = None,
        bell: bool = True,
    ) -> None:
        self.screen = screen
        self.state = state
        self.events = events
        self.sender = sender
        self.network = network  # held back while the password prompt shows
        self.chat_log = chat_log
        self.bell = bell
        self.editor = LineEditor()
        self.keyboard = Keyboard.for_terminal()
        self.exit_code: int | None = None
        self._retry: net.Retrying | None = None
        self._network_stopped = False
        self._last_status: ui.StatusLine | None = None
        self._loading_shown = False  # the oldest entry is the "loading older messages" line
        if state.needs_nick:
            welcome = Reaction()
            welcome.info("Choose a username (letters, digits, - or _), then press Enter.")
            self._show(welcome)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        dirty = True
        while self.exit_code is None:
            if dirty or self._status() != self._last_status:
                self.draw()
            dirty = self._read_keys()
            if self.exit_code is None:
                dirty = self._drain_events() or dirty
        return self.exit_code

    def _read_keys(self) -> bool:
        # a key, and whatever else is already waiting (a paste, fast typing), before drawing
        return self._on_keys(self.keyboard.read(self.screen))

    def _drain_events(self) -> bool:
        changed = False
        for event in net.drain(self.events):
            self._on_event(event)
            changed = True
        if changed and self.events.wakeup is not None and not self.events.empty():
            self.events.wakeup.ring()  # more than one pass takes: draw, then come straight back
        return changed

    def _on_event(self, event: net.Event) -> None:
        if isinstance(event, net.Received):
            asking = self.state.needs_password
            self._show(handle.handle(self.state, event.message))
            if self.state.needs_password and not asking:
                self.editor.clear()  # a half-typed chat line must not become the password
                if self.network is not None:
                    self.network.pause()
        elif isinstance(event, net.Connected):
            self._retry = None
            self._show(self.state.connected())
        elif isinstance(event, net.Disconnected):
            self._show(self.state.disconnected(event.reason))
        elif isinstance(event, net.Retrying):
            self._retry = event
        elif isinstance(event, net.Refused):
            self._show(self.state.refused(event.reason))
        elif isinstance(event, net.Stopped):
            self._network_stopped = True

    def _show(self, reaction: Reaction) -> None:
        """Carry a reaction out: lines into windows and logs, the bell, lines to the server."""
        windows = self.state.windows
        ring = False
        for window, entry in reaction.shown:
            target = window if window is not None and window in windows.windows else windows.current
            windows.add(target, entry)
            ring = ring or activity_of(entry) is Activity.HIGHLIGHT  # even in the window shown: you may be away
            self._log_chat(target.name, entry)
        if ring and self.bell:
            self.screen.beep()
        if reaction.loading is not None:
            reaction.loading.scrollback.prepend(
                [make(Kind.INFO, f"Loading older messages of {reaction.loading.name}...")])
            self._loading_shown = True
        if reaction.older is not None:
            window, older = reaction.older
            window.scrollback.prepend(older, replace_oldest=self._loading_shown)
            self._loading_shown = False
        for line in reaction.send:
            self.sender.send(line)
        if reaction.reconnect:
            self._retry_now()
        if reaction.quit is not None:
            self.quit(reaction.quit)

    def _retry_now(self) -> None:
        """Alt-R or /reconnect: try the server at once rather than at the next retry."""
        if self.network is not None:
            self.network.retry_now()

    def _log_chat(self, window: str, entry: Entry) -> None:
        if self.chat_log is None:
            return
        try:
            self.chat_log.write(window, entry)
        except OSError as error:  # a full disk, a directory removed: said once, then no more logs
            log.warning("chat log stopped: %s", error)
            self.chat_log.close()
            self.chat_log = None
            self.state.windows.add(self.state.windows.server,
                                   make(Kind.ERROR, f"Chat logs stopped: {net.describe_error(error)}."))

    # -- keys -----------------------------------------------------------------------------------

    def _on_keys(self, keys: list[str | Paste]) -> bool:
        for key in keys:
            if self.exit_code is not None:
                break
            self._on_key(key)
        return bool(keys)

    def _prompting(self) -> bool:
        """A name or a password is being typed: no commands, history or completion."""
        return self.state.needs_nick or self.state.needs_password or self.state.oper_name is not None

    def _on_key(self, key: str | Paste) -> None:
        editor = self.editor
        prompting = self._prompting()
        self.state.current.search_status = ""  # said until the next key
        if isinstance(key, Paste):  # its lines are text, never commands (see LineEditor.submit)
            editor.insert(key.text.partition("\n")[0]) if prompting else editor.paste(key.text)
        elif key.startswith("char:"):
            editor.insert(key[len("char:") :])
        elif key == "enter":
            self._submit()
        elif key == "tab":
            if not prompting:
                editor.complete(commands.COMMAND_NAMES, self.state.nicks_for_completion())
        elif key == "redraw":
            self.screen.stdscr.clear()
        elif key == "retry":  # Alt-R: reconnect now rather than wait for the next attempt
            self._retry_now()
        elif key in WINDOW_KEYS:
            self._on_window_key(key)
        else:
            action = EDITOR_ACTIONS.get(key)
            if prompting and key in ("up", "down"):
                action = None  # history holds chat lines: none of them is a name or password
            if action is not None:
                action(editor)
            elif key not in ("resize", "mouse"):
                log.debug("key %s does nothing", key)

    def _on_window_key(self, key: str) -> None:
        """Keys that switch windows or move in the active one's scrollback."""
        windows = self.state.windows
        scrollback = windows.current.scrollback
        height, width = self.screen.size()
        pane = height - 2
        if key.startswith("window-"):
            windows.switch(int(key[len("window-"):]))
        elif key in ("next-window", "previous-window"):
            windows.step(1 if key == "next-window" else -1)
        elif key in ("page-up", "wheel-up"):
            scrollback.scroll_up(max(1, pane - 1) if key == "page-up" else WHEEL_ROWS, width, pane)
            if scrollback.at_top(width, pane):  # past the oldest: fetch more
                self._show(self.state.fetch_older())
        elif key in ("page-down", "wheel-down"):
            scrollback.scroll_down(max(1, pane - 1) if key == "page-down" else WHEEL_ROWS, width)
        elif key == "scroll-end":
            scrollback.scroll_to_bottom()
        elif key in ("search-older", "search-newer"):
            if windows.current.search:
                commands.find(windows.current, key == "search-older")
            else:
                windows.current.search_status = "/search TEXT first"

    def _submit(self) -> None:
        if self.state.needs_password:
            text = self.editor.text.split("\n")[0]
            self.editor.submit(remember=False)
            if commands.is_quit(text):
                self.quit(commands.DEFAULT_QUIT_REASON)
                return
            self._show(self.state.choose_password(text))
            if not self.state.needs_password and self.network is not None:
                self.network.resume()
            return
        if self.state.oper_name is not None:
            text = self.editor.text.split("\n")[0]
            self.editor.submit(remember=False)
            self._show(self.state.oper(text))
            return
        if self.state.needs_nick:
            lines = self.editor.submit(remember=False)
            if lines and commands.is_quit(lines[0]):
                self.quit(commands.DEFAULT_QUIT_REASON)  # /exit works at the name prompt too
            elif lines:
                self._show(self.state.choose_nick(lines[0]))
            return
        if not self.state.registered and not commands.works_offline(self.editor.text):
            offline = Reaction()
            offline.error("Not connected: your line stays below; press Enter again once the status says online.")
            self._show(offline)
            return
        for line in self.editor.submit():
            self.state.current.scrollback.scroll_to_bottom()  # you see what you just said
            self._show(commands.run(self.state, line))
            if self.exit_code is not None:
                return

    # -- leaving ----------------------------------------------------------------------------------

    def quit(self, reason: str, exit_code: int = 0) -> None:
        """Send QUIT, give the server a moment to close the link, and end the loop."""
        if self.sender.send(format_line("QUIT", clean_typed(reason) or commands.DEFAULT_QUIT_REASON)):
            self.sender.finish_writing()
            try:
                self._wait_for_close()
            except (KeyboardInterrupt, Terminated):  # asked again while waiting: leave now
                log.info("interrupted while waiting for the server to close the link; leaving")
        self.exit_code = exit_code

    def _wait_for_close(self) -> None:
        deadline = time.monotonic() + QUIT_WAIT
        while not self._network_stopped and self.state.phase is not Phase.WAITING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("the server did not close the link after QUIT; leaving anyway")
                return
            try:
                self._on_event(self.events.get(timeout=remaining))
            except queue.Empty:
                continue  # the loop condition sees the deadline

    # -- drawing ------------------------------------------------------------------------------------

    def _status(self) -> ui.StatusLine:
        state = self.state
        window = state.current
        link = state.phase.value
        if state.phase is Phase.WAITING and self._retry is not None:
            seconds = max(0, round(self._retry.due - time.monotonic()))
            link = f"disconnected, retry #{self._retry.attempt} in {seconds}s"
        return ui.StatusLine(
            server=state.server_label,
            security=state.transport.value,
            nick=state.nick or "",
            room=window.name if window.key else "(server)",
            online=state.online_count,
            link=link,
            more_below=window.scrollback.more_below(),
            search=window.search_status,
            number=state.windows.active + 1,
            activity=tuple(state.windows.active_list()),
        )

    def draw(self) -> None:
        height, width = self.screen.size()
        if self.state.needs_password or self.state.oper_name is not None:
            prompt = PASSWORD_PROMPT if self.state.needs_password else OPER_PROMPT
            mask: str | None = PASSWORD_MASK
        else:
            prompt, mask = (NAME_PROMPT if self.state.needs_nick else CHAT_PROMPT), None
        visible, cursor, self.screen.input_offset = self.editor.view(
            self.screen.input_width(prompt), self.screen.input_offset, mask
        )
        scrollback = self.state.current.scrollback
        rows: list[Row] = []
        if width >= ui.MIN_COLUMNS:
            scrollback.settle(width, height - 2)
            rows = scrollback.visible(width, height - 2)
        status = self._status()
        self.screen.draw(rows, status, prompt, (visible, cursor))
        self._last_status = status


WINDOW_KEYS = frozenset({"next-window", "previous-window", "page-up", "page-down", "wheel-up", "wheel-down",
                         "scroll-end", "search-older", "search-newer", *(f"window-{n}" for n in range(1, 11))})
WHEEL_ROWS = 3  # rows one notch of the mouse wheel scrolls


EDITOR_ACTIONS = {
    "backspace": LineEditor.backspace,
    "delete": LineEditor.delete,
    "left": LineEditor.left,
    "right": LineEditor.right,
    "home": LineEditor.home,
    "end": LineEditor.end,
    "ctrl-left": LineEditor.word_left,
    "ctrl-right": LineEditor.word_right,
    "up": LineEditor.history_up,
    "down": LineEditor.history_down,
    "kill-to-start": LineEditor.kill_to_start,
    "kill-to-end": LineEditor.kill_to_end,
    "delete-word": LineEditor.delete_word_before,
    "escape": LineEditor.escape,
}


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, so the terminal is restored."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def catch_termination() -> None:
    """Turn SIGTERM and SIGHUP into an exception (the handler only raises; POSIX has both,
    Windows only SIGTERM). The default action would end the process without restoring the
    terminal."""
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_terminated)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_up_logging(args.log_file)
    context, transport = None, Transport.PLAIN
    if args.tls:
        try:
            context = tls.client_context(args.tls_ca, args.tls_insecure)
        except tls.CaFileError as error:
            print(error, file=sys.stderr)
            return EXIT_USAGE
        transport = Transport.TLS_UNVERIFIED if args.tls_insecure else Transport.TLS
    try:
        chat_log = ChatLog(args.log_dir) if args.log_dir else None
    except OSError as error:
        print(f"Cannot keep chat logs in {args.log_dir}: {net.describe_error(error)}.", file=sys.stderr)
        return EXIT_USAGE
    try:
        connection = net.open_connection(args.host, args.port, context)
    except ssl.SSLCertVerificationError as error:
        print(f"Refusing the chat server at {args.host}:{args.port}: {net.describe_error(error)}; "
              f"{tls.refusal_advice(error)}.", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"Cannot connect to the chat server at {args.host}:{args.port}: {net.describe_error(error)}.",
              file=sys.stderr)
        return 1
    events = net.EventQueue()
    sender = net.Sender()
    network = net.NetworkThread(args.host, args.port, events, sender, connection, args.retry_delay, context)
    state = ChatState(f"{args.host}:{args.port}", args.room, args.username, args.password, transport)
    network.start()
    catch_termination()
    try:
        with ui.terminal(args.mouse) as stdscr:
            app = ChatApp(ui.Screen(stdscr, events.wakeup), state, events, sender, network, chat_log, args.bell)
            try:
                return app.run()
            except KeyboardInterrupt:  # Ctrl-C: leave as politely as /exit does
                app.quit("Interrupted", EXIT_INTERRUPTED)
                return EXIT_INTERRUPTED
            except Terminated as signal_received:  # kill, or the terminal window closed
                app.quit("Terminated", EXIT_SIGNAL_BASE + signal_received.signum)
                return EXIT_SIGNAL_BASE + signal_received.signum
    except ui.TerminalUnavailable as error:
        print(f"Cannot start the chat screen: {error}.", file=sys.stderr)
        return 1
    except Exception:
        log.exception("the client failed")
        raise  # the terminal is restored by now, so the traceback is readable
    finally:
        network.stop()
        network.join(QUIT_WAIT)
        if chat_log is not None:
            chat_log.close()
