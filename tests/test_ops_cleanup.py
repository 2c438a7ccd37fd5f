"""spreadedge cleanup: old rows go by partition or batch; open and depended-on orders stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ops_helpers import cli
from trading_helpers import call, fill, place

LONG_AGO = datetime.now(UTC) - timedelta(days=60)
RECENT = datetime.now(UTC) - timedelta(days=10)


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
    assert "dry run: 1 rows would go" in result.output
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (4,)


def test_cleanup_ticks_detaches_and_drops_whole_old_partitions_and_keeps_newer_rows(seeded, db_url):
    seeded.execute(
        "insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)"
        " select (select min(instrument_id) from ref.instruments), date_trunc('day', now()) - interval '5 days'"
        " + (i || ' minutes')::interval, 'old' || i, 100, 1 from generate_series(1, 30) i"
        " union all select (select min(instrument_id) from ref.instruments), now() - interval '1 hour', 'new', 100, 1"
    )
    old_partition = (datetime.now(UTC) - timedelta(days=5)).strftime("market.ticks_p%Y_%m_%d")

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
