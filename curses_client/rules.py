"""The rules of the server we are connected to, as its 005 (ISUPPORT) lines state them.

Names are compared, validated and shown by these rules, never by our own server's: a
nick of ``n-alice`` is fine on ngircd, ``[Bob]`` and ``{bob}`` are one name under rfc1459
case mapping. Until a 005 arrives the defaults are RFC 1459's, which every server accepts.
A hostile 005 cannot do harm: values are taken only when they parse and are small, and
CASEMAPPING only once per connection (rules are made anew on each).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NICKLEN = 30  # generous until the server says; the server refuses what it does not take
MAX_NICKLEN = 64
_RFC1459_UPPER = "[]\\~"
_RFC1459_LOWER = "{}|^"
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_RFC1459_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ" + _RFC1459_UPPER,
                              "abcdefghijklmnopqrstuvwxyz" + _RFC1459_LOWER)
NOT_IN_NICK = frozenset(" ,*?!@:.\x00\r\n\x07")  # never valid in a nick, on any server


@dataclass
class ServerRules:
    """NICKLEN, CASEMAPPING, CHANTYPES, PREFIX and CHANMODES of one server.

    >>> rules = ServerRules()
    >>> rules.fold("[Bob]") == rules.fold("{bob}"), rules.is_channel("#x"), rules.is_channel("bob")
    (True, True, False)
    >>> rules.apply_token("PREFIX=(qov)~@+"); rules.prefix_symbols
    '~@+'
    >>> rules.valid_nick("n-alice"), rules.valid_nick("-x"), rules.valid_nick("a b")
    (True, False, False)
    """

    nicklen: int = DEFAULT_NICKLEN
    casemapping: str = "rfc1459"
    chantypes: str = "#&"
    prefix_modes: str = "ov"  # modes that give a member a status, highest first...
    prefix_symbols: str = "@+"  # ...and the marks shown for them
    list_modes: str = "b"  # CHANMODES type A: always a parameter (lists, e.g. bans)
    param_modes: str = "k"  # type B: always a parameter
    set_param_modes: str = "l"  # type C: a parameter only when set
    history_limit: int = 0  # CHATHISTORY=N: older history can be asked for
    casemapping_given: bool = False  # taken once: each change refolds every name the client holds

    def fold(self, name: str) -> str:
        table = _RFC1459_FOLD if self.casemapping == "rfc1459" else _ASCII_FOLD
        return name.translate(table)

    def is_channel(self, name: str) -> bool:
        return bool(name) and name[0] in self.chantypes

    def valid_nick(self, nick: str) -> bool:
        """Whether a nick could be valid here: the server has the last word."""
        return (
            0 < len(nick) <= self.nicklen
            and nick.isprintable()
            and not any(char in NOT_IN_NICK for char in nick)
            and not nick[0].isdigit()
            and nick[0] not in "-$&#" + self.chantypes
        )

    def split_prefix(self, name: str) -> tuple[str, str]:
        """A NAMES entry into its status marks and the nick: ``"@+bob"`` -> ``("@+", "bob")``."""
        marks = len(name) - len(name.lstrip(self.prefix_symbols))
        return name[:marks], name[marks:]

    def rank(self, marks: str) -> str:
        """The highest status mark of a member, for showing (``"+@"`` -> ``"@"``)."""
        return next((symbol for symbol in self.prefix_symbols if symbol in marks), "")

    def symbol_of(self, mode: str) -> str:
        index = self.prefix_modes.find(mode)
        return self.prefix_symbols[index] if index >= 0 else ""

    def takes_parameter(self, mode: str, adding: bool) -> bool:
        return (mode in self.prefix_modes or mode in self.list_modes or mode in self.param_modes
                or (adding and mode in self.set_param_modes))

    def apply_token(self, token: str) -> None:
        """One ``NAME=value`` token of a 005 line; unknown or malformed ones change nothing."""
        name, _, value = token.partition("=")
        name = name.upper()
        if name == "NICKLEN" and value.isdigit():
            self.nicklen = max(1, min(int(value), MAX_NICKLEN))
        elif name == "CASEMAPPING" and value in ("ascii", "rfc1459", "strict-rfc1459") and not self.casemapping_given:
            self.casemapping = "ascii" if value == "ascii" else "rfc1459"
            self.casemapping_given = True
        elif name == "CHANTYPES" and 0 < len(value) <= 4 and value.isprintable() and " " not in value:
            self.chantypes = value
        elif name == "PREFIX" and value.startswith("("):
            modes, _, symbols = value[1:].partition(")")
            if len(modes) == len(symbols) <= 8 and modes.isalpha() and symbols.isprintable():
                self.prefix_modes, self.prefix_symbols = modes, symbols
        elif name == "CHANMODES":
            kinds = value.split(",")
            if len(kinds) >= 4 and all(kind.isalpha() or not kind for kind in kinds[:3]):
                self.list_modes, self.param_modes, self.set_param_modes = kinds[:3]
        elif name == "CHATHISTORY":
            self.history_limit = int(value) if value.isdigit() else 0
