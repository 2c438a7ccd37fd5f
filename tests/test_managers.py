"""The async managers end to end against a real database: what they write is there after a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from conftest import free_port
from db_fixtures import janitor
from spreadedge import errors, managers
from spreadedge.cluster import Cluster
from spreadedge.connection_limits import LimitAwarePool
from spreadedge.managers import (
    ManagerConfig,
    OrderRequest,
    PersistentOrderManager,
    PersistentPositionManager,
    PositionAllocation,
    get_database_manager,
)
from spreadedge.migrate import migrate, render_migrations
from spreadedge.settings import Settings

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
    assert set(report.checks) == {
        "database",
        "migrations",
        "partitions_ahead",
        "default_partitions_empty",
        "writable",
    }


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


# A URL where nothing listens: the database is down before the manager's first use.
def down_url() -> str:
    return f"postgresql://spreadedge@127.0.0.1:{free_port()}/spreadedge?connect_timeout=2"


def test_health_check_of_a_database_down_at_first_use_is_an_unhealthy_report(
    project_settings: Settings,
) -> None:
    config = ManagerConfig(database_url=down_url(), settings=project_settings)

    async def run() -> managers.HealthReport:
        manager = get_database_manager(config)
        try:
            return await manager.health_check()
        finally:
            await manager.close()

    report = asyncio.run(run())
    assert report == managers.HealthReport(
        False, {"database": (False, "the database is unavailable: no working connection within 5 s")}
    )


def test_health_check_waits_for_the_database_as_long_as_health_timeout(project_settings: Settings) -> None:
    config = ManagerConfig(database_url=down_url(), settings=project_settings, health_timeout=0.5)

    async def run() -> managers.HealthReport:
        manager = get_database_manager(config)
        try:
            return await manager.health_check()
        finally:
            await manager.close()

    assert asyncio.run(run()).checks == {
        "database": (False, "the database is unavailable: no working connection within 0.5 s")
    }


@pytest.fixture(scope="module")
def restartable(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated cluster of this module's own, which a test may stop and start (running after each)."""
    cluster = make_cluster()
    cluster.start()
    migrate(cluster.url(), project_settings, echo=lambda line: None)
    yield cluster


@pytest.fixture
def restart_config(restartable: Cluster, project_settings: Settings) -> Iterator[ManagerConfig]:
    yield ManagerConfig(database_url=restartable.url(), actor="restart", settings=project_settings)
    restartable.start()  # no-op when running; a test that stopped it and failed leaves it running


def test_the_first_call_after_a_database_restart_succeeds(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    async def run() -> list[managers.Order]:
        async with PersistentOrderManager(restart_config) as manager:
            await manager.get_active_orders()
            restartable.stop()
            restartable.start()
            return await manager.get_active_orders()

    assert asyncio.run(run()) == []


def test_every_pooled_connection_is_replaced_after_a_database_restart(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    config = replace(restart_config, min_connections=4, max_connections=4)

    async def run() -> list[list[managers.Order]]:
        async with PersistentOrderManager(config) as manager:
            restartable.stop()
            restartable.start()
            return list(await asyncio.gather(*(manager.get_active_orders() for _ in range(4))))

    assert asyncio.run(run()) == [[], [], [], []]


def test_a_call_while_the_database_is_down_raises_database_unavailable(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    config = replace(restart_config, timeout=0.5)

    async def run() -> None:
        async with PersistentOrderManager(config) as manager:
            restartable.stop()
            await manager.get_active_orders()

    with pytest.raises(managers.DatabaseUnavailable) as caught:
        asyncio.run(run())
    assert str(caught.value) == "the database is unavailable: no working connection within 0.5 s"


def test_start_while_the_database_is_down_raises_database_unavailable(project_settings: Settings) -> None:
    config = ManagerConfig(database_url=down_url(), settings=project_settings, timeout=0.5)

    with pytest.raises(managers.DatabaseUnavailable) as caught:
        asyncio.run(PersistentOrderManager(config).start())
    assert str(caught.value) == "the database is unavailable: no working connection within 0.5 s"


class RecordingPool(LimitAwarePool):
    """The managers' pool class, keeping every pool made (in ``made``) alive.

    why keep them: without a reference CPython frees a pool a second start() replaced at once and
    its __del__ drops its connections, which hides the extra pools from a count of connections.
    """

    made: ClassVar[list[AsyncConnectionPool]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordingPool.made.append(self)


@pytest.fixture
def recorded_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[AsyncConnectionPool]]:
    RecordingPool.made = []
    monkeypatch.setattr(managers, "LimitAwarePool", RecordingPool)
    yield RecordingPool.made
    RecordingPool.made = []  # a pool left open (only without the fix) closes its connections when freed


def test_concurrent_starts_make_one_pool(
    config: ManagerConfig, recorded_pools: list[AsyncConnectionPool]
) -> None:
    async def run() -> None:
        manager = PersistentOrderManager(config)
        await asyncio.gather(manager.start(), manager.start(), manager.start())
        await manager.close()

    asyncio.run(run())
    assert len(recorded_pools) == 1


def connections_of(url: str, application_name: str, expected: int) -> int:
    """The server's connections of ``application_name``, once they reach ``expected`` or after 10 s.

    why wait: a backend leaves pg_stat_activity a moment after its client closes the connection.
    """
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            count = conn.execute(
                "select count(*) from pg_stat_activity where application_name = %s", [application_name]
            ).fetchone()
            assert count is not None
            if count[0] == expected or time.monotonic() > deadline:
                return int(count[0])
            time.sleep(0.05)


def test_close_after_concurrent_starts_leaves_no_connection(
    seeded_url: str, project_settings: Settings, recorded_pools: list[AsyncConnectionPool]
) -> None:
    config = ManagerConfig(
        database_url=f"{seeded_url}&application_name=race-close", settings=project_settings, min_connections=2
    )

    async def run() -> tuple[int, int]:
        manager = PersistentOrderManager(config)
        await asyncio.gather(manager.start(), manager.start(), manager.start())
        started = connections_of(seeded_url, "race-close", 2)
        await manager.close()
        return started, connections_of(seeded_url, "race-close", 0)

    assert asyncio.run(run()) == (2, 0)


def test_health_check_outside_the_repository_compares_this_codes_migrations(
    seeded_url: str, project_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPREADEDGE_PROJECT_DIR", raising=False)
    config = ManagerConfig(database_url=seeded_url, actor="elsewhere")  # settings: load_settings()

    async def run() -> managers.HealthReport:
        manager = get_database_manager(config)
        try:
            return await manager.health_check()
        finally:
            await manager.close()

    report = asyncio.run(run())
    applied = len(render_migrations(project_settings))
    assert (report.healthy, report.checks["migrations"]) == (True, (True, f"{applied} applied"))


def test_health_check_without_a_migrations_directory_names_it(
    seeded_url: str, project_settings: Settings, tmp_path: Path
) -> None:
    settings = replace(project_settings, project_dir=tmp_path)
    config = ManagerConfig(database_url=seeded_url, actor="no-migrations", settings=settings)

    async def run() -> managers.HealthReport:
        manager = get_database_manager(config)
        try:
            return await manager.health_check()
        finally:
            await manager.close()

    report = asyncio.run(run())
    assert (report.healthy, report.checks["migrations"]) == (
        False,
        (
            False,
            f"no migrations directory at {tmp_path}/migrations: this code cannot tell which migrations apply",
        ),
    )


def in_new_york(url: str) -> str:
    """``url`` on a server session whose TimeZone is America/New_York, not UTC."""
    return f"{url}&options=-c%20timezone%3DAmerica/New_York"


def test_times_come_back_in_utc_whatever_the_servers_timezone(config: ManagerConfig) -> None:
    config = replace(config, database_url=in_new_york(config.database_url or ""))

    async def run() -> managers.Order:
        async with PersistentOrderManager(config) as manager:
            return await manager.place_order(BUY)

    order = asyncio.run(run())
    assert (order.created_at.utcoffset(), order.updated_at.utcoffset()) == (timedelta(0), timedelta(0))


def test_a_naive_executed_at_means_utc(config: ManagerConfig, seeded: psycopg.Connection) -> None:
    config = replace(config, database_url=in_new_york(config.database_url or ""))
    executed_at = datetime.now(UTC).replace(microsecond=0, tzinfo=None)

    async def run() -> int:
        async with PersistentOrderManager(config) as manager:
            order = await manager.place_order(BUY)
            return await manager.record_fill(
                order.order_id, "naive-1", Decimal("0.5"), Decimal("60000"), executed_at=executed_at
            )

    trade_id = asyncio.run(run())
    stored = seeded.execute(
        "select executed_at from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    assert stored == (executed_at.replace(tzinfo=UTC),)


def test_a_float_quantity_is_refused_with_a_type_error(config: ManagerConfig) -> None:
    async def run() -> None:
        async with PersistentOrderManager(config) as manager:
            await manager.place_order(replace(BUY, quantity=0.5))  # type: ignore[arg-type]

    with pytest.raises(TypeError) as caught:
        asyncio.run(run())
    assert str(caught.value) == "quantity must be a Decimal, not the float 0.5 (a float is not exact)"


def test_a_float_fee_is_refused_before_anything_is_written(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    async def run() -> None:
        async with PersistentOrderManager(config) as manager:
            order = await manager.place_order(BUY)
            await manager.record_fill(order.order_id, "f-1", Decimal("0.5"), Decimal("60000"), fee=0.1)  # type: ignore[arg-type]

    with pytest.raises(TypeError) as caught:
        asyncio.run(run())
    assert str(caught.value) == "fee must be a Decimal, not the float 0.1 (a float is not exact)"
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (0,)


def test_open_positions_are_ordered_by_strategy_exchange_and_symbol(config: ManagerConfig) -> None:
    legs = [
        ("kraken", "ETHUSD", Decimal("1"), Decimal("3000")),
        ("binance", "BTCUSDT", Decimal("0.5"), Decimal("60000")),
        ("binance", "BNBUSDT", Decimal("1"), Decimal("600")),
    ]

    async def run() -> list[managers.Position]:
        async with PersistentOrderManager(config) as orders, PersistentPositionManager(config) as positions:
            for n, (exchange, symbol, quantity, price) in enumerate(legs):
                order = await orders.place_order(
                    OrderRequest("alpha", exchange, symbol, "buy", quantity, price)
                )
                await orders.record_fill(order.order_id, f"o-{n}", quantity, price)
            return await positions.get_open_positions()

    assert [(p.exchange, p.symbol) for p in asyncio.run(run())] == [
        ("binance", "BNBUSDT"),
        ("binance", "BTCUSDT"),
        ("kraken", "ETHUSD"),
    ]


def test_health_check_of_an_unmigrated_database_is_an_unhealthy_report(
    pg_cluster: Cluster, project_settings: Settings
) -> None:
    with janitor(pg_cluster, "never_migrated"):
        config = ManagerConfig(database_url=pg_cluster.url("never_migrated"), settings=project_settings)

        async def run() -> managers.HealthReport:
            manager = get_database_manager(config)
            try:
                return await manager.health_check()
            finally:
                await manager.close()

        report = asyncio.run(run())
    assert report == managers.HealthReport(
        False,
        {
            "database": (True, "reachable"),
            "health": (False, 'ops.health could not run: schema "ops" does not exist'),
        },
    )


def test_the_repr_of_a_config_hides_the_password(project_settings: Settings) -> None:
    config = ManagerConfig(
        database_url="postgresql://trader:s3cr3t@db.example:5432/spreadedge",
        settings=replace(project_settings, database_url="postgresql://ops:t0ps3cr3t@db.example/spreadedge"),
    )
    shown = repr(config)
    assert "s3cr3t" not in shown
    assert "database_url='postgresql://trader:***@db.example:5432/spreadedge'" in shown
    assert "database_url='postgresql://ops:***@db.example/spreadedge'" in shown


def test_a_pool_whose_connections_are_all_busy_says_so(config: ManagerConfig, seeded_url: str) -> None:
    config = replace(config, min_connections=1, max_connections=1, timeout=0.5)

    async def run() -> str:
        with psycopg.connect(seeded_url) as blocker:
            blocker.execute("lock table trading.orders in access exclusive mode")
            async with PersistentOrderManager(config) as manager:
                held = asyncio.create_task(
                    manager.place_order(BUY)
                )  # waits for the lock, holding the connection
                await asyncio.sleep(0.2)
                try:
                    await manager.get_active_orders()
                except managers.DatabaseUnavailable as exc:
                    return str(exc)
                finally:
                    blocker.rollback()
                    await held
        return "no error"

    assert asyncio.run(run()) == (
        "no free connection within 0.5 s: all 1 connections of the pool are in use (ManagerConfig.max_connections)"
    )


def test_a_call_waiting_for_a_connection_when_the_manager_closes_says_it_was_closed(
    config: ManagerConfig, seeded_url: str
) -> None:
    config = replace(config, min_connections=1, max_connections=1)

    async def run() -> None:
        with psycopg.connect(seeded_url) as blocker:
            blocker.execute("lock table trading.orders in access exclusive mode")
            manager = PersistentOrderManager(config)
            await manager.start()
            held = asyncio.create_task(manager.place_order(BUY))  # waits for the lock, holding the connection
            await asyncio.sleep(0.2)
            waiting = asyncio.create_task(manager.get_active_orders())  # waits for the pool
            await asyncio.sleep(0.2)
            closing = asyncio.create_task(manager.close())
            try:
                await waiting
            finally:
                blocker.rollback()
                await held
                await closing

    with pytest.raises(RuntimeError) as caught:
        asyncio.run(run())
    assert str(caught.value) == "PersistentOrderManager was closed while the call waited for a connection"
