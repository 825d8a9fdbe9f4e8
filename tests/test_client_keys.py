"""Key decoding (curses_client.keys): escape sequences, Alt keys, bracketed paste."""

import os

import pytest

from curses_client import keys
from curses_client.keyboard import Keyboard
from curses_client.keys import PASTE_END, PASTE_START, KeyDecoder, Paste


def decode(keys):
    decoder = KeyDecoder()
    out = []
    for key in keys:
        out += decoder.feed(key)
    return out


def test_printable_characters_and_control_keys():
    assert decode("a日\r\n\x7f\x01\x05\x15\x0b\x17\t") == [
        "char:a", "char:日", "enter", "enter", "backspace", "home", "end",
        "kill-to-start", "kill-to-end", "delete-word", "tab",
    ]


def test_named_keys_from_curses_pass_through():
    assert decode(["left", "page-up", "resize"]) == ["left", "page-up", "resize"]


def test_escape_sequences_curses_left_undecoded():
    assert decode("\x1b[1;5D\x1b[1;5C\x1bb\x1bf\x1b[5~\x1b[6~\x1bOM") == [
        "ctrl-left", "ctrl-right", "ctrl-left", "ctrl-right", "page-up", "page-down", "enter",
    ]


def test_unknown_sequences_are_swallowed_not_typed():
    assert decode("\x1b[2;5~x\x1b[Zy") == ["char:x", "char:y"]


def test_lone_escape_is_reported_on_timeout():
    decoder = KeyDecoder()
    assert decoder.feed("\x1b") == []
    assert decoder.timeout() == ["escape"]
    assert decoder.timeout() == []
    assert decoder.feed("a") == ["char:a"]


def test_bracketed_paste_arrives_whole_and_enter_inside_it_is_text():
    assert decode("x\x1b[200~one\rtwo\r\nthree\x1b[201~y") == ["char:x", Paste("one\ntwo\nthree"), "char:y"]


def test_paste_ignores_keys_curses_decoded_inside_it():
    decoder = KeyDecoder()
    out = []
    for key in ["\x1b", "[", "2", "0", "0", "~", "a", "left", "\x1b", "[", "2", "0", "1", "~"]:
        out += decoder.feed(key)
    assert out == [Paste("a")]


# -- text that arrives at once (issue 12) -----------------------------------------------------


def test_a_batch_with_several_lines_is_one_paste_without_bracketed_paste():
    decoder = KeyDecoder()
    assert decoder.feed_batch("first line\r\n/quit x\rthird\tline\x07\n") == [
        Paste("first line\n/quit x\nthird line\n", marked=False)
    ]
    assert decoder.feed_batch("typed fast\r") == ["char:typed fast", "enter"]  # an Enter at the end is a key
    assert decoder.feed_batch("\x1b[Dab") == ["left", "char:ab"]


def test_bulk_text_keeps_runs_of_characters_together():
    decoder = KeyDecoder()
    assert decoder.feed_text("héllo wörld\x7f!\x1bb") == ["char:héllo wörld", "backspace", "char:!", "ctrl-left"]


def test_a_bracketed_paste_is_taken_in_bulk_with_its_end_marker_split_across_reads():
    decoder = KeyDecoder()
    text = "line\n" * 100_000
    whole = "x" + PASTE_START + text + PASTE_END + "y"
    split = len(whole) - len(PASTE_END) - 1 + 3  # the end marker cut in the middle
    out = decoder.feed_batch(whole[:split]) + decoder.feed_batch(whole[split:])
    assert out == ["char:x", Paste(text), "char:y"]


def test_a_paste_that_never_ends_is_capped(monkeypatch):
    monkeypatch.setattr(keys, "PASTE_LIMIT", 10)
    decoder = KeyDecoder()
    decoder.feed_text(PASTE_START + "a" * 8)
    decoder.feed_text("b" * 8)
    assert decoder.feed_text(PASTE_END) == [Paste("a" * 8 + "bb")]


@pytest.mark.timeout(20)
def test_five_megabytes_pasted_decode_in_bulk():
    decoder = KeyDecoder()
    paste = "some pasted text, héhé 日本\n" * 200_000
    for start in range(0, len(paste), 4096):  # as a terminal's pty delivers it
        out = decoder.feed_batch(paste[start : start + 4096])
        assert len(out) == 1 and isinstance(out[0], Paste)


def test_the_rest_of_a_paste_is_a_paste_even_if_its_only_line_break_ends_it():
    decoder = KeyDecoder()
    assert decoder.feed_batch("the end\n", after_paste=True) == [Paste("the end\n", marked=False)]
    assert decoder.feed_batch("the end\n") == ["char:the end", "enter"]
    assert decoder.feed_batch("\r", after_paste=True) == ["enter"]  # Enter pressed right after


# -- the keyboard: curses for the first key, the terminal for the rest -----------------------


class FakeScreen:
    """Keys as curses would return them, one by one."""

    def __init__(self, keys):
        self.keys = list(keys)

    def read_key(self, wait=True):
        return self.keys.pop(0) if self.keys else None


def keyboard_with(waiting: bytes):
    read_end, write_end = os.pipe()
    os.write(write_end, waiting)
    os.close(write_end)
    return Keyboard(read_end), read_end


def test_the_keyboard_reads_what_waits_after_the_first_key_at_once():
    keyboard, fd = keyboard_with(b"ello\r/quit x\rmore")
    try:
        assert keyboard.read(FakeScreen(["h"])) == [Paste("hello\n/quit x\nmore", marked=False)]
    finally:
        os.close(fd)


def test_the_keyboard_decodes_what_waits_and_leaves_escapes_to_curses():
    keyboard, fd = keyboard_with("日本".encode())
    try:
        assert keyboard.read(FakeScreen(["a"])) == ["char:a日本"]
    finally:
        os.close(fd)
    keyboard, fd = keyboard_with(b"should stay unread")
    try:
        assert keyboard.read(FakeScreen(["\x1b"])) == []  # inside an escape: curses may hold its rest
        assert keyboard.read(FakeScreen(["[", "A"])) == []
        assert keyboard.read(FakeScreen(["A"])) == ["up", "char:should stay unread"]
    finally:
        os.close(fd)


def test_without_a_terminal_to_read_keys_from_curses_still_make_a_batch():
    keyboard = Keyboard(None)  # as on Windows
    assert keyboard.read(FakeScreen(list("one\rtwo"))) == [Paste("one\ntwo", marked=False)]
    assert keyboard.read(FakeScreen(["a", "b", "left", "c", "\r"])) == ["char:ab", "left", "char:c", "enter"]
    assert keyboard.read(FakeScreen([])) == []


def test_an_escape_is_the_esc_key_only_after_a_quiet_while_not_when_the_ui_is_woken_early():
    now = [0.0]
    keyboard = Keyboard(None, clock=lambda: now[0])
    assert keyboard.read(FakeScreen(["\x1b"])) == []
    assert keyboard.read(FakeScreen([])) == []  # a server line woke the UI at once: ESC may start Alt-1
    assert keyboard.read(FakeScreen(["1"])) == ["window-1"]
    assert keyboard.read(FakeScreen(["\x1b"])) == []
    now[0] += 0.1  # no key for a key-read timeout: it was Esc
    assert keyboard.read(FakeScreen([])) == ["escape"]
