"""Windows (buffers): the server window, one per room, one per private conversation.

Each ``Window`` has its own scrollback, members (for a room), topic and activity: what
happened in it since the reader last looked (``Activity``: an event, a message, or a
mention / private message). ``WindowList`` keeps them in order, knows the active one, and
places the unread marker: the first line that arrives in a window while the reader is
elsewhere is where the marker shows when they come back. Everything is bounded
(``MAX_WINDOWS`` windows, ``WINDOW_LINES`` lines each, ``MAX_MEMBERS`` members per room), so a
hostile server cannot grow the client without limit.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from curses_client.entries import Entry, Kind
from curses_client.scrollback import Scrollback

MAX_WINDOWS = 100
MAX_MEMBERS = 10_000
WINDOW_LINES = 5_000  # messages kept per window (WeeChat keeps 4096, irssi 500): 100 windows stay small
SERVER_KEY = ""  # the server window's key; every other key is a folded room or nick name

EVENT_KINDS = frozenset({Kind.JOIN, Kind.PART, Kind.QUIT, Kind.NICK, Kind.INFO, Kind.ERROR})


class Activity(enum.IntEnum):
    """What a window holds that its reader has not seen, in rising order of urgency."""

    NONE = 0
    EVENT = 1  # joins, parts, server text: plain in the window list
    MESSAGE = 2  # someone said something: bold
    HIGHLIGHT = 3  # a mention of your name or a private message: highlighted, and the bell


def activity_of(entry: Entry) -> Activity:
    if entry.replayed:  # history: worth a look, never the bell
        return Activity.EVENT if entry.kind in EVENT_KINDS else Activity.MESSAGE
    if entry.highlight or entry.kind is Kind.PRIVATE_IN:
        return Activity.HIGHLIGHT
    if entry.kind in EVENT_KINDS:
        return Activity.EVENT
    if entry.kind in (Kind.OWN, Kind.PRIVATE_OUT):
        return Activity.NONE
    return Activity.MESSAGE


@dataclass
class Window:
    name: str  # as shown: "#chat", "bob", or the server's label
    key: str  # folded name; SERVER_KEY for the server window
    is_room: bool = False
    scrollback: Scrollback = field(default_factory=lambda: Scrollback(WINDOW_LINES))
    members: dict[str, tuple[str, str]] = field(default_factory=dict)  # folded nick -> (marks, nick)
    joined: bool = False  # we are in this room now
    rejoin: bool = False  # we were in it when the link was lost: join it again on reconnecting
    room_key: str = ""  # the key (+k) given with /join, for joining again after a reconnection
    topic: str = ""
    activity: Activity = Activity.NONE
    unread_start: int | None = None  # entry number where the unread marker goes, once known
    wants_focus: bool = False  # the user asked to join it: show it when the JOIN comes
    search: str = ""  # the text the last /search looked for here
    search_at: int | None = None  # the entry the search found last: the next one goes on from it
    search_status: str = ""  # how that search went, for the status line until the next key
    oldest_ref: str | None = None  # where the oldest history line shown is (msgid=...)
    history_done: bool = False  # the start of the room's history was reached

    @property
    def is_query(self) -> bool:
        return not self.is_room and self.key != SERVER_KEY

    def add_member(self, fold: str, nick: str, marks: str = "") -> None:
        if fold in self.members or len(self.members) < MAX_MEMBERS:
            self.members[fold] = (marks, nick)

    def leave(self) -> None:
        """We are out of this room (parted, kicked, or the link is gone): no members known."""
        self.joined = False
        self.members.clear()


class WindowList:
    """The windows in the order shown (numbered from 1), the active one, and activity."""

    def __init__(self, server_label: str) -> None:
        self.windows: list[Window] = [Window(server_label, SERVER_KEY)]
        self.active = 0  # index into ``windows``

    @property
    def current(self) -> Window:
        return self.windows[self.active]

    @property
    def server(self) -> Window:
        return self.windows[0]

    def find(self, key: str) -> Window | None:
        return next((window for window in self.windows if window.key == key), None)

    def open(self, name: str, key: str, is_room: bool) -> Window:
        """The window for ``key``, made if there is none (the server window when full)."""
        window = self.find(key)
        if window is not None:
            return window
        if len(self.windows) >= MAX_WINDOWS:
            return self.server
        window = Window(name, key, is_room)
        self.windows.append(window)
        return window

    def close(self, window: Window) -> bool:
        """Close a window (never the server window); the one before it becomes active."""
        if window.key == SERVER_KEY or window not in self.windows:
            return False
        index = self.windows.index(window)
        if window is self.current:
            self._enter(index - 1)  # never below 0: the server window is first and stays
        self.windows.remove(window)
        if self.active > index:
            self.active -= 1
        return True

    def rename(self, window: Window, name: str, key: str) -> None:
        """A private conversation follows the other person's nick change."""
        if self.find(key) not in (None, window):
            return  # a window for the new name exists already: keep both as they are
        window.name, window.key = name, key

    def refold(self, fold: Callable[[str], str]) -> None:
        """The server's case mapping changed: key windows and members by the new one."""
        for window in self.windows[1:]:
            window.key = fold(window.name)
            window.members = {fold(nick): (marks, nick) for marks, nick in window.members.values()}

    # -- switching ---------------------------------------------------------------------------

    def switch(self, number: int) -> bool:
        """Make window ``number`` (from 1) active; False if there is none."""
        if not 1 <= number <= len(self.windows):
            return False
        self._enter(number - 1)
        return True

    def step(self, delta: int) -> None:
        self._enter((self.active + delta) % len(self.windows))

    def show(self, window: Window) -> None:
        self._enter(self.windows.index(window))

    def _enter(self, index: int) -> None:
        if index == self.active:
            return
        leaving = self.current
        leaving.unread_start = None  # what it showed is read now
        leaving.scrollback.set_marker(None)
        self.active = index
        entering = self.current
        entering.activity = Activity.NONE
        if entering.unread_start is not None:
            entering.scrollback.set_marker(entering.unread_start)

    # -- adding lines ------------------------------------------------------------------------

    def add(self, window: Window, entry: Entry) -> None:
        """Store an entry in a window; unless it is the one shown, it is unread there."""
        number = window.scrollback.end()
        window.scrollback.add(entry)
        if window is self.current:
            return
        if window.unread_start is None:
            window.unread_start = number  # the first line arrived since the reader left
        window.activity = max(window.activity, activity_of(entry))

    def active_list(self) -> list[tuple[int, Activity]]:
        """Numbers of the windows with something unseen, and how urgent it is."""
        return [(index + 1, window.activity) for index, window in enumerate(self.windows)
                if window.activity > Activity.NONE]
