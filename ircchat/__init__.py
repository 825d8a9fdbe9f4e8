"""The chat's code, run by ``chat_server.py`` (the server) and ``curses_client`` (the client).

Modules, read in this order:

- ``protocol``: the IRC protocol core with no I/O (parse, format, frame, fold, pace), shared
  by both; its ``__all__`` is the surface the client relies on.
- ``numerics``: numeric replies by name, and ``IRCError``.
- ``roomlog``: a room's lines stored once, each member reading from its own place (the
  fan-out engine's log).
- ``state``: users, channels (with their operators, voice and modes) and the ``Hub`` behind
  ``Hub.lock``; configuration and policies.
- ``handlers``: the command handlers and their one dispatch table.
- ``queries``: the commands clients use besides chatting: WHO/WHOX, WHOIS, WHOWAS, USERHOST,
  ISON, LIST, AWAY, and TIME, ADMIN, INFO, HELP about the server.
- ``modes``: channel modes with no I/O: mode strings, ban masks, a channel's saved state.
- ``moderation``: MODE, KICK, INVITE, OPER and KILL, registered in that table.
- ``ircv3``: capabilities, message tags, and each line in the form a client asked for.
- ``history``: room history (SQLite by default) behind one small interface.
- ``chathistory``: stored history sent to clients: replay on join and CHATHISTORY.
- ``cluster``: cluster mode without I/O: ``ClusterBus``, the hooks the Hub calls (the
  single-process default does nothing), and the ``Mirror`` of other nodes' users and events.
- ``redisbus``: cluster mode over Redis (``--redis``, needs the ``redis`` package): the event
  stream, nick claims, snapshots, heartbeats, outages; and ``RedisHistory``.
- ``network``: sockets and threads: readers, the output pump, housekeeping, ``ChatServer``.
- ``tlsbuffer``: TLS over memory buffers, shared by both (the server's outboxes, the client).
- ``logs``: the server's logger, which escapes whatever came from the network.
"""

__version__ = "0.1.0"
