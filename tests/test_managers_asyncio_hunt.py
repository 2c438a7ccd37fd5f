"""The async managers as an asyncio trading application uses them, against a real server.

Many tasks share one manager (asyncio.gather of placements and fills), tasks are cancelled in the
middle of a call (task.cancel(), asyncio.wait_for), and a manager or the process's DatabaseManager
is used from successive event loops (an asyncio.run() per call) and from threads that each run their
own loop. Every wait is bounded: a hang is a failure, not a stuck run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest

import test_managers
from spreadedge.cluster import Cluster
from spreadedge.managers import (
    ManagerConfig,
    OrderRequest,
    PersistentOrderManager,
    get_database_manager,
)

# the module's own restartable cluster (test_managers' fixtures)
restartable = test_managers.restartable
restart_config = test_managers.restart_config
connections_of = test_managers.connections_of

GUARD = 30

ORDER = OrderRequest(
    strategy="alpha",
    exchange="binance",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal("0.01"),
    price=Decimal("60000"),
    client_order_id="aio-1",
)


def named(config: ManagerConfig, url: str, application_name: str) -> ManagerConfig:
    return replace(config, database_url=f"{url}&application_name={application_name}")


def run_guarded(call: Callable[[], Any]) -> Any:
    """asyncio.run of ``call()``, failing after GUARD seconds rather than hanging."""

    async def guarded() -> Any:
        return await asyncio.wait_for(call(), GUARD)

    return asyncio.run(guarded())


def test_a_placement_cancelled_while_it_waits_for_a_lock_is_not_committed_and_its_retry_places_one_order(
    config: ManagerConfig, seeded_url: str, seeded: psycopg.Connection
) -> None:
    config = replace(named(config, seeded_url, "aio-cancel"), min_connections=1, max_connections=1)

    async def run() -> tuple[list[tuple[str, bool]], int, int]:
        async with PersistentOrderManager(config) as manager:
            with psycopg.connect(seeded_url) as blocker:
                blocker.execute("lock table trading.orders in access exclusive mode")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(manager.place_order(ORDER), 0.5)
                blocker.rollback()
            # the pool's one connection: idle, no transaction, no lock left
            sessions = seeded.execute(
                "select state, xact_start is not null from pg_stat_activity where application_name = 'aio-cancel'"
            ).fetchall()
            placed = await asyncio.wait_for(manager.place_order(ORDER), GUARD)
            again = await asyncio.wait_for(manager.place_order(ORDER), GUARD)
            return sessions, placed.order_id, again.order_id

    sessions, placed, again = asyncio.run(run())
    assert sessions == [("idle", False)]
    assert placed == again
    assert seeded.execute("select order_id, client_order_id from trading.orders").fetchall() == [
        (placed, "aio-1")
    ]


def test_fifty_concurrent_placements_with_one_client_order_id_are_one_order(
    config: ManagerConfig, seeded: psycopg.Connection
) -> None:
    config = replace(config, max_connections=8)

    async def run() -> set[int]:
        async with PersistentOrderManager(config) as manager:
            placed = await asyncio.wait_for(
                asyncio.gather(*(manager.place_order(ORDER) for _ in range(50))), GUARD
            )
        return {order.order_id for order in placed}

    placed = asyncio.run(run())
    assert seeded.execute("select order_id from trading.orders").fetchall() == [(p,) for p in placed]


def test_tasks_cancelled_in_every_phase_of_their_calls_leave_the_pool_whole(
    config: ManagerConfig, seeded_url: str, seeded: psycopg.Connection
) -> None:
    config = replace(named(config, seeded_url, "aio-storm"), min_connections=1, max_connections=3, timeout=5)

    async def run() -> tuple[list[tuple[str, int]], int]:
        async with PersistentOrderManager(config) as manager:
            for delay in (0.0, 0.005, 0.01, 0.02, 0.05):
                tasks = [
                    asyncio.create_task(manager.place_order(replace(ORDER, client_order_id=f"storm-{n}")))
                    for n in range(50)
                ]
                await asyncio.sleep(delay)
                for task in tasks:
                    task.cancel()
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD)
            sessions = seeded.execute(
                "select state, count(*) from pg_stat_activity where application_name = 'aio-storm' group by 1"
            ).fetchall()
            placed = await asyncio.wait_for(
                asyncio.gather(
                    *(manager.place_order(replace(ORDER, client_order_id=f"storm-{n}")) for n in range(50))
                ),
                GUARD,
            )
            return sessions, len({order.order_id for order in placed})

    sessions, placed = asyncio.run(run())
    assert len(sessions) == 1 and sessions[0][0] == "idle"
    assert placed == 50
    assert seeded.execute(
        "select count(*), count(distinct client_order_id) from trading.orders"
    ).fetchone() == (
        50,
        50,
    )


def test_the_database_managers_health_check_in_a_later_event_loop_after_a_database_restart_is_healthy(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    config = replace(restart_config, health_timeout=2.0)
    first = run_guarded(lambda: get_database_manager(config).health_check())
    restartable.stop()
    restartable.start()
    after = run_guarded(lambda: get_database_manager(config).health_check())
    assert (first.healthy, after.healthy, after.checks["database"]) == (True, True, (True, "reachable"))


def test_a_manager_whose_event_loop_ended_answers_in_the_next_loop_after_a_database_restart(
    restartable: Cluster, restart_config: ManagerConfig
) -> None:
    manager = PersistentOrderManager(replace(restart_config, timeout=2.0))
    run_guarded(manager.start)
    restartable.stop()
    restartable.start()
    try:
        assert run_guarded(manager.get_active_orders) == []
    finally:
        run_guarded(manager.close)


def test_a_manager_closed_in_a_later_event_loop_leaves_no_connection(
    config: ManagerConfig, seeded_url: str
) -> None:
    manager = PersistentOrderManager(replace(named(config, seeded_url, "aio-close"), min_connections=2))
    run_guarded(manager.start)
    started = connections_of(seeded_url, "aio-close", 2)
    run_guarded(manager.close)
    assert (started, connections_of(seeded_url, "aio-close", 0)) == (2, 0)


def test_health_checks_from_threads_each_running_its_own_event_loop_are_all_healthy(
    config: ManagerConfig,
) -> None:
    results: list[object] = []

    def checks() -> None:
        for _ in range(10):
            try:
                results.append(run_guarded(lambda: get_database_manager(config).health_check()).healthy)
            except Exception as exc:  # what a thread raised is the finding
                results.append(repr(exc))

    threads = [threading.Thread(target=checks) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * GUARD
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert results == [True] * 40


def test_a_manager_called_from_a_loop_in_another_thread_than_its_own_says_so(config: ManagerConfig) -> None:
    manager = PersistentOrderManager(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(manager.start(), loop).result(GUARD)
        with pytest.raises(RuntimeError) as caught:
            run_guarded(manager.get_active_orders)
        # its own loop still serves it
        assert asyncio.run_coroutine_threadsafe(manager.get_active_orders(), loop).result(GUARD) == []
    finally:
        asyncio.run_coroutine_threadsafe(manager.close(), loop).result(GUARD)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(GUARD)
        loop.close()
    assert str(caught.value) == (
        "PersistentOrderManager was started in an event loop that runs in another thread: "
        "a manager serves one event loop, give each loop its own manager"
    )
