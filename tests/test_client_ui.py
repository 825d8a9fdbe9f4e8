"""The small pure helpers of curses_client.ui (no terminal needed)."""

import curses

from curses_client.ui import colour_index, key_names


def test_a_name_keeps_its_colour_across_runs_and_case():
    assert colour_index("alice", 12) == colour_index("ALICE", 12) == colour_index("Alice", 12)
    assert colour_index("alice", 12) == 11  # CRC-32 based: the same in every process
    assert len({colour_index(f"user{n}", 12) for n in range(100)}) == 12


def test_enter_and_page_keys_are_named():
    names = key_names()
    assert names[curses.KEY_ENTER] == "enter"
    assert names[curses.KEY_PPAGE] == "page-up" and names[curses.KEY_NPAGE] == "page-down"
    assert names[curses.KEY_RESIZE] == "resize"
