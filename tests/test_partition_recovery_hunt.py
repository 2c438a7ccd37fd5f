"""A partitioned table left with no partitions (all dropped by hand, or by an old cleanup) gets
them again with the documented tools: maintain creates the partition of now() and those ahead,
repair creates the partitions of the rows stranded in the default partition; bounds in UTC
whatever the session TimeZone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from ops_helpers import cli
from trading_helpers import fill, place

NEW_YORK = {"PGTZ": "America/New_York"}
# table -> (time column, UTC unit of its partitions)
TABLES = {
    "market.ticks": ("traded_at", "day"),
    "market.quotes": ("quoted_at", "day"),
    "trading.orders": ("created_at", "month"),
    "audit.log": ("logged_at", "month"),
}


def _drop_every_partition(db: psycopg.Connection, table: str) -> None:
    """Drop every partition of ``table`` but the default, as an old cleanup did."""
    for schema, name in db.execute("select * from partman.show_partitions(%s)", [table]).fetchall():
        db.execute(sql.SQL("drop table {}").format(sql.Identifier(schema, name)))
    assert db.execute("select count(*) from partman.show_partitions(%s)", [table]).fetchone() == (0,)


def _partition_starts(db: psycopg.Connection, table: str) -> list[datetime]:
    """The UTC starts of the partitions of ``table``, read from the catalog's bounds."""
    rows = db.execute(
        "select (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz"
        " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = %s::regclass and c.oid <> (select partdefid from pg_partitioned_table"
        "                                                where partrelid = %s::regclass)"
        " order by 1",
        [table, table],
    ).fetchall()
    return [row[0].astimezone(UTC) for row in rows]


def _utc_start(now: datetime, unit: str) -> datetime:
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if unit == "day" else day.replace(day=1)


def _maintain(db_url: str) -> psycopg.Error | None:
    """``call ops.run_partition_maintenance()`` in a New York session; the error it raised, if any."""
    with psycopg.connect(db_url, autocommit=True, options="-c TimeZone=America/New_York") as conn:
        try:
            conn.execute("call ops.run_partition_maintenance()")
        except psycopg.Error as exc:
            return exc
    return None


def _plant(db: psycopg.Connection, table: str, at: str) -> None:
    """A row of ``table`` at the SQL time ``at``, in its default partition (planted as a replica,
    as its trigger refuses one)."""
    statements = {
        "market.ticks": "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select min(instrument_id), {}, 'stray', 100, 1 from ref.instruments",
        "market.quotes": "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
        " select min(instrument_id), {}, 100, 1, 101, 1 from ref.instruments",
        "audit.log": "insert into audit.log (logged_at, table_name, operation, row_key)"
        " values ({}, 'x.y', 'INSERT', '{{}}')",
    }
    db.execute("set session_replication_role = replica")
    db.execute(sql.SQL(statements[table]).format(sql.SQL(at)))
    db.execute("reset session_replication_role")
    default = db.execute(
        sql.SQL("select count(*) from {}").format(sql.Identifier(*f"{table}_default".split(".")))
    ).fetchone()
    assert default == (1,)


# bug: with every partition of a table dropped, pg_partman's maintenance raised "Child table given
# does not exist (<NULL>)" for it at every run (55S12), and the table took no row again
@pytest.mark.parametrize("table", list(TABLES))
def test_maintain_gives_a_table_without_partitions_the_utc_partition_of_now_and_those_ahead(
    db, db_url, table
):
    _drop_every_partition(db, table)
    now = db.execute("select now()").fetchone()[0]

    error = _maintain(db_url)

    assert error is None, error
    starts = _partition_starts(db, table)
    unit = TABLES[table][1]
    assert starts[0] == _utc_start(now, unit)
    assert all(start == _utc_start(start, unit) for start in starts)
    assert db.execute("select ok from internal.health_partitions_ahead()").fetchone() == (True,)


def test_partitions_maintain_lets_ticks_without_partitions_take_a_tick_of_now_again(seeded, db_url):
    _drop_every_partition(seeded, "market.ticks")

    result = cli("partitions", "maintain", database_url=db_url, env=NEW_YORK)
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select min(instrument_id), now(), 'live', 100, 1 from ref.instruments"
    )

    assert result.exit_code == 0, result.output
    where = seeded.execute(
        "select tableoid::regclass::text from market.ticks where exchange_trade_id = 'live'"
    )
    assert where.fetchone() == (datetime.now(UTC).strftime("market.ticks_p%Y_%m_%d"),)


# bug: repair on a table with no partition raised pg_partman's raw P0001 ("Child table given does
# not exist") from partman.partition_data_time, and the row stayed in the default partition
@pytest.mark.parametrize("table", ["market.ticks", "market.quotes", "audit.log"])
def test_repair_moves_a_row_of_a_table_without_partitions_into_the_utc_partition_of_its_time(
    seeded, db_url, table
):
    _drop_every_partition(seeded, table)
    _plant(seeded, table, "timestamptz '2024-03-10 02:30+00'")

    result = cli("partitions", "repair", database_url=db_url, env=NEW_YORK)

    assert result.exit_code == 0, result.output
    assert f"{table}: moved 1 rows out of the default partition" in result.output.splitlines()
    unit = TABLES[table][1]
    name = f"{table}_p2024_03_10" if unit == "day" else f"{table}_p2024_03"
    column = TABLES[table][0]
    where = seeded.execute(
        sql.SQL("select tableoid::regclass::text from {} where {} = '2024-03-10 02:30+00'").format(
            sql.Identifier(*table.split(".")), sql.Identifier(column)
        )
    )
    assert where.fetchall() == [(name,)]
    expected = datetime(2024, 3, 10, tzinfo=UTC) if unit == "day" else datetime(2024, 3, 1, tzinfo=UTC)
    assert expected in _partition_starts(seeded, table)


# repair, then maintain: a table whose default partition holds a row of now() gets the partition
# of now() with the row in it, the partitions ahead, and no partition of the years between
@pytest.mark.parametrize("table", ["market.ticks", "audit.log"])
def test_repair_then_maintain_recovers_a_table_without_partitions_with_a_row_of_now(seeded, db_url, table):
    _drop_every_partition(seeded, table)
    _plant(seeded, table, "now()")
    now = seeded.execute("select now()").fetchone()[0]
    failed = _maintain(db_url)

    repaired = cli("partitions", "repair", database_url=db_url, env=NEW_YORK)
    error = _maintain(db_url)

    assert failed is not None and failed.sqlstate == "55S12"
    assert failed.diag.message_primary.startswith(
        f"partition maintenance failed for 1 of the tables: {table}: {table} has no partition, and its default"
        " partition holds rows from "
    )
    assert repaired.output.splitlines() == [f"{table}: moved 1 rows out of the default partition"]
    assert error is None, error
    unit = TABLES[table][1]
    starts = _partition_starts(seeded, table)
    assert starts[0] == _utc_start(now, unit)
    assert starts[-1] - starts[0] >= timedelta(days=4 if unit == "day" else 120)
    checks = seeded.execute(
        "select (select ok from internal.health_default_partitions()),"
        " (select ok from internal.health_partitions_ahead())"
    ).fetchone()
    assert checks == (True, True)


# repair on an orders table without partitions: the stranded order goes into its month's partition
def test_repair_moves_an_order_of_orders_without_partitions_into_its_month(seeded, db_url):
    _drop_every_partition(seeded, "trading.orders")
    seeded.execute("set session_replication_role = replica")
    seeded.execute(
        "insert into trading.orders (order_id, created_at, strategy_id, instrument_id, side, order_type,"
        " quantity, status, client_order_id)"
        " select 900, '2024-02-29 23:30+00', (select min(strategy_id) from trading.strategies),"
        " min(instrument_id), 'buy', 'market', 1, 'cancelled', 'stray' from ref.instruments"
    )
    seeded.execute("reset session_replication_role")

    result = cli("partitions", "repair", database_url=db_url, env=NEW_YORK)

    assert result.exit_code == 0, result.output
    where = seeded.execute("select tableoid::regclass::text from trading.orders where order_id = 900")
    assert where.fetchall() == [("trading.orders_p2024_02",)]


# repair of a lone old row in a table without partitions also makes the partition of now(): made
# from the old row's partition alone, maintenance would have made every partition from it on
def test_repair_then_maintain_of_ticks_without_partitions_and_an_old_row_skips_the_days_between(
    seeded, db_url
):
    _drop_every_partition(seeded, "market.ticks")
    _plant(seeded, "market.ticks", "timestamptz '2024-03-10 02:30+00'")
    now = seeded.execute("select now()").fetchone()[0]

    repaired = cli("partitions", "repair", database_url=db_url, env=NEW_YORK)
    error = _maintain(db_url)

    assert repaired.exit_code == 0, repaired.output
    assert error is None, error
    starts = _partition_starts(seeded, "market.ticks")
    assert starts[:2] == [datetime(2024, 3, 10, tzinfo=UTC), _utc_start(now, "day")]
    assert len(starts) <= 8


# the trade of now() moved into the partition of now() made for it computes its realized PnL (a
# generated column, which refuses a value) again
def test_repair_moves_a_trade_of_now_of_trades_without_partitions_with_its_realized_pnl(seeded, db_url):
    trade_id = fill(
        seeded, place(seeded, "buy", "0.1", "60000"), "0.1", "60000", fee=Decimal("6"), fee_currency="USDT"
    )
    columns = (
        "trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee, fee_currency,"
        " fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, multiplier, closed_quantity"
    )
    seeded.execute(f"create temporary table kept as select {columns} from trading.trades")
    _drop_every_partition(seeded, "trading.trades")
    seeded.execute("set session_replication_role = replica")  # only to plant the stray row
    seeded.execute(f"insert into trading.trades ({columns}) select {columns} from kept")
    seeded.execute("reset session_replication_role")

    result = cli("partitions", "repair", database_url=db_url, env=NEW_YORK)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["trading.trades: moved 1 rows out of the default partition"]
    row = seeded.execute(
        "select tableoid::regclass::text, realized_pnl from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()
    assert row == (datetime.now(UTC).strftime("trading.trades_p%Y_%m"), Decimal("-6"))
