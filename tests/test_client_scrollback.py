"""The message store and scroll position (curses_client.scrollback): pure, fast."""

from hypothesis import given, settings
from hypothesis import strategies as st

from curses_client.entries import Entry, Kind, render
from curses_client.scrollback import Scrollback
from curses_client.width import text_width


def entry(text, sender="ann"):
    return Entry(Kind.CHAT, text, sender, 0.0)


def filled(count, text="message {}"):
    store = Scrollback()
    for number in range(count):
        store.add(entry(text.format(number)))
    return store


def shown(rows):
    return [row.styled.text[row.start : row.end] for row in rows]


def test_following_shows_the_newest_rows():
    store = filled(10)
    rows = shown(store.visible(80, 3))
    assert [row.endswith(f"message {n}") for row, n in zip(rows, (7, 8, 9))] == [True] * 3
    assert store.more_below() == 0


def test_new_messages_do_not_move_a_reader_who_scrolled_up():
    store = filled(20)
    store.scroll_up(5, 80, 4)
    before = shown(store.visible(80, 4))
    store.add(entry("news"))
    store.add(entry("more news"))
    assert shown(store.visible(80, 4)) == before
    assert store.more_below() == 7


def test_scrolling_down_to_the_bottom_follows_again():
    store = filled(20)
    store.scroll_up(5, 80, 4)
    store.scroll_down(100, 80)
    assert store.following and store.more_below() == 0


def test_scrolling_up_stops_at_the_oldest_message():
    store = filled(5)
    store.scroll_up(100, 80, 3)
    assert shown(store.visible(80, 3))[0].endswith("message 0")
    assert store.more_below() == 2


def test_a_short_history_does_not_scroll():
    store = filled(2)
    store.scroll_up(10, 80, 5)
    assert store.following


def test_rewrap_keeps_the_same_message_at_the_bottom():
    store = filled(50, "message {} " + "word " * 12)
    store.scroll_up(30, 80, 5)
    bottom_before = store.visible(80, 5)[-1].styled
    below_before = store.more_below()
    narrow = store.visible(30, 5)
    assert narrow[-1].styled is bottom_before or narrow[-1].styled.text == bottom_before.text
    assert store.more_below() == below_before
    assert all(text_width(" " * row.indent + text) <= 30 for row, text in zip(narrow, shown(narrow)))


def test_wrapped_rows_hang_under_the_text():
    store = Scrollback()
    store.add(entry("the quick brown fox jumps over the lazy dog"))
    rows = store.visible(30, 10)
    indent = render(entry("x")).indent
    assert len(rows) > 1 and all(row.indent == indent for row in rows[1:])


def test_the_oldest_entries_are_dropped_beyond_the_limit():
    store = Scrollback(limit=10)
    for number in range(25):
        store.add(entry(f"m{number}"))
    assert len(store) == 10
    assert shown(store.visible(80, 1))[0].endswith("m24")


def test_ten_thousand_messages_draw_only_what_is_visible():
    store = filled(10_000)
    rows = store.visible(120, 50)
    assert len(rows) == 50
    store.scroll_up(5000, 120, 50)
    assert store.more_below() > 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab 日"), max_size=60), min_size=1, max_size=30),
       st.lists(st.tuples(st.sampled_from(["up", "down"]), st.integers(1, 20))),
       st.integers(20, 60), st.integers(1, 10))
def test_the_pane_never_overflows(texts, moves, width, height):
    store = Scrollback()
    for text in texts:
        store.add(entry(text))
    for direction, count in moves:
        if direction == "up":
            store.scroll_up(count, width, height)
        else:
            store.scroll_down(count, width)
        rows = store.visible(width, height)
        assert 1 <= len(rows) <= height
        assert all(row.indent + text_width(text) <= width for row, text in zip(rows, shown(rows)))
        assert 0 <= store.more_below() <= len(texts)


def test_scrolling_down_after_a_rewrap_to_fewer_rows():
    store = filled(30, "message {} " + "word " * 30)
    store.scroll_up(3, 30, 5)  # inside a message that has many rows at width 30
    assert store.more_below() == 1
    store.scroll_down(1, 200)  # at width 200 it is one row: one step down is the bottom
    assert store.following


def test_older_entries_go_on_top_without_moving_the_view():
    store = filled(30, "message {}")
    store.scroll_up(10, 80, 5)
    before = [row.styled.text for row in store.visible(80, 5)]
    store.prepend([entry("loading")])
    store.prepend([entry(f"old {i}") for i in range(3)], replace_oldest=True)
    assert [row.styled.text for row in store.visible(80, 5)] == before
    assert len(store) == 33 and store.oldest().text == "old 0"
    store.scroll_up(100, 80, 5)
    assert store.at_top(80, 5) and store.visible(80, 5)[0].styled.text.endswith("old 0")
