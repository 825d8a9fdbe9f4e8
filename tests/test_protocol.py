"""Unit tests of the pure protocol core: parsing, formatting, encoding, framing, folding."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ircchat.history
import ircchat.ircv3
import ircchat.protocol
import ircchat.state
from ircchat.protocol import (
    LINE_TOO_LONG,
    MAX_LINE_BYTES,
    LineFramer,
    Message,
    decode_line,
    encode_line,
    format_line,
    irc_fold,
    parse_message,
)


@pytest.mark.parametrize("module", [ircchat.protocol, ircchat.state, ircchat.history, ircchat.ircv3],
                         ids=lambda module: module.__name__)
def test_doctests_pass(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0


@pytest.mark.parametrize(
    "line, expected",
    [
        ("PING :abc", Message("PING", ("abc",))),
        ("privmsg #chat :hello  world ", Message("PRIVMSG", ("#chat", "hello  world "))),
        (":n!u@h JOIN #chat", Message("JOIN", ("#chat",), "n!u@h")),
        ("USER a 0 * :Real Name", Message("USER", ("a", "0", "*", "Real Name"))),
        ("NICK    spaced   out", Message("NICK", ("spaced", "out"))),
        ("PRIVMSG #c ::-)", Message("PRIVMSG", ("#c", ":-)"))),
        ("PRIVMSG #c :", Message("PRIVMSG", ("#c", ""))),
        ("@time=x;a=b\\sc :srv 001 me :hi", Message("001", ("me", "hi"), "srv", (("time", "x"), ("a", "b c")))),
    ],
)
def test_parse_examples(line, expected):
    assert parse_message(line) == expected


@pytest.mark.parametrize("line", ["", "   ", ":prefix-only", "@tags=only"])
def test_parse_rejects_lines_without_command(line):
    with pytest.raises(ValueError):
        parse_message(line)


def test_message_nick_from_prefix():
    assert parse_message(":ann!a@h QUIT").nick == "ann"
    assert parse_message(":irc.server 001 x :hi").nick == "irc.server"
    assert parse_message("PING x").nick is None


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\x00b"])
def test_format_refuses_line_breaks_and_nul(bad):
    with pytest.raises(ValueError):
        format_line("PRIVMSG", "#chat", bad)
    with pytest.raises(ValueError):
        format_line("PRIVMSG", bad.replace(" ", ""), "text")


def test_format_refuses_spaces_in_middle_params():
    with pytest.raises(ValueError):
        format_line("PRIVMSG", "#a b", "text")
    with pytest.raises(ValueError):
        format_line("PRIVMSG", "", "text")


def test_encode_line_cuts_to_512_bytes_at_a_character_boundary():
    data = encode_line("PRIVMSG #c :" + "界" * 300)
    assert len(data) <= MAX_LINE_BYTES and data.endswith(b"\r\n")
    data.decode("utf-8")  # no half character left at the cut


def test_irc_fold_is_ascii_only():
    assert irc_fold("Ann_42") == "ann_42"
    assert irc_fold("[Ann]") == "[ann]"  # CASEMAPPING=ascii: brackets are not folded


def test_framer_splits_crlf_and_bare_lf_and_skips_blank_lines():
    framer = LineFramer()
    assert framer.feed(b"A\r\nB\n\r\n  \nC") == [b"A", b"B"]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [b"C"]


def test_framer_reports_overlong_line_once_and_recovers():
    framer = LineFramer()
    assert framer.feed(b"x" * 511 + b"\r\nPING :ok\r\n") == [LINE_TOO_LONG, b"PING :ok"]
    lines = []
    for _ in range(100):  # 100 KB without a line end: bounded, one report
        lines += framer.feed(b"y" * 1000)
    lines += framer.feed(b"tail\r\nPING :after\r\n")
    assert lines == [LINE_TOO_LONG, b"PING :after"]


def test_framer_allows_long_ircv3_tags():
    framer = LineFramer()
    line = b"@" + b"t" * 4000 + b" PRIVMSG #c :" + b"m" * 400
    assert framer.feed(line + b"\r\n") == [line]


def test_decode_line_replaces_bad_utf8_and_drops_cr_nul():
    assert decode_line(b"hi \xff\xfe there\r\x00!") == "hi \ufffd\ufffd there!"


# -- properties --------------------------------------------------------------------------

middle = st.text(
    alphabet=st.characters(blacklist_characters=" \r\n\x00", blacklist_categories=("Cs",)),
    min_size=1, max_size=20,
).filter(lambda s: not s.startswith(":"))
trailing = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=60
)
command = st.one_of(
    st.sampled_from(["PRIVMSG", "NOTICE", "JOIN", "NICK", "QUIT", "PING"]),
    st.from_regex(r"\A[0-9]{3}\Z"),
)
prefix = st.one_of(st.none(), st.from_regex(r"\A[a-z]{1,8}![a-z~]{1,8}@[a-z0-9.]{1,15}\Z"))


@given(command, st.lists(middle, max_size=5), st.one_of(st.none(), trailing), prefix)
def test_format_then_parse_round_trips(cmd, middles, last, source):
    params = tuple(middles) + ((last,) if last is not None else ())
    line = format_line(cmd, *params, prefix=source)
    assert parse_message(line) == Message(cmd, params, source)


@given(st.text(max_size=200))
def test_parse_never_fails_except_with_value_error(text):
    try:
        msg = parse_message(text)
    except ValueError:
        return
    assert msg.command and msg.command == msg.command.upper()


plain_line = st.binary(max_size=600).map(lambda b: b.replace(b"\n", b"").lstrip(b"@"))


@given(st.lists(plain_line, max_size=12), st.data())
@settings(max_examples=200)
def test_framer_yields_the_same_lines_however_the_stream_is_split(lines, data):
    stream = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = LineFramer()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        out += framer.feed(stream[start:end])
    expected = [
        LINE_TOO_LONG if len(line) > MAX_LINE_BYTES - 2 else line
        for line in lines
        if len(line) > MAX_LINE_BYTES - 2 or line.strip()
    ]
    assert out == expected


@given(trailing)
def test_encoded_lines_fit_and_stay_valid_utf8(text):
    data = encode_line(format_line("PRIVMSG", "#chat", text * 20, prefix="nick!user@host"))
    assert len(data) <= MAX_LINE_BYTES
    assert data.count(b"\r\n") == 1 and data.endswith(b"\r\n")
    data.decode("utf-8")
