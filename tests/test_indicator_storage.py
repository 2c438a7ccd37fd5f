"""Stored indicators: what market.compute_indicators keeps when it runs again over stored candles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg

from market_helpers import RECENT_NOON, instrument_id

T0 = RECENT_NOON

STORED = (
    "select open_time, sma_20, ema_20, rsi_14, macd, macd_signal, macd_histogram, bb_middle, bb_upper, bb_lower,"
    " atr_14 from market.technical_indicators order by open_time"
)


def one_minute_candles(conn: psycopg.Connection, closes: list[int]) -> None:
    """1m candles from T0, one a minute, with these closes (open = close, high + 2, low - 2)."""
    conn.execute(
        "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
        " quote_volume, trade_count)"
        " select %s, '1m', %s + (c.n - 1) * interval '1 minute', c.close, c.close + 2, c.close - 2, c.close, 1,"
        " c.close, 1 from unnest(%s::numeric[]) with ordinality c (close, n)",
        [instrument_id(conn), T0, [Decimal(close) for close in closes]],
    )


def compute(conn: psycopg.Connection, since: object = None) -> int:
    return conn.execute(
        "select market.compute_indicators(exchange => 'binance', symbol => 'BTCUSDT', candle_interval => '1m',"
        " since => %s)",
        [since],
    ).fetchone()[0]


def test_computing_again_from_a_later_since_keeps_the_stored_values_its_warm_up_cannot_compute(seeded):
    one_minute_candles(seeded, [100 + (n * 7) % 11 for n in range(40)])
    compute(seeded)
    before = seeded.execute(STORED).fetchall()
    # from the 21st candle: every indicator warms up again over candles 21..33 (ATR 14 is back at
    # the 34th), SMA 20 over candles 21..39, and the MACD signal never ends warming up
    assert compute(seeded, T0 + timedelta(minutes=20)) == 20
    after = seeded.execute(STORED).fetchall()
    assert after[:33] == before[:33]
    assert [row[1] for row in after] == [row[1] for row in before]
    assert [row[4:7] for row in after] == [row[4:7] for row in before]
