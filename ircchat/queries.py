"""The commands clients use besides chatting: who is here, who was, who is away, which rooms
there are, and what this server is.

WHO (with masks, and WHOX fields), WHOIS, WHOWAS, USERHOST, ISON, LIST, AWAY, TIME, ADMIN,
INFO and HELP, each registered in ``handlers.COMMANDS``. Like every handler they raise
``IRCError`` and answer through ``Hub.answer``, which charges a reply's size to the asker's
flood control: a query's answer can be thousands of times the size of the query. Anything
they gather about other users is copied under ``Hub.lock`` and formatted after it is let go.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import NamedTuple

from ircchat import __version__
from ircchat.numerics import (
    ERR_HELPNOTFOUND,
    ERR_NONICKNAMEGIVEN,
    ERR_NOSUCHNICK,
    ERR_WASNOSUCHNICK,
    RPL_ADMINEMAIL,
    RPL_ADMINLOC1,
    RPL_ADMINLOC2,
    RPL_ADMINME,
    RPL_AWAY,
    RPL_ENDOFHELP,
    RPL_ENDOFINFO,
    RPL_ENDOFWHO,
    RPL_ENDOFWHOIS,
    RPL_ENDOFWHOWAS,
    RPL_HELPSTART,
    RPL_HELPTXT,
    RPL_INFO,
    RPL_ISON,
    RPL_LIST,
    RPL_LISTEND,
    RPL_LISTSTART,
    RPL_NOWAWAY,
    RPL_TIME,
    RPL_UNAWAY,
    RPL_USERHOST,
    RPL_WHOISCHANNELS,
    RPL_WHOISHOST,
    RPL_WHOISIDLE,
    RPL_WHOISOPERATOR,
    RPL_WHOISSERVER,
    RPL_WHOISUSER,
    RPL_WHOREPLY,
    RPL_WHOSPCRPL,
    RPL_WHOWASUSER,
    IRCError,
)
from ircchat.protocol import MAX_LINE_BYTES, Message, glob_match, irc_fold
from ircchat.state import WHOWAS_PER_NICK, Channel, Hub, User

AWAY_MAX = 200  # characters of an AWAY message kept (ISUPPORT AWAYLEN)
USERHOST_MAX = 5  # nicks one USERHOST answers for, as the RFC has it
ISON_MAX = 100  # nicks one ISON looks up; the rest of a longer list is ignored
LIST_PATTERNS_MAX = 10  # masks one LIST may hold
WHO_MASK_MAX = 500  # users a WHO by mask lists at most (a channel's WHO lists all its members)
SCAN_PER_TOKEN = 500  # matches a WHO or LIST by mask makes per flood-control line it costs
HIDDEN_IP = "255.255.255.255"  # WHOX's ``i`` for an address the asker may not see
WHOX_FIELDS = "tcuihsnfdlaor"  # the order a 354 reply gives its fields in, whatever was asked


def sees_addresses(user: User) -> bool:
    """Server operators may see real addresses: in WHOIS (378) and WHOX's ``i``, and WHO masks
    match them. Host fields stay the cloaks even for them, so that a ban built from one (as
    irssi's and WeeChat's /ban do) matches what bans are checked against."""
    return "o" in user.modes


def _words(params: tuple[str, ...], limit: int) -> list[str]:
    """The space-separated words of all ``params`` (``ISON a b`` and ``ISON :a b`` alike), at
    most ``limit``."""
    words: list[str] = []
    for param in params:
        words += param.split()[:limit - len(words)]
    return words


# -- WHO ----------------------------------------------------------------------------------


class WhoQuery(NamedTuple):
    """``WHO <mask> [<filters>][%<fields>[,<token>]]``, parsed."""

    mask: str
    operators_only: bool  # the ``o`` filter
    fields: str | None  # WHOX fields in reply order; None for a classic 352 reply
    token: str  # echoed as WHOX field ``t``


def parse_who(params: tuple[str, ...]) -> WhoQuery:
    """Read WHO's parameters; fields asked for in any order come back in the spec's order.

    >>> parse_who(("#chat", "%cuhsnfdar"))  # WeeChat, when the server offers WHOX
    WhoQuery(mask='#chat', operators_only=False, fields='cuhsnfdar', token='0')
    >>> parse_who(("#chat", "%tcuhnfdar,743"))  # irssi, the same
    WhoQuery(mask='#chat', operators_only=False, fields='tcuhnfdar', token='743')
    >>> parse_who(("0", "o"))
    WhoQuery(mask='*', operators_only=True, fields=None, token='0')
    >>> parse_who(("*", "%rn,x1234"))  # a token must be 1 to 3 digits
    WhoQuery(mask='*', operators_only=False, fields='nr', token='0')
    """
    mask = params[0] if params and params[0] not in ("", "0") else "*"
    filters, percent, spec = (params[1] if len(params) > 1 else "").partition("%")
    fields, token = None, "0"
    if percent:
        asked, _, given = spec.partition(",")
        fields = "".join(field for field in WHOX_FIELDS if field in asked)
        if given.isascii() and given.isdigit() and len(given) <= 3:
            token = given
    return WhoQuery(mask, "o" in filters, fields, token)


class WhoRow(NamedTuple):
    """One user as a WHO reply shows it, copied under Hub.lock."""

    channel: str  # the channel asked about, or "*"
    prefix: str  # the member's status prefix in that channel
    nick: str
    username: str
    host: str
    address: str
    realname: str
    away: bool
    operator: bool
    idle: int


def _who_row(channel: Channel | None, member: User, multi: bool, now: float) -> WhoRow:
    return WhoRow(
        channel.name if channel is not None else "*",
        channel.prefix(member, multi) if channel is not None else "",
        member.nick or "*", member.username or "*", member.host, member.address, member.realname,
        member.away is not None, "o" in member.modes, int(now - member.last_message),
    )


def _visible(asker: User, user: User) -> bool:
    """Whether WHO by mask may list ``user``: not +i, or sharing a channel (Hub.lock held)."""
    return ("i" not in user.modes or user is asker or sees_addresses(asker)
            or not user.channels.isdisjoint(asker.channels))


def _who_rows(hub: Hub, asker: User, query: WhoQuery) -> list[WhoRow]:
    """The users a WHO lists: a channel's members, one nick, or everyone a wildcard mask
    matches (nick, username, host or realname) whom the asker may see; with the ``o``
    filter, the server operators among them."""
    rows = _who_matches(hub, asker, query.mask)
    if query.operators_only:
        rows = (row for row in rows if row.operator)
    # A channel lists all its members; anything else, up to a bound.
    return list(rows) if query.mask.startswith("#") else list(itertools.islice(rows, WHO_MASK_MAX))


def _who_matches(hub: Hub, asker: User, mask: str) -> Iterable[WhoRow]:
    multi, now = "multi-prefix" in asker.caps, time.monotonic()
    with hub.lock:
        if mask.startswith("#"):
            channel = hub.channels.get(irc_fold(mask))
            if channel is None:
                return []
            if not channel.shown_to(asker):
                return []
            sees_all = asker in channel.members or sees_addresses(asker)
            return [_who_row(channel, user, multi, now) for user in channel.members
                    if sees_all or "i" not in user.modes]
        if "*" not in mask and "?" not in mask:
            found = hub.nicks.get(irc_fold(mask))
            return [_who_row(None, found, multi, now)] if found is not None and found.registered else []
        candidates = [_who_row(None, user, multi, now) for user in hub.nicks.values()
                      if user.registered and _visible(asker, user)]
    # Each user looked at costs its asker, answered or not: WHO *zz* answers one line, but
    # copies and matches everyone (milliseconds in a big server).
    asker.flood_debt += len(candidates) / SCAN_PER_TOKEN
    if mask == "*":
        return candidates
    address_too = sees_addresses(asker)
    # Matched after the lock is let go, as the rows are taken: a costly mask costs its asker alone.
    return (row for row in candidates
            if any(glob_match(mask, field) for field in (row.nick, row.username, row.host, row.realname))
            or address_too and glob_match(mask, row.address))


def _who_line(hub: Hub, asker: User, query: WhoQuery, row: WhoRow) -> bytes:
    flags = ("G" if row.away else "H") + ("*" if row.operator else "") + row.prefix
    oper = sees_addresses(asker)
    host = row.host
    server = hub.config.server_name
    if query.fields is None:
        return hub.numeric_line(asker, RPL_WHOREPLY, row.channel, row.username, host, server,
                                row.nick, flags, f"0 {row.realname}")
    values = {
        "t": query.token, "c": row.channel, "u": row.username,
        "i": row.address if oper or row.nick == asker.nick else HIDDEN_IP, "h": host, "s": server,
        "n": row.nick, "f": flags, "d": "0", "l": str(row.idle), "a": "0", "o": "n/a",
        "r": row.realname,  # last when asked for: the only field that may hold spaces
    }
    return hub.numeric_line(asker, RPL_WHOSPCRPL, *(values[field] for field in query.fields))


def cmd_who(hub: Hub, user: User, msg: Message) -> None:
    """WHO: 352 per user (354 with WHOX fields), then 315; the flags say H(ere) or G(one),
    ``*`` for a server operator, then the member's channel prefix."""
    query = parse_who(msg.params)
    rows = _who_rows(hub, user, query)
    lines = b"".join([_who_line(hub, user, query, row) for row in rows])
    hub.answer(user, lines + hub.numeric_line(user, RPL_ENDOFWHO, query.mask, "End of /WHO list"))


# -- about one user ------------------------------------------------------------------------


def cmd_whois(hub: Hub, user: User, msg: Message) -> None:
    nick = msg.params[-1]  # the nick is last: "WHOIS [server] nick" (irssi sends "nick nick")
    found = hub.find_user(nick)
    if found is None:
        hub.reply(user, ERR_NOSUCHNICK, nick, "No such nick/channel")
    else:
        channels = hub.visible_channels(user, found)
        with hub.lock:
            away = found.away
        name = found.nick or ""
        idle = int(time.monotonic() - found.last_message)
        hub.reply(user, RPL_WHOISUSER, name, found.username or "", found.host, "*", found.realname)
        if found is user or sees_addresses(user):  # the real address: to its owner and operators
            hub.reply(user, RPL_WHOISHOST, name, f"is connecting from *@{found.address} {found.address}")
        hub.reply_list(user, RPL_WHOISCHANNELS, name, items=channels)
        hub.reply(user, RPL_WHOISSERVER, name, hub.config.server_name, hub.config.network)
        if "o" in found.modes:
            hub.reply(user, RPL_WHOISOPERATOR, name, "is an IRC operator")
        if away is not None:
            hub.reply(user, RPL_AWAY, name, away)
        hub.reply(user, RPL_WHOISIDLE, name, str(idle), str(int(found.signon)), "seconds idle, signon time")
    hub.reply(user, RPL_ENDOFWHOIS, nick, "End of /WHOIS list")


def cmd_whowas(hub: Hub, user: User, msg: Message) -> None:
    """WHOWAS nick [count]: the last users of a nick given up by a quit or a nick change."""
    if not msg.params or not msg.params[0]:
        raise IRCError(ERR_NONICKNAMEGIVEN, "No nickname given")
    nick = msg.params[0]
    wanted = msg.params[1] if len(msg.params) > 1 else ""
    count = int(wanted) if wanted.isascii() and wanted.isdigit() and int(wanted) > 0 else WHOWAS_PER_NICK
    entries = hub.find_whowas(nick, count)
    if not entries:
        hub.reply(user, ERR_WASNOSUCHNICK, nick, "There was no such nickname")
    for entry in entries:
        hub.reply(user, RPL_WHOWASUSER, entry.nick, entry.username, entry.host, "*", entry.realname)
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.when))
        hub.reply(user, RPL_WHOISSERVER, entry.nick, hub.config.server_name, when)
    hub.reply(user, RPL_ENDOFWHOWAS, nick, "End of WHOWAS")


def cmd_userhost(hub: Hub, user: User, msg: Message) -> None:
    """USERHOST nick{ nick}: ``nick[*]=(+|-)user@host`` for each that is online (``*`` a server
    operator, ``-`` away)."""
    found_users = [found for nick in _words(msg.params, USERHOST_MAX)
                   if (found := hub.find_user(nick)) is not None]
    replies = []
    for found in found_users:
        host = found.address if found is user else found.host  # the cloak, as bans see it
        operator = "*" if "o" in found.modes else ""
        away = "-" if found.away is not None else "+"
        replies.append(f"{found.nick}{operator}={away}{found.username}@{host}")
    hub.reply(user, RPL_USERHOST, " ".join(replies))


def cmd_ison(hub: Hub, user: User, msg: Message) -> None:
    """ISON nick{ nick}: which of them are online, in one 303 line (notify lists ask each
    minute); a line holds fewer names than the query that asked, so it never runs over."""
    room = MAX_LINE_BYTES - len(hub.numeric_line(user, RPL_ISON, ""))
    online: list[str] = []
    for nick in _words(msg.params, ISON_MAX):
        found = hub.find_user(nick)
        if found is not None and found.nick:
            room -= len(found.nick.encode()) + 1
            if room < -1:  # the first name has no space before it
                break
            online.append(found.nick)
    hub.reply(user, RPL_ISON, " ".join(online))


def cmd_away(hub: Hub, user: User, msg: Message) -> None:
    """AWAY :text marks the user away (306), AWAY alone back (305); away-notify tells others."""
    text = msg.params[0][:AWAY_MAX] if msg.params else ""
    hub.set_away(user, text or None)
    if text:
        hub.reply(user, RPL_NOWAWAY, "You have been marked as being away")
    else:
        hub.reply(user, RPL_UNAWAY, "You are no longer marked as being away")


# -- channels ------------------------------------------------------------------------------


def cmd_list(hub: Hub, user: User, msg: Message) -> None:
    """LIST [mask{,mask}]: 321, then 322 (name, members, topic) per channel that matches one of
    the masks, then 323. Secret channels are listed to their members only."""
    masks = msg.params[0].split(",")[:LIST_PATTERNS_MAX] if msg.params and msg.params[0] else ["*"]
    with hub.lock:
        channels = [(channel.name, len(channel.members), channel.topic)
                    for channel in hub.channels.values()
                    if channel.shown_to(user)]
    user.flood_debt += len(channels) * len(masks) / SCAN_PER_TOKEN  # as WHO's: matched or not
    lines = [hub.numeric_line(user, RPL_LISTSTART, "Channel", "Users  Name")]
    lines += [hub.numeric_line(user, RPL_LIST, name, str(count), topic)
              for name, count, topic in channels if any(glob_match(mask, name) for mask in masks)]
    lines.append(hub.numeric_line(user, RPL_LISTEND, "End of /LIST"))
    hub.answer(user, b"".join(lines))


# -- about the server ----------------------------------------------------------------------


def cmd_time(hub: Hub, user: User, msg: Message) -> None:
    now = time.time()
    readable = time.strftime("%A %B %d %Y -- %H:%M:%S UTC", time.gmtime(now))
    hub.reply(user, RPL_TIME, hub.config.server_name, str(int(now)), "0", readable)


def cmd_admin(hub: Hub, user: User, msg: Message) -> None:
    location, operator, contact = hub.config.admin
    hub.reply(user, RPL_ADMINME, hub.config.server_name, "Administrative info")
    hub.reply(user, RPL_ADMINLOC1, location)
    hub.reply(user, RPL_ADMINLOC2, operator)
    hub.reply(user, RPL_ADMINEMAIL, contact)


def cmd_info(hub: Hub, user: User, msg: Message) -> None:
    for text in (
        f"{hub.config.server_name} runs ircchat {__version__},",
        "a small IRC server written with Python's standard library alone.",
        f"Up since {hub.created}.",
    ):
        hub.reply(user, RPL_INFO, text)
    hub.reply(user, RPL_ENDOFINFO, "End of INFO list")


HELP_TOPICS: dict[str, str] = {  # one line of usage per command a client may send
    "ADMIN": "ADMIN: who runs this server and how to reach them",
    "AWAY": "AWAY [:message]: mark yourself away with a message, or back without one",
    "CAP": "CAP LS|LIST|REQ|END: IRCv3 capability negotiation",
    "CHATHISTORY": "CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN #room ...: stored lines",
    "HELP": "HELP [command]: this help",
    "INFO": "INFO: what this server is",
    "INVITE": "INVITE nick #room: let a user into an invite-only (+i) room",
    "ISON": "ISON nick [nick...]: which of these nicks are online",
    "JOIN": "JOIN #room[,#room...] [key[,key...]]: join rooms (JOIN 0 leaves them all)",
    "KICK": "KICK #room nick[,nick...] [:reason]: put users out of a room (operators)",
    "KILL": "KILL nick :reason: disconnect a user (server operators)",
    "LIST": "LIST [mask[,mask...]]: the rooms, their member counts and topics",
    "LUSERS": "LUSERS: how many users and rooms there are",
    "MODE": "MODE nick|#room [modes [params...]]: show or change modes (+b +i +k +l +m +n +o +s +t +v)",
    "MOTD": "MOTD: the message of the day",
    "NAMES": "NAMES [#room]: who is in a room",
    "NICK": "NICK newnick: change your nick",
    "NOTICE": "NOTICE target :text: like PRIVMSG, never answered automatically",
    "OPER": "OPER name password: become a server operator",
    "PART": "PART #room [:reason]: leave a room",
    "PASS": "PASS password: the server's password, before NICK and USER",
    "PING": "PING token: the server answers PONG token",
    "PONG": "PONG token: the answer to a PING",
    "PRIVMSG": "PRIVMSG #room|nick :text: say something to a room or a person",
    "QUIT": "QUIT [:reason]: leave the server",
    "TIME": "TIME: the server's clock",
    "TOPIC": "TOPIC #room [:topic]: show or set a room's topic",
    "USER": "USER username 0 * :realname: register, with NICK",
    "USERHOST": "USERHOST nick [nick...]: up to 5 users' user@host, and whether they are away",
    "VERSION": "VERSION: the server's version and what it supports",
    "WHO": "WHO [mask|#room|nick] [o][%fields[,token]]: list users (WHOX fields tcuihsnfdlaor)",
    "WHOIS": "WHOIS nick: about one user",
    "WHOWAS": "WHOWAS nick [count]: who last used a nick",
}


def cmd_help(hub: Hub, user: User, msg: Message) -> None:
    """HELP [topic]: 704, 705..., 706; 524 for a topic there is no help on."""
    topic = msg.params[0].upper() if msg.params and msg.params[0] else ""
    if not topic:
        hub.reply(user, RPL_HELPSTART, "*", "Commands (HELP <command> for one of them):")
        hub.reply_list(user, RPL_HELPTXT, "*", items=sorted(HELP_TOPICS))
        hub.reply(user, RPL_ENDOFHELP, "*", "End of /HELP")
        return
    text = HELP_TOPICS.get(topic)
    if text is None:
        raise IRCError(ERR_HELPNOTFOUND, topic, "No help available on this topic")
    hub.reply(user, RPL_HELPSTART, topic, text)
    hub.reply(user, RPL_ENDOFHELP, topic, "End of /HELP")
