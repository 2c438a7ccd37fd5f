"""Rules of the health checks (ops.health, the REST API's four, and ops.health_report, the
operator's) and of the shared argument checks that no other test pinned down: each test here fails
with a small, plausible bug in the SQL (a mutant: a bound off by one, a dropped condition, a
narrowed list) that the rest of the suite let through. A check that stops failing when it should is
the worst of these: the load balancer and the operator are then told all is well.

Mutation run (functions/60_ops_health.sql, 50_trading_views.sql, 00_internal_checks.sql):
34 mutants tried, 14 caught by the suite, 20 survived, none of them equivalent. 19 of the holes are
closed, each by one test below. One is left open: replication_slots failing a slot that holds back
exactly max_retained_wal bytes (> made >=); a slot's WAL held back is read against
pg_current_wal_lsn(), which any background process moves between two reads, so the bound can be
met only by a test that races.

Every test runs on a fresh clone of the migrated template (the db fixture, seeded for the views); times that must fall
on a bound are written and judged in one transaction, whose now() does not move."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import psycopg
import pytest
from psycopg import sql

from trading_helpers import fill, place, trade


def api_check(conn: psycopg.Connection, name: str, expected: list[str] | None) -> tuple[bool, str]:
    """(ok, detail) of one check of ops.health(expected_migrations), the REST API's."""
    return conn.execute(
        "select ok, detail from ops.health(%s) where check_name = %s", [expected, name]
    ).fetchone()


def applied_migrations(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute("select migration_id from public._spreadedge_migration_checksum order by 1")
    ]


# -- migrations -----------------------------------------------------------------------------------


def test_a_migration_applied_but_unknown_to_the_code_fails_the_migrations_check(db):
    # code older than the database (a rollback of the application after a migrate): the database
    # has a migration the code was not built with, and the API must leave the rotation
    applied = applied_migrations(db)

    assert api_check(db, "migrations", applied[:-1]) == (
        False,
        f"{len(applied)} applied; applied but unknown to this code: {applied[-1]}",
    )


def test_a_database_without_a_migration_ledger_fails_the_migrations_check(db):
    db.execute("drop table public._spreadedge_migration_checksum")

    assert api_check(db, "migrations", ["0001"]) == (False, "no migration ledger: run spreadedge migrate")


# -- partitions -----------------------------------------------------------------------------------


def test_a_partitioned_table_unregistered_in_any_project_schema_fails_partitions_registered(db):
    schemas = ["audit", "auth", "market", "monitor", "ops", "ref", "trading"]
    for schema in schemas:
        db.execute(
            sql.SQL("create table {} (at timestamptz) partition by range (at)").format(
                sql.Identifier(schema, "stray")
            )
        )

    assert db.execute("select ok, detail from internal.health_partitions_registered()").fetchone() == (
        False,
        "not registered with pg_partman: " + ", ".join(f"{schema}.stray" for schema in schemas),
    )


def ticks_partitions(conn: psycopg.Connection) -> list[tuple[str, datetime, datetime]]:
    """(name, start, end) of each partition of market.ticks but the default, oldest first."""
    return conn.execute(
        "select c.relname, b[1]::timestamptz, b[2]::timestamptz"
        " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " cross join lateral regexp_match(pg_get_expr(c.relpartbound, c.oid),"
        "     'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') b"
        " where i.inhparent = 'market.ticks'::regclass and b is not null order by 2"
    ).fetchall()


def drop_ticks_partition(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("drop table {}").format(sql.Identifier("market", name)))


def test_a_table_left_with_no_partition_at_all_fails_partitions_ahead(db):
    # every partition of market.ticks gone (dropped by hand): each write is refused, and a table
    # whose partitions end "never" must fail, not fall through both comparisons with now()
    for name, _, _ in ticks_partitions(db):
        drop_ticks_partition(db, name)

    assert db.execute("select ok, detail from internal.health_partitions_ahead()").fetchone() == (
        False,
        "not created ahead: market.ticks (newest partition ends never)",
    )


def test_a_table_whose_partitions_all_ended_fails_partitions_ahead_naming_the_end(db):
    # maintenance stopped long ago: every partition of market.ticks ends before now; health must
    # say so, not fail on the stretch of time from now back to the last end
    with db.transaction():
        now = db.execute("select now()").fetchone()[0]
        for name, _, end in ticks_partitions(db):
            if end > now:
                drop_ticks_partition(db, name)
        end = ticks_partitions(db)[-1][2].astimezone(UTC)
        row = db.execute("select ok, detail from internal.health_partitions_ahead()").fetchone()

    assert row == (False, f"not created ahead: market.ticks (newest partition ends {end:%Y-%m-%d %H:%MZ})")


def test_a_partition_starting_exactly_now_counts_as_ahead(db):
    # the partitions ahead are those starting from now on: split the partition of today at now()
    # (one transaction, one now()) and the half starting at now() is one more of them
    def ahead() -> int:
        return db.execute(
            "select ahead from internal.partition_coverage() where parent_table = 'market.ticks'"
        ).fetchone()[0]

    with db.transaction():
        before = ahead()
        now = db.execute("select now()").fetchone()[0]
        [(name, start, end)] = [p for p in ticks_partitions(db) if p[1] <= now < p[2]]
        drop_ticks_partition(db, name)
        split = "create table market.{} partition of market.ticks for values from ({}) to ({})"
        db.execute(
            sql.SQL(split).format(sql.Identifier("ticks_until_now"), sql.Literal(start), sql.SQL("now()"))
        )
        db.execute(
            sql.SQL(split).format(sql.Identifier("ticks_from_now"), sql.SQL("now()"), sql.Literal(end))
        )
        after = ahead()

    assert after == before + 1


# -- default partitions, backups ------------------------------------------------------------------


def backup(conn: psycopg.Connection, kind: str, finished_at: str, expired: bool = False) -> None:
    """A successful backup run labelled L finishing at the SQL time ``finished_at``."""
    conn.execute(
        sql.SQL(
            "insert into ops.backup_runs (kind, compress_type, started_at, finished_at, status, label, expired_at)"
            " values (%s, 'zst', least(now(), {0}) - interval '1 hour', {0}, 'succeeded', 'L', {1})"
        ).format(sql.SQL(finished_at), sql.SQL("now()" if expired else "null")),
        [kind],
    )


def last_backup(conn: psycopg.Connection, max_age: str = "26 hours") -> tuple[bool, str]:
    return conn.execute("select ok, detail from internal.health_last_backup(%s)", [max_age]).fetchone()


def test_a_backup_exactly_as_old_as_max_backup_age_passes_last_backup(db):
    with db.transaction():
        backup(db, "full", "now() - interval '26 hours'")
        ok, detail = last_backup(db)

    assert (ok, detail.split(", ", 1)[1]) == (True, "1 day 02:00:00 ago (limit 26:00:00)")


def test_a_logical_dump_is_no_physical_backup_for_last_backup(db):
    backup(db, "logical_full", "now()")

    assert last_backup(db) == (False, "no successful physical backup recorded in ops.backup_runs")


def test_a_backup_finished_exactly_a_minute_ahead_of_the_clock_still_counts(db):
    # "more than a minute later than the clock reads" leaves a run out; a minute exactly is the
    # clock's own jitter and counts
    with db.transaction():
        backup(db, "full", "now() + interval '1 minute'")
        ok, detail = last_backup(db)

    assert (ok, detail.split(", ", 1)[1]) == (True, "00:01:00 ahead of the clock (limit 26:00:00)")


def test_an_expired_backup_ahead_of_the_clock_is_named_expired_not_ahead(db):
    # pgBackRest no longer holds it: it is no backup, whatever its time says
    backup(db, "full", "now() + interval '2 days'", expired=True)

    assert last_backup(db) == (
        False,
        "no successful physical backup in ops.backup_runs that pgBackRest still holds (1 expired)",
    )


# -- disk, replication slots, limits --------------------------------------------------------------


def disk(conn: psycopg.Connection, used: str, limit: str) -> bool:
    return conn.execute(
        "select ok from internal.health_disk(%s::numeric, %s::numeric)", [used, limit]
    ).fetchone()[0]


def test_a_file_system_used_exactly_to_the_limit_passes_disk_usage(db):
    assert disk(db, "0.9", "0.9") is True


def test_a_disk_limit_of_1_is_accepted(db):
    # 1 is a valid limit: only a full file system fails
    assert disk(db, "0.99", "1") is True


# -- argument checks (00_internal_checks.sql) -----------------------------------------------------


def test_check_time_accepts_a_time_exactly_24_hours_ahead(db):
    assert db.execute(
        "select internal.check_time(now() + interval '24 hours', 'executed_at') = now() + interval '24 hours'"
    ).fetchone() == (True,)


def test_check_time_accepts_the_genesis_block_day_at_midnight(db):
    assert db.execute(
        "select internal.check_time('2009-01-03 00:00:00+00', 'executed_at') = '2009-01-03 00:00:00+00'"
    ).fetchone() == (True,)


def test_a_number_of_exactly_40_characters_is_shown_as_written(db):
    forty = "1234567890123456789012345678901234567890"
    assert db.execute("select internal.number_shown(%s::numeric)", [forty]).fetchone() == (forty,)


def test_check_finite_refuses_minus_infinity_with_22s09(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select internal.check_finite('-Infinity', 'adjustment')")

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "adjustment must be a finite number, got -Infinity",
    )


def test_a_read_uncommitted_transaction_counts_as_read_committed(db):
    # PostgreSQL runs READ UNCOMMITTED as READ COMMITTED: the work that takes turns through a lock
    # sees what the one before it committed
    with db.transaction():
        db.execute("set transaction isolation level read uncommitted")
        db.execute("select internal.require_read_committed('x', 'y')")
        level = db.execute("show transaction_isolation").fetchone()

    assert level == ("read uncommitted",)


# -- trading views (50_trading_views.sql) ---------------------------------------------------------


def test_a_partially_filled_order_is_an_active_order(seeded):
    order_id = place(seeded, "buy", "2", "100")
    fill(seeded, order_id, "1", "100")

    assert seeded.execute("select order_id, status from trading.active_orders").fetchall() == [
        (order_id, "partially_filled")
    ]


def test_a_short_position_is_an_open_position(seeded):
    trade(seeded, "sell", "1", "100", exchange="okx", symbol="BTC-USDT-SWAP")

    assert seeded.execute("select symbol, quantity from trading.open_positions").fetchall() == [
        ("BTC-USDT-SWAP", D("-1"))
    ]
