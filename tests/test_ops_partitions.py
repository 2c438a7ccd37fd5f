"""Partition lifecycle: status, maintenance (ahead and retention), default-partition repair."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from ops_helpers import cli
from spreadedge.ops import OpsError, partitions
from spreadedge.settings import RenderSettings
from trading_helpers import fill, place


def _drop_future_partitions(db: psycopg.Connection, table: str) -> None:
    ahead = db.execute(
        "select p.partition_schemaname, p.partition_tablename from partman.show_partitions(%s) p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
        " where i.child_start_time > now()",
        [table],
    ).fetchall()
    for schema, name in ahead:
        db.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, name)))


def test_partitions_maintain_creates_partitions_ahead_and_drops_by_retention(db, db_url):
    # pg_partman keeps premake (4) partitions ahead, counting the days from now to the newest
    # partition's start rounded to the nearest day: before noon UTC the newest ends 5 days after
    # today's start, from noon on 6
    _drop_future_partitions(db, "market.ticks")
    # the bounds follow the maintenance's own now(), some time between these two readings (a
    # midnight or a noon between them leaves two possible values, one for each side)
    before = db.execute("select clock_timestamp()").fetchone()[0]

    result = cli("partitions", "maintain", database_url=db_url, env={"SPREADEDGE_RETENTION_TICKS": "3 days"})

    assert result.exit_code == 0, result.output
    row = db.execute(
        "select retention,"
        " oldest_start in (select date_trunc('day', t) - interval '3 days' from unnest(%(times)s) t),"
        " newest_end in (select date_trunc('day', t + interval '12 hours') + interval '5 days'"
        "                from unnest(%(times)s) t)"
        " from ops.partition_status() where parent_table = 'market.ticks'",
        {"times": [before, db.execute("select clock_timestamp()").fetchone()[0]]},
    ).fetchone()
    assert row == ("3 days", True, True)


@pytest.mark.parametrize("table", ["market.quotes", "trading.order_events", "monitor.metrics"])
def test_the_hourly_maintenance_makes_partitions_ahead_of_a_table_without_rows(db, table):
    # a freshly migrated database, nothing loaded: pg_partman counts ahead from the calendar
    assert db.execute(
        sql.SQL("select count(*) from {}").format(sql.Identifier(*table.split(".")))
    ).fetchone() == (0,)
    _drop_future_partitions(db, table)
    db.execute("select partman.run_maintenance(%s)", [table])
    ahead = db.execute(
        "select count(*) from partman.show_partitions(%s) p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
        " where i.child_start_time > now()",
        [table],
    ).fetchone()[0]
    assert ahead >= 4


def test_a_table_whose_maintenance_fails_does_not_stop_the_others_and_is_named(db, db_url):
    # a row in audit.log's default partition inside the next month's range: pg_partman cannot
    # attach that month's partition, so audit.log's maintenance fails
    _drop_future_partitions(db, "audit.log")
    _drop_future_partitions(db, "monitor.metrics")
    db.execute(
        "insert into audit.log (logged_at, table_name, operation, row_key)"
        " values (date_trunc('month', now()) + interval '1 month 1 day', 'x', 'INSERT', '{}')"
    )
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("call ops.run_partition_maintenance()")
    assert caught.value.sqlstate == "55S12"
    assert caught.value.diag.message_primary.startswith(
        "partition maintenance failed for 1 of the tables: audit.log: "
    )
    ahead = db.execute(
        "select count(*) from partman.show_partitions('monitor.metrics') p,"
        " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
        " where i.child_start_time > now()"
    ).fetchone()[0]
    assert ahead >= 4


def test_partition_status_lists_every_partitioned_table_registered(db):
    rows = db.execute("select parent_table, registered, default_rows from ops.partition_status()").fetchall()

    assert rows == [
        (table, True, 0)
        for table in (
            "audit.log",
            "market.candles",
            "market.quotes",
            "market.technical_indicators",
            "market.ticks",
            "monitor.metrics",
            "trading.order_events",
            "trading.orders",
            "trading.trades",
        )
    ]


def test_partitions_repair_moves_default_partition_rows_into_a_proper_partition(db, db_url):
    db.execute("set session_replication_role = replica")  # only to plant the stray row
    db.execute(
        "insert into trading.order_events (occurred_at, order_id, to_status) values ('2020-01-01 00:00+00', 1, 'new')"
    )

    result = cli("partitions", "repair", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "trading.order_events: moved 1 rows out of the default partition" in result.output
    rows = db.execute(
        "select tableoid::regclass::text from trading.order_events where occurred_at = '2020-01-01 00:00+00'"
    ).fetchall()
    assert rows == [("trading.order_events_p2020_01",)]
    assert db.execute("select ok from internal.health_default_partitions()").fetchone() == (True,)


def test_partitions_repair_moves_a_stranded_trade_and_computes_its_realized_pnl_again(seeded, db_url):
    trade_id = fill(
        seeded, place(seeded, "buy", "0.1", "60000"), "0.1", "60000", fee=Decimal("6"), fee_currency="USDT"
    )
    seeded.execute("set session_replication_role = replica")  # only to plant the stray row
    seeded.execute(
        "insert into trading.trades (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity,"
        " price, fee, fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, multiplier,"
        " closed_quantity)"
        " select trade_id + 1000, '2020-03-01 00:00+00', order_id, strategy_id, instrument_id, side, quantity,"
        " price, fee, fee_currency, fee_quote, position_delta, realized_pnl_gross, 'stray', multiplier,"
        " closed_quantity"
        " from trading.trades where trade_id = %s",
        [trade_id],
    )
    seeded.execute("reset session_replication_role")

    result = cli("partitions", "repair", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "trading.trades: moved 1 rows out of the default partition" in result.output
    row = seeded.execute(
        "select tableoid::regclass::text, realized_pnl from trading.trades where trade_id = %s",
        [trade_id + 1000],
    ).fetchone()
    assert row == ("trading.trades_p2020_03", Decimal("-6"))


def test_partitions_repair_moves_the_rows_of_several_default_partitions_in_one_run(db, db_url):
    db.execute("set session_replication_role = replica")  # only to plant the stray rows
    db.execute(
        "insert into trading.order_events (occurred_at, order_id, to_status) values ('2020-01-01 00:00+00', 1, 'new')"
    )
    db.execute(
        "insert into audit.log (table_name, operation, row_key, new_row, logged_at)"
        " values ('x.y', 'INSERT', '{\"a\": 1}', '{\"a\": 1}', '2020-05-15 00:00+00')"
    )
    db.execute("reset session_replication_role")

    result = cli("partitions", "repair", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "audit.log: moved 1 rows out of the default partition",
        "trading.order_events: moved 1 rows out of the default partition",
    ]
    assert db.execute("select ok from internal.health_default_partitions()").fetchone() == (True,)


def test_a_partitioned_table_not_registered_with_pg_partman_fails_health(db):
    db.execute("create table market.stray (at timestamptz not null) partition by range (at)")

    row = db.execute("select ok, detail from internal.health_partitions_registered()").fetchone()

    assert row == (False, "not registered with pg_partman: market.stray")


def test_partitions_status_shows_a_partitioned_table_not_registered_with_pg_partman(db, db_url):
    db.execute("create table market.stray (at timestamptz not null) partition by range (at)")

    result = cli("partitions", "status", database_url=db_url)

    assert result.exit_code == 0, result.output
    stray = [line.split() for line in result.output.splitlines() if line.startswith("market.stray ")]
    assert stray == [["market.stray", "NO", "keep", "all", "0", "0"]]


def test_configure_partitioning_refuses_a_table_pg_partman_does_not_manage_with_55s11(db):
    try:
        db.execute("select ops.configure_partitioning('trading.positions', 4, null)")
    except psycopg.Error as exc:
        assert (exc.sqlstate, exc.diag.message_primary) == (
            "55S11",
            "table trading.positions is not a partitioned table registered with pg_partman",
        )
    else:
        raise AssertionError("configure_partitioning accepted an unmanaged table")


def test_partitions_maintain_applies_premake_and_retention_metrics_to_monitor_metrics(db, db_url):
    result = cli(
        "partitions",
        "maintain",
        database_url=db_url,
        env={"SPREADEDGE_PARTITION_PREMAKE": "6", "SPREADEDGE_RETENTION_METRICS": "7 days"},
    )

    assert result.exit_code == 0, result.output
    row = db.execute(
        "select premake, retention, infinite_time_partitions from partman.part_config"
        " where parent_table = 'monitor.metrics'"
    ).fetchone()
    assert row == (6, "7 days", True)


@pytest.mark.parametrize("table", ["trading.orders", "trading.order_events", "trading.trades"])
def test_configure_partitioning_refuses_a_retention_for_orders_events_and_trades_with_22s09(db, table):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.configure_partitioning(%s, 4, '1 month')", [table])

    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint) == (
        "22S09",
        f"table {table} takes no retention (got 1 mon): dropping its partitions by age would drop open orders"
        " and the fills of open positions",
        "Remove old orders with spreadedge cleanup orders --older-than 30d, which keeps what is still needed.",
    )


def test_partitions_configure_refuses_a_retention_for_orders_before_changing_anything(db):
    before = db.execute(
        "select parent_table, premake, retention from partman.part_config order by 1"
    ).fetchall()

    with pytest.raises(OpsError) as caught:
        partitions.configure(db, RenderSettings(partition_premake=6, retention_orders="1 month"))

    assert str(caught.value) == (
        "retention_orders must be none: pg_partman would drop partitions of open orders and of the fills"
        " of open positions; remove old orders with spreadedge cleanup orders --older-than 30d"
    )
    after = db.execute(
        "select parent_table, premake, retention from partman.part_config order by 1"
    ).fetchall()
    assert after == before


def test_partitions_maintain_with_a_retention_for_orders_keeps_a_working_partly_filled_order(seeded, db_url):
    placed = datetime.now(UTC) - timedelta(days=75)  # its month ended over a month ago
    working = place(seeded, "buy", "0.02", "50000", placed_at=placed, client_order_id="old-partly-filled")
    fill(seeded, working, "0.01", "50000", executed_at=placed)

    result = cli(
        "partitions", "maintain", database_url=db_url, env={"SPREADEDGE_RETENTION_ORDERS": "1 month"}
    )

    assert result.exit_code == 1
    assert "retention_orders must be none, got '1 month'" in result.output
    row = seeded.execute("select status, filled_quantity from trading.orders where order_id = %s", [working])
    assert row.fetchone() == ("partially_filled", Decimal("0.01"))


def _plant_tick(db: psycopg.Connection, traded_at: str) -> None:
    """A tick in market.ticks' default partition (its trigger refuses one: planted as a replica)."""
    db.execute("set session_replication_role = replica")
    query = sql.SQL(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select min(instrument_id), {}, 'stray', 100, 1 from ref.instruments"
    )
    db.execute(query.format(sql.SQL(traded_at)))
    db.execute("reset session_replication_role")


def _tick_partitions(db: psycopg.Connection) -> list[str]:
    rows = db.execute("select partition_tablename from partman.show_partitions('market.ticks')").fetchall()
    return [row[0] for row in rows]


def test_partitions_repair_refuses_a_row_far_ahead_of_the_partitions_with_22s09(seeded):
    db = seeded
    _plant_tick(db, "now() + interval '60 days'")
    before = _tick_partitions(db)

    with pytest.raises(psycopg.Error) as caught:
        db.execute("select * from ops.repair_default_partitions()")

    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary.startswith("market.ticks_default holds a row dated ")
    assert _tick_partitions(db) == before


def test_partitions_repair_makes_the_missing_partitions_before_a_row_ahead_of_the_newest(seeded, db_url):
    db = seeded
    # maintenance behind: no partition from tomorrow on; a row for the day after tomorrow
    _drop_future_partitions(db, "market.ticks")
    _plant_tick(db, "date_trunc('day', now()) + interval '2 days 1 hour'")
    planted = db.execute("select traded_at from market.ticks where exchange_trade_id = 'stray'").fetchone()[0]

    result = cli("partitions", "repair", database_url=db_url)

    assert result.exit_code == 0, result.output
    days = [(planted - timedelta(days=n)).astimezone(UTC).strftime("ticks_p%Y_%m_%d") for n in (1, 0)]
    assert [name for name in _tick_partitions(db) if name in days] == days
