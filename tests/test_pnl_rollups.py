"""trading.hourly_pnl and trading.daily_pnl: each fill and funding payment adds to its UTC hour and day."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import psycopg

from trading_helpers import call, rows, trade

# why relative: a fill may be at most a day ahead of now, and trades partitions exist around now
DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}


def hourly(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select hour, trades, volume, notional, realized_pnl_gross, funding from trading.hourly_pnl order by hour"
    ).fetchall()


def daily(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select day, trades, volume, notional, realized_pnl_gross, funding from trading.daily_pnl order by day"
    ).fetchall()


def test_a_fill_exactly_on_midnight_counts_in_the_hour_and_day_it_starts(seeded):
    trade(seeded, "buy", "1", "100", executed_at=DAY - timedelta(microseconds=1))
    trade(seeded, "buy", "2", "100", executed_at=DAY)
    assert [(h, n) for h, n, *_ in hourly(seeded)] == [(DAY - timedelta(hours=1), 1), (DAY, 1)]
    assert [(d, n) for d, n, *_ in daily(seeded)] == [((DAY - timedelta(days=1)).date(), 1), (DAY.date(), 1)]
    assert rows(seeded, "ops.check_invariants") == []


def test_a_late_fill_of_an_earlier_day_adds_to_that_day_s_rollups(seeded):
    trade(seeded, "buy", "2", "100", executed_at=DAY + timedelta(hours=1))
    trade(seeded, "sell", "1", "110", executed_at=DAY - timedelta(hours=20))
    assert daily(seeded) == [
        ((DAY - timedelta(days=1)).date(), 1, D("1"), D("110"), D("10"), D("0")),
        (DAY.date(), 1, D("2"), D("200"), D("0"), D("0")),
    ]
    assert rows(seeded, "ops.check_invariants") == []


def test_funding_adds_to_the_rollups_of_its_hour_without_a_trade(seeded):
    trade(seeded, "buy", "10", "50000", executed_at=DAY + timedelta(hours=1, minutes=5), **SWAP)
    call(
        seeded,
        "trading.record_funding",
        strategy="alpha",
        amount=D("-1.5"),
        paid_at=DAY + timedelta(hours=8),
        **SWAP,
    )
    assert hourly(seeded) == [
        (DAY + timedelta(hours=1), 1, D("10"), D("5000"), D("0"), D("0")),
        (DAY + timedelta(hours=8), 0, D("0"), D("0"), D("0"), D("-1.5")),
    ]
    assert daily(seeded) == [(DAY.date(), 1, D("10"), D("5000"), D("0"), D("-1.5"))]
    assert rows(seeded, "ops.check_invariants") == []


def test_a_multiplier_change_leaves_the_rollups_of_earlier_fills_as_they_were(seeded):
    trade(seeded, "buy", "10", "50000", executed_at=DAY + timedelta(hours=1), **SWAP)  # at 0.01
    seeded.execute(
        "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
        " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
        " min_notional => 0, multiplier => 0.02)"
    )
    trade(seeded, "sell", "4", "51000", executed_at=DAY + timedelta(hours=1, minutes=30), **SWAP)  # at 0.02
    # 10 x 50000 x 0.01 + 4 x 51000 x 0.02; 4 x 0.02 x 1000 realized
    assert hourly(seeded) == [(DAY + timedelta(hours=1), 2, D("14"), D("9080"), D("80"), D("0"))]
    assert rows(seeded, "ops.check_invariants") == []
