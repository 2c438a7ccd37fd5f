"""Partitions over time: maintenance that lapsed for months, retention beside a live ingest, the
partition count of the status report, and cleanup cutoffs and partitions in any session TimeZone."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from ops_helpers import cli
from trading_helpers import call, fill, place, race

NEW_YORK = "America/New_York"


def _drop_partitions_ending_after(db: psycopg.Connection, table: str, after: str) -> None:
    """Drop the partitions of ``table`` that end after the SQL time ``after``: maintenance that
    stopped running, so that the partitions it had made ahead were used up."""
    query = sql.SQL(
        "select p.partition_schemaname, p.partition_tablename"
        " from partman.show_partitions(%s) p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
        " where i.child_end_time > {}"
    ).format(sql.SQL(after))
    for schema, name in db.execute(query, [table]).fetchall():
        db.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, name)))


def _ticks(db: psycopg.Connection, times: str, prefix: str) -> None:
    """A tick at each time of the SQL set ``times`` (exchange trade ids ``prefix``1, 2, ...)."""
    query = sql.SQL(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select (select min(instrument_id) from ref.instruments), t, {} || row_number() over (), 100, 1"
        " from {} as s(t)"
    ).format(sql.Literal(prefix), sql.SQL(times))
    db.execute(query)


# bug: partitions counted the default partition as one: for audit.log the status said 9 where
# partman.show_partitions lists 8 (oldest_start and newest_end span the 8; the default's rows are
# default_rows)
def test_partition_status_counts_the_partitions_pg_partman_lists_without_the_default(db):
    rows = db.execute(
        "select s.parent_table, s.partitions, (select count(*) from partman.show_partitions(s.parent_table))"
        " from ops.partition_status() s where s.registered"
    ).fetchall()

    assert len(rows) == 9
    assert [(table, shown) for table, shown, _ in rows] == [(table, listed) for table, _, listed in rows]


# bug: ops.cleanup_cutoff computed now() - older_than in the session TimeZone, where '40 days' are
# calendar days: across a daylight saving change a New York session's cutoff moved by an hour, and
# in spring cleanup --older-than 30d removed rows 29 days 23 hours old
def test_cleanup_cutoff_in_a_new_york_session_is_whole_utc_days_back(db):
    now = db.execute("select now()").fetchone()[0]
    zone = ZoneInfo(NEW_YORK)
    # the fewest days back across a daylight saving change in New York (there is one within a year)
    days = next(
        n
        for n in range(1, 366)
        if now.astimezone(zone).utcoffset() != (now - timedelta(days=n)).astimezone(zone).utcoffset()
    )
    db.execute("set timezone = 'America/New_York'")

    with db.transaction():  # one now() for both readings
        now = db.execute("select now()").fetchone()[0]
        cutoff = db.execute("select ops.cleanup_cutoff(%s)", [timedelta(days=days)]).fetchone()[0]

    # in UTC: Python subtracts two times of one zone by their wall clocks
    assert now.astimezone(UTC) - cutoff.astimezone(UTC) == timedelta(days=days)


# bug: with maintenance stopped until every ticks partition had ended before the cutoff, cleanup
# ticks dropped them all; pg_partman's maintenance then failed on the table for good ("Child table
# given does not exist"), and no tick could be stored again
def test_cleanup_ticks_keeps_the_newest_partition_so_maintenance_still_makes_partitions(seeded, db_url):
    _drop_partitions_ending_after(seeded, "market.ticks", "now() - interval '1 day'")
    # a tick in every partition left, so that each holds rows older than the cutoff
    _ticks(
        seeded,
        "(select i.child_start_time + interval '1 hour' from partman.show_partitions('market.ticks') p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i)",
        "old",
    )

    cleaned = cli("cleanup", "ticks", "--older-than", "1d", database_url=db_url)
    maintained = cli("partitions", "maintain", database_url=db_url)

    assert cleaned.exit_code == 0, cleaned.output
    assert seeded.execute("select count(*) from market.ticks").fetchone() == (0,)
    assert maintained.exit_code == 0, maintained.output
    ahead = seeded.execute("select ok from internal.health_partitions_ahead()").fetchone()
    assert ahead == (True,)


# bug: pg_partman re-raises an error with its CONTEXT and empty DETAIL and HINT appended to the
# message; the 55S12 of the hourly job (and health's cron_jobs) carried a dozen lines per table
def test_partition_maintenance_failure_names_each_table_with_its_error_on_one_line(db, db_url):
    _drop_partitions_ending_after(db, "audit.log", "now()")
    db.execute("select trading.create_strategy(name => 'lands-in-audit-default')")

    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("call ops.run_partition_maintenance()")

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "55S12",
        "partition maintenance failed for 1 of the tables: audit.log: updated partition constraint for default"
        ' partition "log_default" would be violated by some row',
    )


# months without maintenance: audit rows (stamped now(), the one table whose default partition
# takes rows) pile up in audit.log's default partition; health says so, maintain alone cannot attach
# the month they belong to, repair then maintain recover it
def _partitions(db: psycopg.Connection, table: str) -> int:
    return db.execute("select count(*) from partman.show_partitions(%s)", [table]).fetchone()[0]


# bug: partman.run_maintenance only tries its global lock and returns with a notice when another
# maintenance holds it, so a run beside pg_cron's hourly one skipped every table and said success
def test_partition_maintenance_beside_another_run_waits_for_it_and_skips_no_table(db, db_url):
    db.execute(
        "select ops.configure_partitioning(parent_table => 'market.ticks', premake => 12, retention => null)"
    )
    before = _partitions(db, "market.ticks")

    _, result = race(
        db,
        db_url,
        lambda c: c.execute("select pg_advisory_xact_lock(hashtext('pg_partman run_maintenance'))"),
        lambda c: c.execute("call ops.run_partition_maintenance()"),
        wait_event="advisory",
    )

    assert not isinstance(result, psycopg.Error), result
    assert _partitions(db, "market.ticks") > before


def test_audit_rows_left_in_the_default_partition_by_lapsed_maintenance_recover_with_repair(db, db_url):
    _drop_partitions_ending_after(db, "audit.log", "now() - interval '2 months'")
    db.execute(
        "insert into audit.log (logged_at, table_name, operation, row_key)"
        " select t, 'x.y', 'INSERT', '{}' from generate_series(now() - interval '50 days', now(), interval '1 day') t"
    )
    defaults = db.execute("select ok, detail from internal.health_default_partitions()").fetchone()
    failed = cli("partitions", "maintain", database_url=db_url)

    repaired = cli("partitions", "repair", database_url=db_url)
    maintained = cli("partitions", "maintain", database_url=db_url)

    assert defaults == (False, "rows in default partitions: audit.log_default (51 rows)")
    assert failed.exit_code == 1
    assert repaired.output.splitlines() == ["audit.log: moved 51 rows out of the default partition"]
    assert maintained.exit_code == 0, maintained.output
    checks = db.execute(
        "select (select ok from internal.health_default_partitions()), (select ok from internal.health_partitions_ahead())"
    ).fetchone()
    assert checks == (True, True)
    assert db.execute("select count(*) from audit.log where table_name = 'x.y'").fetchone() == (51,)


# retention drops the old daily partitions while an ingest writes today's ticks: the drop waits for
# the ingest's transaction, nothing fails, and no tick within retention is lost
def test_retention_dropping_old_ticks_partitions_beside_a_live_ingest_keeps_every_tick_within_it(
    seeded, db_url
):
    _ticks(seeded, "unnest(array[now() - interval '6 days', now() - interval '1 day'])", "kept")
    seeded.execute("select ops.configure_partitioning('market.ticks', 4, '3 days')")
    errors: list[BaseException] = []
    with psycopg.connect(db_url) as ingest:
        _ticks(ingest, "generate_series(now() - interval '1 minute', now(), interval '1 second')", "live")

        def maintain() -> None:
            try:
                with psycopg.connect(db_url, autocommit=True) as conn:
                    conn.execute("call ops.run_partition_maintenance()")
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        worker = threading.Thread(target=maintain)
        worker.start()
        worker.join(1.0)
        waiting = worker.is_alive()
        ingest.commit()
    worker.join(30)

    assert (waiting, errors) == (True, [])
    counts = seeded.execute(
        "select count(*) filter (where exchange_trade_id like 'live%'), array_agg(exchange_trade_id)"
        " filter (where exchange_trade_id like 'kept%') from market.ticks"
    ).fetchone()
    assert counts == (61, ["kept2"])


def _old_orders(db: psycopg.Connection) -> dict[str, int]:
    """Orders placed 40 days ago: finished, open, and filled into a position still open."""
    long_ago = datetime.now(UTC) - timedelta(days=40)
    ids = {}
    for name in ("cancelled-1", "cancelled-2", "cancelled-3"):
        ids[name] = place(db, "buy", "0.01", "50000", placed_at=long_ago, client_order_id=name)
        call(db, "trading.cancel_order", order_id=ids[name], reason="test")
    ids["open"] = place(db, "buy", "0.01", "50000", placed_at=long_ago, client_order_id="open")
    ids["holding"] = place(db, "buy", "0.01", "50000", placed_at=long_ago, client_order_id="holding")
    fill(db, ids["holding"], "0.01", "50000", executed_at=long_ago)
    ids["young"] = place(db, "buy", "0.01", "50000", client_order_id="young")
    call(db, "trading.cancel_order", order_id=ids["young"], reason="test")
    db.execute("update trading.orders set updated_at = created_at")
    return ids


# cleanup orders in a New York session: the dry run's count is what the run then removes, and only
# the old finished orders go
def test_cleanup_orders_in_a_new_york_session_removes_what_its_dry_run_counted(seeded, db_url):
    ids = _old_orders(seeded)
    zone = {"PGTZ": NEW_YORK}

    dry = cli("cleanup", "orders", "--older-than", "30d", "--dry-run", database_url=db_url, env=zone)
    run = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url, env=zone)

    assert dry.exit_code == 0, dry.output
    assert "dry run: 3 rows older than " in dry.output
    assert run.exit_code == 0, run.output
    assert run.output.splitlines()[-1] == "orders: dropped 0 partitions (0 rows), deleted 3 rows"
    left = {row[0] for row in seeded.execute("select order_id from trading.orders")}
    assert left == {ids["open"], ids["holding"], ids["young"]}
