"""A person in psql holds a lock during trading: ``begin; select ... for update;``, then lunch.

Partition maintenance behind such a transaction must not make every fill of the table queue behind
its own waiting lock (the lock queue pile-up), and gives up naming the session; health names the
session others wait for; the managers' calls behind it fail in bounded time saying which row lock
they waited for, with the managers' exception classes whatever timeout cancelled them.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from spreadedge import managers
from spreadedge.managers import ManagerConfig, PersistentOrderManager
from test_partitions_hunt import _drop_partitions_ending_after
from trading_helpers import fill, place, waits_for_a_lock

# every wait of a test is capped by this many seconds: a hang is a failure, not a stuck run
CAP = 60


def _session_line(conn: psycopg.Connection, pid: int) -> str:
    """How health and maintenance name a session, computed here from pg_stat_activity."""
    usename, application, state, since = conn.execute(
        "select usename, application_name, state,"
        " to_char(xact_start at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"')"
        " from pg_stat_activity where pid = %s",
        [pid],
    ).fetchone()
    return f"pid {pid} ({usename}, application {application}, {state}, transaction open since {since})"


def _orders_need_a_partition(db: psycopg.Connection) -> None:
    """Maintenance that stopped for a while: trading.orders needs a new partition."""
    _drop_partitions_ending_after(db, "trading.orders", "now() + interval '1 month'")


# bug: attaching a partition takes an ACCESS EXCLUSIVE lock on the table's default partition, which
# a psql user's select on trading.orders holds a lock on; the maintenance waited for it as long as
# the transaction stayed open, and every fill (its generic plan locks every partition of orders)
# queued behind the maintenance's waiting lock: 57014 here, a stopped engine in production
def test_a_fill_is_not_queued_behind_partition_maintenance_waiting_for_a_transaction_left_open(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    order = place(seeded, "buy", "1", "60000")
    _orders_need_a_partition(seeded)
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url, application_name="lunch") as person,
        psycopg.connect(seeded_url, autocommit=True) as maintainer,
        psycopg.connect(seeded_url, autocommit=True, application_name="engine") as engine,
    ):
        person.execute("select count(*) from trading.orders").fetchone()
        running = pool.submit(maintainer.execute, "call ops.run_partition_maintenance()")
        assert waits_for_a_lock(seeded, maintainer.info.backend_pid, "relation", ended=running.done)
        engine.execute("set statement_timeout = '20s'")  # the cap of a test
        try:
            # was 57014: canceling statement due to statement timeout
            trade_id = fill(engine, order, "1", "60000")
        finally:
            person.rollback()
        running.result(timeout=CAP)  # tried again after the person's transaction ended, and made it
    assert seeded.execute("select trade_id, quantity from trading.trades").fetchall() == [
        (trade_id, Decimal("1"))
    ]
    assert seeded.execute("select ok from internal.health_partitions_ahead()").fetchone() == (True,)


# bug: the maintenance waited for as long as the transaction stayed open (here: the 60 s cap)
def test_partition_maintenance_gives_up_on_a_held_table_naming_the_session_that_holds_it(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    _orders_need_a_partition(seeded)
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url, application_name="lunch") as person,
        psycopg.connect(seeded_url, autocommit=True) as maintainer,
    ):
        person.execute("select count(*) from trading.orders").fetchone()
        holder = _session_line(seeded, person.info.backend_pid)
        running = pool.submit(maintainer.execute, "call ops.run_partition_maintenance()")
        try:
            with pytest.raises(psycopg.Error) as raised:
                running.result(timeout=CAP)  # was: waited as long as the transaction stayed open
        finally:
            person.rollback()
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "55S12",
        "partition maintenance failed for 1 of the tables: trading.orders: a new partition of trading.orders"
        f" needs a lock on trading.orders_default, which other sessions hold: {holder} (5 attempts)",
    )
    # the other tables were maintained, and the next run makes the partition
    assert seeded.execute("select ok from internal.health_partitions_ahead()").fetchone() == (False,)
    seeded.execute("call ops.run_partition_maintenance()")
    assert seeded.execute("select ok from internal.health_partitions_ahead()").fetchone() == (True,)


# bug: nothing named a session that others wait for: long_transactions names a transaction only
# after 15 minutes, without saying that fills wait behind it, nor which application holds it
def test_health_names_the_session_a_waiting_fill_waits_for(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    order = place(seeded, "buy", "1", "60000")
    fill(seeded, order, "0.5", "60000")
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url, application_name="lunch") as person,
        psycopg.connect(seeded_url, autocommit=True, application_name="engine") as engine,
    ):
        person.execute("select * from trading.positions for update").fetchall()
        engine.execute("set statement_timeout = '30s'")  # the cap of a test
        waiting = pool.submit(fill, engine, order, "0.5", "60000")
        assert waits_for_a_lock(seeded, engine.info.backend_pid, "transactionid", ended=waiting.done)
        try:
            holder = _session_line(seeded, person.info.backend_pid)
            ok, detail = seeded.execute(
                "select ok, detail from internal.health_blocking_sessions('0 seconds')"
            ).fetchone()
        finally:
            person.rollback()
        waiting.result(timeout=CAP)
    assert ok is False
    prefix = (
        f"sessions waiting for a lock longer than 00:00:00 wait for: {holder}, blocking 1 (the longest for "
    )
    assert detail.startswith(prefix) and re.fullmatch(r"\d\d:\d\d:\d\d\)", detail.removeprefix(prefix)), (
        detail
    )


def test_health_report_has_blocking_sessions_ok_when_no_session_waits(db: psycopg.Connection) -> None:
    document = db.execute("select ops.health_report()").fetchone()[0]
    assert [
        (c["name"], c["ok"], c["detail"]) for c in document["checks"] if c["name"] == "blocking_sessions"
    ] == [("blocking_sessions", True, "no session waiting for a lock longer than 00:00:10")]


def _fill_behind_a_held_position(
    config: ManagerConfig, url: str, order_id: int
) -> managers.DatabaseUnavailable:
    """A manager's fill of order_id while a psql user holds the positions FOR UPDATE; its error."""

    async def run() -> managers.DatabaseUnavailable:
        async with PersistentOrderManager(config) as manager:
            with pytest.raises(managers.DatabaseUnavailable) as caught:
                await asyncio.wait_for(
                    manager.record_fill(order_id, "t-2", Decimal("0.5"), Decimal("60000")),
                    config.call_timeout + CAP,
                )
            return caught.value

    with psycopg.connect(url, application_name="lunch") as person:
        person.execute("select * from trading.positions for update").fetchall()
        return asyncio.run(run())


def _position_tuple(conn: psycopg.Connection) -> str:
    (ctid,) = conn.execute("select ctid::text from trading.positions").fetchone()
    return ctid


# bug: the message said "canceling statement due to statement timeout" alone, not that the call
# had waited for a row another session holds
def test_a_managed_fill_behind_a_held_position_names_the_row_lock_it_waited_for(
    seeded: psycopg.Connection, seeded_url: str, config: ManagerConfig
) -> None:
    order = place(seeded, "buy", "1", "60000")
    fill(seeded, order, "0.5", "60000")
    ctid = _position_tuple(seeded)

    error = _fill_behind_a_held_position(replace(config, call_timeout=3.0), seeded_url, order)

    assert (type(error), error.sqlstate, error.maybe_committed) == (managers.DatabaseTimeout, "57014", False)
    assert str(error) == (
        "the database cancelled the call: canceling statement due to statement timeout while locking tuple "
        f'{ctid} in relation "positions" (the managers\' statement_timeout is 2 s, one second less than '
        "ManagerConfig.call_timeout); nothing of the call was committed"
    )
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (1,)


# bug: a lock_timeout set on the database (a guard against sessions left open in psql) gave the
# caller psycopg's raw LockNotAvailable: not a DatabaseUnavailable, no maybe_committed
def test_a_lock_timeout_of_the_database_gives_a_managed_call_database_timeout_55p03(
    seeded: psycopg.Connection, seeded_url: str, config: ManagerConfig
) -> None:
    order = place(seeded, "buy", "1", "60000")
    fill(seeded, order, "0.5", "60000")
    ctid = _position_tuple(seeded)
    seeded.execute(
        sql.SQL("alter database {} set lock_timeout = '1s'").format(sql.Identifier(seeded.info.dbname))
    )

    error = _fill_behind_a_held_position(config, seeded_url, order)

    assert (type(error), error.sqlstate, error.maybe_committed) == (managers.DatabaseTimeout, "55P03", False)
    assert str(error) == (
        f'the database cancelled the call: canceling statement due to lock timeout while locking tuple {ctid} in relation "positions" '
        "(a lock_timeout set on the database, the role or the connection); nothing of the call was committed"
    )
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (1,)
