"""Windows (curses_client.windows), the unread marker and search (curses_client.scrollback),
and the server's 005 rules (curses_client.rules): pure, fast."""

from curses_client.entries import Entry, Kind
from curses_client.rules import ServerRules
from curses_client.scrollback import MARKER_TEXT, Scrollback
from curses_client.windows import MAX_MEMBERS, MAX_WINDOWS, Activity, Window, WindowList, activity_of


def entry(text, kind=Kind.CHAT, highlight=False):
    return Entry(kind, text, "bob", 0.0, highlight=highlight)


def shown_text(scrollback, width=60, height=10):
    return [row.styled.text[row.start:row.end] for row in scrollback.visible(width, height)]


def test_activity_rises_with_urgency_and_clears_when_the_window_is_shown():
    windows = WindowList("srv")
    room, query = windows.open("#a", "#a", True), windows.open("bob", "bob", False)
    windows.add(windows.current, entry("seen"))
    assert windows.active_list() == []  # the window shown has nothing unseen
    windows.add(room, entry("joined", Kind.JOIN))
    assert windows.active_list() == [(2, Activity.EVENT)]
    windows.add(room, entry("hello"))
    windows.add(room, entry("bye", Kind.PART))  # a lower level never lowers the window's
    windows.add(query, entry("psst", Kind.PRIVATE_IN))
    assert windows.active_list() == [(2, Activity.MESSAGE), (3, Activity.HIGHLIGHT)]
    windows.add(room, entry("hi alice", highlight=True))
    assert room.activity is Activity.HIGHLIGHT
    windows.switch(2)
    assert windows.active_list() == [(3, Activity.HIGHLIGHT)] and windows.current is room


def test_what_a_line_is_worth():
    assert activity_of(entry("joined", Kind.JOIN)) is Activity.EVENT
    assert activity_of(entry("hello")) is Activity.MESSAGE
    assert activity_of(entry("mine", Kind.OWN)) is Activity.NONE
    assert activity_of(entry("hi alice", highlight=True)) is Activity.HIGHLIGHT
    assert activity_of(entry("psst", Kind.PRIVATE_IN)) is Activity.HIGHLIGHT
    replayed = Entry(Kind.PRIVATE_IN, "old psst", "bob", 0.0, replayed=True)
    assert activity_of(replayed) is Activity.MESSAGE  # history never rings the bell


def test_switching_keys_wrap_around_and_bad_numbers_change_nothing():
    windows = WindowList("srv")
    windows.open("#a", "#a", True)
    windows.open("#b", "#b", True)
    windows.step(-1)
    assert windows.active == 2
    windows.step(1)
    assert windows.active == 0
    assert not windows.switch(4) and not windows.switch(0) and windows.active == 0
    assert windows.switch(3) and windows.current.name == "#b"


def test_the_unread_marker_sits_above_the_first_line_that_came_while_away():
    windows = WindowList("srv")
    room = windows.open("#a", "#a", True)
    windows.switch(2)
    windows.add(room, entry("read one"))
    windows.switch(1)
    windows.add(room, entry("unread one"))
    windows.add(room, entry("unread two"))
    windows.switch(2)
    texts = shown_text(room.scrollback)
    assert "read one" in texts[-4] and texts[-3] == MARKER_TEXT and "unread one" in texts[-2]
    windows.switch(1)  # leaving marks it all read: no marker until something new comes
    assert MARKER_TEXT not in shown_text(room.scrollback)
    windows.switch(2)
    assert MARKER_TEXT not in shown_text(room.scrollback)


def test_closing_windows_keeps_the_active_one_sane_and_the_server_window_stays():
    windows = WindowList("srv")
    first, second = windows.open("#a", "#a", True), windows.open("#b", "#b", True)
    windows.switch(3)
    assert windows.close(second) and windows.current is first
    windows.switch(1)
    assert windows.close(first) and windows.active == 0 and len(windows.windows) == 1
    assert not windows.close(windows.server)


def test_windows_and_members_are_capped():
    windows = WindowList("srv")
    for number in range(MAX_WINDOWS + 20):
        windows.open(f"#r{number}", f"#r{number}", True)
    assert len(windows.windows) == MAX_WINDOWS
    assert windows.open("#late", "#late", True) is windows.server  # its lines still show, in window 1
    window = Window("#big", "#big", True)
    for number in range(MAX_MEMBERS + 50):
        window.add_member(f"n{number}", f"n{number}")
    assert len(window.members) == MAX_MEMBERS
    window.add_member("n0", "N0", "@")  # a member already there can still change
    assert window.members["n0"] == ("@", "N0")


def test_search_finds_older_then_newer_matches_and_scrolls_to_them():
    scrollback = Scrollback()
    for number in range(30):
        scrollback.add(entry(f"line {number}" + (" needle" if number in (5, 12, 20) else "")))
    found = scrollback.find("NEEDLE")
    assert found == 20
    scrollback.scroll_to(found)
    assert "line 20 needle" in shown_text(scrollback, height=3)[-1]
    older = scrollback.find("needle")
    assert older == 12
    scrollback.scroll_to(older)
    assert scrollback.find("needle") == 5
    assert scrollback.find("needle", older=False) == 20
    scrollback.scroll_to(5)
    assert scrollback.find("needle") is None and scrollback.more_below() > 0


def test_rules_come_from_005():
    rules = ServerRules()
    assert rules.valid_nick("n-alice") and rules.valid_nick("[away]") and not rules.valid_nick("a" * 31)
    for token in ("NICKLEN=9", "CASEMAPPING=ascii", "CHANTYPES=#!", "PREFIX=(qaohv)~&@%+", "CHANMODES=beI,k,l,imnt"):
        rules.apply_token(token)
    assert not rules.valid_nick("ten_chars!"[:9] + "x") and rules.valid_nick("ninechars")
    assert rules.fold("[A]") != rules.fold("{a}") and rules.fold("ABC") == "abc"
    assert rules.is_channel("!x") and not rules.is_channel("&x")
    assert rules.split_prefix("@+bob") == ("@+", "bob") and rules.rank("+@") == "@"
    assert rules.takes_parameter("I", False) and rules.takes_parameter("l", True) and not rules.takes_parameter("l", False)
    for hostile in ("NICKLEN=99999999", "PREFIX=(ov)@", "CHANTYPES=", "CASEMAPPING=klingon", "PREFIX=(o v)@ +"):
        rules.apply_token(hostile)
    assert rules.nicklen <= 64 and rules.prefix_symbols == "~&@%+" and rules.chantypes == "#!"
    assert rules.casemapping == "ascii"
