"""The async managers against a server that stops answering in the middle of a call, for real.

A server process stopped with SIGSTOP keeps its connection open and never answers, as a stalled
backend, a frozen host or a network partition without a reset does: the manager's call must still
answer within ManagerConfig.call_timeout, with its connection discarded, and say whether the call may
have been committed. The whole server is frozen (postmaster and every child) on a cluster of this
module's own; a single backend on the session's cluster. Every frozen process is continued in a
``finally``. The server's own refusals (57014 query_canceled, 25006 read_only_sql_transaction) come
back as the managers' exception classes too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from db_fixtures import _seed
from frozen_helpers import frozen, seeded_cluster
from spreadedge import managers
from spreadedge.cluster import Cluster
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager, get_database_manager
from spreadedge.settings import Settings

# why a guard: without the deadline these calls never return; every wait is capped at its bound plus
# this, so a hang is a failure and not a stuck run (no assertion is about speed)
GUARD = 10
CALL_TIMEOUT = 4.0
# a health check's documented bound is health_timeout; this is ample for a check that keeps it, and
# shorter than the 10 s psycopg's own cancellation of a query adds
HEALTH_SLACK = 5

ORDER = OrderRequest(
    strategy="alpha",
    exchange="binance",
    symbol="BTCUSDT",
    side="buy",
    quantity=Decimal("0.01"),
    price=Decimal("60000"),
    client_order_id="frozen-1",
)


@pytest.fixture(scope="module")
def own(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Cluster]:
    """A migrated, seeded cluster of this module's own, whose server a test may freeze whole."""
    yield seeded_cluster(make_cluster, project_settings, _seed)


def named(config: ManagerConfig, url: str, application_name: str, **changes: object) -> ManagerConfig:
    """``config`` for ``url``, its connections named ``application_name``, with one connection."""
    return replace(
        config,
        database_url=f"{url}&application_name={application_name}",
        min_connections=1,
        max_connections=1,
        **changes,
    )


async def backend_waiting(url: str, application_name: str, wait_event: str) -> int:
    """The server process of ``application_name`` once it waits on ``wait_event`` (or its type)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(GUARD * 20):
            row = conn.execute(
                "select pid from pg_stat_activity where application_name = %s and %s in (wait_event, wait_event_type)",
                [application_name, wait_event],
            ).fetchone()
            if row is not None:
                return int(row[0])
            await asyncio.sleep(0.05)
    raise AssertionError(f"{application_name} never waited on {wait_event}")


def sessions_of(url: str, application_name: str, gone: int) -> list[int]:
    """The server processes of ``application_name`` once process ``gone`` has exited."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(GUARD * 20):
            pids = [
                int(pid)
                for (pid,) in conn.execute(
                    "select pid from pg_stat_activity where application_name = %s", [application_name]
                )
            ]
            if gone not in pids:
                return pids
            conn.execute("select pg_sleep(0.05)")
    raise AssertionError(f"server process {gone} of {application_name} never exited")


def orders_of(url: str, client_order_id: str) -> list[tuple[int]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select order_id from trading.orders where client_order_id = %s", [client_order_id]
        ).fetchall()


def test_a_placement_whose_server_process_freezes_mid_statement_gives_up_and_nothing_was_placed(
    config: ManagerConfig, seeded_url: str
) -> None:
    config = named(config, seeded_url, "frozen-statement", call_timeout=CALL_TIMEOUT)

    async def run() -> tuple[managers.DatabaseUnavailable, int, int, list[int]]:
        async with PersistentOrderManager(config) as manager:
            with psycopg.connect(seeded_url) as blocker:
                # the placement is sent and waits on the server: then its server process freezes
                blocker.execute("lock table trading.orders in access exclusive mode")
                call = asyncio.create_task(manager.place_order(ORDER))
                pid = await backend_waiting(seeded_url, "frozen-statement", "Lock")
                with frozen([pid]):
                    blocker.rollback()
                    with pytest.raises(managers.DatabaseUnavailable) as caught:
                        await asyncio.wait_for(call, CALL_TIMEOUT + GUARD)
            placed = await asyncio.wait_for(manager.place_order(ORDER), GUARD)
            return caught.value, pid, placed.order_id, sessions_of(seeded_url, "frozen-statement", pid)

    error, frozen_pid, placed, sessions = asyncio.run(run())
    assert (type(error), error.maybe_committed, error.sqlstate) == (managers.DatabaseTimeout, False, None)
    assert str(error) == (
        "the database did not answer within 4 s (ManagerConfig.call_timeout): the call was given up "
        "and its connection closed before it committed, so nothing of it was committed"
    )
    # the frozen connection was discarded, never handed out again; the retry placed the one order
    assert len(sessions) == 1 and frozen_pid not in sessions
    assert orders_of(seeded_url, "frozen-1") == [(placed,)]


@contextmanager
def commits_never_acknowledged(cluster: Cluster) -> Iterator[None]:
    """Every commit that writes waits for a synchronous standby that never comes (wait event SyncRep)."""

    def standbys(names: str) -> None:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("alter system set synchronous_standby_names = {}").format(names))
            conn.execute("select pg_reload_conf()")
            for _ in range(GUARD * 20):
                with psycopg.connect(cluster.url(), autocommit=True) as fresh:
                    row = fresh.execute("show synchronous_standby_names").fetchone()
                if row == (names,):
                    return
                conn.execute("select pg_sleep(0.05)")
            raise AssertionError(f"synchronous_standby_names never became {names!r}")

    standbys("never_comes")
    try:
        yield
    finally:
        standbys("")


def test_a_placement_whose_server_freezes_in_its_commit_may_have_been_placed_and_its_retry_returns_it(
    own: Cluster, project_settings: Settings
) -> None:
    url = own.url()
    config = named(
        ManagerConfig(settings=project_settings, actor="frozen"),
        url,
        "frozen-commit",
        call_timeout=CALL_TIMEOUT,
    )
    order = replace(ORDER, client_order_id="frozen-commit-1")

    async def run() -> tuple[managers.DatabaseUnavailable, int]:
        async with PersistentOrderManager(config) as manager:
            with commits_never_acknowledged(own):
                call = asyncio.create_task(manager.place_order(order))
                pid = await backend_waiting(url, "frozen-commit", "SyncRep")
                with frozen([pid]), pytest.raises(managers.DatabaseUnavailable) as caught:
                    await asyncio.wait_for(call, CALL_TIMEOUT + GUARD)
            retried = await asyncio.wait_for(manager.place_order(order), GUARD)
            return caught.value, retried.order_id

    error, retried = asyncio.run(run())
    assert (type(error), error.maybe_committed, error.sqlstate) == (managers.DatabaseTimeout, True, None)
    assert str(error) == (
        "the database did not answer within 4 s (ManagerConfig.call_timeout) while the call committed: "
        "its connection was closed and the call may or may not have been committed. Retrying is safe "
        "for an idempotent call: place_order with the same client_order_id (it returns the order if it "
        "was placed), record_fill and record_exchange_fill with the same exchange_trade_id, "
        "record_fill_fee with the same fee, cancel_order, amend_order (the values the order already has "
        "change nothing)"
    )
    assert orders_of(url, "frozen-commit-1") == [(retried,)]


def test_a_health_check_while_the_whole_server_freezes_returns_an_unhealthy_report(
    own: Cluster, project_settings: Settings
) -> None:
    url = own.url()
    config = named(ManagerConfig(settings=project_settings), url, "frozen-health", health_timeout=2.0)

    async def run() -> tuple[managers.HealthReport, managers.HealthReport, managers.HealthReport]:
        manager = get_database_manager(config)
        try:
            before = await asyncio.wait_for(manager.health_check(), GUARD)
            with psycopg.connect(url) as blocker:
                # ops.health is running on the server when every server process freezes
                blocker.execute("lock table trading.orders in access exclusive mode")
                check = asyncio.create_task(manager.health_check())
                await backend_waiting(url, "frozen-health", "Lock")
                with frozen(own.server_processes()):
                    # why this cap and not GUARD: psycopg gives a cancelled query up after 5 s
                    # for the cancel request and 5 s for the server's answer, so without a deadline
                    # of its own the check still returned, some 10 s after its health_timeout
                    during = await asyncio.wait_for(check, 2.0 + HEALTH_SLACK)
                blocker.rollback()
            after = await asyncio.wait_for(manager.health_check(), GUARD)
            return before, during, after
        finally:
            await manager.close()

    before, during, after = asyncio.run(run())
    assert (before.healthy, after.healthy) == (True, True)
    assert during == managers.HealthReport(
        False,
        {"database": (True, "reachable"), "health": (False, "ops.health did not answer within 2 s")},
    )


def test_a_statement_the_server_cancels_at_its_statement_timeout_raises_database_timeout_57014(
    config: ManagerConfig, seeded_url: str
) -> None:
    config = named(config, seeded_url, "frozen-57014", call_timeout=3.0)

    async def run() -> tuple[managers.DatabaseUnavailable, int, int, int]:
        async with PersistentOrderManager(config) as manager:
            with psycopg.connect(seeded_url) as blocker:
                blocker.execute("lock table trading.orders in access exclusive mode")
                call = asyncio.create_task(manager.place_order(ORDER))
                pid = await backend_waiting(seeded_url, "frozen-57014", "Lock")
                with pytest.raises(managers.DatabaseUnavailable) as caught:
                    await asyncio.wait_for(call, 3.0 + GUARD)
                blocker.rollback()
            placed = await asyncio.wait_for(manager.place_order(ORDER), GUARD)
            again = sessions_of(seeded_url, "frozen-57014", gone=0)
            return caught.value, pid, placed.order_id, again[0]

    error, pid, placed, serving = asyncio.run(run())
    assert (type(error), error.maybe_committed, error.sqlstate) == (managers.DatabaseTimeout, False, "57014")
    assert str(error) == (
        "the database cancelled the call: canceling statement due to statement timeout (the managers' "
        "statement_timeout is 2 s, one second less than ManagerConfig.call_timeout); nothing of the "
        "call was committed"
    )
    # the server answered: its connection is whole and serves the next call
    assert serving == pid
    assert orders_of(seeded_url, "frozen-1") == [(placed,)]


def test_a_write_to_a_read_only_database_raises_database_read_only_25006(
    config: ManagerConfig, seeded_url: str, seeded: psycopg.Connection
) -> None:
    # as a standby, or a primary set read-only during a failover, refuses every write
    dbname = seeded.info.dbname
    seeded.execute(
        sql.SQL("alter database {} set default_transaction_read_only = on").format(sql.Identifier(dbname))
    )

    async def run() -> tuple[managers.DatabaseUnavailable, list[managers.Order]]:
        async with PersistentOrderManager(config) as manager:
            with pytest.raises(managers.DatabaseUnavailable) as caught:
                await asyncio.wait_for(manager.place_order(ORDER), GUARD)
            return caught.value, await asyncio.wait_for(manager.get_active_orders(), GUARD)

    error, active = asyncio.run(run())
    assert (type(error), error.maybe_committed, error.sqlstate) == (managers.DatabaseReadOnly, False, "25006")
    assert str(error) == (
        "the database refuses writes: cannot execute SELECT FOR KEY SHARE in a read-only transaction (a standby, or "
        "a database set read-only, as during a failover); nothing of the call was committed: retry "
        "once it takes writes again"
    )
    assert active == []  # reads go on
