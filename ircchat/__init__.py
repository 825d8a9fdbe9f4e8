"""The chat's code, run by ``chat_server.py`` (the server) and ``curses_client`` (the client).

Modules, read in this order:

- ``protocol``: the IRC protocol core with no I/O (parse, format, frame, fold, pace), shared
  by both; its ``__all__`` is the surface the client relies on.
- ``numerics``: numeric replies by name, and ``IRCError``.
- ``state``: users, channels and the ``Hub`` behind ``Hub.lock``; configuration and policies.
- ``handlers``: the command handlers and their one dispatch table.
- ``ircv3``: capabilities, message tags, and each line in the form a client asked for.
- ``history``: room history (SQLite by default) behind one small interface.
- ``chathistory``: stored history sent to clients: replay on join and CHATHISTORY.
- ``network``: sockets and threads: readers, the output pump, housekeeping, ``ChatServer``.
- ``tlsbuffer``: TLS over memory buffers, shared by both (the server's outboxes, the client).
- ``logs``: the server's logger, which escapes whatever came from the network.
"""

__version__ = "0.1.0"
