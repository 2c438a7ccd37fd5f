"""The async managers across lost replies, killed connections and restarts, against a real server.

A TCP proxy between the managers and the test's cluster drops a connection at a chosen point of
the PostgreSQL protocol (after the server has committed, before the client heard of it), and
pg_terminate_backend kills a manager's server process from another connection.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

import test_managers
from spreadedge import errors, managers
from spreadedge.cluster import Cluster
from spreadedge.managers import (
    DatabaseUnavailable,
    ManagerConfig,
    OrderRequest,
    PersistentOrderManager,
    PersistentPositionManager,
)
from trading_helpers import call, fill, place

# the module's own restartable cluster (test_managers' fixtures)
restartable = test_managers.restartable
restart_config = test_managers.restart_config

# why a guard: every wait of these tests is bounded; a hang is a failure, not a stuck run
GUARD = 30

ORDER = OrderRequest(
    strategy="alpha",
    exchange="binance",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal("0.5"),
    price=Decimal("60000"),
    client_order_id="hunt-1",
)


class Proxy:
    """A TCP proxy to the cluster's socket that can drop a connection when the server's reply
    holds a given command tag (``drop_on``), before that reply reaches the client. One-shot."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.drop_on: bytes | None = None
        self.dropped = 0
        self.transports: list[asyncio.BaseTransport] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(GUARD)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.loop.run_until_complete(serve())
        self.loop.run_forever()
        for transport in self.transports:
            transport.abort()
        self.server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def arm(self, tag: bytes) -> None:
        """Drop the next connection whose server reply holds ``tag``; armed when this returns."""

        async def set_tag() -> None:
            self.drop_on = tag

        asyncio.run_coroutine_threadsafe(set_tag(), self.loop).result(GUARD)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_unix_connection(self.socket_path)
        self.transports += [client_w.transport, server_w.transport]

        async def upstream() -> None:
            try:
                while data := await client_r.read(65536):
                    server_w.write(data)
                    await server_w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                server_w.close()

        async def downstream() -> None:
            buffer = b""
            try:
                while data := await server_r.read(65536):
                    buffer += data
                    out = b""
                    while len(buffer) >= 5:
                        length = int.from_bytes(buffer[1:5], "big")
                        if len(buffer) < 1 + length:
                            break
                        message, buffer = buffer[: 1 + length], buffer[1 + length :]
                        tag = message[5:].rstrip(b"\0")
                        if self.drop_on is not None and message[:1] == b"C" and tag == self.drop_on:
                            self.drop_on = None
                            self.dropped += 1
                            client_w.transport.abort()
                            server_w.transport.abort()
                            return
                        out += message
                    client_w.write(out)
                    await client_w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                client_w.close()

        await asyncio.gather(upstream(), downstream())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(GUARD)


@pytest.fixture
def proxy(pg_cluster: Cluster) -> Iterator[Proxy]:
    socket_path = str(pg_cluster.socket_dir.resolve() / f".s.PGSQL.{pg_cluster.port}")
    running = Proxy(socket_path)
    yield running
    running.close()


def through(proxy: Proxy, url: str, application_name: str) -> str:
    dbname = urlsplit(url).path.lstrip("/")
    return (
        f"postgresql://spreadedge@127.0.0.1:{proxy.port}/{dbname}"
        f"?sslmode=disable&gssencmode=disable&application_name={application_name}"
    )


@pytest.fixture
def proxied(config: ManagerConfig, seeded_url: str, proxy: Proxy) -> ManagerConfig:
    return replace(config, database_url=through(proxy, seeded_url, "hunt"), timeout=5.0)


def count(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def terminate(conn: psycopg.Connection, application_name: str) -> int:
    """pg_terminate_backend of every server process of ``application_name``; how many."""
    row = conn.execute(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = %s",
        [application_name],
    ).fetchone()
    assert row is not None
    return int(row[0])


async def lost(call_: Any) -> DatabaseUnavailable:
    """The DatabaseUnavailable a call raises (a failure if it raises none)."""
    with pytest.raises(DatabaseUnavailable) as caught:
        await asyncio.wait_for(call_, GUARD)
    return caught.value


def test_a_placement_whose_commit_reply_is_lost_is_retried_to_the_same_order(
    proxied: ManagerConfig, proxy: Proxy, seeded: psycopg.Connection
) -> None:
    async def run() -> tuple[DatabaseUnavailable, managers.Order]:
        async with PersistentOrderManager(proxied) as manager:
            proxy.arm(b"COMMIT")
            error = await lost(manager.place_order(ORDER))
            return error, await asyncio.wait_for(manager.place_order(ORDER), GUARD)

    error, retried = asyncio.run(run())
    assert (proxy.dropped, error.maybe_committed) == (1, True)
    assert seeded.execute("select order_id, client_order_id from trading.orders").fetchall() == [
        (retried.order_id, "hunt-1")
    ]
    assert count(seeded, "select count(*) from trading.order_events") == 1


def test_a_lost_commit_reply_says_the_call_may_have_been_committed(
    proxied: ManagerConfig, proxy: Proxy, seeded: psycopg.Connection
) -> None:
    # it said only "the connection was lost (OperationalError)", as for a call that wrote nothing,
    # and DatabaseUnavailable means "retry later": a placement without a client_order_id retried
    # on it was a second order
    async def run() -> DatabaseUnavailable:
        async with PersistentOrderManager(proxied) as manager:
            proxy.arm(b"COMMIT")
            return await lost(manager.place_order(replace(ORDER, client_order_id=None)))

    error = asyncio.run(run())
    assert str(error) == (
        "the database is unavailable: the connection was lost while committing (OperationalError), "
        "so the call may have been committed"
    )
    assert error.maybe_committed is True
    assert count(seeded, "select count(*) from trading.orders") == 1  # it was committed


def test_a_connection_lost_before_the_commit_says_nothing_was_committed(
    proxied: ManagerConfig, proxy: Proxy, seeded: psycopg.Connection
) -> None:
    async def run() -> tuple[DatabaseUnavailable, managers.Order]:
        async with PersistentOrderManager(proxied) as manager:
            proxy.arm(b"SELECT 1")  # the reply of trading.place_order, before the commit
            order = replace(ORDER, client_order_id=None)
            error = await lost(manager.place_order(order))
            return error, await asyncio.wait_for(manager.place_order(order), GUARD)

    error, retried = asyncio.run(run())
    assert str(error) == (
        "the database is unavailable: the connection was lost (OperationalError); "
        "nothing of the call was committed"
    )
    assert error.maybe_committed is False
    assert seeded.execute("select order_id from trading.orders").fetchall() == [(retried.order_id,)]


def test_a_fill_whose_commit_reply_is_lost_is_retried_to_the_same_trade_written_once(
    proxied: ManagerConfig, proxy: Proxy, seeded: psycopg.Connection
) -> None:
    order_id = place(seeded, "buy", "0.5", "60000", client_order_id="hunt-fill")
    arguments = (order_id, "hx-1", Decimal("0.2"), Decimal("60000"))

    async def run() -> tuple[DatabaseUnavailable, int]:
        async with PersistentOrderManager(proxied) as manager:
            proxy.arm(b"COMMIT")
            error = await lost(manager.record_fill(*arguments, fee=Decimal("0.1")))
            return error, await asyncio.wait_for(manager.record_fill(*arguments, fee=Decimal("0.1")), GUARD)

    error, trade_id = asyncio.run(run())
    assert error.maybe_committed is True
    assert seeded.execute("select trade_id, quantity from trading.trades").fetchall() == [
        (trade_id, Decimal("0.2"))
    ]
    assert seeded.execute("select quantity from trading.positions").fetchall() == [(Decimal("0.2"),)]
    assert seeded.execute(
        "select status::text, filled_quantity from trading.orders where order_id = %s", [order_id]
    ).fetchone() == ("partially_filled", Decimal("0.2"))
    assert count(seeded, "select count(*) from audit.log where table_name = 'trading.trades'") == 1


def test_a_call_whose_server_process_is_terminated_raises_database_unavailable_and_the_next_reconnects(
    proxied: ManagerConfig, seeded_url: str, seeded: psycopg.Connection
) -> None:
    config = replace(proxied, min_connections=1, max_connections=1)

    async def run() -> tuple[DatabaseUnavailable, list[managers.Order]]:
        async with PersistentOrderManager(config) as manager:
            with psycopg.connect(seeded_url) as blocker:
                blocker.execute("lock table trading.orders in access exclusive mode")
                placing = asyncio.create_task(manager.place_order(ORDER))
                await asyncio.sleep(0.5)  # waiting for the lock
                assert terminate(seeded, "hunt") == 1
                error = await lost(placing)
                blocker.rollback()
            await asyncio.wait_for(manager.get_active_orders(), GUARD)  # on a new connection
            assert terminate(seeded, "hunt") == 1  # which dies idle in the pool
            await asyncio.wait_for(manager.place_order(ORDER), GUARD)
            return error, await asyncio.wait_for(manager.get_active_orders(), GUARD)

    error, active = asyncio.run(run())
    assert str(error) == (
        "the database is unavailable: the connection was lost (AdminShutdown); nothing of the call was committed"
    )
    assert [o.client_order_id for o in active] == ["hunt-1"]
    assert count(seeded, "select count(*) from trading.orders") == 1


def test_calls_get_a_connection_as_soon_as_the_database_is_back_after_a_long_outage(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    # after 8 s down with calls failing, the calls went on failing for about 7 s with the database
    # back: psycopg_pool's reconnection waited 1, 2, 4, 8 ... s between attempts (up to 5 min)
    config = replace(restart_config, timeout=3.0)

    async def run() -> list[managers.Order]:
        async with PersistentOrderManager(config) as manager:
            restartable.stop()
            down = time.monotonic()
            while time.monotonic() - down < 8:
                await lost(manager.get_active_orders())
            restartable.start()
            return await asyncio.wait_for(manager.get_active_orders(), GUARD)

    assert asyncio.run(run()) == []


def test_start_connects_to_a_database_that_comes_up_during_its_wait(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    config = replace(restart_config, timeout=10.0)

    async def run() -> list[managers.Order]:
        restartable.stop()
        manager = PersistentOrderManager(config)
        starting = asyncio.create_task(manager.start())
        await asyncio.sleep(3)  # past the pool's first attempts
        await asyncio.to_thread(restartable.start)
        await asyncio.wait_for(starting, GUARD)
        try:
            return await manager.get_active_orders()
        finally:
            await manager.close()

    assert asyncio.run(run()) == []


def test_a_restarted_manager_sees_exactly_the_orders_and_positions_another_process_wrote(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    async def first_run() -> None:
        async with PersistentOrderManager(config) as manager:
            await manager.place_order(ORDER)

    asyncio.run(first_run())
    # meanwhile another process: a new, an open, a partially filled, a filled and a cancelled order
    fresh = place(seeded, "sell", "0.1", "61000", client_order_id="other-new")
    acknowledged = place(seeded, "buy", "0.1", "59000", symbol="BNBUSDT", client_order_id="other-open")
    call(seeded, "trading.acknowledge_order", order_id=acknowledged, exchange_order_id="E-1")
    partial = place(seeded, "buy", "1", "3000", exchange="kraken", symbol="ETHUSD")
    fill(seeded, partial, "0.4", "3000")
    filled = place(seeded, "buy", "0.3", "60000")
    fill(seeded, filled, "0.3", "60000")
    cancelled = place(seeded, "buy", "0.2", "60000")
    fill(seeded, cancelled, "0.1", "60000")
    call(seeded, "trading.cancel_order", order_id=cancelled)

    async def restarted() -> tuple[list[managers.Order], list[managers.Position]]:
        orders, positions = PersistentOrderManager(config), PersistentPositionManager(config)
        await orders.start()
        await positions.initialize()
        try:
            return await orders.get_active_orders(), await positions.get_open_positions()
        finally:
            await orders.close()
            await positions.close()

    active, open_positions = asyncio.run(restarted())
    assert [(o.order_id, o.status, o.filled_quantity) for o in active] == [
        (1, "new", Decimal("0")),
        (fresh, "new", Decimal("0")),
        (acknowledged, "open", Decimal("0")),
        (partial, "partially_filled", Decimal("0.4")),
    ]
    stored = seeded.execute(
        "select order_id from trading.orders where status in ('new', 'open', 'partially_filled') order by 1"
    ).fetchall()
    assert [(o.order_id,) for o in active] == stored
    assert [(p.exchange, p.symbol, p.quantity) for p in open_positions] == [
        ("binance", "BTCUSDT", Decimal("0.4")),
        ("kraken", "ETHUSD", Decimal("0.4")),
    ]


def test_many_tasks_on_a_small_pool_each_get_their_own_order_and_fill(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    config = replace(config, min_connections=1, max_connections=3)

    async def one(manager: PersistentOrderManager, n: int) -> tuple[int, int]:
        order = await manager.place_order(
            replace(ORDER, quantity=Decimal("0.01"), client_order_id=f"many-{n}")
        )
        trade_id = await manager.record_fill(order.order_id, f"many-x{n}", Decimal("0.01"), Decimal("60000"))
        return order.order_id, trade_id

    async def run() -> list[tuple[int, int]]:
        async with PersistentOrderManager(config) as manager:
            return await asyncio.wait_for(asyncio.gather(*(one(manager, n) for n in range(40))), GUARD)

    results = asyncio.run(run())
    assert len({order_id for order_id, _ in results}) == len({trade for _, trade in results}) == 40
    assert seeded.execute(
        "select count(*), sum(filled_quantity) from trading.orders where status = 'filled'"
    ).fetchone() == (40, Decimal("0.40"))
    assert seeded.execute("select quantity from trading.positions").fetchall() == [(Decimal("0.40"),)]


def test_each_managers_actor_is_in_its_own_audit_rows_across_reconnections(
    config: ManagerConfig, seeded_url: str, seeded: psycopg.Connection
) -> None:
    def desk(actor: str) -> ManagerConfig:
        return replace(
            config, actor=actor, database_url=f"{seeded_url}&application_name={actor}", max_connections=2
        )

    async def orders(manager: PersistentOrderManager, actor: str, start: int) -> None:
        await asyncio.gather(
            *(
                manager.place_order(replace(ORDER, client_order_id=f"{actor}-{n}"))
                for n in range(start, start + 5)
            )
        )

    async def run() -> None:
        async with PersistentOrderManager(desk("desk-a")) as a, PersistentOrderManager(desk("desk-b")) as b:
            await asyncio.gather(orders(a, "desk-a", 0), orders(b, "desk-b", 0))
            terminate(seeded, "desk-a")  # the new connections must carry the actor again
            terminate(seeded, "desk-b")
            await asyncio.gather(orders(a, "desk-a", 5), orders(b, "desk-b", 5))

    asyncio.run(run())
    audited = seeded.execute(
        "select split_part(new_row->>'client_order_id', '-', 1) || '-' || split_part(new_row->>'client_order_id', '-', 2),"
        " actor, count(*) from audit.log where table_name = 'trading.orders' group by 1, 2 order by 1"
    ).fetchall()
    assert audited == [("desk-a", "desk-a", 10), ("desk-b", "desk-b", 10)]


def test_amounts_are_exact_decimals_and_times_aware_utc(config: ManagerConfig) -> None:
    quantity, price = Decimal("0.1234"), Decimal("60000.07")
    executed_at = datetime.now(UTC).replace(microsecond=678901) - timedelta(minutes=5)

    async def run() -> tuple[managers.Order, list[managers.Position], list[managers.PnlRow]]:
        async with PersistentOrderManager(config) as orders, PersistentPositionManager(config) as positions:
            order = await orders.place_order(replace(ORDER, quantity=quantity, price=price))
            await orders.record_fill(
                order.order_id,
                "exact-1",
                quantity,
                price,
                fee=Decimal("0.000000000001"),
                executed_at=executed_at,
            )
            return (
                (await orders.get_active_orders() or [order])[0],
                await positions.get_open_positions(),
                await positions.pnl_summary(group_by="day"),
            )

    order, [position], [pnl] = asyncio.run(run())
    for row in (order, position, pnl):
        for column in fields(row):
            value = getattr(row, column.name)
            assert not isinstance(value, float), column.name
            if isinstance(value, datetime):
                assert value.utcoffset() == timedelta(0), column.name
    assert (position.quantity, position.avg_entry_price, pnl.fees) == (
        quantity,
        price,
        Decimal("0.000000000001"),
    )
    assert (position.opened_at, pnl.day, pnl.volume) == (executed_at, executed_at.date(), quantity)


def test_an_actor_holding_a_nul_character_is_refused_by_name_at_start(config: ManagerConfig) -> None:
    # it was DatabaseUnavailable ("no working connection within 30 s") after the whole timeout,
    # the database up: psycopg refused the actor in every connection's configure
    config = replace(config, actor="desk\x00a", timeout=2.0)

    with pytest.raises(errors.InvalidArgument) as caught:
        asyncio.run(PersistentOrderManager(config).start())
    assert (caught.value.sqlstate, caught.value.message) == (
        "22S09",
        "actor holds a NUL character, which PostgreSQL text cannot store",
    )
