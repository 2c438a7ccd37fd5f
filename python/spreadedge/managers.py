"""The seeds' persistent managers, as thin async wrappers over the SQL API.

    manager = PersistentOrderManager(config)
    await manager.start()
    order = await manager.place_order(OrderRequest(strategy="arb", exchange="binance", ...))
    orders = await manager.get_active_orders()

Every method is one call of a stored function (``trading.place_order``, ``record_fill``, ...) or one
read of a view (``trading.active_orders``, ``position_summary``); a write and the read of what it
wrote share one transaction. Nothing is kept in memory: a restarted manager sees exactly what the
database holds. Errors come back as the project's exception classes (:mod:`spreadedge.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from spreadedge import errors, sqlcall
from spreadedge.settings import Settings, load_settings

T = TypeVar("T")


@dataclass(frozen=True)
class ManagerConfig:
    """Where the managers' database is and how they connect to it."""

    database_url: str | None = None  # None: DATABASE_URL or the embedded cluster, as the CLI does
    actor: str = "managers"  # recorded as spreadedge.actor in the audit log
    min_connections: int = 1
    max_connections: int = 4
    settings: Settings | None = None  # None: load_settings() (spreadedge.toml and SPREADEDGE_* env)

    def resolved_settings(self) -> Settings:
        return (self.settings or load_settings()).with_database_url(self.database_url)


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
    trades: int
    volume: Decimal
    notional: Decimal
    fees: Decimal
    realized_pnl_gross: Decimal
    funding: Decimal
    realized_pnl: Decimal


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


def _given(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that were given; the SQL defaults apply to the others."""
    return {name: value for name, value in arguments.items() if value is not None}


def _view(name: str, where: Sequence[str], order_by: str) -> sql.Composed:
    """``select * from <view> where a = %(a)s and ... order by <column>``."""
    schema, view = name.split(".")
    conditions = [sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in where]
    return sql.SQL("select * from {} {} order by {}").format(
        sql.Identifier(schema, view),
        sql.SQL("where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL(""),
        sql.Identifier(order_by),
    )


class _Manager:
    """A connection pool and the one way of calling the database."""

    def __init__(self, config: ManagerConfig | None = None) -> None:
        self.config = config or ManagerConfig()
        self._pool: AsyncConnectionPool | None = None

    async def _open(self) -> None:
        if self._pool is not None:
            return
        from spreadedge import db  # here: resolving the URL may start the embedded cluster

        actor = self.config.actor

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute("select set_config('spreadedge.actor', %s, false)", [actor])
            await conn.commit()

        pool = AsyncConnectionPool(
            db.conninfo(self.config.resolved_settings()),
            min_size=self.config.min_connections,
            max_size=self.config.max_connections,
            configure=configure,
            open=False,
            name=type(self).__name__,
        )
        await pool.open(wait=True)
        self._pool = pool

    async def close(self) -> None:
        """Close the pool; the manager can be started again."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in a transaction; database errors as the project's exceptions."""
        if self._pool is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise errors.translate(exc) from None

    async def _rows(self, query: sql.Composed, arguments: Mapping[str, Any], row_type: type[T]) -> list[T]:
        async with self._transaction() as conn:
            return await _fetch(conn, query, arguments, row_type)

    async def _write_then_read_order(self, function: str, arguments: Mapping[str, Any]) -> Order:
        """Call a function that returns (or is about) an order, then read that order, in one transaction."""
        async with self._transaction() as conn:
            cursor = await conn.execute(sqlcall.select_value(function, arguments), dict(arguments))
            row = await cursor.fetchone()
            order_id = arguments.get("order_id") or (row[0] if row else None)
            orders = await _fetch(conn, _ORDER_BY_ID, {"order_id": order_id}, Order)
        return orders[0]


_ORDER_BY_ID = _view("trading.order_history", ["order_id"], "order_id")


async def _fetch(
    conn: psycopg.AsyncConnection[Any], query: sql.Composed, arguments: Mapping[str, Any], row_type: type[T]
) -> list[T]:
    async with conn.cursor(row_factory=class_row(row_type)) as cursor:
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

    async def get_active_orders(self, strategy: str | None = None) -> list[Order]:
        """``trading.active_orders``: orders still working, oldest first."""
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
        """``trading.position_summary`` rows with a non-zero quantity."""
        where = _given({"strategy": strategy})
        positions = await self._rows(
            _view("trading.position_summary", list(where), "strategy"), where, Position
        )
        return [p for p in positions if p.quantity != 0]

    async def pnl_summary(
        self,
        strategy: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str = "strategy",
    ) -> list[PnlRow]:
        """``trading.pnl_summary``: realized PnL by strategy, exchange, instrument or day."""
        arguments = _given({"strategy": strategy, "since": since, "until": until, "group_by": group_by})
        return await self._rows(sqlcall.select_rows("trading.pnl_summary", arguments), arguments, PnlRow)


class DatabaseManager(_Manager):
    """The database as a whole: its health."""

    async def health_check(self) -> HealthReport:
        """``ops.health`` against this code's migrations, plus whether the database answers at all."""
        from spreadedge.migrate import render_migrations

        await self._open()
        ids = [m.id for m in render_migrations(self.config.resolved_settings())]
        arguments = {"expected_migrations": ids}
        try:
            rows = await self._rows(sqlcall.select_rows("ops.health", arguments), arguments, HealthCheck)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            return HealthReport(False, {"database": (False, type(exc).__name__)})
        checks = {"database": (True, "reachable")} | {r.check_name: (r.ok, r.detail) for r in rows}
        return HealthReport(all(ok for ok, _ in checks.values()), checks)


_database_managers: dict[ManagerConfig, DatabaseManager] = {}


def get_database_manager(config: ManagerConfig | None = None) -> DatabaseManager:
    """The process's DatabaseManager for this configuration (one pool per configuration)."""
    config = config or ManagerConfig()
    return _database_managers.setdefault(config, DatabaseManager(config))


__all__ = [
    "DatabaseManager",
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
