"""Failure detection on PostgreSQL connections: TCP keepalives and ``tcp_user_timeout``.

Without them a connection whose packets are dropped (no FIN, no RST: a network cut, a server
host gone) blocks its thread until the kernel gives up, about 15 minutes for data not
acknowledged and hours for a connection waiting on an answer; a thread of the default executor
blocked there also holds up the event loop's shutdown (``llmgw serve`` would not stop). Imports
nothing heavy: the CLI's fast paths use it too.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["DEAD_CONNECTION_TIMEOUT", "tcp_checks", "with_tcp_checks"]

DEAD_CONNECTION_TIMEOUT = 30.0
"""``database.dead_connection_timeout``'s default: for connections opened without settings."""


def tcp_checks(
    seconds: float = DEAD_CONNECTION_TIMEOUT, given: Collection[str] = ()
) -> dict[str, int]:
    """libpq options that fail a call on a PostgreSQL connection gone silent within about
    ``seconds`` (``database.dead_connection_timeout``; 0: none), leaving out those in ``given``
    (set in the URL by the user).

    ``tcp_user_timeout`` bounds data sent and not acknowledged; the keepalive probes
    (after ``seconds / 2`` of silence, 3 probes ``seconds / 6`` apart) catch a connection
    waiting for an answer. Both are answered by the server's kernel however long a query runs,
    so a migration, a ``COPY`` or a fold is never cut by them.
    """
    if seconds <= 0:
        return {}
    whole = max(1, int(seconds))
    opts = {
        "keepalives": 1,
        "keepalives_idle": max(1, whole // 2),
        "keepalives_interval": max(1, whole // 6),
        "keepalives_count": 3,
        "tcp_user_timeout": int(seconds * 1000),
    }
    return {k: v for k, v in opts.items() if k not in given}


def with_tcp_checks(conninfo: str, seconds: float = DEAD_CONNECTION_TIMEOUT) -> str:
    """A libpq connection string (URL or ``key=value``) with ``tcp_checks`` added where it has
    none of its own, for connections opened with psycopg directly."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(conninfo, **tcp_checks(seconds, conninfo_to_dict(conninfo)))
