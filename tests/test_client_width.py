"""Display width, sanitising and wrapping (curses_client.width): pure, fast."""

import itertools
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from curses_client.width import (
    REPLACEMENT,
    char_width,
    code_point_width,
    drawable,
    fit,
    is_boundary,
    next_boundary,
    previous_boundary,
    sanitize,
    text_width,
    wrap,
)


def rows_text(text, rows):
    return [text[start:end] for start, end, _ in rows]


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
    assert sanitize("rtl \u202eevil") == "rtl <U+202E>evil"


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
    assert wrap("", 10) == [(0, 0, 0)]


alphabet = st.sampled_from(list("ab  xyz") + ["日", "😀", "\u0301", "é", "ｆ", "\u200d"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet, max_size=80), st.integers(2, 40), st.data())
def test_wrapped_rows_never_exceed_the_width(text, width, data):
    indent = data.draw(st.integers(0, width - 2))  # the pane always leaves 2+ cells of text
    rows = wrap(text, width, indent)
    for index, (start, end, row_indent) in enumerate(rows):
        assert row_indent == (0 if index == 0 else indent)  # no URLs in this alphabet
        assert text_width(text[start:end]) <= width - row_indent
    # nothing but the spaces at break points is lost, and the order is kept
    assert "".join(rows_text(text, rows)).replace(" ", "") == text.replace(" ", "")
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in itertools.pairwise(rows))


def test_wrap_breaks_beside_wide_characters_to_fill_rows():
    text = "<bob> 漢字かな交じり文"
    assert rows_text(text, wrap(text, 14)) == ["<bob> 漢字かな", "交じり文"]


# -- grapheme clusters (issue 12) -----------------------------------------------------------

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # man ZWJ woman ZWJ girl
FLAG_FR = "\U0001F1EB\U0001F1F7"
THUMB_TONE = "\U0001F44D\U0001F3FD"
HEART_EMOJI = "\u2764\ufe0f"
KEYCAP_ONE = "1\ufe0f\u20e3"


def test_emoji_clusters_take_two_cells_each():
    for cluster in (FAMILY, FLAG_FR, THUMB_TONE, HEART_EMOJI, KEYCAP_ONE):
        assert text_width(cluster) == 2, repr(cluster)
        assert next_boundary(cluster, 0) == len(cluster), repr(cluster)
    assert text_width("\u2764") == 1  # without the selector: text presentation
    assert text_width(FLAG_FR * 3) == 6  # flags pair up in order
    assert text_width("\U0001F1EB" + FLAG_FR) == 3  # an odd indicator out first, alone


def test_boundaries_step_over_whole_clusters_both_ways():
    text = "a" + FAMILY + FLAG_FR + FLAG_FR + "e\u0301" + THUMB_TONE
    forward, position = [0], 0
    while position < len(text):
        position = next_boundary(text, position)
        forward.append(position)
    backward, position = [len(text)], len(text)
    while position > 0:
        position = previous_boundary(text, position)
        backward.append(position)
    assert forward == backward[::-1]
    assert [text[a:b] for a, b in itertools.pairwise(forward)] == ["a", FAMILY, FLAG_FR, FLAG_FR, "e\u0301", THUMB_TONE]
    assert [is_boundary(text, index) for index in range(len(text) + 1)] == [index in forward for index in range(len(text) + 1)]


def test_wrap_never_splits_a_cluster():
    text = (FAMILY + FLAG_FR + THUMB_TONE + "x") * 5
    for width in range(2, 12):
        rows = wrap(text, width)
        cuts = {row[0] for row in rows} | {row[1] for row in rows}
        assert all(is_boundary(text, cut) for cut in cuts)
        assert all(text_width(text[start:end]) <= width for start, end, _ in rows)


def test_fit_keeps_whole_clusters():
    assert fit("ab" + FAMILY, 3) == "ab"
    assert fit("ab" + FAMILY, 4) == "ab" + FAMILY


def test_sanitize_names_zero_width_and_bidi_characters():
    for char in "\u200b\u200c\u200d\u200e\u200f\u061c\ufeff\u2060\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert sanitize(f"a{char}b") == f"a<U+{ord(char):04X}>b"
    assert sanitize(FAMILY) == FAMILY  # a joiner between emoji builds one emoji: kept
    assert sanitize("\U0001F468\u200dx") == "\U0001F468<U+200D>x"


# -- URLs and the hanging indent ----------------------------------------------------------------

URL = "https://example.com/a/very/long/path/that/goes/on?query=1"


def test_a_url_that_does_not_fit_starts_its_own_row():
    text = "12:00 <ann> see you at https://example.com/x now"
    rows = wrap(text, 40, indent=12)
    assert rows_text(text, rows) == ["12:00 <ann> see you at", "https://example.com/x now"]
    assert [row[2] for row in rows] == [0, 12]


def test_a_long_url_goes_on_unindented_and_whole():
    text = f"12:00 <ann> look {URL} ok, and then some more words after it"
    rows = wrap(text, 30, indent=12)
    assert rows_text(text, rows)[:3] == ["12:00 <ann> look", URL[:30], URL[30:]]
    assert [indent for _, _, indent in rows[:3]] == [0, 0, 0]  # no blanks in the middle of it
    assert all(indent == 12 for _, _, indent in rows[3:]) and len(rows) > 3  # then as before


emoji_parts = st.sampled_from(list("ab ") + ["😀", "👨", "👩", "\u200d", "\ufe0f", "\u20e3", "❤", "1", "👍", "🏽",
                                             "\U0001F1EB", "\U0001F1F7", "\u0301", "日", "\U000E0067"])


@settings(max_examples=300, deadline=None)
@given(st.text(emoji_parts, max_size=40))
def test_what_curses_is_given_takes_the_cells_we_measure(text):
    """curses counts code points (the C library's wcwidth): the stand-ins make its count ours."""
    drawn = drawable(text)
    assert sum(code_point_width(char) for char in drawn) == text_width(text)
