"""Display width, sanitising and wrapping (curses_client.width): pure, fast."""

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from curses_client.width import REPLACEMENT, char_width, fit, sanitize, text_width, wrap


def rows_text(text, rows):
    return [text[start:end] for start, end in rows]


def test_widths_of_ascii_cjk_emoji_and_combining_marks():
    assert [char_width(c) for c in "a漢😀\u0301\u200d"] == [1, 2, 2, 0, 0]
    assert text_width("e\u0301") == 1
    assert text_width("日本語abc") == 9
    assert text_width("ｆｕｌｌ") == 8  # fullwidth forms


def test_fit_never_splits_a_wide_character():
    assert fit("日本語", 5) == "日本"
    assert fit("abc", 10) == "abc"
    assert fit("漢", 1) == ""


def test_sanitize_removes_terminal_escape_sequences():
    hostile = "a\x1b[2J\x1b[H\x1b]0;pwned\x07b\x1b]2;x\x1b\\c\x1bPdcs\x1b\\d\x9b31me\x1b7f"
    assert sanitize(hostile) == "abcdef"


def test_sanitize_strips_irc_formatting_codes():
    assert sanitize("\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x16rev\x16 \x0fplain") == "bold italic under rev plain"
    assert sanitize("\x0304red\x03 \x0304,12on blue\x03 \x03 bare") == "red on blue  bare"
    assert sanitize("\x04ff0000hex\x04") == "hex"


def test_sanitize_replaces_other_control_characters():
    assert sanitize("bell\x07 back\x08 nul\x00 del\x7f") == f"bell{REPLACEMENT} back{REPLACEMENT} nul{REPLACEMENT} del{REPLACEMENT}"
    assert sanitize("tab\there") == "tab here"
    assert sanitize("rtl \u202eevil") == f"rtl {REPLACEMENT}evil"


def test_sanitize_gives_a_leading_combining_mark_a_base():
    assert sanitize("\u0301x") == " \u0301x"


@given(st.text())
def test_sanitized_text_has_no_control_characters(text):
    clean = sanitize(text)
    assert all(unicodedata.category(c) != "Cc" for c in clean)
    assert "\x1b" not in clean


def test_wrap_breaks_at_word_boundaries_with_hanging_indent():
    text = "12:00 <ann> the quick brown fox jumps over the lazy dog"
    rows = wrap(text, 24, indent=12)
    assert rows_text(text, rows) == ["12:00 <ann> the quick", "brown fox", "jumps over", "the lazy dog"]


def test_wrap_splits_a_long_word_hard():
    assert rows_text("abcdefghij", wrap("abcdefghij", 4)) == ["abcd", "efgh", "ij"]


def test_wrap_counts_wide_characters_as_two_cells():
    text = "日本語のテキスト"
    assert rows_text(text, wrap(text, 5)) == ["日本", "語の", "テキ", "スト"]


def test_wrap_keeps_combining_marks_with_their_base():
    text = "e\u0301" * 6
    rows = rows_text(text, wrap(text, 3))
    assert rows == ["e\u0301" * 3] * 2


def test_wrap_of_empty_text_is_one_empty_row():
    assert wrap("", 10) == [(0, 0)]


alphabet = st.sampled_from(list("ab  xyz") + ["日", "😀", "\u0301", "é", "ｆ", "\u200d"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet, max_size=80), st.integers(2, 40), st.data())
def test_wrapped_rows_never_exceed_the_width(text, width, data):
    indent = data.draw(st.integers(0, width - 2))  # the pane always leaves 2+ cells of text
    rows = wrap(text, width, indent)
    for index, (start, end) in enumerate(rows):
        room = width if index == 0 else width - indent
        assert text_width(text[start:end]) <= room
    # nothing but the spaces at break points is lost, and the order is kept
    assert "".join(rows_text(text, rows)).replace(" ", "") == text.replace(" ", "")
    assert all(end <= next_start for (_, end), (next_start, _) in zip(rows, rows[1:]))


def test_wrap_breaks_beside_wide_characters_to_fill_rows():
    text = "<bob> 漢字かな交じり文"
    assert rows_text(text, wrap(text, 14)) == ["<bob> 漢字かな", "交じり文"]
