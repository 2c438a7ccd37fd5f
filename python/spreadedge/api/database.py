"""The API's connection pool and its one way of running a request against the database.

Pooled connections run as the database role ``spreadedge_app`` (``SET ROLE``), so that row-level
security applies even when the server logs in as a superuser, in UTC, with json results left as
text so the JSON built in SQL goes to the client unparsed. A request is one transaction: the
bearer token is validated by ``auth.validate_session`` (which scopes the transaction to its user)
and the endpoint's function runs in the same transaction, both sent in one pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from spreadedge import sqlcall

API_ROLE = "spreadedge_app"
_VALIDATE = sqlcall.select_rows("auth.validate_session", ["token"])


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("json", TextLoader)
    await conn.execute(sql.SQL("set role {}").format(sql.Identifier(API_ROLE)))
    await conn.execute("set timezone = 'UTC'")
    await conn.execute("select set_config('spreadedge.actor', 'api', false)")
    await conn.commit()


def make_pool(conninfo: str, *, min_size: int = 2, max_size: int = 10) -> AsyncConnectionPool:
    """A pool (not yet open) whose connections are set up for the API."""
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=_configure,
        timeout=5.0,
        name="spreadedge-api",
    )


async def call(
    pool: AsyncConnectionPool,
    function: str,
    arguments: Mapping[str, Any],
    *,
    token: str | None,
) -> Any:
    """The value of ``function(**arguments)``, run for the session of ``token`` (None: no session)."""
    query = sqlcall.select_value(function, arguments)
    async with pool.connection() as conn, conn.pipeline(), conn.transaction():
        if token is not None:
            await conn.execute(_VALIDATE, {"token": token})
        cursor = await conn.execute(query, dict(arguments))
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def rows(
    pool: AsyncConnectionPool, function: str, arguments: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of ``select * from function(**arguments)`` in one transaction, with no session."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(sqlcall.select_rows(function, arguments), dict(arguments))
        return await cursor.fetchall()
