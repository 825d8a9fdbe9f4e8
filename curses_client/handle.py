"""Messages from the server: one small function per command in ``HANDLERS``, numerics as text.

``handle(state, message)`` looks the command up (``.get``, never a try around the call), drops
a message with fewer parameters than its entry needs (so no handler checks that itself),
lets the handler change the ``ChatState`` and fill a ``Reaction``, then applies the IRCv3
tags (server time; lines of a history batch are held until the batch ends). Numerics that
need no state change are sentences in ``NUMERIC_TEXT``; the welcome, MOTD and LUSERS lines
go to the server window. No numeric is ever shown raw: one without a sentence shows its
text (the server's own words), without the number.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from curses_client.entries import Entry, Kind, make
from curses_client.irc import Message, format_line
from curses_client.model import (
    AUTOJOIN_TOKEN,
    CTCP_MARK,
    LIVE_SEPARATOR,
    SAFE_REF,
    WANTED_CAPS,
    ChatState,
    Reaction,
    is_safe_name,
    parse_server_time,
)
from curses_client.width import sanitize
from curses_client.windows import MAX_MEMBERS, Window

CLIENT_VERSION = "curses_client (terminal chat client)"
CTCP_REPLY_INTERVAL = 2.0  # seconds between CTCP answers: a flood of requests cannot make us flood
MAX_BATCHES = 10  # history batches open at once
MAX_BATCH_LINES = 5000  # lines held for one batch; a batch that never ends cannot grow past this

Handler = Callable[[ChatState, Message, Reaction], None]


@dataclass(frozen=True)
class ServerMessage:
    handler: Handler
    min_params: int = 0  # fewer: the message is malformed and changes nothing


def handle(state: ChatState, msg: Message) -> Reaction:
    reaction = Reaction()
    entry = HANDLERS.get(msg.command.upper())
    if entry is not None:
        if len(msg.params) >= entry.min_params:
            entry.handler(state, msg, reaction)
    elif msg.command.isdigit():
        _numeric(state, msg, reaction)
    else:
        shown = " ".join(sanitize(param) for param in msg.params)
        reaction.info(f"{sanitize(msg.command)} {shown}".strip(), window=state.windows.server)
    if msg.tags:
        _apply_tags(state, dict(msg.tags), reaction)
    return reaction


def _apply_tags(state: ChatState, tags: dict[str, str], reaction: Reaction) -> None:
    """Server time on what a line shows; a line of a history batch goes to that batch."""
    when = parse_server_time(tags.get("time", ""))
    if when is not None:
        reaction.shown = [(window, replace(entry, when=when)) for window, entry in reaction.shown]
    msgid = tags.get("msgid", "")
    batch = state.batches.get(tags.get("batch", ""))
    if batch is not None:
        if not state.seen(msgid) and len(batch) < MAX_BATCH_LINES:  # a replay repeats what we have
            ref = f"msgid={msgid}" if SAFE_REF.match(msgid) else None
            batch.extend((window, replace(entry, replayed=True, highlight=False), ref)
                         for window, entry in reaction.shown)
        reaction.shown = []
    if msgid:
        state.remember(msgid)


def _text(msg: Message, index: int, default: str = "") -> str:
    return sanitize(msg.params[index]) if -len(msg.params) <= index < len(msg.params) else default


def _who(msg: Message) -> str:
    return sanitize(msg.nick or msg.prefix or "?")


def _channel_of(state: ChatState, target: str) -> str:
    """A message's target without the status marks of ``PRIVMSG @#room`` (to its operators).

    Marks go one at a time, up to the first channel type: with PREFIX ``~&@%+`` and
    CHANTYPES ``#&``, ``@&ops`` is a message to the operators of ``&ops``.
    """
    room = target
    while room and not state.rules.is_channel(room) and room[0] in state.rules.prefix_symbols:
        room = room[1:]
    return room if state.rules.is_channel(room) else target


def _room_window(state: ChatState, name: str) -> Window | None:
    """The window of a room we joined, opened if it is a safe room name and there is room for it."""
    if not state.rules.is_channel(name) or not is_safe_name(name):
        return None
    window = state.open_window(name)
    return window if window.is_room else None  # the server window: no room for another


# -- connection and registration ---------------------------------------------------------------

def _ping(state: ChatState, msg: Message, reaction: Reaction) -> None:
    reaction.send.append(format_line("PONG", *(msg.params[-1:] or ("ping",))))


def _pong(state: ChatState, msg: Message, reaction: Reaction) -> None:
    if msg.params[-1] == AUTOJOIN_TOKEN:
        state.join_missing_rooms(reaction)


def _error(state: ChatState, msg: Message, reaction: Reaction) -> None:
    state.everywhere(reaction, f"The server closed the link: {_text(msg, -1, 'no reason given')}", Kind.ERROR)


def _cap(state: ChatState, msg: Message, reaction: Reaction) -> None:
    sub = msg.params[1].upper()
    if sub == "LS":
        state.offered += msg.params[-1].split()[:100]
        if len(msg.params) > 3 and msg.params[2] == "*" and len(state.offered) < 1000:
            return  # more LS lines follow
        offered = {cap.split("=", 1)[0] for cap in state.offered}
        wanted = [cap for cap in WANTED_CAPS if cap in offered]
        state.offered = []
        reaction.send.append(format_line("CAP", "REQ", " ".join(wanted)) if wanted else "CAP END")
    elif sub == "ACK":
        state.caps = state.caps | set(msg.params[-1].split()) & set(WANTED_CAPS)
        reaction.send.append("CAP END")
    elif sub == "NAK":
        reaction.send.append("CAP END")


def _welcome(state: ChatState, msg: Message, reaction: Reaction) -> None:
    if not state.registered:
        state.welcomed(msg.params[0], reaction)
    reaction.info(_text(msg, -1) if len(msg.params) > 1 else "Welcome.", window=state.windows.server)


def _isupport(state: ChatState, msg: Message, reaction: Reaction) -> None:
    tokens = msg.params[1:-1]
    casemapping = state.rules.casemapping
    for token in tokens:
        state.rules.apply_token(token)
    if state.rules.casemapping != casemapping:
        state.windows.refold(state.fold)  # names already known compare by the new rule
    shown = " ".join(sanitize(token) for token in tokens)
    reaction.info(f"The server supports: {shown}", window=state.windows.server)


def _bad_nick(state: ChatState, msg: Message, reaction: Reaction) -> None:
    reason = _text(msg, -1, "Name refused")
    name = _text(msg, 1) if len(msg.params) > 2 else ""
    if state.registered:
        reaction.error(f"Cannot use the name {name}: {reason}" if name else reason)
    else:
        state.name_refused(name, reason, reaction)


def _bad_password(state: ChatState, msg: Message, reaction: Reaction) -> None:
    reason = _text(msg, -1) if len(msg.params) > 1 else "Password incorrect"
    if state.registered:
        reaction.error(f"The password was refused ({reason}).")  # /oper's
    else:
        state.ask_password(reason, reaction)


# -- rooms and people ---------------------------------------------------------------------------

def _join(state: ChatState, msg: Message, reaction: Reaction) -> None:
    channel = msg.params[0]
    who = _who(msg)
    if state.is_me(msg.nick):
        window = _room_window(state, channel)
        if window is None:
            return
        window.joined, window.history_done, window.oldest_ref = True, False, None
        window.members.clear()
        window.add_member(state.fold(state.nick or who), state.nick or who)
        if state.windows.current is state.windows.server or window.wants_focus:
            window.wants_focus = False
            state.windows.show(window)
        reaction.info(f"You joined {window.name}.", Kind.JOIN, window=window)
        return
    window = state.window_of(channel)
    if window is None or not window.joined:
        return  # a room we are not in: nothing of ours changes
    window.add_member(state.fold(who), who)
    reaction.info(f"{who} joined {window.name}", Kind.JOIN, who, window=window)


def _part(state: ChatState, msg: Message, reaction: Reaction) -> None:
    window = state.window_of(msg.params[0])
    if window is None:
        return
    who = _who(msg)
    reason = f" ({_text(msg, 1)})" if len(msg.params) > 1 and msg.params[1] else ""
    if state.is_me(msg.nick):
        window.leave()
        reaction.info(f"You left {window.name}{reason}", Kind.PART, window=window)
        return
    window.members.pop(state.fold(who), None)
    reaction.info(f"{who} left {window.name}{reason}", Kind.PART, who, window=window)


def _kick(state: ChatState, msg: Message, reaction: Reaction) -> None:
    window = state.window_of(msg.params[0])
    if window is None:
        return
    by, target = _who(msg), sanitize(msg.params[1])
    reason = f" ({_text(msg, 2)})" if len(msg.params) > 2 and msg.params[2] else ""
    if state.is_me(msg.params[1]):
        window.leave()
        reaction.info(f"You were kicked from {window.name} by {by}{reason}. /join {window.name} to go back.",
                      Kind.ERROR, window=window, highlight=True)
        return
    window.members.pop(state.fold(target), None)
    reaction.info(f"{target} was kicked from {window.name} by {by}{reason}", Kind.PART, by, window=window)


def _quit(state: ChatState, msg: Message, reaction: Reaction) -> None:
    who = _who(msg)
    reason = _text(msg, 0) or "no reason given"
    folded = state.fold(who)
    for window in state.windows.windows:
        if window.members.pop(folded, None) is not None or window.key == folded:
            reaction.info(f"{who} quit ({reason})", Kind.QUIT, who, window=window)


def _nick(state: ChatState, msg: Message, reaction: Reaction) -> None:
    old, new = _who(msg), _text(msg, 0, "?")
    old_fold, new_fold = state.fold(old), state.fold(new)
    mine = state.is_me(msg.nick) and is_safe_name(msg.params[0])
    text = f"You are now known as {new}" if mine else f"{old} is now known as {new}"
    for window in state.windows.windows:
        member = window.members.pop(old_fold, None)
        if member is not None:
            window.add_member(new_fold, new, member[0])
        if window.key == old_fold and is_safe_name(new):
            state.windows.rename(window, new, new_fold)
        if member is not None or window.key == new_fold or (mine and window is state.windows.server):
            reaction.info(text, Kind.NICK, new, window=window)
    if mine:
        state.nick = new


def _mode(state: ChatState, msg: Message, reaction: Reaction) -> None:
    target, changes, args = msg.params[0], msg.params[1], list(msg.params[2:])
    window = state.window_of(target) if state.rules.is_channel(target) else None
    shown = " ".join(sanitize(param) for param in msg.params[1:])
    if window is None:
        reaction.info(f"Mode {shown} on {sanitize(target)}", window=state.windows.server)
        return
    adding = True
    for mode in changes[:100]:
        if mode in "+-":
            adding = mode == "+"
            continue
        argument = args.pop(0) if state.rules.takes_parameter(mode, adding) and args else None
        symbol = state.rules.symbol_of(mode)
        if symbol and argument is not None:
            folded = state.fold(argument)
            member = window.members.get(folded)
            if member is not None:
                marks = member[0].replace(symbol, "") + (symbol if adding else "")
                window.members[folded] = ("".join(s for s in state.rules.prefix_symbols if s in marks), member[1])
    reaction.info(f"{_who(msg)} set mode {shown} on {window.name}", window=window)


def _topic(state: ChatState, msg: Message, reaction: Reaction) -> None:
    window = state.window_of(msg.params[0])
    topic = _text(msg, 1)
    if window is not None:
        window.topic = topic
    reaction.info(f"{_who(msg)} set the topic: {topic}", window=window)


def _topic_reply(state: ChatState, msg: Message, reaction: Reaction) -> None:
    window = state.window_of(msg.params[1])
    if window is not None:
        window.topic = _text(msg, 2)
    reaction.info(f"Topic of {_text(msg, 1)}: {_text(msg, 2)}", window=window)


def _names(state: ChatState, msg: Message, reaction: Reaction) -> None:
    window = state.window_of(msg.params[2])
    if window is None:
        return
    collected = state.names.setdefault(window.key, {})
    for name in msg.params[3].split():
        marks, nick = state.rules.split_prefix(sanitize(name))
        if nick and len(collected) < MAX_MEMBERS:
            collected[state.fold(nick)] = (marks, nick)


def _end_of_names(state: ChatState, msg: Message, reaction: Reaction) -> None:
    window = state.window_of(msg.params[1])
    if window is None:
        return
    collected = state.names.pop(window.key, None)
    if collected is not None and window.joined:
        window.members = collected
    if window.key in state.names_wanted:
        state.names_wanted.discard(window.key)
        listed = window.members if window.joined else collected or {}  # a room we are not in: as the server says
        names = sorted((state.rules.rank(marks) + nick for marks, nick in listed.values()),
                       key=lambda shown: shown.lstrip(state.rules.prefix_symbols).lower())
        reaction.info(f"{len(names)} in {window.name}: {', '.join(names)}", window=window)


# -- messages ----------------------------------------------------------------------------------

def _privmsg(state: ChatState, msg: Message, reaction: Reaction) -> None:
    target, text = _channel_of(state, msg.params[0]), msg.params[1]
    who = _who(msg)
    private = not state.rules.is_channel(target)
    if private and state.is_me(msg.nick) and is_safe_name(target):  # our own line, echoed by a bouncer
        window = state.open_window(sanitize(target))
        reaction.info(sanitize(text), Kind.PRIVATE_OUT, sanitize(target), window=window)
        return
    if private:
        if not msg.nick or not is_safe_name(msg.nick):
            window = state.windows.server
        else:
            window = state.open_window(who)
            state.last_private = who
    else:
        window = state.window_of(target) or state.windows.server  # a room we are not in: window 1
    if text.startswith(CTCP_MARK):
        verb, _, body = text.strip(CTCP_MARK).partition(" ")
        if verb.upper() == "ACTION":
            kind = Kind.PRIVATE_IN if private else Kind.ACTION
            shown = f"* {sanitize(body)}" if private else sanitize(body)
            reaction.info(shown, kind, who, window=window, highlight=state.mentions_me(body))
        else:
            _ctcp_request(state, msg, verb.upper(), body, reaction)
        return
    reaction.info(sanitize(text), Kind.PRIVATE_IN if private else Kind.CHAT, who, window=window,
                  highlight=not private and state.mentions_me(text))


def _ctcp_request(state: ChatState, msg: Message, verb: str, body: str, reaction: Reaction) -> None:
    """VERSION and PING are answered (by NOTICE, as CTCP says), at most one every few seconds."""
    who = _who(msg)
    answer = {"VERSION": CLIENT_VERSION, "PING": body[:100]}.get(verb)
    now = time.monotonic()
    if answer is None or not msg.nick or not is_safe_name(msg.nick) or not answer.isprintable():
        reaction.info(f"{who} sent a CTCP {sanitize(verb)} request (not answered)", window=state.windows.server)
        return
    if now - state.last_ctcp_reply < CTCP_REPLY_INTERVAL:
        reaction.info(f"{who} sent a CTCP {verb} request (too soon after another: not answered)",
                      window=state.windows.server)
        return
    state.last_ctcp_reply = now
    payload = f"{verb} {answer}" if answer else verb
    reaction.send.append(format_line("NOTICE", msg.nick, f"{CTCP_MARK}{payload}{CTCP_MARK}"))
    reaction.info(f"{who} asked for your CTCP {verb}: answered", window=state.windows.server)


def _notice(state: ChatState, msg: Message, reaction: Reaction) -> None:
    target = _channel_of(state, msg.params[0])
    from_server = "!" not in (msg.prefix or "") or not state.registered  # a server's prefix has no user@host
    if state.rules.is_channel(target):
        window = state.window_of(target)
    else:
        window = state.windows.server if from_server else None  # a person's notice: where you look
    reaction.info(sanitize(msg.params[1].strip(CTCP_MARK)), Kind.NOTICE, _who(msg) if msg.prefix else "server",
                  window=window)


def _invite(state: ChatState, msg: Message, reaction: Reaction) -> None:
    reaction.info(f"{_who(msg)} invites you to {_text(msg, 1)}: /join {_text(msg, 1)} to accept.", highlight=True)


# -- history batches ---------------------------------------------------------------------------

def _batch(state: ChatState, msg: Message, reaction: Reaction) -> None:
    ref = msg.params[0]
    if ref.startswith("+") and msg.params[1:2] == ("chathistory",) and len(state.batches) < MAX_BATCHES:
        state.batches[ref[1:]] = []
        fetching = state.fetching
        if fetching is not None and state.fetch_batch is None and (
                len(msg.params) < 3 or state.fold(msg.params[2]) == fetching.key):
            state.fetch_batch = ref[1:]  # the older page asked for, not the replay of a room joined
    elif ref.startswith("-") and ref[1:] in state.batches:
        _end_history(state, state.batches.pop(ref[1:]), reaction, ref[1:] == state.fetch_batch)


def _end_history(state: ChatState, lines: list[tuple[Window | None, Entry, str | None]],
                 reaction: Reaction, fetched: bool) -> None:
    """A history batch is complete: older lines asked for (``fetched``), or the replay on joining."""
    window = state.fetching if fetched else next((window for window, _, _ in lines if window is not None), None)
    entries = [entry for _, entry, _ in lines]
    oldest = next((ref for _, _, ref in lines if ref is not None), None)
    if window is None:
        return
    if fetched:
        state.fetching = state.fetch_batch = None
        if oldest is not None:
            window.oldest_ref = oldest
        if not entries:
            window.history_done = True
            entries = [make(Kind.INFO, f"This is the start of {window.name}'s history.")]
        reaction.older = (window, entries)
    elif entries:
        if window.oldest_ref is None:
            window.oldest_ref = oldest
        reaction.shown += [(window, entry) for entry in entries]
        reaction.info(LIVE_SEPARATOR, window=window)


def _fail(state: ChatState, msg: Message, reaction: Reaction) -> None:
    text = _text(msg, -1, "failed")
    if msg.params[:1] == ("CHATHISTORY",) and state.fetching is not None:
        window, state.fetching, state.fetch_batch = state.fetching, None, None
        window.history_done = True
        reaction.older = (window, [make(Kind.ERROR, f"Older messages are not available: {text}")])
        return
    reaction.error(" ".join(sanitize(param) for param in msg.params[:-1]) + f": {text}")


# -- numerics ----------------------------------------------------------------------------------

SERVER_WINDOW_NUMERICS = frozenset(
    ["002", "003", "004", "042", "250", "251", "252", "253", "254", "255", "265", "266", "372", "375", "376", "422", "396"]
)

# Sentences for numerics; {1}, {2}... are the parameters after our nick, {-1} the last one.
NUMERIC_TEXT = {
    "004": "Server {1} runs {2}.",  # RPL_MYINFO
    "221": "Your modes: {1}",  # RPL_UMODEIS
    "301": "{1} is away: {-1}",  # RPL_AWAY
    "305": "You are no longer marked as away.",  # RPL_UNAWAY
    "306": "You are now marked as away.",  # RPL_NOWAWAY
    "311": "{1} is {2}@{3} ({-1})",  # RPL_WHOISUSER
    "312": "{1} is on server {2} ({-1})",  # RPL_WHOISSERVER
    "313": "{1} is an IRC operator.",  # RPL_WHOISOPERATOR
    "314": "{1} was {2}@{3} ({-1})",  # RPL_WHOWASUSER
    "317": "{1} has been idle for {2} seconds.",  # RPL_WHOISIDLE
    "319": "{1} is in {-1}",  # RPL_WHOISCHANNELS
    "322": "{1}: {2} people. {-1}",  # RPL_LIST
    "323": "End of the room list.",  # RPL_LISTEND
    "324": "Modes of {1}: {2+}",  # RPL_CHANNELMODEIS
    "330": "{1} is logged in as {2}.",  # RPL_WHOISACCOUNT
    "331": "No topic is set in {1}.",  # RPL_NOTOPIC
    "341": "You invited {1} to {2}.",  # RPL_INVITING
    "352": "{5} ({2}@{3}) is in {1}: {-1}",  # RPL_WHOREPLY
    "367": "Banned in {1}: {2}",  # RPL_BANLIST
    "368": "End of the ban list of {1}.",  # RPL_ENDOFBANLIST
    "381": "You are now an IRC operator.",  # RPL_YOUREOPER
    "391": "Time on {1}: {-1}",  # RPL_TIME
    "401": "There is nobody called {1} here.",  # ERR_NOSUCHNICK
    "403": "There is no room called {1}.",  # ERR_NOSUCHCHANNEL
    "404": "Cannot send to {1}: {-1}",  # ERR_CANNOTSENDTOCHAN
    "405": "Cannot join {1}: you are in too many rooms.",  # ERR_TOOMANYCHANNELS
    "421": "The server does not know the command {1}.",  # ERR_UNKNOWNCOMMAND
    "441": "{1} is not in {2}.",  # ERR_USERNOTINCHANNEL
    "442": "You are not in {1}.",  # ERR_NOTONCHANNEL
    "443": "{1} is already in {2}.",  # ERR_USERONCHANNEL
    "461": "The server needs more parameters for {1}.",  # ERR_NEEDMOREPARAMS
    "471": "Cannot join {1}: it is full.",  # ERR_CHANNELISFULL
    "472": "The server does not know the mode {1}.",  # ERR_UNKNOWNMODE
    "473": "Cannot join {1}: it is invite-only.",  # ERR_INVITEONLYCHAN
    "474": "Cannot join {1}: you are banned from it.",  # ERR_BANNEDFROMCHAN
    "475": "Cannot join {1}: the room key is missing or wrong (/join {1} KEY).",  # ERR_BADCHANNELKEY
    "476": "{1} is not a valid room name.",  # ERR_BADCHANMASK
    "478": "The ban list of {1} is full.",  # ERR_BANLISTFULL
    "481": "Permission denied: you are not an IRC operator.",  # ERR_NOPRIVILEGES
    "482": "You are not a room operator in {1}.",  # ERR_CHANOPRIVSNEEDED
    "491": "The server has no operator entry for you: /oper refused.",  # ERR_NOOPERHOST
    "501": "The server does not know that user mode.",  # ERR_UMODEUNKNOWNFLAG
    "502": "You can only change your own modes.",  # ERR_USERSDONTMATCH
    "696": "Cannot set mode {2} on {1}: {-1}",  # ERR_INVALIDMODEPARAM
}
ERROR_NUMERICS = frozenset(["691", "696", "723"])  # refusals outside 400-599: STARTTLS, mode parameter, privileges
QUIET_NUMERICS = frozenset(["315", "318", "321", "329", "333", "369"])  # ends of lists, times: nothing to read


_PLACE = re.compile(r"\{(-1|\d+)(\+?)\}")


def _numeric_sentence(template: str, params: tuple[str, ...]) -> str | None:
    """Fill a NUMERIC_TEXT template; None when the server sent too few parameters for it.

    One pass over the template (not ``str.format``): braces in the server's words are text.
    """
    values = [sanitize(param) for param in params]
    if any(int(index) >= len(values) and not rest for index, rest in _PLACE.findall(template)):
        return None

    def fill(place: re.Match[str]) -> str:
        index = int(place.group(1))
        if place.group(2):
            return " ".join(values[index:])
        return values[index] if values else ""  # {-1} of no parameters at all

    return _PLACE.sub(fill, template)


def _numeric(state: ChatState, msg: Message, reaction: Reaction) -> None:
    command = msg.command
    if command in QUIET_NUMERICS:
        return
    if command == "421" and len(msg.params) > 1 and msg.params[1].upper() in ("CAP", "CHATHISTORY"):
        return  # a server without IRCv3: nothing to tell the reader
    params = msg.params  # params[0] is our own nick; the rest is what the numeric is about
    target: Window | None = None
    if command in SERVER_WINDOW_NUMERICS or not state.registered:
        target = state.windows.server
    elif len(params) > 1 and state.rules.is_channel(params[1]):
        # about a room we are in: its window; else (a refused /join) where the user looks
        room = state.window_of(params[1])
        target = room if room is not None and room.joined else None
    template = NUMERIC_TEXT.get(command)
    text = _numeric_sentence(template, params) if template is not None else None
    kind = Kind.ERROR if command[0] in "45" or command in ERROR_NUMERICS else Kind.INFO
    if text is None:
        # the server's own words, without the number: "2 operator(s) online" and, for a
        # refusal, what it is about first: "rob2: Nick change too fast"
        words = [sanitize(param) for param in params[1:]]
        if kind is Kind.ERROR and len(words) > 1:
            text = f"{' '.join(words[:-1])}: {words[-1]}"
        else:
            text = " ".join(words) or "(an empty reply)"
    reaction.info(text, kind, window=target)


HANDLERS: dict[str, ServerMessage] = {
    "PING": ServerMessage(_ping),
    "PONG": ServerMessage(_pong, 1),
    "ERROR": ServerMessage(_error),
    "CAP": ServerMessage(_cap, 3),
    "BATCH": ServerMessage(_batch, 1),
    "FAIL": ServerMessage(_fail),
    "JOIN": ServerMessage(_join, 1),
    "PART": ServerMessage(_part, 1),
    "KICK": ServerMessage(_kick, 2),
    "QUIT": ServerMessage(_quit),
    "NICK": ServerMessage(_nick, 1),
    "MODE": ServerMessage(_mode, 2),
    "PRIVMSG": ServerMessage(_privmsg, 2),
    "NOTICE": ServerMessage(_notice, 2),
    "INVITE": ServerMessage(_invite, 2),
    "TOPIC": ServerMessage(_topic, 1),
    "001": ServerMessage(_welcome, 1),
    "005": ServerMessage(_isupport),
    "332": ServerMessage(_topic_reply, 3),
    "353": ServerMessage(_names, 4),
    "366": ServerMessage(_end_of_names, 2),
    "431": ServerMessage(_bad_nick),
    "432": ServerMessage(_bad_nick),
    "433": ServerMessage(_bad_nick),
    "436": ServerMessage(_bad_nick),
    "437": ServerMessage(_bad_nick),
    "464": ServerMessage(_bad_password),
}
