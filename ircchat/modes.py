"""Channel modes with no I/O: mode strings parsed against their classes, and ban masks.

What the server supports, as ISUPPORT announces it: ``PREFIX=(ov)@+`` (operator, voice) and
``CHANMODES=b,k,l,imnst``: ``b`` a list (a parameter to add or remove, none to query), ``k``
a key (a parameter to set; one is taken, and ignored, to unset), ``l`` a limit (a parameter to
set only) and the flags ``imnst``, which take none.

A ban mask is ``nick!user@host`` with ``*`` (any run) and ``?`` (any one character), compared
after ``irc_fold`` by ``protocol.glob_match``, in linear time whatever the mask.

Then the changes applied to a channel (``apply_mode``, with ``Hub.lock`` held by the caller)
and a channel's state as the history keeps it across restarts (``channel_state``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ircchat.logs import log
from ircchat.numerics import ERR_BANLISTFULL, ERR_INVALIDMODEPARAM, ERR_KEYSET, IRCError
from ircchat.protocol import glob_match, irc_fold

if TYPE_CHECKING:
    from ircchat.history import HistoryStore
    from ircchat.state import Channel, User

PREFIXES = {"o": "@", "v": "+"}  # channel-member modes, highest first, and their NAMES prefix
LIST_MODES = "b"
KEY_MODES = "k"  # a parameter both ways
SET_ONLY_MODES = "l"  # a parameter to set only
FLAG_MODES = "imnst"
CHANMODES = f"{LIST_MODES},{KEY_MODES},{SET_ONLY_MODES},{FLAG_MODES}"
MAX_MODE_PARAMS = 6  # parameterised changes in one MODE (ISUPPORT MODES)
MAX_BANS = 100
MASK_MAX = 100  # characters of one ban mask


class ModeChange(NamedTuple):
    sign: str  # "+" or "-"
    letter: str
    param: str | None = None


def parse_mode_changes(modes: str, params: list[str] | tuple[str, ...]) -> tuple[list[ModeChange], list[str]]:
    """The changes a MODE's mode string and parameters ask for, and its unknown letters.

    A change missing its parameter is left out; ``b`` without one is a list query (param
    None); changes past ``MAX_MODE_PARAMS`` parameterised ones are left out.

    >>> parse_mode_changes("+ov-b", ["alice", "bob", "*!*@x"])[0]
    [ModeChange(sign='+', letter='o', param='alice'), ModeChange(sign='+', letter='v', param='bob'), ModeChange(sign='-', letter='b', param='*!*@x')]
    >>> parse_mode_changes("+mz-l", [])
    ([ModeChange(sign='+', letter='m', param=None), ModeChange(sign='-', letter='l', param=None)], ['z'])
    >>> parse_mode_changes("b", [])[0]
    [ModeChange(sign='+', letter='b', param=None)]
    """
    changes: list[ModeChange] = []
    unknown: list[str] = []
    queue = list(params)
    sign, taken = "+", 0
    for letter in modes:
        if letter in "+-":
            sign = letter
            continue
        if letter in FLAG_MODES or (letter in SET_ONLY_MODES and sign == "-"):
            changes.append(ModeChange(sign, letter))
        elif letter in PREFIXES or letter in LIST_MODES or letter in KEY_MODES or letter in SET_ONLY_MODES:
            if taken >= MAX_MODE_PARAMS:
                continue
            if not queue:
                if letter in LIST_MODES or letter in KEY_MODES and sign == "-":
                    changes.append(ModeChange(sign, letter))
                continue
            taken += 1
            changes.append(ModeChange(sign, letter, queue.pop(0)))
        elif letter not in unknown:
            unknown.append(letter)
    return changes, unknown


def normalize_mask(text: str) -> str:
    """A mask in full ``nick!user@host`` form (missing parts are ``*``), folded.

    >>> normalize_mask("Bob"), normalize_mask("*@Host.Example"), normalize_mask("b!u")
    ('bob!*@*', '*!*@host.example', 'b!u@*')
    """
    text = irc_fold(text)
    nick, bang, rest = text.partition("!")
    if not bang:
        if "@" in nick:
            return f"*!{nick}" if not nick.startswith("@") else f"*!*{nick}"
        return f"{nick or '*'}!*@*"
    user, at, host = rest.partition("@")
    return f"{nick or '*'}!{user or '*'}@{host if at and host else '*'}"


def names_one(mask: str) -> bool:
    """Whether a (normalized) mask names one nick or one host exactly, with no wildcard in it:
    the default room takes only such bans, so none can shut out everyone (``*!*@*``, or
    ``*!*@*.cloak``, which every cloaked host matches).

    >>> names_one("bob!*@*"), names_one("*!*@1f.2e.cloak"), names_one("*!*@*.cloak"), names_one("b*!~u@*")
    (True, True, False, False)
    """
    nick, _, rest = mask.partition("!")
    host = rest.partition("@")[2]
    return any(part and "*" not in part and "?" not in part for part in (nick, host))


def mask_matches(mask: str, source: str) -> bool:
    """Whether ``nick!user@host`` matches a mask, case-insensitively.

    >>> mask_matches("*!*@*.cloak", "Ann!~a@1f.2e.cloak"), mask_matches("b?b!*@*", "Ann!~a@h")
    (True, False)
    """
    return glob_match(normalize_mask(mask), source)


class Ban(NamedTuple):
    mask: str  # normalized
    setter: str
    time: int  # seconds since the epoch


class BanList:
    """A channel's bans (normalized mask -> Ban), in the order set.

    Falsy when empty: the message path asks ``if channel.bans`` before matching anything,
    and keeps each member's verdict (``Channel.ban_verdicts``) until the list or its nick
    changes, so a ban list costs a match per member, not per message.
    """

    __slots__ = ("_bans",)

    def __init__(self, bans: list[Ban] | None = None) -> None:
        self._bans: dict[str, Ban] = {}
        for ban in bans or ():
            self.add(ban)

    def __bool__(self) -> bool:
        return bool(self._bans)

    def __len__(self) -> int:
        return len(self._bans)

    def __iter__(self) -> Iterator[Ban]:
        return iter(list(self._bans.values()))

    def add(self, ban: Ban) -> bool:
        """Add a ban (its mask normalized); False if it was there already."""
        if ban.mask in self._bans:
            return False
        self._bans[ban.mask] = ban
        return True

    def remove(self, mask: str) -> bool:
        return self._bans.pop(mask, None) is not None

    def matches(self, source: str) -> bool:
        """Whether any ban matches ``nick!user@host``."""
        # glob_match runs in linear time, so no mask of many ``*`` can make this slow.
        return any(glob_match(mask, source) for mask in self._bans)


# ---------------------------------------------------------------------------------------------
# Changes applied to a channel (``state.Channel``; the caller holds ``Hub.lock``)
# ---------------------------------------------------------------------------------------------

KEY_MAX = 23
LIMIT_MAX = 100_000
OPEN_ROOM_MODES = "ikl"  # refused in the default room, which everyone is put in


def mode_string(changes: list[ModeChange]) -> list[str]:
    """A MODE line's mode string and parameters for ``changes``.

    >>> mode_string([ModeChange("+", "o", "al"), ModeChange("+", "m"), ModeChange("-", "b", "*!*@x")])
    ['+om-b', 'al', '*!*@x']
    """
    letters, params, sign = "", [], ""
    for change in changes:
        if change.sign != sign:
            letters += change.sign
            sign = change.sign
        letters += change.letter
        if change.param is not None:
            params.append(change.param)
    return [letters, *params]


def mode_batches(changes: list[ModeChange], room: int) -> list[list[ModeChange]]:
    """``changes`` in runs whose mode string and parameters take at most ``room`` bytes, so
    that each run's MODE line is whole (counted generously: a sign per change, and a space
    and a colon per parameter).

    >>> [len(batch) for batch in mode_batches([ModeChange("+", "b", "x" * 10)] * 3, 30)]
    [2, 1]
    """
    batches: list[list[ModeChange]] = []
    batch: list[ModeChange] = []
    used = 0
    for change in changes:
        cost = 2 + (2 + len(change.param.encode()) if change.param is not None else 0)
        if batch and used + cost > room:
            batches.append(batch)
            batch, used = [], 0
        batch.append(change)
        used += cost
    if batch:
        batches.append(batch)
    return batches


def apply_mode(channel: Channel, change: ModeChange, setter: str, member: Callable[[str], User],
               default_room: bool, ordered: bool = False) -> ModeChange | None:
    """Apply one change to ``channel``; return it as announced (parameters normalized), None
    if it changed nothing, or raise IRCError (441, 401, 467, 478, 696) to refuse it.

    ``member(nick)`` is the member a +o/+v names (raising 401 or 441); ``setter`` goes in the
    ban list. In the default room +i, +k, +l and a ban that names neither one nick nor one host are refused.
    ``ordered``: a change in the cluster's order (``Hub.change_modes``), which its node made:
    a +k replaces the key (467 would leave two nodes with their own keys).
    """
    sign, letter, param = change
    adding = sign == "+"
    if letter in PREFIXES:
        target = member(param or "")
        holders = channel.ops if letter == "o" else channel.voiced
        if (target in holders) == adding:
            return None
        (holders.add if adding else holders.discard)(target)
        channel.names = None  # prefixes changed: rebuilt by the next NAMES
        return ModeChange(sign, letter, target.nick)
    if adding and default_room and letter in OPEN_ROOM_MODES:
        raise IRCError(ERR_INVALIDMODEPARAM, channel.name, letter, param or "*",
                       "The default room stays open to everyone: no +i, +k or +l there")
    if letter in LIST_MODES:
        param = _change_ban(channel, adding, param or "", setter, default_room)
        if param is None:
            return None
    elif letter in KEY_MODES:
        if adding:
            if not param or len(param) > KEY_MAX or "," in param or not _is_word(param):
                raise IRCError(ERR_INVALIDMODEPARAM, channel.name, "k", "*",
                               f"A key is 1-{KEY_MAX} characters: no spaces or commas")
            if channel.key is not None and not ordered:
                raise IRCError(ERR_KEYSET, channel.name, "Channel key already set")
            if channel.key == param:
                return None
        elif channel.key is None:
            return None
        channel.key, param = (param, param) if adding else (None, "*")
    elif letter in SET_ONLY_MODES:
        limit = None
        if adding:
            if not param or not (param.isascii() and param.isdigit()) or not 0 < int(param) <= LIMIT_MAX:
                raise IRCError(ERR_INVALIDMODEPARAM, channel.name, "l", param or "*",
                               f"A limit is a number from 1 to {LIMIT_MAX}")
            limit = int(param)
            param = str(limit)
        if channel.limit == limit:
            return None
        channel.limit = limit
    else:
        if (letter in channel.modes) == adding:
            return None
        (channel.modes.add if adding else channel.modes.discard)(letter)
    channel.restricted = bool(channel.bans) or "m" in channel.modes
    return ModeChange(sign, letter, param)


def _is_word(param: str) -> bool:
    """Whether ``param`` can stand as a middle parameter of the lines that repeat it (324, 367)."""
    return " " not in param and not param.startswith(":")


def _change_ban(channel: Channel, adding: bool, param: str, setter: str, default_room: bool) -> str | None:
    """Add or remove a ban; return the normalized mask, or None if nothing changed."""
    mask = normalize_mask(param)
    if adding:
        if len(mask) > MASK_MAX or not _is_word(mask):
            raise IRCError(ERR_INVALIDMODEPARAM, channel.name, "b", "*",
                           f"A mask is at most {MASK_MAX} characters, with no spaces")
        if default_room and not names_one(mask):
            raise IRCError(ERR_INVALIDMODEPARAM, channel.name, "b", mask,
                           "In the default room a ban names one nick or one host, without wildcards")
        if len(channel.bans) >= MAX_BANS:
            raise IRCError(ERR_BANLISTFULL, channel.name, mask, "Channel ban list is full")
        changed = channel.bans.add(Ban(mask, setter, int(time.time())))
    else:
        changed = channel.bans.remove(mask)
    if not changed:
        return None
    channel.ban_verdicts.clear()
    return mask


# ---------------------------------------------------------------------------------------------
# A channel's state as the history keeps it across restarts (not who is @ or +)
# ---------------------------------------------------------------------------------------------


def channel_state(channel: Channel) -> dict[str, Any]:
    return {
        "topic": channel.topic, "topic_setter": channel.topic_setter, "topic_time": channel.topic_time,
        "modes": "".join(sorted(channel.modes)), "key": channel.key, "limit": channel.limit,
        "bans": [list(ban) for ban in channel.bans],
    }


def restore_state(channel: Channel, state: dict[str, Any]) -> None:
    """Give a (new) channel a saved state; one ``load_states`` has checked."""
    channel.topic, channel.topic_setter = state["topic"], state["topic_setter"]
    channel.topic_time = state["topic_time"]
    channel.modes = set(state["modes"])
    channel.key, channel.limit = state["key"], state["limit"]
    channel.bans = BanList([Ban(*ban) for ban in state["bans"][:MAX_BANS]])
    channel.restricted = bool(channel.bans) or "m" in channel.modes


def load_states(history: HistoryStore) -> dict[str, dict[str, Any]]:
    """The saved channel states (folded name -> state), read once at start-up; a state that
    does not read back as one is logged and left out."""
    states = {}
    for target, text in history.load_channels().items():
        try:
            state = json.loads(text)
            _check_state(state)
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            log.warning("saved state of %s left out: %s", target, error)
            continue
        states[target] = state
    return states


def _check_state(state: Any) -> None:
    """ValueError unless ``state`` has every field of ``channel_state`` with its type."""
    fields = {"topic": str, "topic_setter": str, "topic_time": (int, float), "modes": str,
              "key": (str, type(None)), "limit": (int, type(None)), "bans": list}
    if not isinstance(state, dict) or any(not isinstance(state.get(name), kind) for name, kind in fields.items()):
        raise ValueError("not a channel state")
    if not set(state["modes"]) <= set(FLAG_MODES):
        raise ValueError(f"unknown modes {state['modes']!r}")
    if not math.isfinite(state["topic_time"]):
        raise ValueError("a topic time that is no time")
    key, limit = state["key"], state["limit"]
    if key is not None and not (0 < len(key) <= KEY_MAX and "," not in key and _is_word(key)):
        raise ValueError("a key no JOIN could give")
    if limit is not None and (isinstance(limit, bool) or not 0 < limit <= LIMIT_MAX):
        raise ValueError(f"a limit out of range: {limit!r}")
    for ban in state["bans"]:
        if not (isinstance(ban, list) and len(ban) == 3 and isinstance(ban[0], str)
                and isinstance(ban[1], str) and isinstance(ban[2], int)):
            raise ValueError("not a ban")
