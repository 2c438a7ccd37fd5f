"""The API's connection pool and its one way of running a request against the database.

Pooled connections run as the database role ``spreadedge_app`` (``SET ROLE``), so that row-level
security applies even when the server logs in as a superuser, in UTC, with the session settings
every spreadedge connection pins (``deadline.SESSION_SETTINGS``: DateStyle ISO, ...), with json
results left as text so the JSON built in SQL goes to the client unparsed. A request is one statement, in
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
connection is bounded by the wait for a connection (see :mod:`spreadedge.deadline`). A new
connection is given up after ``connect_timeout`` (that wait, unless the URL sets one).

Health answers within a bound of its own (``spreadedge serve --health-timeout``, a few seconds),
whatever the statement_timeout of history requests: its wait for a connection and its statement
share it (the statement's statement_timeout, transaction-local, is what is left of it), and a server
that does not answer is given up a second after it.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from spreadedge import pooler, sqlcall
from spreadedge.connection_limits import LimitAwarePool
from spreadedge.deadline import (
    PIN_SESSION,
    SERVER_CANCEL_MARGIN,
    Deadline,
    bounded_check,
    checks_within,
    connect_settings,
    tcp_settings,
)

API_ROLE = "spreadedge_app"
# the bind parameter of the bearer token, apart from the endpoint function's own arguments
TOKEN_PARAMETER = "session_token"
# Seconds a request's statement may run (a history page takes milliseconds), and a request may wait
# for a pooled connection, before it is answered 503.
STATEMENT_TIMEOUT = 30.0
POOL_TIMEOUT = 5.0
# Seconds health waits for a connection and its statement, all told, before it answers 503: an
# uptime checker's or a load balancer's probe waits a few seconds, not a history statement's 30.
HEALTH_TIMEOUT = 3.0
# Seconds the pool keeps trying to reconnect to a database that went away before it gives up that
# attempt (see make_pool).
RECONNECT_TIMEOUT = 1.0


class DatabaseTimeout(psycopg.OperationalError):
    """The database did not answer a request within its deadline (the statement_timeout and a
    second): the request was given up and its connection closed."""


class PoolBusy(PoolTimeout):
    """No connection came free in time because every one of the pool's is serving a request."""


class PoolRefused(PoolTimeout):
    """No connection came free in time, and the database refused the pool's latest attempt at a
    new one because a connection limit is reached (53300: max_connections, the reserved slots, a
    role's or the database's CONNECTION LIMIT); the message says which."""


class ApiPool(LimitAwarePool):
    """The pool, telling a request that got no connection whether every one of its connections is
    serving a request (PoolBusy), the database refuses new connections (PoolRefused) or it cannot
    be reached (PoolTimeout)."""

    # seconds the pool's connections cancel a statement after (statement_timeout; make_pool sets it)
    statement_timeout: float = STATEMENT_TIMEOUT
    # seconds health takes at most, the wait for a connection included (make_pool sets it)
    health_timeout: float = HEALTH_TIMEOUT
    # connections handed out and not yet given back
    serving: int = 0
    # the connections that reach the database through a pooler, and what each of their requests'
    # transactions sets first (make_pool sets them; see _configurer)
    pooled: weakref.WeakSet[psycopg.AsyncConnection[Any]]
    pin: sql.Composed

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
            # why: a server whose connection slots were all taken said "the database is
            # unavailable", in a request's 503 and in health, as if it were down
            refused = self.refused()
            if refused is not None:
                raise PoolRefused(refused) from exc
            raise
        self.serving += 1
        return conn

    async def putconn(self, conn: Any) -> None:
        self.serving -= 1
        await super().putconn(conn)


def _configurer(
    statement_timeout: float, pooled: weakref.WeakSet[psycopg.AsyncConnection[Any]]
) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.adapters.register_loader("json", TextLoader)
        # why: behind a pooler in transaction pooling (PgBouncer), the SET ROLE and the settings
        # below landed on whichever server connection the pooler lent: an operator's psql, a
        # migrate or a trading application sharing it then ran as spreadedge_app, wrote its audit
        # rows as 'api' and had its statements cut at 30 s; and a request on another server
        # connection ran as the login role (a superuser, whom row-level security does not bind),
        # or failed on a prepared statement of another client's. Each request then sets them for
        # its own transaction (_request_pin), and no statement is prepared.
        if await pooler.behind_pooler(conn):
            conn.prepare_threshold = None
            await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
            pooled.add(conn)
            return
        await conn.execute(sql.SQL("set role {}").format(sql.Identifier(API_ROLE)))
        await conn.execute("set timezone = 'UTC'")
        # DateStyle, IntervalStyle and the rest psycopg and the stored functions are written for
        await conn.execute(PIN_SESSION)
        await conn.execute("select set_config('spreadedge.actor', 'api', false)")
        # why: without a bound, a request waiting on a lock held it (and its connection) until the
        # lock went, however long, even after its client had given up; milliseconds, as an integer
        await conn.execute(
            "select set_config('statement_timeout', %s, false)", [_milliseconds(statement_timeout)]
        )
        await conn.commit()

    return configure


def _milliseconds(seconds: float) -> str:
    """A statement_timeout of ``seconds``: milliseconds, as an integer, at least one."""
    return f"{max(1, round(seconds * 1000))}ms"


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
    conninfo: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    statement_timeout: float = STATEMENT_TIMEOUT,
    health_timeout: float = HEALTH_TIMEOUT,
) -> ApiPool:
    """A pool (not yet open) whose connections are set up for the API, each statement cancelled
    after ``statement_timeout`` seconds, health's within ``health_timeout`` all told."""
    pooled: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()
    pool = ApiPool(
        conninfo,
        # why the least: spreadedge serve --pool-size 1 asks for a pool smaller than the usual minimum
        min_size=min(min_size, max_size),
        max_size=max_size,
        open=False,
        configure=_configurer(statement_timeout, pooled),
        check=_check,
        # TCP keepalives and tcp_user_timeout, unless the URL sets them; and a new connection given
        # up when a request would have stopped waiting for it (connect_timeout, unless the URL or
        # PGCONNECT_TIMEOUT sets one), so that the pool tries again
        kwargs={"autocommit": True, **tcp_settings(conninfo), **connect_settings(conninfo, POOL_TIMEOUT)},
        timeout=POOL_TIMEOUT,
        # why a second: psycopg_pool retries a failed connection after 1, 2, 4, 8 ... s up to this
        # long, and starts no other attempt meanwhile; at its default (5 min) reads stayed 503 for
        # up to as long as the outage had lasted, the database back. Given up after a second, an
        # attempt is made again for the next request that finds no connection
        reconnect_timeout=RECONNECT_TIMEOUT,
        name="spreadedge-api",
    )
    pool.statement_timeout = statement_timeout
    pool.health_timeout = health_timeout
    pool.pooled = pooled
    pool.pin = pooler.pin_transaction(
        {
            "role": API_ROLE,
            "TimeZone": "UTC",
            **pooler.TRANSACTION_SETTINGS,
            "spreadedge.actor": "api",
            "statement_timeout": _milliseconds(statement_timeout),
        }
    )
    return pool


@asynccontextmanager
async def _connection(
    pool: ApiPool, *, health: bool = False
) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], float]]:
    """A pooled connection for one request's statement, and the seconds the statement may run;
    given up a second after them: closed (the pool replaces it), and DatabaseTimeout raised.

    A request waits POOL_TIMEOUT for its connection, then its statement may run for the pool's
    statement_timeout. ``health``: the wait and the statement share the pool's health_timeout.

    why: a server that stopped answering (a stalled server process, a frozen host) never cancels
    the statement, and the request held its connection and its client forever; a few of them left
    every other request a 503 from the pool, and health hung with them
    """
    loop = asyncio.get_running_loop()
    bound, name = (
        (pool.health_timeout, "the health timeout")
        if health
        else (pool.statement_timeout, "the statement_timeout")
    )
    by = loop.time() + bound
    wait = min(POOL_TIMEOUT, bound) if health else POOL_TIMEOUT
    with checks_within(wait):
        conn = await pool.getconn(wait)
    statement = max(by - loop.time(), 0.001) if health else bound
    given_up = Deadline(conn, statement + SERVER_CANCEL_MARGIN)
    try:
        yield conn, statement
    except psycopg.Error as exc:
        if given_up.passed:
            raise DatabaseTimeout(
                f"the database did not answer within {bound + SERVER_CANCEL_MARGIN:g} s ({name} of "
                f"{bound:g} s and a second): the request was given up and its connection closed"
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
    async with _connection(pool) as (conn, _):
        cursor = await _execute(pool, conn, query, params)
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def _execute(
    pool: ApiPool, conn: psycopg.AsyncConnection[Any], query: sql.Composed, params: Mapping[str, Any]
) -> psycopg.AsyncCursor[Any]:
    """``conn.execute`` in autocommit, run again once, unprepared, if its prepared plan went stale.

    Behind a pooler, in a transaction that first sets the role and the settings (``pool.pin``).

    why: psycopg prepares a statement that ran 5 times on a connection, and a migration that
    re-creates its function with other result columns makes PostgreSQL refuse the prepared one
    (0A000, "cached plan must not change result type") on every run: login answered 500 on that
    connection until the pool retired it (an hour). In autocommit the refused statement committed
    nothing, so it is run again after DEALLOCATE ALL, which psycopg sees and forgets its
    prepared statements by. Preparation stays: the history reads are benchmarked.
    """
    if conn in pool.pooled:
        async with conn.transaction():
            await conn.execute(pool.pin)
            return await conn.execute(query, params)
    try:
        return await conn.execute(query, params)
    except psycopg.errors.FeatureNotSupported:
        await conn.execute("deallocate all")
        return await conn.execute(query, params)


@cache
def _query(function: str, arguments: tuple[str, ...], *, session: bool) -> sql.Composed:
    # why cached: an endpoint always passes the same argument names, and composing the call again
    # on every request was an eighth of the Python time a request took
    if session:
        return sqlcall.select_value_in_session(function, arguments, TOKEN_PARAMETER)
    return sqlcall.select_value(function, arguments)


async def rows(
    pool: ApiPool, function: str, arguments: Mapping[str, Any], *, health: bool = False
) -> list[tuple[Any, ...]]:
    """The rows of ``select * from function(**arguments)``, one statement, with no session.

    ``health``: within the pool's health_timeout, the wait for a connection included, the statement
    cancelled by the server at what is left of it (its own statement_timeout, transaction-local).
    """
    query = sqlcall.select_rows(function, arguments)
    async with _connection(pool, health=health) as (conn, seconds):
        if not health:
            cursor = await _execute(pool, conn, query, dict(arguments))
            return await cursor.fetchall()
        # why a transaction: the connection is in autocommit, where a transaction-local setting
        # (set_config(..., true), SET LOCAL) ends with its own statement; and the session's
        # statement_timeout is the history requests' (30 s), longer than a probe waits
        for retried in (False, True):
            try:
                async with conn.transaction():
                    if conn in pool.pooled:
                        await conn.execute(pool.pin)
                    await conn.execute(
                        "select set_config('statement_timeout', %s, true)", [_milliseconds(seconds)]
                    )
                    cursor = await conn.execute(query, dict(arguments))
                    return await cursor.fetchall()
            except psycopg.errors.FeatureNotSupported:
                # why once more: a stale prepared plan (see _execute); the rollback made psycopg
                # forget its prepared statements, and the read is run again, unprepared
                if retried:
                    raise
        raise AssertionError("unreachable")
