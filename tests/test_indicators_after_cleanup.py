"""Indicators at their edges: market.compute_indicators over candles kept longer than the stored
indicators (spreadedge cleanup indicators dropped their partitions), checked against an independent
computation in Python (decimal arithmetic)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, getcontext

import psycopg

from indicator_reference import ema, rsi, sma
from market_helpers import RECENT_NOON, instrument_id

getcontext().prec = 60

OLD_CLOSES = [Decimal(100 + (n * 7) % 11) for n in range(30)]
RECENT_CLOSES = [Decimal(105 + (n * 3) % 7) for n in range(30)]


def one_minute_candles(conn: psycopg.Connection, start: datetime, closes: list[Decimal]) -> None:
    """1m candles from start, one a minute, with these closes (open = close, high + 2, low - 2)."""
    conn.execute(
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count)"
        " select %s, '1m', %s + (c.n - 1) * interval '1 minute', c.close, c.close + 2, c.close - 2, c.close, 1,"
        " c.close, 1 from unnest(%s::numeric[]) with ordinality c (close, n)",
        [instrument_id(conn), start, closes],
    )


def compute_all(conn: psycopg.Connection) -> int:
    return conn.execute(
        "select market.compute_indicators(exchange => 'binance', symbol => 'BTCUSDT', candle_interval => '1m')"
    ).fetchone()[0]


def rounded(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP)


def test_computing_the_whole_history_after_cleanup_dropped_old_indicator_partitions_stores_the_rest(seeded):
    # candles of two months ago, in a partition a cleanup of indicators older than 25 days drops
    # whole (it ends at the start of last month), while the oldest, empty partition stays
    old_start = seeded.execute(
        "select (date_trunc('month', now() at time zone 'UTC') - interval '2 months' + interval '1 day 12 hours')"
        " at time zone 'UTC'"
    ).fetchone()[0]
    one_minute_candles(seeded, old_start, OLD_CLOSES)
    one_minute_candles(seeded, RECENT_NOON, RECENT_CLOSES)
    assert compute_all(seeded) == 60
    dropped = seeded.execute(
        "select p.object_name, ops.cleanup_drop_partition('indicators', interval '25 days', p.object_name)"
        " from ops.cleanup_plan('indicators', interval '25 days') p where p.action = 'drop partition'"
    ).fetchall()
    assert [rows for _name, rows in dropped] == [30]
    # the candles are kept: a run over the whole history warms up over them and stores the recent
    # ones (it was refused with 22S09 for the first old candle, storing nothing)
    assert compute_all(seeded) == 30
    closes = OLD_CLOSES + RECENT_CLOSES
    expected = list(
        zip(
            [RECENT_NOON + timedelta(minutes=n) for n in range(30)],
            [rounded(v) for v in sma(closes, 20)[30:]],
            [rounded(v) for v in ema(closes, 20)[30:]],
            [rounded(v) for v in rsi(closes, 14)[30:]],
            strict=True,
        )
    )
    stored = seeded.execute(
        "select open_time, sma_20, ema_20, rsi_14 from market.technical_indicators order by open_time"
    ).fetchall()
    assert stored == expected
