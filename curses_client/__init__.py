"""A terminal chat client for the chat server (and any IRC server): ``python -m curses_client``.

Map of the package, each module with one job, curses only in ``ui``:

- ``width``: display width of text (a small wcwidth), sanitising network text, word wrap.
- ``edit``: the input line editor (text, cursor, history, Tab completion, sideways view).
- ``keys``: keys to editing commands; escape sequences, bracketed and unmarked pastes.
- ``keyboard``: reading keys: one from curses, then all that is waiting at once.
- ``commands``: what a typed line does: the ``COMMANDS`` table (``/join``, ``/kick``, ...).
- ``entries``: one pane message (``Entry``) and how it reads as styled text.
- ``scrollback``: the stored messages, wrapped per width, the scroll position, the unread
  marker and search.
- ``windows``: the server window, one per room and private conversation; activity.
- ``rules``: the connected server's rules from its 005 (NICKLEN, CASEMAPPING, PREFIX...).
- ``model``: the chat state: the connection's ``Phase`` and its transitions, names, windows.
- ``handle``: messages from the server: the ``HANDLERS`` table, numerics as sentences.
- ``chatlog``: ``--log-dir``: one log file per window and day.
- ``irc``: the one importer of the shared protocol core (``ircchat.protocol``).
- ``tls``: the TLS context the flags ask for, and ``ircchat.tlsbuffer`` on a socket for ``net``.
- ``net``: the network thread (connect, read, frame, parse, reconnect) and the sender's
  writer thread (paced, bounded).
- ``ui``: curses: terminal setup/restore, reading keys, drawing a frame.
- ``app``: command line and the UI loop.

The IRC protocol core (parsing, framing, formatting) is shared with the server, through ``irc``.
"""
