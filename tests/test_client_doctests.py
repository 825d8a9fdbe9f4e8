"""The examples in the client modules' docstrings are run as tests too."""

import doctest

import pytest

from curses_client import chatlog, commands, edit, entries, model, net, rules, tls, width


@pytest.mark.parametrize("module", [width, commands, edit, entries, model, net, tls, rules, chatlog], ids=lambda module: module.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
