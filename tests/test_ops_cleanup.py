"""spreadedge cleanup: old rows go by partition or batch; open and depended-on orders stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from ops_helpers import cli
from spreadedge.ops import cleanup
from trading_helpers import call, fill, place

LONG_AGO = datetime.now(UTC) - timedelta(days=60)
RECENT = datetime.now(UTC) - timedelta(days=10)
# a month that ends before a 30-day cutoff whatever today is (75 days back + 31 < 30 days back)
OLD_MONTH = datetime.now(UTC) - timedelta(days=75)
OLD_PARTITION = OLD_MONTH.strftime("trading.orders_p%Y_%m")


def _orders(db: psycopg.Connection) -> dict[str, int]:
    """Orders of every kind cleanup must tell apart; names to ids."""
    cancelled = place(db, "buy", "0.01", "50000", placed_at=LONG_AGO, client_order_id="old-cancelled")
    call(db, "trading.cancel_order", order_id=cancelled, reason="test")
    working = place(db, "buy", "0.01", "50000", placed_at=LONG_AGO, client_order_id="old-open")
    call(db, "trading.acknowledge_order", order_id=working, exchange_order_id="X-1")
    holding = place(
        db, "buy", "0.01", "50000", placed_at=LONG_AGO, client_order_id="old-filled-open-position"
    )
    fill(db, holding, "0.01", "50000", executed_at=LONG_AGO)
    recent = place(db, "sell", "0.01", "50000", placed_at=RECENT, client_order_id="recent-cancelled")
    call(db, "trading.cancel_order", order_id=recent, reason="test")
    # as if each order had last changed when it was placed
    db.execute("update trading.orders set updated_at = created_at")
    return {"cancelled": cancelled, "working": working, "holding": holding, "recent": recent}


def test_cleanup_orders_removes_old_finished_orders_and_keeps_open_and_depended_on_ones(seeded, db_url):
    ids = _orders(seeded)

    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)

    assert result.exit_code == 0, result.output
    left = {row[0] for row in seeded.execute("select order_id from trading.orders")}
    assert left == {ids["working"], ids["holding"], ids["recent"]}
    events = seeded.execute(
        "select count(*) from trading.order_events where order_id = %s", [ids["cancelled"]]
    )
    assert events.fetchone() == (0,)


def test_cleanup_dry_run_shows_what_would_go_and_removes_nothing(seeded, db_url):
    _orders(seeded)

    result = cli("cleanup", "orders", "--older-than", "30d", "--dry-run", database_url=db_url)

    assert result.exit_code == 0, result.output
    month = LONG_AGO.strftime("%Y_%m")
    assert f"delete rows  trading.orders_p{month}     1" in result.output
    assert f"keep         trading.orders_p{month}     2" in result.output
    assert "dry run: 1 rows older than " in result.output
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (4,)


def test_cleanup_ticks_detaches_and_drops_whole_old_partitions_and_keeps_newer_rows(seeded, db_url):
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select (select min(instrument_id) from ref.instruments), date_trunc('day', now()) - interval '5 days'"
        " + (i || ' minutes')::interval, 'old' || i, 100, 1 from generate_series(1, 30) i"
        " union all select (select min(instrument_id) from ref.instruments), now() - interval '1 hour', 'new', 100, 1"
    )
    # the partition the old ticks went to, as stored (not the clock's day now, maybe the next one)
    old_partition = seeded.execute(
        "select distinct tableoid::regclass::text from market.ticks where exchange_trade_id like 'old%'"
    ).fetchone()[0]

    result = cli("cleanup", "ticks", "--older-than", "3d", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "ticks: dropped 1 partitions (30 rows), deleted 0 rows" in result.output
    assert seeded.execute("select to_regclass(%s)", [old_partition]).fetchone() == (None,)
    assert seeded.execute("select exchange_trade_id from market.ticks").fetchall() == [("new",)]


def test_cleanup_of_an_unknown_target_table_is_refused_with_22s21(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select * from ops.cleanup_plan('positions', '30 days')")

    assert caught.value.sqlstate == "22S21"


def test_cleanup_refuses_an_age_it_cannot_read():
    result = cli("cleanup", "orders", "--older-than", "a month")

    assert result.exit_code == 1
    assert "--older-than must look like 30d, 12h or 2w (hours, days or weeks), got 'a month'" in result.output


def _old_unfilled_orders(db: psycopg.Connection, *, working: bool) -> dict[str, int]:
    """In OLD_MONTH: a cancelled order, a risk-rejected one and (``working``) an open one."""
    call(db, "monitor.set_risk_limit", strategy="alpha", max_order_notional=Decimal("1000"))
    ids = {}
    ids["cancelled"] = place(db, "buy", "0.01", "50000", placed_at=OLD_MONTH, client_order_id="old-cancelled")
    call(db, "trading.cancel_order", order_id=ids["cancelled"], reason="test")
    ids["rejected"] = place(db, "buy", "1", "50000", placed_at=OLD_MONTH, client_order_id="old-risk-rejected")
    if working:
        ids["working"] = place(
            db, "buy", "0.01", "50000", strategy="beta", placed_at=OLD_MONTH, client_order_id="old-open"
        )
        call(db, "trading.acknowledge_order", order_id=ids["working"], exchange_order_id="X-1")
    db.execute("update trading.orders set updated_at = created_at")
    return ids


def _order_ids(db: psycopg.Connection, table: str) -> set[int]:
    query = sql.SQL("select order_id from {}").format(sql.Identifier(*table.split(".")))
    return {row[0] for row in db.execute(query)}


def test_cleanup_orders_drops_a_whole_old_partition_of_unfilled_orders_with_their_keys(seeded, db_url):
    cancelled = place(seeded, "buy", "0.01", "50000", placed_at=OLD_MONTH, client_order_id="old-cancelled")
    call(seeded, "trading.cancel_order", order_id=cancelled, reason="test")
    seeded.execute("update trading.orders set updated_at = created_at")

    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "orders: dropped 1 partitions (1 rows), deleted 0 rows" in result.output
    assert seeded.execute("select to_regclass(%s)", [OLD_PARTITION]).fetchone() == (None,)
    assert _order_ids(seeded, "trading.orders") == set()
    assert _order_ids(seeded, "trading.order_keys") == set()
    assert _order_ids(seeded, "trading.order_events") == set()


def test_cleanup_orders_dropping_a_partition_writes_an_audit_delete_row_per_order(seeded, db_url):
    cancelled = place(seeded, "buy", "0.01", "50000", placed_at=OLD_MONTH, client_order_id="old-cancelled")
    call(seeded, "trading.cancel_order", order_id=cancelled, reason="test")
    seeded.execute("update trading.orders set updated_at = created_at")

    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)

    assert result.exit_code == 0, result.output
    deletes = seeded.execute(
        "select row_key, old_row ->> 'status', actor from audit.log"
        " where table_name = 'trading.orders' and operation = 'DELETE'"
    ).fetchall()
    assert deletes == [(f'{{"order_id": {cancelled}}}', "cancelled", "cleanup")]


def test_cleanup_orders_in_batches_keeps_the_key_of_a_risk_rejected_order(seeded, db_url):
    ids = _old_unfilled_orders(seeded, working=True)

    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "orders: dropped 0 partitions (0 rows), deleted 2 rows" in result.output
    assert _order_ids(seeded, "trading.orders") == {ids["working"]}
    assert _order_ids(seeded, "trading.order_keys") == {ids["working"], ids["rejected"]}
    assert _order_ids(seeded, "monitor.risk_events") == {ids["rejected"]}


def test_cleanup_orders_dropping_a_partition_keeps_the_key_of_a_risk_rejected_order(seeded, db_url):
    ids = _old_unfilled_orders(seeded, working=False)

    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)

    assert result.exit_code == 0, result.output
    assert "orders: dropped 1 partitions (2 rows), deleted 0 rows" in result.output
    assert seeded.execute("select to_regclass(%s)", [OLD_PARTITION]).fetchone() == (None,)
    assert _order_ids(seeded, "trading.orders") == set()
    assert _order_ids(seeded, "trading.order_keys") == {ids["rejected"]}
    assert _order_ids(seeded, "monitor.risk_events") == {ids["rejected"]}


def test_cleanup_refuses_an_age_reaching_before_any_stored_time(db_url):
    result = cli("cleanup", "ticks", "--older-than", "999999w", "--dry-run", database_url=db_url)

    assert result.exit_code == 1
    assert "older_than 6999993 days reaches back before the earliest time PostgreSQL stores" in result.output


@pytest.mark.parametrize("older_than", ["0", "-1 day"])
def test_cleanup_delete_batch_refuses_an_age_that_is_not_positive_with_22s09(db, older_than):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.cleanup_delete_batch('ticks', %s::interval)", [older_than])

    assert caught.value.sqlstate == "22S09"


def test_cleanup_delete_batch_refuses_a_cutoff_later_than_the_age_allows_with_22s09(db):
    with pytest.raises(psycopg.Error) as caught:
        db.execute("select ops.cleanup_delete_batch('ticks', interval '3 days', cutoff => now())")

    assert caught.value.sqlstate == "22S09"


def _tick(db: psycopg.Connection, trade_id: str, traded_at: str) -> None:
    query = sql.SQL(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select min(instrument_id), {}, %s, 100, 1 from ref.instruments"
    )
    db.execute(query.format(sql.SQL(traded_at)), [trade_id])


def test_cleanup_ends_while_a_live_stream_keeps_rows_growing_old(seeded):
    for i in range(3):
        _tick(seeded, f"old{i}", "now() - interval '2 hours'")
    streamed: list[str] = []

    def stream(rows: int) -> None:
        # a tick that reaches the age just now, as a live stream's do while cleanup runs
        assert len(streamed) < 20, "cleanup never ends while rows keep growing old"
        streamed.append(f"live{len(streamed)}")
        _tick(seeded, streamed[-1], "clock_timestamp() - interval '1 hour'")

    age = timedelta(hours=1)
    outcome = cleanup.run(seeded, "ticks", age, cleanup.cutoff(seeded, age), batch_rows=1, progress=stream)

    assert outcome.rows_in_dropped_partitions + outcome.rows_deleted == 3
    left = {row[0] for row in seeded.execute("select exchange_trade_id from market.ticks")}
    assert left == set(streamed)


def test_health_names_the_option_of_an_age_it_cannot_read(db_url):
    result = cli("health", "--max-transaction-age", "5 fortnights", database_url=db_url)

    assert result.exit_code == 2
    assert (
        "Invalid value for '--max-transaction-age': must look like 30s, 15m, 12h, 2d or 1w, got '5 fortnights'"
        in result.output
    )
