"""Key decoding (curses_client.keys): escape sequences, Alt keys, bracketed paste."""

from curses_client.keys import KeyDecoder, Paste


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


def test_lone_escape_is_dropped_on_timeout():
    decoder = KeyDecoder()
    assert decoder.feed("\x1b") == []
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
