"""A new connection the server refused because its connection slots are taken (53300).

PostgreSQL refuses a new connection with SQLSTATE 53300 (too_many_connections) when every slot of
``max_connections`` is taken, when only the ``superuser_reserved_connections`` are left for a role
that is not a superuser, and when the role's or the database's ``CONNECTION LIMIT`` is reached.
libpq reports a refused connection by its message alone (psycopg's error has no SQLSTATE then), so
the server's messages, as PostgreSQL 15 writes them in English (the embedded cluster's language),
are what tells it; under another ``lc_messages`` a refusal reads as any other failure to connect.

:func:`refusal` says which limit it was, in a fixed sentence (no role or database name, no host:
the REST API shows it to anyone); :class:`LimitAwarePool` keeps the error of its latest failed
connection attempt, so that a request or a call that got no connection can say why.

why: the REST API answered "the database is unavailable" (its health too), the managers "the
database is unavailable: no working connection within 30 s", while the server answered everyone
who held a connection: an operator looked for a database that was down, not for the connections
that filled it
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

# SQLSTATE too_many_connections
TOO_MANY_CONNECTIONS = "53300"
# The server's message for each refusal of 53300 (PostgreSQL 15) -> which limit it is.
_REFUSALS = (
    (
        re.compile(r"sorry, too many clients already"),
        "every connection slot of the database server is taken (max_connections)",
    ),
    (
        re.compile(r"remaining connection slots are reserved for"),
        "only the connection slots the database server reserves for superusers are left "
        "(max_connections, less superuser_reserved_connections)",
    ),
    (
        re.compile(r'too many connections for role "'),
        "the database role has reached its CONNECTION LIMIT",
    ),
    (
        re.compile(r'too many connections for database "'),
        "the database has reached its CONNECTION LIMIT",
    ),
)
# What to do about it, for a person (the CLI's hint, the notify worker's log line).
HINT = (
    "the server refuses new connections until one ends: close idle sessions (pg_stat_activity), or "
    "raise the limit (max_connections, ALTER ROLE or ALTER DATABASE ... CONNECTION LIMIT); then retry"
)


def refusal(error: BaseException | None) -> str | None:
    """Which connection limit refused ``error``'s connection (a fixed sentence), else None."""
    # why only without a SQLSTATE or with 53300: a refused connection has none, and another
    # error's message may quote these words
    if not isinstance(error, psycopg.Error) or error.sqlstate not in (None, TOO_MANY_CONNECTIONS):
        return None
    text = str(error)
    for pattern, limit in _REFUSALS:
        if pattern.search(text):
            return limit
    if error.sqlstate == TOO_MANY_CONNECTIONS:
        return "a connection limit of the database server is reached"
    return None


def refused(error: BaseException | None) -> str | None:
    """The sentence "the database refuses new connections: <which limit>" for a refusal (53300),
    else None."""
    limit = refusal(error)
    return None if limit is None else f"the database refuses new connections: {limit}"


class LimitAwarePool(AsyncConnectionPool):
    """An async pool that keeps the error of its latest failed connection attempt
    (``connect_error``; None once an attempt succeeds), to tell why it has no connection."""

    connect_error: Exception | None = None

    # why psycopg_pool's private _connect (psycopg-pool is pinned in pyproject.toml): every new
    # connection of the pool is made there, and the pool logs a failure without keeping it
    # (tests/test_connection_limits_hunt.py fails if it no longer sees the refusals)
    async def _connect(self, timeout: float | None = None) -> Any:
        try:
            conn = await super()._connect(timeout)
        except Exception as exc:
            self.connect_error = exc
            raise
        self.connect_error = None
        return conn

    def refused(self) -> str | None:
        """Why the latest connection attempt failed when a connection limit refused it, else None."""
        return refused(self.connect_error)
