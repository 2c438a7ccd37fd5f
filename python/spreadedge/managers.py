"""The seeds' persistent managers, as thin async wrappers over the SQL API.

    manager = PersistentOrderManager(config)
    await manager.start()
    order = await manager.place_order(OrderRequest(strategy="arb", exchange="binance", ...))
    orders = await manager.get_active_orders()

Every method is one call of a stored function (``trading.place_order``, ``record_fill``, ...) or one
read of a view (``trading.active_orders``, ``open_positions``); a write and the read of what it
wrote share one transaction. Nothing is kept in memory: a restarted manager sees exactly what the
database holds. Errors come back as the project's exception classes (:mod:`spreadedge.errors`), and a
database that cannot be reached, or that dropped the connection, as :class:`DatabaseUnavailable`.
The managers never retry a call: ``DatabaseUnavailable.maybe_committed`` tells whether the lost
call may have been committed, and so whether only an idempotent call may be retried.

A call answers within ``ManagerConfig.call_timeout`` of having its connection, whatever the server
does: the server cancels a statement a second before (``statement_timeout``), and a server that
does not answer at all (a stalled backend, a frozen host, a network partition) is given up at the
deadline, its connection closed, never handed out again. Both raise :class:`DatabaseTimeout`; a
server that refuses writes (a standby, a read-only database) :class:`DatabaseReadOnly`; a server
whose disk is full (53100, its data directory's or its pg_wal's) :class:`DatabaseFull`.

The pool checks each connection before handing it out, so the first call after a database restart
gets a new connection rather than one the restart closed.

A manager's pool serves the event loop it was started in. Started in a loop that has ended (an
``asyncio.run()`` per call), the manager closes that pool's connections and opens a new pool in the
loop of its next call; called from a loop running in another thread, it raises RuntimeError.

Money and quantities are Decimal in and out (a float is refused with TypeError: it is not exact;
a Decimal PostgreSQL's numeric cannot hold with InvalidArgument naming the argument).
Times come back timezone-aware in UTC, whatever the server's TimeZone; a naive datetime given
means UTC, as in the CLI and the REST API.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from spreadedge import errors, pooler, sqlcall
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
from spreadedge.settings import CHECKOUT_DIR, Settings, code_sql_dir, load_settings

T = TypeVar("T")

# The checkout this code lives in (python/spreadedge/ -> the repository root) when it runs from one;
# installed, its migrations/ are the package's own (settings.code_sql_dir()).
CODE_PROJECT_DIR = CHECKOUT_DIR
# Server errors that mean the session is gone: admin_shutdown, crash_shutdown, cannot_connect_now.
_SESSION_GONE = frozenset({"57P01", "57P02", "57P03"})
# Seconds the pool keeps retrying a connection to a database that is down before it gives that
# attempt up, and that a call waits for a connection before it asks the pool again.
# why short: psycopg_pool retries a failed connection after 1, 2, 4, 8 ... s (up to its
# reconnect_timeout, 5 min by default) and starts no other attempt meanwhile, so after an outage of
# a minute the calls went on failing for up to a minute more with the database back
_RECONNECT_SECONDS = 1.0
# Server errors that are the server's answer, not a lost connection: query_canceled,
# read_only_sql_transaction (a standby, or a database set read-only) and disk_full.
_QUERY_CANCELED = "57014"
_READ_ONLY = "25006"
_DISK_FULL = "53100"
# What the caller may retry when a call may have been committed.
_IDEMPOTENT = (
    "place_order with the same client_order_id (it returns the order if it was placed), record_fill "
    "and record_exchange_fill with the same exchange_trade_id, record_fill_fee with the same fee, "
    "cancel_order, amend_order (the values the order already has change nothing)"
)
# lock_not_available: a lock_timeout the database, the role or the URL sets gave up the call's wait
_LOCK_NOT_AVAILABLE = "55P03"


class DatabaseUnavailable(psycopg.OperationalError):
    """The database cannot be reached, or dropped the connection: retry later.

    ``maybe_committed`` is True when the connection was lost while the call committed: the server
    may have committed it without the reply reaching this process. Retrying such a call is safe
    when it is idempotent (place_order with the same client_order_id, record_fill with the same
    exchange_trade_id, cancel_order, amend_order); a place_order without a client_order_id would
    place a second order. False: nothing of the call was committed.

    An OperationalError, as psycopg raised before, so code that caught that still catches this.
    The message never holds the connection string.
    """

    maybe_committed: bool = False


class DatabaseTimeout(DatabaseUnavailable):
    """The call did not finish in time: its deadline (``ManagerConfig.call_timeout``) passed and its
    connection was closed (``sqlstate`` None), or the server cancelled its statement (``sqlstate``
    57014: the managers' statement_timeout, or an operator's pg_cancel_backend; 55P03: a
    lock_timeout set on the database, the role or the URL). The message names the row lock the
    call waited for when the server says (a transaction left open in psql holding a position).

    ``maybe_committed`` as for :class:`DatabaseUnavailable`: True only when the deadline passed
    while the call committed, so its outcome is unknown.
    """


class DatabaseReadOnly(DatabaseUnavailable):
    """The database refuses writes (``sqlstate`` 25006): a standby, or a database set read-only, as
    during a failover. Nothing of the call was committed; reads go on."""


class DatabaseFull(DatabaseUnavailable):
    """The database server's disk is full (``sqlstate`` 53100, disk_full): it cannot write what the
    call needs. The message is the server's ("could not extend file ...: No space left on device").

    A full data directory fails the statement (or the commit) with an ERROR: the transaction rolled
    back, nothing of the call was committed (``maybe_committed`` False), reads go on, and the same
    call succeeds once space is freed. A full pg_wal is a PANIC (``diag.severity_nonlocalized``):
    the server cannot write WAL, stops, and does not start again until space is freed and it is
    started. ``maybe_committed`` is then True when the call was committing: the commit record may
    have been written to a WAL file before the server failed to write what followed it, and crash
    recovery replays it; retry only an idempotent call. A PANIC before the commit committed nothing.
    """


def _connection_lost(error: psycopg.Error) -> bool:
    """Whether an error means no working connection, rather than something the statement did."""
    if isinstance(error, PoolTimeout):
        return True
    if error.sqlstate:
        return error.sqlstate.startswith("08") or error.sqlstate in _SESSION_GONE
    # why: without a SQLSTATE, an OperationalError is libpq losing the server ("server closed the
    # connection unexpectedly", "the connection is lost")
    return isinstance(error, psycopg.OperationalError)


def _unavailable(
    error: psycopg.Error, timeout: float, committing: bool = False, refused: str | None = None
) -> DatabaseUnavailable:
    """``refused``: why the database refused the pool's latest new connection (a connection limit)."""
    if isinstance(error, PoolTimeout):
        # why say it: with every connection slot of the server taken, a call said only that no
        # connection came, as if the database were down
        why = f"; {refused}" if refused is not None else ""
        return DatabaseUnavailable(
            f"the database is unavailable: no working connection within {timeout:g} s{why}"
        )
    if committing:
        # why say so: the server may have committed before the connection was lost, and a caller
        # told only "unavailable, retry" placed a second order when it retried one without a
        # client_order_id
        unavailable = DatabaseUnavailable(
            f"the database is unavailable: the connection was lost while committing "
            f"({type(error).__name__}), so the call may have been committed"
        )
        unavailable.maybe_committed = True
        return unavailable
    return DatabaseUnavailable(
        f"the database is unavailable: the connection was lost ({type(error).__name__}); "
        "nothing of the call was committed"
    )


def _statement_timeout(call_timeout: float) -> float:
    """The server's statement_timeout for a call deadline: a second less (half of it, below 2 s)."""
    return max(call_timeout - SERVER_CANCEL_MARGIN, call_timeout / 2)


def _timed_out(seconds: float, setting: str, committing: bool) -> DatabaseTimeout:
    """The error of a call whose deadline passed: its connection has been closed."""
    if committing:
        # why say what is safe: the caller cannot tell whether the order was placed, and a placement
        # retried with the same client_order_id returns the order already placed instead of a second
        timed_out = DatabaseTimeout(
            f"the database did not answer within {seconds:g} s (ManagerConfig.{setting}) while the call "
            "committed: its connection was closed and the call may or may not have been committed. "
            f"Retrying is safe for an idempotent call: {_IDEMPOTENT}"
        )
        timed_out.maybe_committed = True
        return timed_out
    return DatabaseTimeout(
        f"the database did not answer within {seconds:g} s (ManagerConfig.{setting}): the call was "
        "given up and its connection closed before it committed, so nothing of it was committed"
    )


def _refused(error: psycopg.Error, call_timeout: float, committing: bool) -> DatabaseUnavailable | None:
    """The managers' error for the server's 57014, 55P03, 25006 or 53100 (the SQLSTATE and diag
    kept), else None.

    why not ``maybe_committed`` for 57014 and 25006: a cancelled statement aborts its transaction,
    and a read-only one writes nothing, even when either happens at the commit (53100: _disk_full)
    """
    primary = _primary(error) + _lock_wait(error)
    if error.sqlstate == _DISK_FULL:
        return _disk_full(error, committing)
    if error.sqlstate == _QUERY_CANCELED:
        return DatabaseTimeout(
            f"the database cancelled the call: {primary} (the managers' statement_timeout is "
            f"{_statement_timeout(call_timeout):g} s, one second less than ManagerConfig.call_timeout); "
            "nothing of the call was committed",
            info=error.pgresult,
        )
    # why: a lock_timeout set on the database or the role (a guard against sessions left open in
    # psql) gave the caller psycopg's raw LockNotAvailable, which none of the managers' classes
    # catches and which has no maybe_committed, where the statement_timeout's wait gave DatabaseTimeout
    if error.sqlstate == _LOCK_NOT_AVAILABLE:
        return DatabaseTimeout(
            f"the database cancelled the call: {primary} (a lock_timeout set on the database, the role "
            "or the connection); nothing of the call was committed",
            info=error.pgresult,
        )
    if error.sqlstate == _READ_ONLY:
        return DatabaseReadOnly(
            f"the database refuses writes: {primary} (a standby, or a database set read-only, as during "
            "a failover); nothing of the call was committed: retry once it takes writes again",
            info=error.pgresult,
        )
    return None


def _disk_full(error: psycopg.Error, committing: bool) -> DatabaseFull:
    """The managers' error for the server's 53100.

    why the severity decides: an ERROR (a data file that cannot grow, at a statement or at the
    commit) rolls the transaction back. PostgreSQL writes and flushes WAL, the commit record
    included, inside critical sections, where a failed write is a PANIC; the WAL the commit's flush
    wrote before the write that failed (the commit record among it) is replayed when the server
    starts again, so a PANIC while committing leaves the outcome unknown
    """
    primary = _primary(error)
    if error.diag.severity_nonlocalized != "PANIC":
        return DatabaseFull(
            f"the database server's disk is full: {primary}; nothing of the call was committed: retry "
            "once space is freed",
            info=error.pgresult,
        )
    # why say to start it: its restart after the crash fails too, for want of room for WAL
    stopped = (
        f"the database server's disk is full: {primary}; the server stopped (PANIC): free space and start it"
    )
    if not committing:
        return DatabaseFull(f"{stopped}; nothing of the call was committed", info=error.pgresult)
    full = DatabaseFull(
        f"{stopped}; it stopped while the call committed, so the call may or may not have been committed. "
        f"Once it runs again, retrying is safe for an idempotent call: {_IDEMPOTENT}",
        info=error.pgresult,
    )
    full.maybe_committed = True
    return full


# The pool's check of a connection before handing it out, given up at the call's deadline
# (checks_within in _transaction).
_check = bounded_check(AsyncConnectionPool.check_connection)


@dataclass(frozen=True)
class ManagerConfig:
    """Where the managers' database is and how they connect to it."""

    database_url: str | None = None  # None: DATABASE_URL or the embedded cluster, as the CLI does
    actor: str = "managers"  # recorded as spreadedge.actor in the audit log
    min_connections: int = 1
    max_connections: int = 4
    # None: load_settings() of SPREADEDGE_PROJECT_DIR; else of the checkout this code lives in
    # (CODE_PROJECT_DIR); installed, of the current directory (its spreadedge.toml and .spreadedge/)
    # with the package's own SQL. Never the current directory's migrations/.
    settings: Settings | None = None
    timeout: float = 30.0  # seconds start() and a call wait for a working connection
    health_timeout: float = 5.0  # seconds health_check() waits before it reports the database down
    # seconds a call's transaction may take once it has its connection; then it raises DatabaseTimeout
    call_timeout: float = 10.0

    def __repr__(self) -> str:
        # why: a config is logged and shown in tracebacks; its URL's password must not be
        from spreadedge.db import redact

        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if self.database_url is not None:
            fields["database_url"] = redact(self.database_url, self.database_url)
        if self.settings is not None and self.settings.database_url is not None:
            url = self.settings.database_url
            fields["settings"] = replace(self.settings, database_url=redact(url, url))
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    def resolved_settings(self) -> Settings:
        if self.settings is not None:
            return self.settings.with_database_url(self.database_url)
        if os.environ.get("SPREADEDGE_PROJECT_DIR"):
            settings = load_settings()
        elif code_sql_dir() == CODE_PROJECT_DIR:
            settings = load_settings(CODE_PROJECT_DIR)
        else:
            # why: installed, CODE_PROJECT_DIR is a directory of the virtual environment (its
            # .spreadedge/ and migrations/ meant nothing: the health check reported "no migrations
            # directory"); the application's directory is where its settings and cluster are
            settings = replace(load_settings(), sql_dir=code_sql_dir())
        return settings.with_database_url(self.database_url)


@dataclass(frozen=True)
class OrderRequest:
    """An order to place: the arguments of ``trading.place_order`` (price None = market order)."""

    strategy: str
    exchange: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal | None = None
    order_type: str | None = None
    client_order_id: str | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True)
class PositionAllocation:
    """Capital allocated to a position: opened by placing its entry order."""

    strategy: str
    exchange: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal | None = None
    client_order_id: str | None = None

    def entry_order(self) -> OrderRequest:
        return OrderRequest(**asdict(self))


@dataclass(frozen=True)
class Order:
    """An order as ``trading.order_history`` shows it."""

    order_id: int
    created_at: datetime
    strategy: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    status: str
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    client_order_id: str | None
    exchange_order_id: str | None
    status_reason: str | None
    updated_at: datetime
    # liquidation, adl, settlement or delisting: the exchange made the fill (trading.record_exchange_fill)
    exchange_initiated: str | None = None


@dataclass(frozen=True)
class Amendment:
    """What ``trading.amend_order`` did: amended (also when the order already had the values), or
    refused by a risk limit with its reason; and the order after the call."""

    amended: bool
    reason: str | None
    order: Order


@dataclass(frozen=True)
class Position:
    """A position as ``trading.position_summary`` shows it (marked at the latest market price)."""

    strategy: str
    exchange: str
    symbol: str
    market_type: str
    quantity: Decimal
    avg_entry_price: Decimal | None
    mark_price: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl_gross: Decimal
    fees_paid: Decimal
    funding: Decimal
    realized_pnl: Decimal
    trade_count: int
    opened_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class PnlRow:
    """A row of ``trading.pnl_summary``."""

    strategy_name: str | None
    exchange: str | None
    symbol: str | None
    day: date | None
    quote_asset: str
    trades: int
    volume: Decimal
    notional: Decimal
    fees: Decimal
    realized_pnl_gross: Decimal
    funding: Decimal
    realized_pnl: Decimal
    # of the positions open now: None for a period ending at or before now, on a day row before
    # today's, or when a position of the group has no mark
    unrealized_pnl: Decimal | None


@dataclass(frozen=True)
class HealthCheck:
    """A row of ``ops.health``."""

    check_name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    """``ops.health``: healthy when every check is ok."""

    healthy: bool
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)


# What PostgreSQL's numeric holds: this many digits before the decimal point, and after it.
_NUMERIC_INTEGER_DIGITS = 131072
_NUMERIC_FRACTION_DIGITS = 16383


def _fits_numeric(value: Decimal) -> bool:
    """Whether PostgreSQL's numeric can hold ``value`` (NaN and the infinities it can: the SQL
    refuses them by name where they do not belong)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN or an infinity
        return True
    # why a zero's magnitude is not looked at: 0E+200000 is 0 to the server, 0E-20000 is not held
    digits_before = 0 if value.is_zero() else value.adjusted() + 1
    return -exponent <= _NUMERIC_FRACTION_DIGITS and digits_before <= _NUMERIC_INTEGER_DIGITS


def _short(value: Decimal) -> str:
    """``value`` as written, or in four significant digits when that is long (it may have 100,000)."""
    written = str(value)
    return written if len(written) <= 32 else f"{value:.3E}"


def _given(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that were given; the SQL defaults apply to the others.

    A float is refused (TypeError): money and quantities are Decimal, and a float is not exact; so
    is a bool, which no argument of the SQL API takes. A text holding a NUL character, or a Decimal
    that PostgreSQL's numeric cannot hold, is refused with InvalidArgument (22S09) naming the
    argument, and an order id no bigint can hold with UnknownOrder (23S04), as the SQL refuses every
    other id.
    """
    for name, value in arguments.items():
        if isinstance(value, float):
            raise TypeError(f"{name} must be a Decimal, not the float {value!r} (a float is not exact)")
        # why: a bool is an int to Python (so it passed the order id check below) and is sent as a
        # PostgreSQL boolean: the call failed with 42883 (no trading.place_order(quantity => boolean))
        if isinstance(value, bool):
            raise TypeError(f"{name} must not be a bool, got {value!r}")
        # why: the server refuses such a value while binding it, before any function runs, with a
        # bare 22003 (value overflows numeric format) that names no argument
        if isinstance(value, Decimal) and not _fits_numeric(value):
            raise errors.BY_NAME["invalid_argument"](
                f"{name} {_short(value)} is beyond PostgreSQL numeric: at most {_NUMERIC_INTEGER_DIGITS} "
                f"digits before the decimal point and {_NUMERIC_FRACTION_DIGITS} after it"
            )
        # why: psycopg refuses a NUL before sending, with a DataError that names no argument and is
        # none of the project's exception classes (the REST API answers a 400 naming the parameter)
        if isinstance(value, str) and "\x00" in value:
            raise errors.BY_NAME["invalid_argument"](
                f"{name} holds a NUL character, which PostgreSQL text cannot store"
            )
        # why: psycopg sends an int beyond bigint as numeric, and no trading function takes a numeric
        # order id: the call failed with 42883 (function does not exist) instead of unknown_order
        if name == "order_id" and isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise errors.BY_NAME["unknown_order"](f"order {value} does not exist")
    return {name: value for name, value in arguments.items() if value is not None}


def _view(name: str, where: Sequence[str], order_by: str | Sequence[str]) -> sql.Composed:
    """``select * from <view> where a = %(a)s and ... order by <column>, ...``."""
    schema, view = name.split(".")
    conditions = [sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in where]
    columns = [order_by] if isinstance(order_by, str) else order_by
    return sql.SQL("select * from {} {} order by {}").format(
        sql.Identifier(schema, view),
        sql.SQL("where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL(""),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
    )


class _Manager:
    """A connection pool and the one way of calling the database."""

    def __init__(self, config: ManagerConfig | None = None) -> None:
        self.config = config or ManagerConfig()
        self._pool: LimitAwarePool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop the pool serves
        self._left_behind = False  # whether the pool of an event loop that ended was dropped
        self._in_use = 0  # connections this manager's calls hold right now
        # why: opening awaits, so concurrent start()s would each make a pool and close() only the last
        self._opening = asyncio.Lock()
        self._connections: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()
        # the connections that reach the database through a pooler, and what each of their
        # transactions sets first (see _open)
        self._pooled: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()
        self._pin: sql.Composed | None = None

    def _pool_here(self) -> LimitAwarePool | None:
        """The pool, when it serves the running event loop (None: not opened in this loop).

        A pool serves the event loop that opened it: its waits, its locks and the tasks that replace a
        connection a database restart closed all belong to that loop. The pool of a loop that no
        longer runs (an ``asyncio.run()`` that returned) is dropped, and its connections closed; a
        pool whose loop still runs, in another thread, is refused with RuntimeError.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return self._pool
        # why also while opening: a pool is on its way in that loop
        theirs = self._pool is not None or self._opening.locked()
        if theirs and self._loop is not None and self._loop.is_running():
            raise RuntimeError(
                f"{type(self).__name__} was started in an event loop that runs in another thread: "
                "a manager serves one event loop, give each loop its own manager"
            )
        # why: the tasks of the old loop's pool ended with it, so a connection a database restart
        # closed was never replaced: every call, and every health check, waited out its timeout as
        # unavailable, the database up; and its asyncio locks raised or hung in this loop
        if self._pool is not None:
            self._left_behind = True
            for conn in list(self._connections):
                conn.pgconn.finish()  # why not conn.close(): it awaits, in the loop that ended
        self._loop, self._pool, self._in_use, self._opening = loop, None, 0, asyncio.Lock()
        self._connections = weakref.WeakSet()
        self._pooled = weakref.WeakSet()
        return None

    async def _open(self, timeout: float | None = None) -> None:
        """Open the pool once, waiting ``timeout`` (default config.timeout) s for its connections."""
        self._pool_here()
        async with self._opening:
            if self._pool is not None:
                return
            from spreadedge import db  # here: resolving the URL may start the embedded cluster

            actor = self.config.actor
            connections = self._connections
            # why before the pool: every connection's configure failed on it, and the call waited
            # its whole timeout to say the database was unavailable, the database up
            _given({"actor": actor})
            statement_timeout = f"{round(_statement_timeout(self.config.call_timeout) * 1000)}ms"
            pooled = self._pooled
            # what configure sets for the session, for one transaction (behind a pooler)
            self._pin = pooler.pin_transaction(
                {
                    "spreadedge.actor": actor,
                    "statement_timeout": statement_timeout,
                    "TimeZone": "UTC",
                    **pooler.TRANSACTION_SETTINGS,
                }
            )

            async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
                connections.add(conn)
                # why: behind a pooler in transaction pooling (PgBouncer), the session settings
                # below landed on whichever server connection the pooler lent: another client's
                # audit rows were written as this manager's actor, and this manager's calls ran
                # with another client's (or with none); each call sets them for its own
                # transaction instead (_transaction), and prepares no statement (another client's
                # server connection does not have it, or has its own of that name)
                if await pooler.behind_pooler(conn):
                    await conn.commit()
                    conn.prepare_threshold = None
                    await conn.set_isolation_level(psycopg.IsolationLevel.READ_COMMITTED)
                    pooled.add(conn)
                    return
                await conn.execute("select set_config('spreadedge.actor', %s, false)", [actor])
                # why: a server that answers cancels a call's statement before the call's deadline
                # (a lock held, a stalled scan), so the call gets its answer and keeps the connection
                await conn.execute("select set_config('statement_timeout', %s, false)", [statement_timeout])
                # why: times are shown in UTC whatever the server's TimeZone, and a naive datetime
                # given (executed_at, since, until) means UTC, as in the CLI and the REST API
                await conn.execute("set timezone = 'UTC'")
                # why: psycopg reads times in DateStyle ISO alone, and the stored functions are
                # written for READ COMMITTED (see deadline.SESSION_SETTINGS)
                await conn.execute(PIN_SESSION)
                await conn.commit()

            wait = self.config.timeout if timeout is None else timeout
            conninfo = db.conninfo(self.config.resolved_settings())
            pool = LimitAwarePool(
                conninfo,
                # TCP keepalives and tcp_user_timeout, unless the URL sets them; and a new
                # connection given up after a call's time (connect_timeout, unless the URL or
                # PGCONNECT_TIMEOUT sets one): a server that does not complete its startup by then
                # would not answer a call either, and the pool tries again
                kwargs={**tcp_settings(conninfo), **connect_settings(conninfo, self.config.call_timeout)},
                min_size=self.config.min_connections,
                max_size=self.config.max_connections,
                configure=configure,
                # why: after a database restart the idle connections are closed; checked, each is
                # replaced instead of failing the call it was handed to
                check=_check,
                timeout=self.config.timeout,
                open=False,
                name=type(self).__name__,
            )
            try:
                await pool.open(wait=True, timeout=wait)
            except PoolTimeout as exc:  # the pool has closed itself
                raise _unavailable(exc, wait, refused=pool.refused()) from exc
            except BaseException:
                await pool.close()
                raise
            # why only once open: an attempt given up is retried only for a call that asks, and
            # the first connections are waited for by the open alone
            pool.reconnect_timeout = _RECONNECT_SECONDS
            self._pool, self._left_behind = pool, False

    async def close(self) -> None:
        """Close the pool; the manager can be started again."""
        self._pool_here()
        self._left_behind = False
        async with self._opening:
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _transaction(
        self, timeout: float | None = None, deadline: float | None = None, setting: str = "call_timeout"
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in a transaction; database errors as the project's exceptions.

        ``timeout``: seconds to wait for a working connection (default config.timeout).
        ``deadline``: seconds the transaction may take from then (default config.call_timeout, the
        ManagerConfig ``setting`` named in the error); then its connection is closed and discarded,
        and the call raises DatabaseTimeout.
        """
        pool = self._pool_here()
        if pool is None and self._left_behind:
            # why: started, in a loop that has ended (asyncio.run(manager.start()), then an
            # asyncio.run of each call): this loop gets a pool of its own
            await self._open()
            pool = self._pool_here()
        if pool is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        wait = self.config.timeout if timeout is None else timeout
        seconds = self.config.call_timeout if deadline is None else deadline
        committing = False  # whether the call's statements are done and its transaction commits
        given_up: Deadline | None = None
        try:
            try:
                # why asyncio.timeout as well: the pool's timeout bounds the wait for a free
                # connection, not its check of the one it hands out, and that check waits forever on
                # a connection whose server stopped answering (a frozen host, a network partition);
                # _check gives that connection up at the same time
                with checks_within(wait):
                    async with asyncio.timeout(wait):
                        conn = await _getconn(pool, wait, lambda: self._in_use > 0)
            except TimeoutError as exc:
                raise PoolTimeout(f"no working connection within {wait:g} s") from exc
            try:
                self._in_use += 1
                given_up = Deadline(conn, seconds)
                try:
                    async with conn.transaction():
                        if self._pin is not None and conn in self._pooled:
                            await conn.execute(self._pin)
                        yield conn
                        committing = True
                finally:
                    given_up.cancel()
                    self._in_use -= 1
            finally:
                if given_up is not None and given_up.passed:
                    # why: in an unknown state (a statement or a commit unanswered), it must never
                    # serve another call; closed, the pool replaces it
                    await conn.close()
                await pool.putconn(conn)
        except PoolClosed as exc:  # close() while this call waited for a connection
            name = type(self).__name__
            raise RuntimeError(f"{name} was closed while the call waited for a connection") from exc
        except PoolTimeout as exc:
            if self._in_use >= self.config.max_connections:
                # why: the database answers; this manager's own calls hold every connection
                raise DatabaseUnavailable(
                    f"no free connection within {wait:g} s: all {self._in_use} connections of the pool "
                    "are in use (ManagerConfig.max_connections)"
                ) from exc
            raise _unavailable(exc, wait, refused=pool.refused()) from exc
        except psycopg.Error as exc:
            if given_up is not None and given_up.passed:
                raise _timed_out(seconds, setting, committing) from exc
            refused = _refused(exc, self.config.call_timeout, committing)
            if refused is not None:
                raise refused from exc
            if _connection_lost(exc):
                raise _unavailable(exc, wait, committing) from exc
            raise errors.translate(exc) from None

    async def _rows(
        self,
        query: sql.Composed,
        arguments: Mapping[str, Any],
        row_type: type[T],
        timeout: float | None = None,
        deadline: float | None = None,
        setting: str = "call_timeout",
    ) -> list[T]:
        """The rows of a read, in a transaction of its own (see _transaction for the arguments).

        why run again once on 0A000: psycopg prepares a statement that ran 5 times on a connection,
        and a migration that re-creates its function (or view) with other result columns makes
        PostgreSQL refuse the prepared one ("cached plan must not change result type"): the call
        raised FeatureNotSupported, and health_check reported the database unhealthy. The
        transaction rolled back, which made psycopg forget the connection's prepared statements,
        so the read is run again, unprepared. (A write refused so committed nothing, and the
        connection's next call runs: its caller may retry it.)
        """
        for retried in (False, True):
            try:
                async with self._transaction(timeout, deadline, setting) as conn:
                    return await _fetch(conn, query, arguments, row_type)
            except psycopg.errors.FeatureNotSupported:
                if retried:
                    raise
        raise AssertionError("unreachable")

    async def _write_then_read_order(self, function: str, arguments: Mapping[str, Any]) -> Order:
        """Call a function that returns (or is about) an order, then read that order, in one transaction."""
        async with self._transaction() as conn:
            cursor = await conn.execute(sqlcall.select_value(function, arguments), dict(arguments))
            row = await cursor.fetchone()
            order_id = arguments.get("order_id") or (row[0] if row else None)
            orders = await _fetch(conn, _ORDER_BY_ID, {"order_id": order_id}, Order)
        return orders[0]


_ORDER_BY_ID = _view("trading.order_history", ["order_id"], "order_id")
# why all three: a strategy holds a position per instrument, so strategy alone is no stable order
_POSITION_ORDER = ("strategy", "exchange", "symbol")


async def _getconn(
    pool: AsyncConnectionPool, wait: float, busy: Callable[[], bool]
) -> psycopg.AsyncConnection[Any]:
    """A connection of ``pool`` within ``wait`` seconds (else PoolTimeout), asking every
    _RECONNECT_SECONDS while ``busy()`` is false (none of the manager's connections in use).

    why ask again: the pool starts a new connection attempt only for a call that asks; a call kept
    waiting while the pool gave up its attempt waited out its whole timeout, the database back.
    why not when busy: the database answers, and asking again puts the call behind the calls that
    came after it in the pool's queue
    """
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        if busy():
            return await pool.getconn(timeout=remaining)
        try:
            return await pool.getconn(timeout=min(remaining, _RECONNECT_SECONDS))
        except PoolTimeout:
            if remaining <= _RECONNECT_SECONDS:
                raise


def _fields_row(row_type: type[T]) -> Callable[[Any], Callable[[Sequence[Any]], T]]:
    """psycopg's class_row for a dataclass, leaving out the columns it has no field for.

    why: a migration that adds a column to a view or function the managers read
    (``trading.order_history``, ``active_orders``, ``open_positions``, ``pnl_summary``) made every
    read raise TypeError (an unexpected keyword) until this code was deployed too; a column the
    dataclass needs and the row lacks still raises, as it must
    """
    names = {spec.name for spec in fields(row_type)}

    def maker(cursor: Any) -> Callable[[Sequence[Any]], T]:
        kept = [
            (index, column.name)
            for index, column in enumerate(cursor.description or [])
            if column.name in names
        ]

        def make(values: Sequence[Any]) -> T:
            return row_type(**{name: values[index] for index, name in kept})

        return make

    return maker


async def _fetch(
    conn: psycopg.AsyncConnection[Any], query: sql.Composed, arguments: Mapping[str, Any], row_type: type[T]
) -> list[T]:
    async with conn.cursor(row_factory=_fields_row(row_type)) as cursor:
        await cursor.execute(query, dict(arguments))
        return await cursor.fetchall()


class PersistentOrderManager(_Manager):
    """Places, cancels and fills orders; every order and fill is in the database before it returns."""

    async def start(self) -> None:
        """Open the connection pool (the orders are already in the database: nothing to load)."""
        await self._open()

    async def place_order(self, order: OrderRequest) -> Order:
        """``trading.place_order``: the placed order (the existing one for a retried client_order_id)."""
        return await self._write_then_read_order("trading.place_order", _given(asdict(order)))

    async def cancel_order(self, order_id: int, reason: str | None = None) -> Order:
        """``trading.cancel_order``: the order after the cancel."""
        return await self._write_then_read_order(
            "trading.cancel_order", _given({"order_id": order_id, "reason": reason})
        )

    async def amend_order(
        self,
        order_id: int,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        reason: str | None = None,
    ) -> Amendment:
        """``trading.amend_order``: a working order's quantity, price or stop price changed in place
        (None keeps one); the outcome with the order after it, read in the same transaction."""
        arguments = _given(
            {
                "order_id": order_id,
                "quantity": quantity,
                "price": price,
                "stop_price": stop_price,
                "reason": reason,
            }
        )
        async with self._transaction() as conn:
            cursor = await conn.execute(sqlcall.select_rows("trading.amend_order", arguments), arguments)
            row = await cursor.fetchone()
            orders = await _fetch(conn, _ORDER_BY_ID, {"order_id": order_id}, Order)
        amended, refusal = row if row else (False, None)
        return Amendment(amended=bool(amended), reason=refusal, order=orders[0])

    async def record_fill(
        self,
        order_id: int,
        exchange_trade_id: str,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal | None = None,
        fee_currency: str | None = None,
        executed_at: datetime | None = None,
        fee_quote: Decimal | None = None,
    ) -> int:
        """``trading.record_fill``: the trade id (the existing one for a fill delivered twice)."""
        arguments = _given(
            {
                "order_id": order_id,
                "exchange_trade_id": exchange_trade_id,
                "quantity": quantity,
                "price": price,
                "fee": fee,
                "fee_currency": fee_currency,
                "executed_at": executed_at,
                "fee_quote": fee_quote,
            }
        )
        async with self._transaction() as conn:
            cursor = await conn.execute(sqlcall.select_value("trading.record_fill", arguments), arguments)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def record_fill_fee(
        self,
        order_id: int,
        exchange_trade_id: str,
        fee: Decimal,
        fee_currency: str | None = None,
        fee_quote: Decimal | None = None,
    ) -> int:
        """``trading.record_fill_fee``: the fee of a fill recorded without one, reported later by
        the exchange; the trade id (the same fee again changes nothing)."""
        arguments = _given(
            {
                "order_id": order_id,
                "exchange_trade_id": exchange_trade_id,
                "fee": fee,
                "fee_currency": fee_currency,
                "fee_quote": fee_quote,
            }
        )
        async with self._transaction() as conn:
            cursor = await conn.execute(sqlcall.select_value("trading.record_fill_fee", arguments), arguments)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def record_exchange_fill(
        self,
        strategy: str,
        exchange: str,
        symbol: str,
        side: str,
        quantity: Decimal,
        price: Decimal,
        kind: str,
        exchange_trade_id: str,
        fee: Decimal | None = None,
        fee_currency: str | None = None,
        executed_at: datetime | None = None,
        fee_quote: Decimal | None = None,
        exchange_order_id: str | None = None,
    ) -> int:
        """``trading.record_exchange_fill``: a fill the exchange made (``kind`` liquidation, adl,
        settlement or delisting), recorded on an order of its own, never held to risk limits; the
        trade id (the same fill again changes nothing)."""
        arguments = _given(
            {
                "strategy": strategy,
                "exchange": exchange,
                "symbol": symbol,
                "side": side,
                "quantity": quantity,
                "price": price,
                "kind": kind,
                "exchange_trade_id": exchange_trade_id,
                "fee": fee,
                "fee_currency": fee_currency,
                "executed_at": executed_at,
                "fee_quote": fee_quote,
                "exchange_order_id": exchange_order_id,
            }
        )
        async with self._transaction() as conn:
            statement = sqlcall.select_value("trading.record_exchange_fill", arguments)
            cursor = await conn.execute(statement, arguments)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def get_active_orders(self, strategy: str | None = None) -> list[Order]:
        """``trading.active_orders``: orders still working, in the order they were placed (order id)."""
        where = _given({"strategy": strategy})
        return await self._rows(_view("trading.active_orders", list(where), "order_id"), where, Order)


class PersistentPositionManager(_Manager):
    """Opens positions and reads them with their PnL, all from the database."""

    async def initialize(self) -> None:
        """Open the connection pool (positions are already in the database: nothing to load)."""
        await self._open()

    async def open_position(self, allocation: PositionAllocation) -> Order:
        """Place the allocation's entry order (``trading.place_order``); the position follows its fills."""
        return await self._write_then_read_order(
            "trading.place_order", _given(asdict(allocation.entry_order()))
        )

    async def get_open_positions(self, strategy: str | None = None) -> list[Position]:
        """``trading.open_positions``: positions with a non-zero quantity, by strategy, exchange, symbol."""
        where = _given({"strategy": strategy})
        query = _view("trading.open_positions", list(where), _POSITION_ORDER)
        return await self._rows(query, where, Position)

    async def pnl_summary(
        self,
        strategy: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str = "strategy",
    ) -> list[PnlRow]:
        """``trading.pnl_summary``: realized PnL by strategy, exchange, instrument or day, and the
        unrealized PnL of the open positions when the period reaches now."""
        arguments = _given({"strategy": strategy, "since": since, "until": until, "group_by": group_by})
        return await self._rows(sqlcall.select_rows("trading.pnl_summary", arguments), arguments, PnlRow)


class DatabaseManager(_Manager):
    """The database as a whole: its health."""

    async def health_check(self) -> HealthReport:
        """``ops.health`` against this code's migrations, plus whether the database answers at all.

        Never raises for a database that is down: waits config.health_timeout seconds, then reports it.
        """
        from spreadedge.migrate import render_migrations

        settings = self.config.resolved_settings()
        ids = [m.id for m in render_migrations(settings)]
        arguments = {"expected_migrations": ids}
        wait = self.config.health_timeout
        try:
            await self._open(timeout=wait)
            query = sqlcall.select_rows("ops.health", arguments)
            # why a deadline on the query too: ops.health counts the rows of the default partitions,
            # which waits for as long as a migration or a maintenance run locks them, and a server
            # that froze while it ran never answers
            rows = await self._rows(
                query, arguments, HealthCheck, wait, deadline=wait, setting="health_timeout"
            )
        except DatabaseTimeout:
            return HealthReport(
                False,
                {
                    "database": (True, "reachable"),
                    "health": (False, f"ops.health did not answer within {wait:g} s"),
                },
            )
        except DatabaseUnavailable as exc:
            return HealthReport(False, {"database": (False, str(exc))})
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            return HealthReport(
                False, {"database": (False, f"the database did not answer ({type(exc).__name__})")}
            )
        except (psycopg.Error, errors.SpreadedgeError) as exc:
            # why: the database answers but cannot run ops.health (not migrated, no privilege)
            message = exc.message if isinstance(exc, errors.SpreadedgeError) else _primary(exc)
            return HealthReport(
                False,
                {"database": (True, "reachable"), "health": (False, f"ops.health could not run: {message}")},
            )
        checks = {"database": (True, "reachable")} | {r.check_name: (r.ok, r.detail) for r in rows}
        if not ids:
            # why: with nothing expected, every applied migration would read as unknown to this code
            checks["migrations"] = (False, _no_migrations(settings.migrations_dir))
        return HealthReport(all(ok for ok, _ in checks.values()), checks)


def _primary(error: psycopg.Error) -> str:
    return error.diag.message_primary or str(error)


def _lock_wait(error: psycopg.Error) -> str:
    """The row lock a cancelled statement waited for, as the server's CONTEXT names it
    (' while locking tuple (0,2) in relation "positions"'), else ''.

    why: "canceling statement due to statement timeout" alone did not say the call had waited
    behind another session's lock, the one thing an operator needs to look for"""
    for line in (error.diag.context or "").splitlines():
        if line.startswith("while "):
            return f" {line}"
    return ""


def _no_migrations(directory: Path) -> str:
    if not directory.is_dir():
        return f"no migrations directory at {directory}: this code cannot tell which migrations apply"
    return f"no migrations in {directory}: this code cannot tell which migrations apply"


# why per thread: a pool serves one event loop, and an event loop runs in one thread; the threads of a
# server that each ran asyncio.run(get_database_manager().health_check()) shared one manager, whose
# asyncio locks raised RuntimeError or hung in the other threads' loops
_database_managers = threading.local()


def get_database_manager(config: ManagerConfig | None = None) -> DatabaseManager:
    """The calling thread's DatabaseManager for this configuration (one pool per configuration and
    thread, for the event loop running there: a later loop of the thread gets a new pool)."""
    config = config or ManagerConfig()
    mine: dict[ManagerConfig, DatabaseManager] = _database_managers.__dict__.setdefault("by_config", {})
    return mine.setdefault(config, DatabaseManager(config))


__all__ = [
    "CODE_PROJECT_DIR",
    "Amendment",
    "DatabaseFull",
    "DatabaseManager",
    "DatabaseReadOnly",
    "DatabaseTimeout",
    "DatabaseUnavailable",
    "HealthCheck",
    "HealthReport",
    "ManagerConfig",
    "Order",
    "OrderRequest",
    "PersistentOrderManager",
    "PersistentPositionManager",
    "PnlRow",
    "Position",
    "PositionAllocation",
    "get_database_manager",
]
