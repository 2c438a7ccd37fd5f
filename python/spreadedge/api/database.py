"""The API's connection pool and its one way of running a request against the database.

Pooled connections run as the database role ``spreadedge_app`` (``SET ROLE``), so that row-level
security applies even when the server logs in as a superuser, in UTC, with json results left as
text so the JSON built in SQL goes to the client unparsed. A request is one statement, in
autocommit, so one round trip and one transaction: the endpoint's function called from
``auth.validate_session`` (which checks the bearer token and scopes the statement's transaction
to its user) as ``select function(...) from auth.validate_session(token => ...)``. The scope is
transaction-local, so it ends with the statement and never follows the connection back into the
pool. (It was BEGIN, validate, call, COMMIT in a pipeline: about ten event-loop wake-ups a request.)

The pool checks a connection before handing it out when the server has written to it while it sat
idle (a restart's goodbye, or the end of the stream), so that after a database restart no request
gets a connection the restart closed, and a request otherwise stays one round trip.

Every statement is bounded by ``statement_timeout`` (``spreadedge serve --statement-timeout``): a
request that waits on a lock (a migration, a ``LOCK TABLE``, a ``VACUUM FULL``) or runs away is
cancelled by the database and answered 503, where it used to hold its connection and its client
for as long as the lock was held, and a few of them left every other request a 503 from the pool.
A server that does not answer at all (its server process stalled, the host frozen, a network
partition: its statement_timeout never fires) is given up a second later (``DatabaseTimeout``, a
503): the request's connection is closed, never handed out again, and the pool's check of an idle
connection is bounded by the wait for a connection (see :mod:`spreadedge.deadline`).
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from spreadedge import sqlcall
from spreadedge.deadline import SERVER_CANCEL_MARGIN, Deadline, bounded_check, checks_within, tcp_settings

API_ROLE = "spreadedge_app"
# the bind parameter of the bearer token, apart from the endpoint function's own arguments
TOKEN_PARAMETER = "session_token"
# Seconds a request's statement may run (a history page takes milliseconds), and a request may wait
# for a pooled connection, before it is answered 503.
STATEMENT_TIMEOUT = 30.0
POOL_TIMEOUT = 5.0
# Seconds the pool keeps trying to reconnect to a database that went away before it gives up that
# attempt (see make_pool).
RECONNECT_TIMEOUT = 1.0


class DatabaseTimeout(psycopg.OperationalError):
    """The database did not answer a request within its deadline (the statement_timeout and a
    second): the request was given up and its connection closed."""


class PoolBusy(PoolTimeout):
    """No connection came free in time because every one of the pool's is serving a request."""


class ApiPool(AsyncConnectionPool):
    """The pool, telling a request that got no connection whether every one of its connections is
    serving a request (PoolBusy) or the database cannot be reached (PoolTimeout)."""

    # seconds the pool's connections cancel a statement after (statement_timeout; make_pool sets it)
    statement_timeout: float = STATEMENT_TIMEOUT
    # connections handed out and not yet given back
    serving: int = 0

    async def getconn(self, timeout: float | None = None) -> Any:
        try:
            conn = await super().getconn(timeout)
        except PoolTimeout as exc:
            # why: both said "the database is unavailable", and health reported the database down,
            # while it answered every other client and only this server's connections were taken.
            # why counted, not the pool's size: that counts the connections being made too, and
            # with a frozen server, whose new connections never come, it said "busy" as well
            if self.serving >= self.max_size:
                raise PoolBusy(str(exc)) from exc
            raise
        self.serving += 1
        return conn

    async def putconn(self, conn: Any) -> None:
        self.serving -= 1
        await super().putconn(conn)


def _configurer(statement_timeout: float) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.adapters.register_loader("json", TextLoader)
        await conn.execute(sql.SQL("set role {}").format(sql.Identifier(API_ROLE)))
        await conn.execute("set timezone = 'UTC'")
        await conn.execute("select set_config('spreadedge.actor', 'api', false)")
        # why: without a bound, a request waiting on a lock held it (and its connection) until the
        # lock went, however long, even after its client had given up; milliseconds, as an integer
        timeout_ms = max(1, round(statement_timeout * 1000))
        await conn.execute("select set_config('statement_timeout', %s, false)", [f"{timeout_ms}ms"])
        await conn.commit()

    return configure


async def _check_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise if an idle connection is no longer usable; the pool then replaces it.

    An idle connection has nothing to read (every request reads its whole answer) unless the server
    sent something unasked: the FATAL admin_shutdown of a restart or a terminated backend, then the
    end of the stream. Only then is psycopg_pool's check (a round trip) run.
    """
    # why not check_connection on every connection: a request would cost two round trips, not one
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


# why bounded: a connection whose server stopped answering after it wrote never answers the round
# trip; given up at the request's wait for a connection (checks_within in _connection), the pool
# discards it
_check = bounded_check(_check_idle)


def make_pool(
    conninfo: str, *, min_size: int = 2, max_size: int = 10, statement_timeout: float = STATEMENT_TIMEOUT
) -> ApiPool:
    """A pool (not yet open) whose connections are set up for the API, each statement cancelled
    after ``statement_timeout`` seconds."""
    pool = ApiPool(
        conninfo,
        # why the least: spreadedge serve --pool-size 1 asks for a pool smaller than the usual minimum
        min_size=min(min_size, max_size),
        max_size=max_size,
        open=False,
        configure=_configurer(statement_timeout),
        check=_check,
        # TCP keepalives and tcp_user_timeout, unless the URL sets them
        kwargs={"autocommit": True, **tcp_settings(conninfo)},
        timeout=POOL_TIMEOUT,
        # why a second: psycopg_pool retries a failed connection after 1, 2, 4, 8 ... s up to this
        # long, and starts no other attempt meanwhile; at its default (5 min) reads stayed 503 for
        # up to as long as the outage had lasted, the database back. Given up after a second, an
        # attempt is made again for the next request that finds no connection
        reconnect_timeout=RECONNECT_TIMEOUT,
        name="spreadedge-api",
    )
    pool.statement_timeout = statement_timeout
    return pool


@asynccontextmanager
async def _connection(pool: ApiPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection for one request's statement, given up a second after the statement's
    statement_timeout: closed (the pool replaces it), and DatabaseTimeout raised.

    why: a server that stopped answering (a stalled server process, a frozen host) never cancels
    the statement, and the request held its connection and its client forever; a few of them left
    every other request a 503 from the pool, and health hung with them
    """
    with checks_within(POOL_TIMEOUT):
        conn = await pool.getconn()
    seconds = pool.statement_timeout + SERVER_CANCEL_MARGIN
    given_up = Deadline(conn, seconds)
    try:
        yield conn
    except psycopg.Error as exc:
        if given_up.passed:
            raise DatabaseTimeout(
                f"the database did not answer within {seconds:g} s (the statement_timeout of "
                f"{pool.statement_timeout:g} s and a second): the request was given up and its "
                "connection closed"
            ) from exc
        raise
    finally:
        given_up.cancel()
        try:
            if given_up.passed:
                # why: in an unknown state (a statement unanswered), it must never serve another request
                await conn.close()
        finally:
            await pool.putconn(conn)


async def call(
    pool: ApiPool,
    function: str,
    arguments: Mapping[str, Any],
    *,
    token: str | None,
) -> Any:
    """The value of ``function(**arguments)``, run for the session of ``token`` (None: no session)."""
    query = _query(function, tuple(arguments), session=token is not None)
    params = dict(arguments)
    if token is not None:
        params[TOKEN_PARAMETER] = token
    async with _connection(pool) as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
    return None if row is None else row[0]


@cache
def _query(function: str, arguments: tuple[str, ...], *, session: bool) -> sql.Composed:
    # why cached: an endpoint always passes the same argument names, and composing the call again
    # on every request was an eighth of the Python time a request took
    if session:
        return sqlcall.select_value_in_session(function, arguments, TOKEN_PARAMETER)
    return sqlcall.select_value(function, arguments)


async def rows(pool: ApiPool, function: str, arguments: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of ``select * from function(**arguments)``, one statement, with no session."""
    async with _connection(pool) as conn:
        cursor = await conn.execute(sqlcall.select_rows(function, arguments), dict(arguments))
        return await cursor.fetchall()
