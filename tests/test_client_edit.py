"""The line editor (curses_client.edit): pure, fast."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curses_client import edit
from curses_client.edit import LineEditor
from curses_client.width import text_width


def editor_with(text, cursor=None):
    editor = LineEditor()
    editor.insert(text)
    if cursor is not None:
        editor.cursor = cursor
    return editor


def test_insert_and_move():
    editor = editor_with("helo")
    editor.left()
    editor.insert("l")
    assert (editor.text, editor.cursor) == ("hello", 4)
    editor.home()
    assert editor.cursor == 0
    editor.end()
    assert editor.cursor == 5
    editor.right()
    assert editor.cursor == 5


def test_backspace_and_delete():
    editor = editor_with("abc", 1)
    editor.backspace()
    assert (editor.text, editor.cursor) == ("bc", 0)
    editor.backspace()
    assert editor.text == "bc"
    editor.delete()
    assert (editor.text, editor.cursor) == ("c", 0)


def test_combining_marks_move_and_delete_with_their_base():
    editor = editor_with("xe\u0301y")
    editor.left()
    editor.left()
    assert editor.cursor == 1
    editor.right()
    assert editor.cursor == 3
    editor.backspace()
    assert editor.text == "xy"


def test_kill_keys():
    editor = editor_with("hello brave world", 11)
    editor.kill_to_end()
    assert editor.text == "hello brave"
    editor.delete_word_before()
    assert (editor.text, editor.cursor) == ("hello ", 6)
    editor.kill_to_start()
    assert (editor.text, editor.cursor) == ("", 0)


def test_word_jumps():
    editor = editor_with("one two  three")
    editor.word_left()
    assert editor.cursor == 9
    editor.word_left()
    assert editor.cursor == 4
    editor.word_right()
    assert editor.cursor == 7


def test_history_recalls_sent_lines_and_keeps_the_draft():
    editor = LineEditor()
    for line in ("first", "second"):
        editor.insert(line)
        editor.submit()
    editor.insert("draft")
    editor.history_up()
    assert editor.text == "second"
    editor.history_up()
    assert editor.text == "first"
    editor.history_up()
    assert editor.text == "first"
    editor.history_down()
    editor.history_down()
    assert editor.text == "draft"


def test_submit_splits_a_pasted_block_into_lines():
    editor = editor_with("line one\nline two\n\n")
    assert editor.submit() == ["line one", "line two"]
    assert editor.text == ""


def test_submit_without_remembering_keeps_history_clean():
    editor = editor_with("alice")
    editor.submit(remember=False)
    editor.history_up()
    assert editor.text == ""


def test_tab_completes_nicks_and_cycles():
    editor = editor_with("bo")
    editor.complete(["/msg"], ["bob", "Bobby", "carol"])
    assert editor.text == "bob: "
    editor.complete(["/msg"], ["bob", "Bobby", "carol"])
    assert editor.text == "Bobby: "
    editor.complete(["/msg"], ["bob", "Bobby", "carol"])
    assert editor.text == "bob: "


def test_tab_completes_commands_and_nicks_later_in_the_line():
    editor = editor_with("/ms")
    editor.complete(["/msg", "/me"], ["mark"])
    assert editor.text == "/msg "
    editor.insert("ca")
    editor.complete(["/msg"], ["carol"])
    assert editor.text == "/msg carol "


def test_view_scrolls_sideways_to_keep_the_cursor_visible():
    editor = editor_with("abcdefghijklmnopqrstuvwxyz")
    visible, cursor, offset = editor.view(10)
    assert cursor <= 9 and visible.endswith("z") and text_width(visible) <= 10
    editor.home()
    visible, cursor, offset = editor.view(10, offset)
    assert (visible, cursor, offset) == ("abcdefghij", 0, 0)


def test_view_shows_pasted_newlines_as_a_symbol():
    visible, _, _ = editor_with("a\nb").view(10)
    assert visible == "a\u21b5b"


keys = st.lists(
    st.one_of(
        st.text(st.sampled_from("ab 日\u0301"), min_size=1, max_size=3).map(lambda t: ("insert", t)),
        st.sampled_from(["backspace", "delete", "left", "right", "home", "end", "word_left", "word_right",
                         "kill_to_start", "kill_to_end", "delete_word_before", "history_up", "history_down"]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(keys, st.integers(2, 30))
def test_editor_invariants(actions, width):
    editor = LineEditor()
    offset = 0
    for action in actions:
        if isinstance(action, tuple):
            editor.insert(action[1])
        else:
            getattr(editor, action)()
        assert 0 <= editor.cursor <= len(editor.text)
        visible, cursor, offset = editor.view(width, offset)
        assert text_width(visible) <= width
        assert 0 <= cursor <= width - 1 or editor.cursor == offset


def test_view_scrolls_back_when_the_window_grows():
    editor = editor_with("draft text")
    _, _, offset = editor.view(1)
    assert offset == 10
    assert editor.view(17, offset) == ("draft text", 10, 0)


def test_a_masked_view_shows_one_star_per_cluster_and_keeps_the_cursor():
    editor = LineEditor()
    editor.insert("日本\u0301xy")
    editor.left()
    assert editor.view(20, mask="*") == ("****", 3, 0)
    assert editor.view(3, mask="*")[0] == "***"


# -- long input and clusters (issue 12) ---------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_huge_paste_costs_what_is_visible_to_draw():
    # 5 MB with line breaks and non-ASCII text: every view used to cost the square of this
    editor = LineEditor()
    line = ("é漢 a line of pasted text " * 200_000)[:2_500_000]
    editor.paste(line + "\n" + line)  # two lines: shown as they are, not summarised
    offset = 0
    for width in range(20, 120):
        visible, cursor, offset = editor.view(width, offset)
        assert len(visible) <= width and cursor <= width - 1
    editor.home()
    for width in range(20, 120):
        visible, cursor, offset = editor.view(width, offset)
        assert cursor == 0 and offset == 0
    for _ in range(50):
        editor.right()
        editor.view(40, offset)


def test_the_cursor_steps_over_emoji_sequences_and_flags_whole():
    family, flag = "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7"
    editor = editor_with("a" + family + flag + flag)
    editor.left()
    assert editor.cursor == 1 + len(family) + 2
    editor.backspace()  # one flag goes, not half of it
    assert editor.text == "a" + family + flag
    editor.left()
    assert editor.cursor == 1
    assert editor.view(20) == ("a" + family + flag, 1, 0)
    editor.delete()
    assert editor.text == "a" + flag


def test_pasted_lines_are_text_but_a_typed_command_before_a_paste_stays_a_command():
    editor = LineEditor()
    editor.paste("/quit x\nhello\n/nick y")
    assert editor.submit() == ["//quit x", "hello", "//nick y"]  # "//" says the line as text
    editor.insert("/msg bob ")
    editor.paste("see\n/this")
    assert editor.submit() == ["/msg bob see", "//this"]
    editor.insert("/me waves")  # typed: a command
    assert editor.submit() == ["/me waves"]
    editor.history_up()
    editor.history_up()  # a block with a paste in it, recalled: the same lines again
    assert editor.submit() == ["/msg bob see", "//this"]
    for _ in range(4):
        editor.history_up()
    assert editor.text == "//quit x\nhello\n/nick y"  # shows that its first line is text
    assert editor.submit() == ["//quit x", "hello", "//nick y"]


def test_a_long_paste_is_summarised_until_sent_or_cleared():
    editor = LineEditor()
    editor.paste("line\n" * 9999 + "last")
    assert editor.view(60) == ("[paste: 10000 lines, Enter sends, Esc clears]", 45, 0)
    assert editor.view(20)[0] == "[paste: 10000 lines"  # cut to fit, the cursor cell kept free
    editor.escape()
    assert editor.text == "" and editor.view(60) == ("", 0, 0)
    editor.insert("typed")
    editor.escape()  # no paste: Esc leaves typed text alone
    assert editor.text == "typed"
    editor.paste("a\nb")  # a few lines are shown as they are
    assert editor.view(60)[0] == "typeda\u21b5b"


def test_the_input_line_holds_a_bounded_amount(monkeypatch):
    monkeypatch.setattr(edit, "TEXT_LIMIT", 10)
    editor = LineEditor()
    editor.paste("a\nb" * 3)
    editor.insert("xyz")
    editor.paste("more")
    assert editor.text == "a\nba\nba\nbx"
