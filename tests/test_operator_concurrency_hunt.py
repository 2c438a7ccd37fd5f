"""Operator commands run while trading goes on: what a trading session sees during a migrate.

Each test holds a trading session's transaction open at the point that matters, starts
``spreadedge migrate`` in a thread, sees it wait for a lock (pg_stat_activity), then lets the
trading session go on: both must finish, neither aborted as a deadlock, and no writer may queue
behind migrate for as long as another transaction stays open."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg

from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from trading_helpers import call, fill, place, position, trade, waits_for_a_lock

SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
HOUR = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def _start_migrate(pool: ThreadPoolExecutor, url: str, settings: Settings) -> Future[None]:
    return pool.submit(migrate, url, settings, lambda line: None)


def _migrate_waits_for_a_lock(monitor: psycopg.Connection, running: Future[None]) -> bool:
    """Whether migrate's own connection comes to wait for a lock within 30 s."""
    for _ in range(300):
        waiting = monitor.execute(
            "select 1 from pg_stat_activity where datname = current_database()"
            " and application_name = 'spreadedge migrate' and wait_event_type = 'Lock'"
        ).fetchone()
        if waiting is not None:
            return True
        if running.done():
            return False
        time.sleep(0.1)
    return False


def _runs(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from ops.migrate_runs").fetchone()[0]


def test_a_fill_that_waits_for_a_migrate_waiting_for_its_transaction_is_not_aborted_as_a_deadlock(
    seeded, seeded_url, project_settings
):
    trade(seeded, "buy", "10", "60000", **SWAP)
    order_id = place(seeded, "buy", "10", "60000", **SWAP)
    runs = _runs(seeded)
    # the pool first: it is left last, once the sessions' transactions have ended
    with ThreadPoolExecutor(1) as pool, psycopg.connect(seeded_url) as engine:
        # the engine's transaction books a funding payment (the position written, not committed) ...
        call(engine, "trading.record_funding", strategy="alpha", amount=D("-1.25"), paid_at=HOUR, **SWAP)
        running = _start_migrate(pool, seeded_url, project_settings)
        # ... which migrate waits for, holding the trades and orders it has put triggers on so far
        assert _migrate_waits_for_a_lock(seeded, running)
        fill(engine, order_id, "10", "60000")  # was 40P01 deadlock detected (or migrate's was)
        engine.commit()
        running.result(timeout=120)
    swap = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    assert (swap["quantity"], swap["funding"]) == (D("20"), D("-1.25"))
    assert _runs(seeded) == runs + 1


def test_a_transaction_left_open_on_orders_does_not_hold_other_fills_behind_a_migrate(
    seeded, seeded_url, project_settings
):
    runs = _runs(seeded)
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url) as idle,
        psycopg.connect(seeded_url, autocommit=True) as engine,
    ):
        place(idle, "buy", "1", "60000")  # left open: it holds trading.orders
        running = _start_migrate(pool, seeded_url, project_settings)
        assert _migrate_waits_for_a_lock(seeded, running)
        # why a timeout: migrate queued for trading.orders behind the open transaction, and every
        # writer queued behind migrate for as long as that transaction stayed open
        engine.execute("set statement_timeout = '10s'")
        order_id = place(engine, "sell", "1", "61000", strategy="beta")
        fill(engine, order_id, "1", "61000")
        idle.commit()
        running.result(timeout=120)
    assert position(seeded, "beta", "binance", "BTCUSDT")["quantity"] == D("-1")
    assert _runs(seeded) == runs + 1


def test_a_migrate_after_partition_maintenance_is_not_aborted_as_a_deadlock_by_a_waiting_fill(
    seeded, seeded_url, project_settings
):
    # the hourly maintenance makes partitions as the superuser; migrate gives them to spreadedge_owner
    seeded.execute(
        "update partman.part_config set premake = premake + 1 where parent_table = 'trading.orders'"
    )
    seeded.execute("call ops.run_partition_maintenance()")
    made = seeded.execute(
        "select c.oid::regclass::text from pg_class c join pg_inherits i on i.inhrelid = c.oid"
        " where i.inhparent = 'trading.orders'::regclass and c.relowner <> 'spreadedge_owner'::regrole"
    ).fetchall()
    assert len(made) == 1
    order_id = place(seeded, "buy", "1", "60000")
    runs = _runs(seeded)
    with (
        ThreadPoolExecutor(2) as pool,
        psycopg.connect(seeded_url) as holder,
        psycopg.connect(seeded_url, autocommit=True) as engine,
    ):
        # a login's security event, not committed yet, holds migrate at the last triggers of
        # functions/, with the trading tables' triggers already replaced
        holder.execute("select internal.security_event('login_failed', null, 'someone')")
        running = _start_migrate(pool, seeded_url, project_settings)
        assert _migrate_waits_for_a_lock(seeded, running)
        engine.execute("set plan_cache_mode = force_generic_plan")
        # the fill locks every partition of trading.orders (a generic plan), then waits for migrate
        filled = pool.submit(fill, engine, order_id, "1", "60000")
        waits_for_a_lock(seeded, engine.info.backend_pid, ended=filled.done)
        holder.commit()
        running.result(timeout=120)  # was MigrationError: deadlock detected (SQLSTATE 40P01)
        filled.result(timeout=120)
    assert position(seeded, "alpha", "binance", "BTCUSDT")["quantity"] == D("1")
    assert _runs(seeded) == runs + 1
    owner = seeded.execute("select relowner::regrole::text from pg_class where oid = %s::regclass", made[0])
    assert owner.fetchone() == ("spreadedge_owner",)
