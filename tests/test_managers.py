"""The async managers end to end against a real database: what they write is there after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest

from spreadedge import errors
from spreadedge.cluster import Cluster
from spreadedge.managers import (
    ManagerConfig,
    OrderRequest,
    PersistentOrderManager,
    PersistentPositionManager,
    PositionAllocation,
    get_database_manager,
)
from spreadedge.settings import Settings


@pytest.fixture
def config(seeded_url: str, project_settings: Settings) -> ManagerConfig:
    return ManagerConfig(database_url=seeded_url, actor="test-manager", settings=project_settings)


BUY = OrderRequest(
    strategy="alpha",
    exchange="binance",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal("0.5"),
    price=Decimal("60000"),
    client_order_id="m-1",
)


def test_place_order_returns_the_stored_order(config: ManagerConfig) -> None:
    async def run():
        async with PersistentOrderManager(config) as manager:
            return await manager.place_order(BUY)

    order = asyncio.run(run())
    assert (order.strategy, order.exchange, order.symbol, order.side, order.status) == (
        "alpha",
        "binance",
        "BTCUSDT",
        "buy",
        "new",
    )
    assert (order.quantity, order.price, order.client_order_id) == (Decimal("0.5"), Decimal("60000"), "m-1")


def test_a_retried_placement_returns_the_same_order(config: ManagerConfig) -> None:
    async def run():
        async with PersistentOrderManager(config) as manager:
            return await manager.place_order(BUY), await manager.place_order(BUY)

    first, second = asyncio.run(run())
    assert first.order_id == second.order_id


def test_active_orders_survive_a_restart_of_the_manager(config: ManagerConfig) -> None:
    async def place():
        manager = PersistentOrderManager(config)
        await manager.start()
        order = await manager.place_order(BUY)
        await manager.close()
        return order

    async def reload():
        manager = PersistentOrderManager(config)
        await manager.start()
        try:
            return await manager.get_active_orders()
        finally:
            await manager.close()

    order = asyncio.run(place())
    assert [o.order_id for o in asyncio.run(reload())] == [order.order_id]


def test_fill_and_cancel_through_the_manager(config: ManagerConfig, seeded: psycopg.Connection) -> None:
    async def run():
        async with PersistentOrderManager(config) as manager:
            order = await manager.place_order(BUY)
            trade_id = await manager.record_fill(
                order.order_id, "mx-1", Decimal("0.2"), Decimal("60000"), fee=Decimal("1.2")
            )
            again = await manager.record_fill(
                order.order_id, "mx-1", Decimal("0.2"), Decimal("60000"), fee=Decimal("1.2")
            )
            cancelled = await manager.cancel_order(order.order_id, reason="done for today")
            return trade_id, again, cancelled, await manager.get_active_orders()

    trade_id, again, cancelled, active = asyncio.run(run())
    assert trade_id == again
    assert (cancelled.status, cancelled.filled_quantity, cancelled.status_reason) == (
        "cancelled",
        Decimal("0.2"),
        "done for today",
    )
    assert active == []
    actor = seeded.execute(
        "select distinct actor from audit.log where table_name = 'trading.trades'"
    ).fetchall()
    assert actor == [("test-manager",)]


def test_errors_are_the_project_exception_classes(config: ManagerConfig) -> None:
    async def run():
        async with PersistentOrderManager(config) as manager:
            await manager.place_order(
                OrderRequest("alpha", "binance", "NOPE", "buy", Decimal("1"), Decimal("1"))
            )

    with pytest.raises(errors.UnknownInstrument) as caught:
        asyncio.run(run())
    assert caught.value.sqlstate == "23S02"


def test_a_manager_that_is_not_started_says_so(config: ManagerConfig) -> None:
    with pytest.raises(RuntimeError, match="PersistentOrderManager is not started"):
        asyncio.run(PersistentOrderManager(config).get_active_orders())


def test_open_position_then_open_positions_and_pnl(config: ManagerConfig) -> None:
    allocation = PositionAllocation("alpha", "binance", "BTCUSDT", "buy", Decimal("1"), Decimal("60000"))

    async def run():
        async with PersistentPositionManager(config) as positions, PersistentOrderManager(config) as orders:
            await positions.initialize()
            entry = await positions.open_position(allocation)
            await orders.record_fill(entry.order_id, "p-1", Decimal("1"), Decimal("60000"), fee=Decimal("6"))
            exit_order = await orders.place_order(
                OrderRequest("alpha", "binance", "BTCUSDT", "sell", Decimal("0.4"), Decimal("61000"))
            )
            await orders.record_fill(exit_order.order_id, "p-2", Decimal("0.4"), Decimal("61000"))
            return entry, await positions.get_open_positions(), await positions.pnl_summary(strategy="alpha")

    entry, open_positions, pnl = asyncio.run(run())
    assert entry.status == "new"
    assert [
        (p.strategy, p.symbol, p.quantity, p.avg_entry_price, p.realized_pnl) for p in open_positions
    ] == [
        ("alpha", "BTCUSDT", Decimal("0.6"), Decimal("60000"), Decimal("394")),
    ]
    assert [(r.strategy_name, r.trades, r.fees, r.realized_pnl) for r in pnl] == [
        ("alpha", 2, Decimal("6"), Decimal("394")),
    ]


def test_health_check_of_a_migrated_database(config: ManagerConfig) -> None:
    async def run():
        manager = get_database_manager(config)
        try:
            return await manager.health_check()
        finally:
            await manager.close()

    report = asyncio.run(run())
    assert report.healthy
    assert set(report.checks) == {"database", "migrations", "partitions_ahead", "default_partitions_empty"}


def test_get_database_manager_is_one_per_configuration(config: ManagerConfig) -> None:
    assert get_database_manager(config) is get_database_manager(config)


def test_health_check_of_a_stopped_database_is_unhealthy(
    make_cluster: Callable[..., Cluster], project_settings: Settings
) -> None:
    cluster = make_cluster()
    cluster.start()
    config = ManagerConfig(database_url=cluster.url(), settings=project_settings)
    manager = get_database_manager(config)

    async def run():
        await manager._open()
        cluster.stop()
        try:
            return await manager.health_check()
        finally:
            await manager.close()

    report = asyncio.run(run())
    assert not report.healthy
    assert report.checks["database"][0] is False
