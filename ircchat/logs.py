"""The server's one logger. Its records are escaped: text from the network never reaches a
console raw (a channel name or a quit reason can hold terminal escapes).
"""

from __future__ import annotations

import logging

from ircchat.protocol import escape_for_log

log = logging.getLogger("chat_server")


class _EscapingFilter(logging.Filter):
    """Escapes every record of this module's logger: text from the network is never logged raw."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = escape_for_log(record.getMessage()), None
        return True


log.addFilter(_EscapingFilter())
