"""A room's lines, stored once and read by every member from its own place: the fan-out engine's log.

``RoomLog`` is appended under ``Hub.lock``; the output pump reads it without the lock through
each follower's ``RoomCursor`` (segments never move and offsets only grow). No I/O here.
"""

from __future__ import annotations

from typing import Any

SEGMENT_MIN = 4096  # a room log's first segment; later ones double...
SEGMENT_MAX = 256 * 1024  # ...up to this


class Segment:
    """A fixed-size stretch of a room log. Its bytes, once written, never change or move."""

    __slots__ = ("start", "data", "view", "fill", "next")

    def __init__(self, start: int, capacity: int) -> None:
        self.start = start  # log offset of data[0]
        # Allocated once and never resized, so memoryviews of it stay valid while it fills.
        self.data = bytearray(capacity)
        self.view = memoryview(self.data)
        self.fill = 0
        self.next: Segment | None = None


class RoomLog:
    """A channel's lines, each stored once, read by every follower from its own offset.

    Appended under ``Hub.lock``; the pump reads without it: segments never move and offsets
    only grow. Nothing holds the consumed head: a segment is freed when the last follower's
    cursor leaves it, so a lagging member costs its place in the log, not a copy.
    """

    __slots__ = ("tail", "end", "floor", "followers")

    def __init__(self) -> None:
        self.tail = Segment(0, SEGMENT_MIN)
        self.end = 0  # offset just past the last line
        self.floor = 0  # the lowest offset a follower still needed at the pump's last pass
        self.followers: dict[Any, None] = {}  # the Outboxes reading this log, under Hub.lock

    def append(self, data: bytes) -> int:
        """Add one line (``Hub.lock`` held); return its offset. A line never spans segments."""
        tail, size, start = self.tail, len(data), self.end
        if tail.fill + size > len(tail.data):
            fresh = Segment(start, max(size, min(SEGMENT_MAX, 2 * len(tail.data))))
            tail.next = fresh  # linked before ``end`` moves: a reader never finds a gap
            self.tail = tail = fresh
        tail.data[tail.fill:tail.fill + size] = data  # same length: no resize
        tail.fill += size
        self.end = start + size
        return start


class RoomCursor:
    """One follower's place in a room log. The pump moves ``pos``; the hub sets ``stop`` once."""

    __slots__ = ("log", "seg", "pos", "stop")

    def __init__(self, log: RoomLog) -> None:
        self.log = log
        self.seg: Segment | None = log.tail  # None once the pump has sent everything up to stop
        self.pos = log.end
        self.stop: int | None = None  # set when the member leaves: nothing after it is theirs

    def limit(self) -> int:
        """How far the follower may read now (pump only)."""
        end = self.log.end  # read before stop: a stop set in between is never below it
        stop = self.stop
        return end if stop is None else stop

    def chunk(self, limit: int) -> memoryview | None:
        """The unsent bytes before ``limit``, from one segment; None if there are none."""
        pos = self.pos
        if pos >= limit:
            if self.stop is not None and pos >= self.stop:
                self.seg = None  # done with this log: let its segments go
            return None
        seg = self.seg
        while pos - seg.start >= seg.fill:  # this segment is used up (or skipped); on to the next
            seg = self.seg = seg.next
        return seg.view[pos - seg.start:min(seg.fill, limit - seg.start)]

    def skip(self, size: int) -> None:
        """Pass over the follower's own line without sending it (pump only)."""
        self.pos += size
        seg = self.seg
        # On to the segment the skip landed in: a member that only sends must not hold the
        # segments behind it.
        while self.pos - seg.start >= seg.fill and seg.next is not None:
            seg = seg.next
        self.seg = seg

    def line_end(self) -> int:
        """The end of the line ``pos`` is in (``pos`` itself at a line boundary); pump only."""
        seg = self.seg
        offset = self.pos - seg.start
        if offset == 0 or offset >= seg.fill or seg.data[offset - 1] == 10:
            return self.pos
        return seg.start + seg.data.index(b"\n", offset) + 1
