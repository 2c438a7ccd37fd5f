"""Connections through a connection pooler (PgBouncer, and any proxy of its kind).

Behind a pooler in transaction pooling, a client connection is lent a server connection for one
transaction at a time: whatever a client sets for its *session* (``SET ROLE``, ``set_config(...,
false)``, a prepared statement) lands on the server connection of that transaction, is missing
from the next transaction's, and is found by the other clients that server connection serves next.

A pooler is detected on a new connection: the process id the server reported at the startup
(``conn.info.backend_pid``, from the cancel key) is the pooler's own invention, not the id of the
server process that runs the connection's statements (``pg_backend_pid()``). A connection behind
one sets what it needs for each transaction instead (:func:`pin_transaction`), never prepares a
statement, and keeps nothing in its session. See README, "Behind PgBouncer".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from spreadedge.deadline import SESSION_SETTINGS

_BACKEND_PID = sql.SQL("select pg_catalog.pg_backend_pid()")
# SESSION_SETTINGS that a transaction can set for itself: its isolation level is given by its BEGIN
# (the connection's isolation_level), as a set_config after BEGIN comes too late for it
TRANSACTION_SETTINGS: dict[str, str] = {
    name: value for name, value in SESSION_SETTINGS.items() if name != "default_transaction_isolation"
}


async def behind_pooler(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether ``conn`` reaches its server through a pooler (runs one statement)."""
    cursor = await conn.execute(_BACKEND_PID, prepare=False)
    row = await cursor.fetchone()
    return row is not None and row[0] != conn.info.backend_pid


def pin_transaction(settings: Mapping[str, str]) -> sql.Composed:
    """``select set_config(name, value, true), ...``: ``settings`` for the current transaction only,
    whatever server connection the pooler lent it."""
    return sql.SQL("select {}").format(
        sql.SQL(", ").join(
            sql.SQL("pg_catalog.set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
            for name, value in settings.items()
        )
    )
