"""Command handlers: small functions in one dispatch table.

A handler raises ``IRCError`` and ``dispatch`` turns it into the numeric, in one place.
Handlers never touch sockets: they hand encoded lines to ``User.deliver`` or to the ``Hub``.
The query commands (WHO, LIST, AWAY...) live in ``queries``; this table holds them too.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ircchat import __version__
from ircchat.chathistory import cmd_chathistory, history_isupport, replay_on_join
from ircchat.ircv3 import CAP_LS, CAPS_WITHOUT_HISTORY, add_tags
from ircchat.logs import log
from ircchat.moderation import (
    cmd_invite,
    cmd_kick,
    cmd_kill,
    cmd_mode,
    cmd_oper,
    isupport_modes,
)
from ircchat.numerics import (
    ERR_ALREADYREGISTERED,
    ERR_INVALIDCAPCMD,
    ERR_NEEDMOREPARAMS,
    ERR_NICKCHANGETOOFAST,
    ERR_NOMOTD,
    ERR_NONICKNAMEGIVEN,
    ERR_NOORIGIN,
    ERR_NORECIPIENT,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOTEXTTOSEND,
    ERR_NOTREGISTERED,
    ERR_PASSWDMISMATCH,
    ERR_TOOMANYTARGETS,
    ERR_UNKNOWNCOMMAND,
    RPL_AWAY,
    RPL_CREATED,
    RPL_ENDOFMOTD,
    RPL_ENDOFNAMES,
    RPL_ISUPPORT,
    RPL_LUSERCHANNELS,
    RPL_LUSERCLIENT,
    RPL_LUSERME,
    RPL_LUSERUNKNOWN,
    RPL_MOTD,
    RPL_MOTDSTART,
    RPL_MYINFO,
    RPL_NAMREPLY,
    RPL_NOTOPIC,
    RPL_TOPIC,
    RPL_TOPICWHOTIME,
    RPL_VERSION,
    RPL_WELCOME,
    RPL_YOURHOST,
    IRCError,
)
from ircchat.protocol import CHANNEL_RE, Message, encode_line, format_line, irc_fold
from ircchat.queries import (
    AWAY_MAX,
    cmd_admin,
    cmd_away,
    cmd_help,
    cmd_info,
    cmd_ison,
    cmd_list,
    cmd_time,
    cmd_userhost,
    cmd_who,
    cmd_whois,
    cmd_whowas,
)
from ircchat.state import Channel, Hub, User

Handler = Callable[[Hub, User, Message], None]
TOPIC_MAX = 390
NICK_CHANGE_WINDOW = 60.0  # seconds over which nick changes are counted
ISUPPORT_PER_LINE = 13  # tokens on one 005 line, at most, as modern.ircdocs.horse asks


def line_from(user: User, command: str, *params: str) -> bytes:
    """A line with ``user`` as its source, encoded once for every recipient."""
    return encode_line(format_line(command, *params, prefix=user.source))


def cmd_cap(hub: Hub, user: User, msg: Message) -> None:
    """IRCv3 capability negotiation (CAP LS [302] / LIST / REQ / END); registration waits for END."""
    sub = msg.params[0].upper()
    offered = CAP_LS if hub.history is not None else CAPS_WITHOUT_HISTORY
    if sub == "LS":
        user.cap_negotiating = not user.registered
        _cap_reply(hub, user, "LS", " ".join(offered))
    elif sub == "LIST":
        _cap_reply(hub, user, "LIST", " ".join(sorted(user.caps)))
    elif sub == "REQ":
        user.cap_negotiating = not user.registered
        wanted = msg.params[1] if len(msg.params) > 1 else ""
        changes = wanted.split()
        if not changes or any(change.lstrip("-") not in offered for change in changes):
            _cap_reply(hub, user, "NAK", wanted)  # all or nothing, as the spec asks
            return
        caps = set(user.caps)
        for change in changes:
            (caps.discard if change.startswith("-") else caps.add)(change.lstrip("-"))
        hub.set_caps(user, frozenset(caps))
        _cap_reply(hub, user, "ACK", wanted)
    elif sub == "END":
        user.cap_negotiating = False
        _try_register(hub, user)
    else:
        raise IRCError(ERR_INVALIDCAPCMD, sub, "Invalid CAP command")


def _cap_reply(hub: Hub, user: User, sub: str, text: str) -> None:
    hub.answer(user, hub.server_line("CAP", user.nick or "*", sub, text))


def cmd_pass(hub: Hub, user: User, msg: Message) -> None:
    if user.registered:
        raise IRCError(ERR_ALREADYREGISTERED, "You may not reregister")
    user.password = msg.params[0]  # checked at NICK or USER, after the back-off's wait
    if hub.config.password is not None:
        user.hold = hub.password_try(user.address)


def _check_password(hub: Hub, user: User) -> None:
    """With a server password, refuse (464, then close) a client that has not given it.

    Runs before NICK claims anything, so a client without the password can neither hold a
    nick nor learn from 433 who is online.
    """
    expected = hub.config.password
    if expected is None or user.authenticated:
        return
    given = user.password
    if given is None:
        user.quit_reason = "Password required"
        raise IRCError(ERR_PASSWDMISMATCH, "Password required: send PASS before NICK and USER")
    correct = hmac.compare_digest(given.encode(), expected.encode())
    hub.password_result(user.address, correct)
    if not correct:
        user.quit_reason = "Bad password"
        raise IRCError(ERR_PASSWDMISMATCH, "Password incorrect")
    user.authenticated = True


def cmd_nick(hub: Hub, user: User, msg: Message) -> None:
    if not msg.params or not msg.params[0]:
        raise IRCError(ERR_NONICKNAMEGIVEN, "No nickname given")
    new = msg.params[0]
    if user.nick == new:
        return
    if user.registered:
        _count_nick_change(hub, user, new)
    else:
        _check_password(hub, user)
    if user.registered:
        hub.settle_history()
        old = hub.claim_nick(user, new, lambda: encode_line(format_line("NICK", new, prefix=user.source)))
        log.info("%s is now known as %s", old, new)
    else:
        hub.claim_nick(user, new)
        _try_register(hub, user)


def _count_nick_change(hub: Hub, user: User, new: str) -> None:
    now = time.monotonic()
    user.nick_changes = [when for when in user.nick_changes if now - when < NICK_CHANGE_WINDOW]
    if len(user.nick_changes) >= hub.config.nick_changes_per_minute:
        # The oldest change in the window leaves it first; then one more is allowed.
        wait = math.ceil(NICK_CHANGE_WINDOW - (now - user.nick_changes[0]))
        raise IRCError(ERR_NICKCHANGETOOFAST, new, f"Nick change too fast. Please wait {max(wait, 1)} seconds")
    user.nick_changes.append(now)


def cmd_user(hub: Hub, user: User, msg: Message) -> None:
    if user.registered:
        raise IRCError(ERR_ALREADYREGISTERED, "You may not reregister")
    if not msg.params[0] or not msg.params[3]:  # an empty username or realname
        raise IRCError(ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
    _check_password(hub, user)
    user.username = "~" + (re.sub(r"[^A-Za-z0-9_.-]", "", msg.params[0])[:10] or "user")
    user.realname = msg.params[3]
    _try_register(hub, user)


def _try_register(hub: Hub, user: User) -> None:
    if user.registered or not user.nick or not user.username or user.cap_negotiating:
        return
    with hub.lock:
        user.registered = True
        hub.registered += 1
        hub.bus.registered(user)
    log.info("%s registered from %s", user.source, user.address)
    config = hub.config
    hub.reply(user, RPL_WELCOME, f"Welcome to the {config.network} IRC network, {user.source}")
    hub.reply(user, RPL_YOURHOST, f"Your host is {config.server_name}, running version {__version__}")
    hub.reply(user, RPL_CREATED, f"This server was created {hub.created}")
    hub.reply(user, RPL_MYINFO, config.server_name, __version__, "iow", "biklmnostv", "bklov")
    send_isupport(hub, user)
    cmd_lusers(hub, user, msg=Message("LUSERS"))
    cmd_motd(hub, user, msg=Message("MOTD"))
    _join(hub, user, config.room)


def send_isupport(hub: Hub, user: User) -> None:
    """The 005 lines: what this server supports (after registration, and after VERSION)."""
    tokens = [
        "NICKLEN=20", "CASEMAPPING=ascii", "CHANTYPES=#", "CHANNELLEN=50", f"TOPICLEN={TOPIC_MAX}",
        f"NETWORK={hub.config.network}", *isupport_modes(), isupport_targmax(), "WHOX",
        f"AWAYLEN={AWAY_MAX}", *history_isupport(hub),
    ]
    for start in range(0, len(tokens), ISUPPORT_PER_LINE):
        hub.reply(user, RPL_ISUPPORT, *tokens[start:start + ISUPPORT_PER_LINE], "are supported by this server")


def cmd_version(hub: Hub, user: User, msg: Message) -> None:
    hub.reply(user, RPL_VERSION, f"ircchat-{__version__}", hub.config.server_name, "a small IRC chat server")
    send_isupport(hub, user)


def cmd_ping(hub: Hub, user: User, msg: Message) -> None:
    if not msg.params:
        raise IRCError(ERR_NOORIGIN, "No origin specified")
    server = hub.config.server_name
    hub.answer(user, encode_line(format_line("PONG", server, msg.params[0], prefix=server)))


def cmd_pong(hub: Hub, user: User, msg: Message) -> None:
    """Nothing to do: every line a client sends already counts as a sign of life."""


def cmd_quit(hub: Hub, user: User, msg: Message) -> None:
    user.quit_reason = f"Quit: {msg.params[0]}" if msg.params and msg.params[0] else "Quit"


def cmd_motd(hub: Hub, user: User, msg: Message) -> None:
    motd = hub.config.motd
    if not motd:
        raise IRCError(ERR_NOMOTD, "MOTD File is missing")
    hub.reply(user, RPL_MOTDSTART, f"- {hub.config.server_name} Message of the day -")
    for text in motd:
        hub.reply(user, RPL_MOTD, f"- {text}")
    hub.reply(user, RPL_ENDOFMOTD, "End of /MOTD command.")


def cmd_lusers(hub: Hub, user: User, msg: Message) -> None:
    everyone, here, unknown, channels = hub.counts()
    servers = hub.bus.servers()
    hub.reply(user, RPL_LUSERCLIENT, f"There are {everyone} users and 0 invisible on {servers} servers")
    if unknown:
        hub.reply(user, RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
    hub.reply(user, RPL_LUSERCHANNELS, str(channels), "channels formed")
    hub.reply(user, RPL_LUSERME, f"I have {here} clients and {servers - 1} servers")


def cmd_join(hub: Hub, user: User, msg: Message) -> None:
    name = msg.params[0]
    if name == "0":
        for channel in list(user.channels):
            cmd_part(hub, user, Message("PART", (channel.name,)))
        return
    if not CHANNEL_RE.match(name):
        raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel (names are # and up to 49 more)")
    # JOIN #a,#b k1,k2 runs once per channel; a +k channel takes any of the keys given.
    keys = tuple(msg.params[1].split(",")[:20]) if len(msg.params) > 1 else ()
    _join(hub, user, name, keys)


def _join(hub: Hub, user: User, name: str, keys: tuple[str, ...] = ()) -> None:
    channel = hub.join(user, name, replay_on_join, keys)
    if channel is None:
        return
    log.info("%s joined %s", user.nick, channel.name)
    if channel.topic:
        _send_topic(hub, user, channel)
    _send_names(hub, user, channel)


def cmd_part(hub: Hub, user: User, msg: Message) -> None:
    hub.settle_history()
    hub.part(user, msg.params[0], msg.params[1:2])
    log.info("%s left %s", user.nick, msg.params[0])


def cmd_privmsg(hub: Hub, user: User, msg: Message) -> None:
    """PRIVMSG and NOTICE: to a channel, every other member; to a nick, that user."""
    if not msg.params or not msg.params[0]:
        raise IRCError(ERR_NORECIPIENT, f"No recipient given ({msg.command})")
    if len(msg.params) < 2 or not msg.params[1]:
        raise IRCError(ERR_NOTEXTTOSEND, "No text to send")
    target, text = msg.params[0], msg.params[1]
    echo = "echo-message" in user.caps
    label, user.label = (user.label, None) if echo else (None, user.label)  # the echo answers
    # Built without format_line's checks, on the path every chat line takes: the source was
    # checked at registration, the command is ours, the target is a parsed middle parameter
    # (no space, no leading colon) and no parameter holds CR, LF or NUL after decode_line.
    line = encode_line(f":{user.source} {msg.command} {target} :{text}")
    if target.startswith("#"):
        channel = hub.channel_to_speak_in(user, target)
        user.last_message = time.monotonic()
        hub.publish(user, channel, msg.command, text, line, to_sender=echo, label=label)
        return
    recipient = hub.find_user(target)
    if recipient is None:
        raise IRCError(ERR_NOSUCHNICK, target, "No such nick/channel")
    user.last_message = time.monotonic()
    # Private lines get a msgid and time too, but are never stored: a nick is not an account.
    stamped = hub.stamp(line)
    hub.send_stamped([recipient], stamped)
    if echo:
        line = stamped.line_for(user.variant)
        user.deliver(add_tags(line, [("label", label)]) if label else line)
    away = recipient.away  # one read: the recipient may come back meanwhile
    if away is not None and msg.command == "PRIVMSG":
        # Unlabeled when the echo took the label: it is the echo that answers then.
        hub.answer(user, hub.numeric_line(user, RPL_AWAY, recipient.nick or "", away), now=label is not None)


def cmd_names(hub: Hub, user: User, msg: Message) -> None:
    if not msg.params:
        with hub.lock:
            channels = list(user.channels)
        for channel in channels:
            _send_names(hub, user, channel)
        return
    channel = hub.find_channel(msg.params[0])
    if channel is None:
        hub.reply(user, RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list")
    else:
        _send_names(hub, user, channel)


def _send_names(hub: Hub, user: User, channel: Channel) -> None:
    # The batches are kept packed by the hub, by bytes (a join into a big room adds one name,
    # it does not re-pack them all); a line is a batch behind a head that leaves room for it.
    head = f":{hub.config.server_name} {RPL_NAMREPLY} {user.nick or '*'} = {channel.name} :".encode()
    lines = b"".join([head + batch + b"\r\n" for batch in hub.names(channel, user)])
    data = lines + hub.numeric_line(user, RPL_ENDOFNAMES, channel.name, "End of /NAMES list")
    hub.answer(user, data)


def cmd_topic(hub: Hub, user: User, msg: Message) -> None:
    name = msg.params[0]
    if len(msg.params) > 1:
        topic = msg.params[1][:TOPIC_MAX]
        channel = hub.set_topic(user, name, topic)
        label, user.label = user.label, None  # the TOPIC line the setter is sent answers
        line = line_from(user, "TOPIC", channel.name, topic)
        hub.publish(user, channel, "TOPIC", topic, line, to_sender=True, label=label)
        return
    channel = hub.find_channel(name)
    if channel is None:
        raise IRCError(ERR_NOSUCHCHANNEL, name, "No such channel")
    _send_topic(hub, user, channel)


def _send_topic(hub: Hub, user: User, channel: Channel) -> None:
    with hub.lock:
        topic, setter, when = channel.topic, channel.topic_setter, channel.topic_time
    if not topic:
        hub.reply(user, RPL_NOTOPIC, channel.name, "No topic is set")
        return
    hub.reply(user, RPL_TOPIC, channel.name, topic)
    hub.reply(user, RPL_TOPICWHOTIME, channel.name, setter, str(int(when)))




@dataclass(frozen=True)
class Command:
    handler: Handler
    min_params: int = 0
    before_registration: bool = False  # allowed before NICK/USER are done
    # Which parameter is a comma list of targets (0: the first, -1: the last), if any; the
    # handler then runs once per distinct target, and over ``max_targets`` of them draw 407.
    targets_at: int | None = None
    max_targets: int = 1
    quiet: bool = False  # never answer with an error numeric (NOTICE)


COMMANDS: dict[str, Command] = {
    "CAP": Command(cmd_cap, 1, before_registration=True),
    "PASS": Command(cmd_pass, 1, before_registration=True),
    "NICK": Command(cmd_nick, 0, before_registration=True),
    "USER": Command(cmd_user, 4, before_registration=True),
    "PING": Command(cmd_ping, 0, before_registration=True),
    "PONG": Command(cmd_pong, 0, before_registration=True),
    "QUIT": Command(cmd_quit, 0, before_registration=True),
    "JOIN": Command(cmd_join, 1, targets_at=0, max_targets=20),
    "PART": Command(cmd_part, 1, targets_at=0, max_targets=20),
    "PRIVMSG": Command(cmd_privmsg, 0, targets_at=0, max_targets=4),
    "NOTICE": Command(cmd_privmsg, 0, targets_at=0, max_targets=4, quiet=True),
    "NAMES": Command(cmd_names, 0, targets_at=0, max_targets=4),
    "TOPIC": Command(cmd_topic, 1),
    "WHO": Command(cmd_who, 0),
    "WHOIS": Command(cmd_whois, 1, targets_at=-1, max_targets=4),
    "WHOWAS": Command(cmd_whowas, 0),
    "USERHOST": Command(cmd_userhost, 1),
    "ISON": Command(cmd_ison, 1),
    "LIST": Command(cmd_list, 0),
    "AWAY": Command(cmd_away, 0),
    "MODE": Command(cmd_mode, 1),
    "KICK": Command(cmd_kick, 2, targets_at=1, max_targets=4),
    "INVITE": Command(cmd_invite, 2),
    "OPER": Command(cmd_oper, 2),
    "KILL": Command(cmd_kill, 1),
    "MOTD": Command(cmd_motd, 0),
    "LUSERS": Command(cmd_lusers, 0),
    "TIME": Command(cmd_time, 0),
    "VERSION": Command(cmd_version, 0),
    "ADMIN": Command(cmd_admin, 0),
    "INFO": Command(cmd_info, 0),
    "HELP": Command(cmd_help, 0),
    "CHATHISTORY": Command(cmd_chathistory, 0),
}


def _distinct_targets(targets: str, limit: int) -> list[str]:
    """A comma list without repeats (``#a,#A`` is one target); 407 if it names over ``limit``."""
    by_folded: dict[str, str] = {}
    for target in targets.split(","):
        by_folded.setdefault(irc_fold(target), target)
    distinct = list(by_folded.values())
    if len(distinct) > limit:
        raise IRCError(ERR_TOOMANYTARGETS, targets, f"Too many targets: at most {limit} in one command")
    return distinct


def _with_param(msg: Message, index: int, value: str) -> Message:
    params = list(msg.params)
    params[index] = value
    return msg._replace(params=tuple(params))


def isupport_targmax() -> str:
    """The TARGMAX token, read off the dispatch table so the rule lives in one place."""
    limits = (f"{name}:{command.max_targets}" for name, command in COMMANDS.items()
              if command.targets_at is not None)
    return "TARGMAX=" + ",".join(limits)


def dispatch(hub: Hub, user: User, msg: Message) -> None:
    """Run one client message; every IRCError a handler raises becomes its numeric here.

    A message with a ``label`` tag, from a client with labeled-response and batch, has its
    answers (what goes through ``Hub.answer``) sent back labeled: one line tagged, several in
    a labeled-response batch, none as ``ACK``. A handler whose answer is not one of those (an
    echo, which comes with the room line) takes the label off ``user.label`` itself.
    """
    label = dict(msg.tags).get("label") if {"labeled-response", "batch"} <= user.caps else None
    if not label:
        _dispatch(hub, user, msg)
        return
    user.answers, user.label = [], label
    try:
        _dispatch(hub, user, msg)
    finally:
        answers, user.answers = user.answers, None
        taken, user.label = user.label is None, None
    if len(answers) == 1:
        user.deliver(add_tags(answers[0], [("label", label)]))
    elif answers:
        ref = hub.batch_id()
        user.deliver(add_tags(hub.server_line("BATCH", f"+{ref}", "labeled-response"), [("label", label)]))
        for answer in answers:  # lines of an inner batch (CHATHISTORY) keep their own tag
            user.deliver(answer if answer.startswith(b"@batch=") else add_tags(answer, [("batch", ref)]))
        user.deliver(hub.server_line("BATCH", f"-{ref}"))
    elif not taken:
        user.deliver(add_tags(hub.server_line("ACK"), [("label", label)]))


def _dispatch(hub: Hub, user: User, msg: Message) -> None:
    if user.quit_reason is not None:
        return  # leaving (QUIT, a wrong password): nothing after that is handled
    command = COMMANDS.get(msg.command)
    targets: list[str | None] = [None]
    try:
        if not user.registered and not (command and command.before_registration):
            raise IRCError(ERR_NOTREGISTERED, "You have not registered")
        if command is None:
            raise IRCError(ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
        if len(msg.params) < command.min_params:
            raise IRCError(ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
        at = command.targets_at
        if at is not None and msg.params and "," in msg.params[at]:
            targets = _distinct_targets(msg.params[at], command.max_targets)
    except IRCError as error:
        hub.reply_error(user, error)
        return
    user.flood_debt += len(targets) - 1  # each target beyond the first costs a line
    for target in targets:
        one = msg if target is None else _with_param(msg, command.targets_at, target)
        try:
            command.handler(hub, user, one)
        except IRCError as error:
            if not command.quiet:
                hub.reply_error(user, error)
