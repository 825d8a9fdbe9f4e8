"""Unit tests of ircchat.modes: mode strings, ban masks and their matching, saved states."""

from __future__ import annotations

import doctest
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chat_server
import ircchat.modes
from ircchat.modes import (
    MAX_MODE_PARAMS,
    Ban,
    BanList,
    ModeChange,
    apply_mode,
    channel_state,
    load_states,
    mask_matches,
    mode_string,
    names_one,
    normalize_mask,
    parse_mode_changes,
    restore_state,
)
from ircchat.numerics import IRCError
from ircchat.protocol import glob_match
from ircchat.state import Channel, User


@pytest.mark.parametrize("module", [ircchat.modes, chat_server], ids=lambda module: module.__name__)
def test_doctests_pass(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0


def test_a_mode_string_takes_parameters_by_class():
    changes, unknown = parse_mode_changes("+ov-b+kl-kz", ["al", "bo", "*!*@x", "secret", "5"])
    assert changes == [ModeChange("+", "o", "al"), ModeChange("+", "v", "bo"), ModeChange("-", "b", "*!*@x"),
                       ModeChange("+", "k", "secret"), ModeChange("+", "l", "5"), ModeChange("-", "k")]
    assert unknown == ["z"]


def test_at_most_six_parameterised_changes_are_taken():
    changes, _ = parse_mode_changes("+" + "v" * 10, [f"n{i}" for i in range(10)])
    assert len(changes) == MAX_MODE_PARAMS


def test_a_change_missing_its_parameter_is_left_out():
    assert parse_mode_changes("+o+k+l", []) == ([], [])
    assert parse_mode_changes("-l+b", []) == ([ModeChange("-", "l"), ModeChange("+", "b")], [])


@pytest.mark.parametrize("text, full", [
    ("bob", "bob!*@*"), ("BOB!U", "bob!u@*"), ("*@Host", "*!*@host"), ("@h", "*!*@h"),
    ("a!b@c", "a!b@c"), ("!@", "*!*@*"),
])
def test_masks_are_completed_and_folded(text, full):
    assert normalize_mask(text) == full


def test_masks_match_with_wildcards_case_insensitively():
    assert mask_matches("*!*@*.CLOAK", "ann!~a@1.2.cloak")
    assert mask_matches("a?n", "ANN!~a@h")
    assert not mask_matches("a?n", "an!~a@h")
    assert not mask_matches("*!*@h", "ann!~a@hh")


def test_a_hostile_mask_is_matched_quickly():
    bans = BanList([Ban(f"{'*a' * 15}{i}!*@*", "op", 0) for i in range(100)])  # long masks, many *
    started = time.perf_counter()
    for length in range(10, 20):
        assert not bans.matches("a" * length + "!" + "a" * 11 + "@" + "a" * 30)
    # Microseconds in C; a regex of .*a.*a... backtracks for ages, matching in Python takes ~0.3 s.
    assert time.perf_counter() - started < 0.05


def _glob(mask: str, text: str) -> bool:
    """The reference: * any run, ? any one character, everything else itself."""
    if not mask:
        return not text
    if mask[0] == "*":
        return any(_glob(mask[1:], text[i:]) for i in range(len(text) + 1))
    return bool(text) and mask[0] in ("?", text[0]) and _glob(mask[1:], text[1:])


@given(st.text("ab*?[]", max_size=8), st.text("ab[]", max_size=8))
def test_masks_match_as_globs_with_brackets_literal(mask, text):
    assert glob_match(mask, text) == _glob(mask, text)


def test_a_mask_names_one_user_only_with_an_exact_nick_or_host():
    assert names_one("ann!*@*") and names_one("*!*@abc.def.cloak") and names_one("a*!*@1.2.3.4")
    assert not names_one("*!*@*") and not names_one("a*!*@*.cloak") and not names_one("*!~user@*")


def test_a_ban_list_matches_any_ban_and_is_falsy_when_empty():
    bans = BanList()
    assert not bans and not bans.matches("a!b@c")
    assert bans.add(Ban("x!*@*", "op", 1)) and not bans.add(Ban("x!*@*", "op", 2))
    bans.add(Ban("*!*@evil", "op", 1))
    assert bans and bans.matches("ann!u@EVIL") and bans.matches("X!u@h") and not bans.matches("y!u@h")
    assert bans.remove("x!*@*") and not bans.remove("x!*@*") and len(bans) == 1


def test_mode_string_groups_signs():
    assert mode_string([ModeChange("+", "i"), ModeChange("+", "k", "pw"), ModeChange("-", "l")]) == ["+ik-l", "pw"]


def _apply(channel, sign, letter, param=None, default_room=False):
    def member(nick):
        raise IRCError("441", nick, channel.name, "They aren't on that channel")
    return apply_mode(channel, ModeChange(sign, letter, param), "op!u@h", member, default_room)


def test_apply_mode_sets_flags_key_limit_and_bans_once():
    channel = Channel("#r")
    assert _apply(channel, "+", "m") == ModeChange("+", "m") and channel.restricted
    assert _apply(channel, "+", "m") is None
    assert _apply(channel, "+", "k", "pw") == ModeChange("+", "k", "pw")
    with pytest.raises(IRCError) as refused:
        _apply(channel, "+", "k", "other")
    assert refused.value.numeric == "467"
    assert _apply(channel, "-", "k") == ModeChange("-", "k", "*") and channel.key is None
    assert _apply(channel, "+", "l", "007") == ModeChange("+", "l", "7") and channel.limit == 7
    with pytest.raises(IRCError):
        _apply(channel, "+", "l", "many")
    assert _apply(channel, "+", "b", "Bad") == ModeChange("+", "b", "bad!*@*")
    assert _apply(channel, "-", "b", "bad") == ModeChange("-", "b", "bad!*@*")


def test_the_default_room_refuses_ikl_and_a_ban_on_everyone():
    channel = Channel("#chat")
    for letter, param in (("i", None), ("k", "pw"), ("l", "3"), ("b", "*"), ("b", "*!*@*"), ("b", "*!*@*.cloak")):
        with pytest.raises(IRCError) as refused:
            _apply(channel, "+", letter, param, default_room=True)
        assert refused.value.numeric == "696"
    assert _apply(channel, "+", "b", "*!*@bad.host", default_room=True) is not None


def test_the_ban_list_is_bounded():
    channel = Channel("#r")
    for i in range(100):
        _apply(channel, "+", "b", f"n{i}")
    with pytest.raises(IRCError) as refused:
        _apply(channel, "+", "b", "one.more")
    assert refused.value.numeric == "478"


def test_prefix_modes_name_a_member():
    channel, ann = Channel("#r"), User(host="h", nick="Ann")
    channel.members[ann] = None
    change = apply_mode(channel, ModeChange("+", "o", "ann"), "op", lambda nick: ann, False)
    assert change == ModeChange("+", "o", "Ann") and channel.prefix(ann) == "@"
    apply_mode(channel, ModeChange("+", "v", "ann"), "op", lambda nick: ann, False)
    assert channel.prefix(ann) == "@" and channel.prefix(ann, multi=True) == "@+"


def test_a_state_round_trips():
    channel = Channel("#r", topic="t", topic_setter="ann", topic_time=5.0)
    for sign, letter, param in (("+", "s", None), ("+", "k", "pw"), ("+", "l", "9"), ("+", "b", "x")):
        _apply(channel, sign, letter, param)
    again = Channel("#r")
    restore_state(again, channel_state(channel))
    assert channel_state(again) == channel_state(channel) and again.bans.matches("x!u@h")


def test_a_saved_state_that_does_not_read_back_is_left_out(caplog):
    class Store:
        @staticmethod
        def load_channels():
            good = channel_state(Channel("#ok"))
            return {"#ok": json.dumps(good), "#bad": "{not json", "#odd": json.dumps({**good, "modes": "Z"}),
                    "#ban": json.dumps({**good, "bans": [["m", "s"]]})}
    assert list(load_states(Store())) == ["#ok"]
    assert sum("left out" in record.getMessage() for record in caplog.records) == 3


def test_hostile_saved_states_are_left_out_not_crashed_on(caplog):
    """Rows the server could not have written: nested past the recursion limit, a time that
    is no number (333 would raise), a limit or key no JOIN could meet."""
    good = channel_state(Channel("#ok"))
    rows = {"#ok": json.dumps(good), "#deep": "[" * 100_000 + "]" * 100_000,
            "#inf": json.dumps({**good, "topic_time": float("inf")}),
            "#nan": json.dumps({**good, "topic_time": float("nan")}),
            "#neg": json.dumps({**good, "limit": -1}), "#bool": json.dumps({**good, "limit": True}),
            "#key": json.dumps({**good, "key": "two words"})}

    class Store:
        @staticmethod
        def load_channels():
            return rows
    assert list(load_states(Store())) == ["#ok"]
    assert sum("left out" in record.getMessage() for record in caplog.records) == len(rows) - 1
