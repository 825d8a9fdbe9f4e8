"""Stored room history sent to a client: replayed on join, and asked for with CHATHISTORY.

A client with ``batch`` and ``server-time`` gets history in a ``chathistory`` batch, each line
with its original ``time`` (and ``msgid`` with message-tags). Any other client (irssi and
WeeChat without those capabilities, netcat) gets the lines framed by a NOTICE before and after,
each with its original time in front of the text, so that none can pass for live chat.
Topic changes are shown as a NOTICE from the server: replayed as TOPIC, a client would take
an old topic for the current one.
"""

from __future__ import annotations

from collections.abc import Callable

from ircchat.history import HistoryEntry, MessageRef, format_timestamp
from ircchat.ircv3 import add_tags
from ircchat.numerics import StandardReplyError
from ircchat.protocol import Message, encode_line, format_line, irc_fold
from ircchat.state import Channel, Hub, User

SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN")


def history_isupport(hub: Hub) -> list[str]:
    """The ISUPPORT tokens for history, when there is any."""
    if hub.history is None:
        return []
    return [f"CHATHISTORY={hub.config.chathistory_max}", "MSGREFTYPES=msgid,timestamp"]


def replay_on_join(hub: Hub, user: User, channel: Channel, entries: list[HistoryEntry]) -> None:
    """Send a joiner the room's last lines (``Hub.join`` calls this under its lock, with the
    room's recent lines, so live lines follow them). A client that negotiated
    draft/chathistory asks for what it wants itself, so it gets no replay (as the draft says).
    """
    if entries and "draft/chathistory" not in user.caps:
        send_history(hub, user, channel.name, entries,
                     f"Replaying the last {len(entries)} messages of {channel.name} (times in UTC)",
                     "End of replay: live chat follows",
                     lambda line: hub.answer(user, line, now=True))  # live lines follow it


def cmd_chathistory(hub: Hub, user: User, msg: Message) -> None:
    """CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN <room> <ref> [<ref>] <limit> (IRCv3 draft)."""
    sub = msg.params[0].upper() if msg.params else "*"
    if sub not in SUBCOMMANDS:
        raise StandardReplyError("CHATHISTORY", "INVALID_PARAMS", sub, "Unknown subcommand")
    args = msg.params[1:]
    if len(args) < (4 if sub == "BETWEEN" else 3):
        raise StandardReplyError("CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters")
    target, *refs, limit_text = args[:5] if sub == "BETWEEN" else args[:3]
    history = hub.history
    channel = hub.find_channel(target)
    if channel is None or not hub.is_member(user, channel):  # private lines are never stored
        raise StandardReplyError("CHATHISTORY", "INVALID_TARGET", sub, target, "Messages could not be retrieved")
    if history is None:
        raise StandardReplyError("CHATHISTORY", "MESSAGE_ERROR", sub, target, "History is off on this server")
    limit = _limit(sub, limit_text, hub.config.chathistory_max)
    key = irc_fold(channel.name)
    if sub == "LATEST":
        after = None if refs[0] == "*" else _ref(sub, refs[0])
        entries = history.latest(key, limit, after)
    elif sub == "BETWEEN":
        entries = history.between(key, _ref(sub, refs[0]), _ref(sub, refs[1]), limit)
    else:
        query = {"BEFORE": history.before, "AFTER": history.after, "AROUND": history.around}[sub]
        entries = query(key, _ref(sub, refs[0]), limit)
    send_history(hub, user, channel.name, entries, f"History of {channel.name}: {len(entries)} "
                 "messages (times in UTC)", "End of history", lambda line: hub.answer(user, line))


def _limit(sub: str, text: str, most: int) -> int:
    if not text.isdigit() or not 0 < int(text) <= most:
        raise StandardReplyError("CHATHISTORY", "INVALID_PARAMS", sub, text,
                                 f"The limit must be a number from 1 to {most}")
    return int(text)


def _ref(sub: str, text: str) -> MessageRef:
    try:
        return MessageRef.parse(text)
    except ValueError:
        raise StandardReplyError("CHATHISTORY", "INVALID_PARAMS", sub, text,
                                 "A reference is msgid=ID or timestamp=YYYY-MM-DDThh:mm:ss.sssZ") from None


def send_history(hub: Hub, user: User, room: str, entries: list[HistoryEntry], opening: str,
                 closing: str, send: Callable[[bytes], None]) -> None:
    """Send (with ``send``) stored lines in the form ``user`` can tell apart from live chat
    (module docstring)."""
    if {"batch", "server-time"} <= user.caps:
        ref = hub.batch_id()
        send(hub.server_line("BATCH", f"+{ref}", "chathistory", room))
        for entry in entries:
            tags = [("batch", ref), ("time", entry.timestamp)]
            if "message-tags" in user.caps:
                tags.append(("msgid", entry.msgid))
            send(add_tags(_entry_line(hub, entry, stamp=""), tags))
        send(hub.server_line("BATCH", f"-{ref}"))
        return
    send(hub.server_line("NOTICE", room, opening))
    for entry in entries:
        when = format_timestamp(entry.time_ms)[:19].replace("T", " ")
        send(_entry_line(hub, entry, stamp=f"[{when}] "))
    send(hub.server_line("NOTICE", room, closing))


ACTION = "\x01ACTION "


def _entry_line(hub: Hub, entry: HistoryEntry, stamp: str) -> bytes:
    """A stored line as sent again, with ``stamp`` (its time, or "") in front of its text."""
    text = entry.text
    if entry.command == "TOPIC":
        setter = entry.source.split("!", 1)[0]
        return hub.server_line("NOTICE", entry.room, f"{stamp}{setter} set the topic: {text}")
    if text.startswith(ACTION):  # /me: the time goes inside the CTCP, after ACTION
        text = ACTION + stamp + text[len(ACTION):]
    else:
        text = stamp + text
    return encode_line(format_line(entry.command, entry.room, text, prefix=entry.source))

