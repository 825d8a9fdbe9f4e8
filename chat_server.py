#!/usr/bin/env python3
"""A threaded chat server that speaks a subset of IRC (RFC 1459/2812 framing and numerics).

Run it with ``python chat_server.py`` (``--help`` for the flags). Any IRC client can join;
every user lands in one default room, where a message reaches every other member.

This file is the command line: flags, configuration, signals. The server itself is the
``ircchat`` package beside it (its ``__init__`` is the map): the protocol core the client
shares, the numerics, the shared state, the command handlers and the socket layer.

Threading rules: ``Hub.lock`` guards users, nicks and channels and is held briefly; no socket
I/O is ever done under it. A line for a channel is encoded once and appended once, under the
lock, to the channel's ``RoomLog``, which its members' outboxes follow from offsets of their
own; a line for one client goes to its ``deliver``, which only queues it in that client's
bounded ``Outbox``. With history on, room lines reach the log from the history's writer
thread, after their commit; in cluster mode (``--redis``), from the cluster's reader thread,
in the order of the shared stream. Only the pump thread sends on or closes a client socket.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import ssl
import sys
import time
from typing import Any

from ircchat.cluster import ClusterError
from ircchat.history import HistoryError, SqliteHistory
from ircchat.logs import log
from ircchat.network import ChatServer
from ircchat.protocol import CHANNEL_RE, irc_fold
from ircchat.state import ServerConfig

DEFAULT_HISTORY = "chat_history.sqlite3"  # in the working directory


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat_server.py",
        description="A threaded chat server speaking a subset of IRC. Every user joins one room.",
        formatter_class=_HelpFormatter,
    )
    defaults = ServerConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on")
    add("--port", type=int, default=5555, help="TCP port; 0 picks a free one")
    add("--server-name", default=defaults.server_name, help="name the server gives itself")
    add("--network", default=defaults.network, help="network name in the welcome")
    add("--room", default=defaults.room, help="the room every user joins")
    add("--motd-file", help="file whose lines are the message of the day (default: a greeting)")
    add("--ping-interval", type=float, default=defaults.ping_interval, help="idle seconds before a PING")
    add("--ping-timeout", type=float, default=defaults.ping_timeout, help="seconds to answer a PING")
    add("--register-timeout", type=float, default=defaults.register_timeout,
        help="seconds a new connection has to register")
    add("--sendq", type=int, default=defaults.sendq,
        help="bytes of replies and private lines queued for one client before it is dropped")
    add("--room-backlog", type=int, default=defaults.room_backlog,
        help="bytes of a room's lines a member may lag behind before it is dropped")
    add("--sendq-timeout", type=float, default=defaults.sendq_timeout,
        help="seconds a client with output waiting may take none of it before it is dropped")
    add("--password", help="password clients must give with PASS; better, set CHAT_SERVER_PASSWORD, "
                           "which ps does not show")
    add("--oper", action="append", default=[], metavar="NAME:PASSWORD",
        help="a server operator OPER accepts (repeatable); better, put them in --oper-file or "
             "CHAT_OPERS=name:pw,name2:pw2, which ps does not show")
    add("--oper-file", help="file of server operators, NAME:PASSWORD per line")
    add("--tls-cert", help="PEM certificate chain: also listen with TLS on --tls-port")
    add("--tls-key", help="PEM private key for --tls-cert")
    add("--tls-port", type=int, default=6697, help="TLS port")
    add("--flood-burst", type=int, default=defaults.flood_burst, help="lines a client may send at once")
    add("--flood-rate", type=float, default=defaults.flood_rate, help="lines a second after the burst")
    add("--no-flood-control", action="store_true", help="let clients send as fast as they like")
    add("--max-clients", type=int, default=defaults.max_clients, help="connections in all")
    add("--max-per-ip", type=int, default=defaults.max_per_ip,
        help="connections from one address (loopback is exempt)")
    add("--history", metavar="FILE", default=DEFAULT_HISTORY,
        help="SQLite file that keeps room history (created if missing)")
    add("--no-history", action="store_true", help="keep no history: nothing is stored or replayed")
    add("--history-days", type=float, default=30.0, help="days a room line is kept")
    add("--history-max-messages", type=int, default=10_000, help="lines kept per room")
    add("--replay-lines", type=int, default=defaults.replay_lines,
        help="lines of a room's history replayed to a user who joins it")
    add("--max-channels", type=int, default=defaults.max_channels, help="channels one user may be in")
    add("--nick-changes-per-minute", type=int, default=defaults.nick_changes_per_minute,
        help="name changes one user may make in a minute")
    add("--password-backoff", type=float, default=defaults.password_backoff,
        help="seconds an address waits to try again after a wrong password, doubling per failure "
             "up to a minute")
    add("--no-cloak", action="store_true",
        help="show users' real addresses to everyone (by default others see a keyed hash; set "
             "CHAT_CLOAK_SECRET to keep the hashes the same across restarts)")
    add("--redis", metavar="URL", default=os.environ.get("CHAT_REDIS_URL"),
        help="cluster mode: serve one chat with every server using this Redis, such as "
             "redis://127.0.0.1:6379/0 (or set CHAT_REDIS_URL); history then lives in Redis")
    add("--node-timeout", type=float, default=15.0,
        help="cluster mode: seconds without a heartbeat after which a node's users are announced as lost")
    add("--redis-timeout", type=float, default=3.0, help="cluster mode: seconds any Redis call may take")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="console log level")
    args = parser.parse_args(argv)
    if not CHANNEL_RE.match(args.room):
        parser.error(f"--room {args.room!r} is not a channel name like #chat")
    if " " in args.server_name or not args.server_name:
        parser.error("--server-name must be one word, such as chat.example.org")
    if args.redis and args.no_history:
        parser.error("--redis keeps history in Redis, which every server shares: drop --no-history")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        args.opers = read_opers(args.oper, args.oper_file, os.environ.get("CHAT_OPERS", ""))
    except (OSError, ValueError) as error:
        parser.error(str(error))
    return args


def read_opers(flags: list[str], path: str | None, environment: str) -> tuple[tuple[str, str], ...]:
    """Server operators from --oper flags, the --oper-file and CHAT_OPERS (comma-separated),
    as (name, password) pairs; ValueError numbers an entry that is not NAME:PASSWORD (never
    quoting it: an entry without its colon may be a password alone).

    >>> read_opers(["root:pw"], None, "ann:a:b, bob:x")
    (('root', 'pw'), ('ann', 'a:b'), ('bob', 'x'))
    """
    entries = list(flags) + [entry for entry in environment.split(",") if entry.strip()]
    if path:
        with open(path, encoding="utf-8") as oper_file:
            entries += [line for line in oper_file.read().splitlines() if line.strip() and not line.startswith("#")]
    opers = []
    for number, entry in enumerate(entries, 1):
        name, colon, password = entry.strip().partition(":")
        if not colon or not name or not password or " " in name:
            raise ValueError(f"server operator entry {number} (--oper flags, then CHAT_OPERS, then "
                             "--oper-file): expected NAME:PASSWORD")
        opers.append((name, password))
    return tuple(opers)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    motd = ServerConfig.motd
    if args.motd_file:
        with open(args.motd_file, encoding="utf-8", errors="replace") as motd_file:
            motd = tuple(line.rstrip("\r\n") for line in motd_file)
    return ServerConfig(
        server_name=args.server_name, network=args.network, room=args.room, motd=motd,
        ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
        register_timeout=args.register_timeout, sendq=args.sendq, room_backlog=args.room_backlog,
        sendq_timeout=args.sendq_timeout,
        password=args.password or os.environ.get("CHAT_SERVER_PASSWORD") or None,
        flood_burst=args.flood_burst, flood_rate=0 if args.no_flood_control else args.flood_rate,
        max_clients=args.max_clients, max_per_ip=args.max_per_ip, max_channels=args.max_channels,
        nick_changes_per_minute=args.nick_changes_per_minute, password_backoff=args.password_backoff,
        cloak_secret=None if args.no_cloak else _cloak_secret(),
        replay_lines=args.replay_lines, opers=args.opers,
    )


def _cloak_secret() -> bytes:
    """CHAT_CLOAK_SECRET if set (cloaks then survive restarts), else a fresh random key."""
    configured = os.environ.get("CHAT_CLOAK_SECRET")
    return configured.encode() if configured else secrets.token_bytes(16)


def open_history(args: argparse.Namespace) -> SqliteHistory | None:
    """The history store the flags ask for; HistoryError (one sentence) if the file is unusable."""
    if args.no_history:
        return None
    return SqliteHistory(args.history, max_age_days=args.history_days,
                         max_per_room=args.history_max_messages, pinned_channels=(irc_fold(args.room),))


def open_cluster(args: argparse.Namespace) -> Any:
    """The RedisBus the flags ask for (None: a single process); ClusterError if Redis cannot
    be reached. Imported here, so a single process never needs the redis package."""
    if not args.redis:
        return None
    try:
        from ircchat.redisbus import RedisBus
    except ImportError as error:
        raise ClusterError("--redis needs the redis package: pip install redis") from error
    return RedisBus(args.redis, node_timeout=args.node_timeout, socket_timeout=args.redis_timeout,
                    history_max=args.history_max_messages, history_days=args.history_days)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context with the ssl module's modern defaults (TLS 1.2 or newer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(message)s")
    try:
        bus = open_cluster(args)
        history = bus.history if bus is not None else open_history(args)
    except (HistoryError, ClusterError) as error:
        print(f"chat_server.py: {error}", file=sys.stderr)
        return 1
    try:
        config = config_from_args(args)
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        server = ChatServer(config, args.host, args.port, tls, args.tls_port, history, bus)
    except OSError as error:  # ssl.SSLError included: a bad certificate or key
        print(f"chat_server.py: cannot start on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        if history is not None:
            history.close()
        return 1
    if bus is not None:
        try:
            log.info("%s", bus.start(server.hub))
        except ClusterError as error:
            print(f"chat_server.py: {error}", file=sys.stderr)
            server.shutdown()
            return 1
    try:
        # Set both explicitly: a shell starting us in the background may have ignored SIGINT.
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        server.start()
        host, port = server.address
        tls_note = f", TLS on port {server.tls_address[1]}" if server.tls_address else ""
        print(f"chat_server listening on {host}:{port}{tls_note}, room {config.room} (Ctrl-C to stop)",
              flush=True)
        while True:  # the threads do the work; SIGINT or SIGTERM ends this wait
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        # A second Ctrl-C must not cut the shutdown short: it takes a couple of seconds at most.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.shutdown()
        if bus is not None:
            bus.close()  # after the last client: its QUIT reaches the other nodes
        if history is not None:
            history.close()  # after the last client: everything they were sent is stored
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
