"""A new connection the server refused because its connection slots are taken (53300).

PostgreSQL refuses a new connection with SQLSTATE 53300 (too_many_connections) when every slot of
``max_connections`` is taken, when only the ``superuser_reserved_connections`` are left for a role
that is not a superuser, and when the role's or the database's ``CONNECTION LIMIT`` is reached.
libpq reports a refused connection by its message alone (psycopg's error has no SQLSTATE then), so
the server's messages are what tells it: in English, and in every language of the PostgreSQL 15
message catalogs installed here (Debian's postgresql-15 ships them), as a server with another
``lc_messages`` writes them. A refusal comes before the connection's own settings apply, so
``options=-c lc_messages=C`` cannot make it English (nor may a role that is not a superuser set it).

:func:`refusal` says which limit it was, in a fixed sentence (no role or database name, no host:
the REST API shows it to anyone); :class:`LimitAwarePool` keeps the error of its latest failed
connection attempt, so that a request or a call that got no connection can say why.

why: the REST API answered "the database is unavailable" (its health too), the managers "the
database is unavailable: no working connection within 30 s", while the server answered everyone
who held a connection: an operator looked for a database that was down, not for the connections
that filled it
"""

from __future__ import annotations

import functools
import gettext
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

# SQLSTATE too_many_connections
TOO_MANY_CONNECTIONS = "53300"
# The server's message (its msgid in PostgreSQL 15) for each refusal of 53300 -> which limit it is.
_REFUSALS = (
    (
        "sorry, too many clients already",
        "every connection slot of the database server is taken (max_connections)",
    ),
    (
        "remaining connection slots are reserved for non-replication superuser connections",
        "only the connection slots the database server reserves for superusers are left "
        "(max_connections, less superuser_reserved_connections)",
    ),
    (
        # PostgreSQL 16's, for a server of your own (in English only: the catalogs here are 15's)
        "remaining connection slots are reserved for roles with the %s attribute",
        "only the connection slots the database server reserves for superusers are left "
        "(max_connections, less superuser_reserved_connections)",
    ),
    (
        'too many connections for role "%s"',
        "the database role has reached its CONNECTION LIMIT",
    ),
    (
        'too many connections for database "%s"',
        "the database has reached its CONNECTION LIMIT",
    ),
)
# The server's message catalogs (postgres-15.mo of each language), where Debian installs them.
CATALOGS = Path("/usr/share/locale")
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
    for patterns, limit in _refusal_patterns():
        if any(pattern.search(text) for pattern in patterns):
            return limit
    if error.sqlstate == TOO_MANY_CONNECTIONS:
        return "a connection limit of the database server is reached"
    return None


@functools.cache
def _refusal_patterns() -> tuple[tuple[tuple[re.Pattern[str], ...], str], ...]:
    """Each refusal's message in English and in every installed catalog's language, as patterns
    (a name the message quotes matches anything), with the limit it names.

    why: a server run with lc_messages = 'fr_FR.UTF-8' refuses with "désolé, trop de clients sont
    déjà connectés", and the CLI, the REST API and the notify worker then said only that the
    connection failed, not which limit to raise
    """
    catalogs = []
    for path in sorted(CATALOGS.glob("*/LC_MESSAGES/postgres-15.mo")):
        try:
            with path.open("rb") as file:
                catalogs.append(gettext.GNUTranslations(file))
        except (OSError, ValueError):
            continue  # an unreadable or damaged catalog: its language goes unrecognised
    return tuple(
        (
            tuple(
                re.compile(".*?".join(re.escape(part) for part in message.split("%s")), re.DOTALL)
                for message in dict.fromkeys([msgid, *(catalog.gettext(msgid) for catalog in catalogs)])
            ),
            limit,
        )
        for msgid, limit in _REFUSALS
    )


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
