"""Moderation commands: MODE (channel and user), KICK, INVITE, OPER and KILL.

Mode strings are parsed and applied by ``ircchat.modes``; the state changes, under
``Hub.lock``, are ``Hub`` methods that also announce them. Server operators (OPER, from
``ServerConfig.opers``) act as channel operators everywhere, join past bans, +i, +k and +l,
and may KILL.
"""

from __future__ import annotations

import hmac

from ircchat.logs import log
from ircchat.modes import (
    CHANMODES,
    MAX_BANS,
    MAX_MODE_PARAMS,
    PREFIXES,
    parse_mode_changes,
)
from ircchat.numerics import (
    ERR_NOOPERHOST,
    ERR_NOPRIVILEGES,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_PASSWDMISMATCH,
    ERR_UMODEUNKNOWNFLAG,
    ERR_UNKNOWNMODE,
    ERR_USERSDONTMATCH,
    RPL_BANLIST,
    RPL_CHANNELMODEIS,
    RPL_CREATIONTIME,
    RPL_ENDOFBANLIST,
    RPL_INVITING,
    RPL_UMODEIS,
    RPL_YOUREOPER,
    IRCError,
)
from ircchat.protocol import Message, encode_line, format_line, irc_fold
from ircchat.state import Channel, Hub, User

USER_MODES = "iw"  # what a user may set on itself; +o only comes from OPER (and -o drops it)
KICK_REASON_MAX = 300


def cmd_mode(hub: Hub, user: User, msg: Message) -> None:
    if msg.params[0].startswith("#"):
        _channel_mode(hub, user, msg)
    else:
        _user_mode(hub, user, msg)


def _channel_mode(hub: Hub, user: User, msg: Message) -> None:
    channel = hub.find_channel(msg.params[0])
    if channel is None:
        raise IRCError(ERR_NOSUCHCHANNEL, msg.params[0], "No such channel")
    if len(msg.params) == 1:
        hub.reply(user, RPL_CHANNELMODEIS, channel.name, *hub.channel_modes(user, channel))
        hub.reply(user, RPL_CREATIONTIME, channel.name, str(int(channel.created)))
        return
    changes, unknown = parse_mode_changes(msg.params[1], msg.params[2:])
    for letter in unknown[:MAX_MODE_PARAMS]:  # a few are enough to tell the client
        hub.reply(user, ERR_UNKNOWNMODE, letter, f"is an unknown mode char to me for {channel.name}")
    if any(change.letter == "b" and change.param is None for change in changes):
        _send_bans(hub, user, channel)  # a list query: anyone may ask
    changes = [change for change in changes if change.param is not None or change.letter != "b"]
    if changes:
        for refusal in hub.change_modes(user, channel.name, changes):
            hub.reply_error(user, refusal)


def _send_bans(hub: Hub, user: User, channel: Channel) -> None:
    for ban in hub.ban_list(channel):
        hub.reply(user, RPL_BANLIST, channel.name, ban.mask, ban.setter, str(ban.time))
    hub.reply(user, RPL_ENDOFBANLIST, channel.name, "End of channel ban list")


def _user_mode(hub: Hub, user: User, msg: Message) -> None:
    if irc_fold(msg.params[0]) != irc_fold(user.nick or ""):
        raise IRCError(ERR_USERSDONTMATCH, "Can't change mode for other users")
    if len(msg.params) == 1:
        hub.reply(user, RPL_UMODEIS, "+" + "".join(sorted(user.modes)))
        return
    wanted: dict[str, bool] = {}
    sign, unknown = "+", False
    for char in msg.params[1][:20]:
        if char in "+-":
            sign = char
        elif char in USER_MODES or (char == "o" and sign == "-"):
            wanted[char] = sign == "+"
        elif char != "o":  # +o is OPER's: ignored here, as other servers do
            unknown = True
    applied = hub.set_user_modes(user, wanted)
    if applied:
        hub.answer(user, encode_line(format_line("MODE", user.nick or "", applied, prefix=user.source)))
    if unknown:
        raise IRCError(ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")


def cmd_kick(hub: Hub, user: User, msg: Message) -> None:
    """KICK #room nick[,nick] [:reason]: the dispatcher runs it once per nick."""
    reason = msg.params[2][:KICK_REASON_MAX] if len(msg.params) > 2 and msg.params[2] else user.nick or ""
    hub.settle_history()  # what the kicked one said goes out before the KICK
    hub.kick(user, msg.params[0], msg.params[1], reason)
    log.info("%s kicked %s from %s (%s)", user.nick, msg.params[1], msg.params[0], reason)


def cmd_invite(hub: Hub, user: User, msg: Message) -> None:
    target, channel = hub.invite(user, msg.params[0], msg.params[1])
    hub.reply(user, RPL_INVITING, target.nick or "", channel.name)
    target.deliver(encode_line(format_line("INVITE", target.nick or "", channel.name, prefix=user.source)))


def cmd_oper(hub: Hub, user: User, msg: Message) -> None:
    """OPER name password. Wrong passwords space out the next tries from that address (as
    PASS's do); a try while the wait runs is refused unchecked, so guessing stays slow."""
    name, password = msg.params[0], msg.params[1]
    wait = hub.oper_wait(user.address)
    if wait > 0:
        raise IRCError(ERR_PASSWDMISMATCH, f"Too many wrong passwords: try again in {wait:.0f} s")
    expected = dict(hub.config.opers).get(name)
    if expected is None:
        hub.password_result(user.address, False, hub.oper_backoff)
        log.warning("OPER as unknown %r refused for %s from %s", name, user.nick, user.address)
        raise IRCError(ERR_NOOPERHOST, "No O-lines for your host")
    if not hmac.compare_digest(password.encode(), expected.encode()):
        hub.password_result(user.address, False, hub.oper_backoff)
        log.warning("OPER as %r with a wrong password refused for %s from %s", name, user.nick, user.address)
        raise IRCError(ERR_PASSWDMISMATCH, "Password incorrect")
    hub.password_result(user.address, True, hub.oper_backoff)
    hub.become_oper(user)
    log.info("%s from %s is now server operator %r", user.nick, user.address, name)
    hub.reply(user, RPL_YOUREOPER, "You are now an IRC operator")
    hub.answer(user, encode_line(format_line("MODE", user.nick or "", "+o", prefix=user.source)))


def cmd_kill(hub: Hub, user: User, msg: Message) -> None:
    if "o" not in user.modes:
        raise IRCError(ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
    target = hub.find_user(msg.params[0])
    if target is None:
        raise IRCError(ERR_NOSUCHNICK, msg.params[0], "No such nick/channel")
    reason = msg.params[1][:KICK_REASON_MAX] if len(msg.params) > 1 and msg.params[1] else "no reason"
    log.info("%s killed %s (%s)", user.nick, target.nick, reason)
    target.disconnect(f"Killed ({user.nick} ({reason}))")


def isupport_modes() -> list[str]:
    """The ISUPPORT tokens that describe channel modes."""
    return [f"PREFIX=({''.join(PREFIXES)}){''.join(PREFIXES.values())}", f"CHANMODES={CHANMODES}",
            f"MODES={MAX_MODE_PARAMS}", f"MAXLIST=b:{MAX_BANS}"]
