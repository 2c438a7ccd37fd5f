"""Readers of views built on views while ``spreadedge migrate`` re-applies functions/.

A reader of ``monitor.open_positions`` locks it, then ``trading.open_positions`` under it, then
``trading.position_summary``; functions/ replaces them the other way round, inner view first,
each CREATE OR REPLACE VIEW taking an ACCESS EXCLUSIVE lock until functions/ commits. A reader
that came between the two held the outer view and waited for the inner one while migrate waited
for the outer: a deadlock, and PostgreSQL aborted whichever session checked first, often the
reader (a trading application, a dashboard). An operator's migrate must never make an
application's query fail: migrate yields, and tries again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from spreadedge import sqlfiles
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from spreadedge.sqlfiles import MigrationError
from trading_helpers import trade, waits_for_a_lock

# views read through other views (outer first), and a history API function reading one
READS = (
    "select * from monitor.open_positions",  # -> trading.open_positions -> trading.position_summary
    "select * from trading.active_orders",  # -> trading.order_history
    "select trading.position_list()",  # a function of the history API, -> trading.position_summary
)
READERS = 4
MIGRATES = 3
# bounds: the readers stop after this many reads each, or this many seconds, whichever comes first
MAX_READS = 20_000
MAX_SECONDS = 60


def _read_in_a_loop(url: str, stop: threading.Event, errors: list[str]) -> int:
    """Run READS one after another, each in its own transaction, until told to stop; every error's
    SQLSTATE and message goes into errors. Returns how many reads were made."""
    reads = 0
    deadline = time.monotonic() + MAX_SECONDS
    with psycopg.connect(url, autocommit=True, application_name="dashboard") as conn:
        while not stop.is_set() and reads < MAX_READS and time.monotonic() < deadline:
            try:
                conn.execute(READS[reads % len(READS)]).fetchall()
            except psycopg.Error as exc:
                errors.append(f"{exc.sqlstate}: {exc.diag.message_primary}")
            reads += 1
    return reads


def _migrate_pid(monitor: psycopg.Connection) -> int:
    """The backend of the running migrate (it has connected within 30 s)."""
    for _ in range(300):
        row = monitor.execute(
            "select pid from pg_stat_activity where datname = current_database()"
            " and application_name = 'spreadedge migrate'"
        ).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.1)
    raise AssertionError("migrate did not connect")


def _comment(conn: psycopg.Connection, view: str) -> str:
    return conn.execute("select obj_description(%s::regclass, 'pg_class')", [view]).fetchone()[0]


def test_readers_of_views_on_views_get_no_error_while_migrate_reapplies_functions(
    seeded, seeded_url: str, project_settings: Settings
) -> None:
    trade(seeded, "buy", "1", "60000")
    trade(seeded, "sell", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    comment = _comment(seeded, "trading.position_summary")
    seeded.execute("comment on view trading.position_summary is 'changed by hand'")
    runs = seeded.execute("select count(*) from ops.migrate_runs").fetchone()[0]
    errors: list[str] = []
    stop = threading.Event()
    with ThreadPoolExecutor(READERS) as pool:
        readers = [pool.submit(_read_in_a_loop, seeded_url, stop, errors) for _ in range(READERS)]
        failed: list[str] = []
        try:
            time.sleep(0.5)  # the readers are reading
            for _ in range(MIGRATES):
                try:
                    migrate(seeded_url, project_settings, lambda line: None)
                except Exception as exc:  # reported below, after the readers' errors
                    failed.append(f"{type(exc).__name__}: {exc}")
        finally:
            stop.set()
        reads = sum(reader.result(timeout=120) for reader in readers)
    assert reads > READERS * len(READS)  # they did read, over and over, during the migrates
    assert errors == []  # was 40P01: deadlock detected, in the readers
    assert failed == []
    assert seeded.execute("select count(*) from ops.migrate_runs").fetchone()[0] == runs + MIGRATES
    assert _comment(seeded, "trading.position_summary") == comment


def test_a_reader_waiting_for_migrate_while_holding_a_view_it_replaces_later_is_not_the_one_aborted(
    seeded, seeded_url: str, project_settings: Settings
) -> None:
    runs = seeded.execute("select count(*) from ops.migrate_runs").fetchone()[0]
    with (
        ThreadPoolExecutor(2) as pool,
        psycopg.connect(seeded_url) as holder,
        psycopg.connect(seeded_url) as reader,
    ):
        # a session reading ops.index_usage (functions/61) holds migrate there, with the trading
        # views of functions/50 already replaced
        holder.execute("select * from ops.index_usage limit 0")
        running = pool.submit(migrate, seeded_url, project_settings, lambda line: None)
        migrating = _migrate_pid(seeded)
        assert waits_for_a_lock(seeded, migrating, "relation", ended=running.done)
        # a dashboard's transaction reads a monitor view (functions/69), then a trading one: it
        # waits for migrate, which will wait for it at functions/69
        reader.execute("select * from monitor.orders_per_status").fetchall()
        read = pool.submit(lambda: reader.execute("select * from trading.active_orders").fetchall())
        assert waits_for_a_lock(seeded, reader.info.backend_pid, "relation", ended=read.done)
        holder.commit()
        assert read.result(timeout=60) == []  # was 40P01: deadlock detected
        reader.commit()
        running.result(timeout=120)
    assert seeded.execute("select count(*) from ops.migrate_runs").fetchone()[0] == runs + 1


def test_a_session_idle_in_its_transaction_on_a_view_does_not_stop_the_readers_behind_migrate(
    seeded, seeded_url: str, project_settings: Settings
) -> None:
    runs = seeded.execute("select count(*) from ops.migrate_runs").fetchone()[0]
    with (
        ThreadPoolExecutor(1) as pool,
        psycopg.connect(seeded_url) as idle,
        psycopg.connect(seeded_url, autocommit=True, application_name="trading app") as reader,
    ):
        # a psql user's BEGIN; SELECT on a view, then lunch: migrate cannot replace the view
        idle.execute("select * from trading.position_summary limit 0")
        running = pool.submit(migrate, seeded_url, project_settings, lambda line: None)
        migrating = _migrate_pid(seeded)
        assert waits_for_a_lock(seeded, migrating, "relation", ended=running.done)
        # an application's read of a view on it: it queued behind migrate's waiting lock, for as
        # long as the idle session stayed open (the 5 s here are the cap of a test)
        reader.execute("set statement_timeout = '5s'")
        rows = reader.execute("select * from trading.open_positions").fetchall()
        idle.commit()
        running.result(timeout=120)
    assert rows == []  # was 57014: canceling statement due to statement timeout
    assert seeded.execute("select count(*) from ops.migrate_runs").fetchone()[0] == runs + 1


def test_migrate_gives_up_naming_the_long_transaction_when_a_view_stays_in_use(
    seeded, seeded_url: str, project_settings: Settings, monkeypatch
) -> None:
    monkeypatch.setattr(sqlfiles, "_LOCK_PATIENCE", 2)
    comment = _comment(seeded, "trading.position_summary")
    seeded.execute("comment on view trading.position_summary is 'changed by hand'")
    seeded.commit()
    with ThreadPoolExecutor(1) as pool, psycopg.connect(seeded_url) as idle:
        idle.execute("select * from trading.position_summary limit 0")
        running = pool.submit(migrate, seeded_url, project_settings, lambda line: None)
        with pytest.raises(MigrationError) as raised:
            running.result(timeout=60)  # was: waited for as long as the session stayed open
    assert str(raised.value).startswith(
        "functions/ was not re-applied: the tables and views it locks stayed in use for 2 s"
        " (functions/50_trading_views.sql line 4: canceling statement due to lock timeout (SQLSTATE 55P03));"
        " a long transaction holds one of them"
    )
    assert _comment(seeded, "trading.position_summary") == "changed by hand"  # nothing applied
    migrate(seeded_url, project_settings, lambda line: None)
    assert _comment(seeded, "trading.position_summary") == comment
