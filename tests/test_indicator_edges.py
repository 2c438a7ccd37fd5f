"""Candles and indicators at their edges: ticks either side of UTC midnight that arrive late, and a
flat, volume-less series (RSI with no losses, Bollinger with no spread, VWAP over no volume)."""

from datetime import timedelta
from decimal import Decimal

import psycopg

from market_helpers import RECENT_NOON, instrument_id, tick

MIDNIGHT = RECENT_NOON + timedelta(hours=12)  # today's UTC midnight: past, with partitions
D = Decimal


def closes_per_interval(conn: psycopg.Connection) -> list[tuple[str, object, Decimal, Decimal, int]]:
    return conn.execute(
        "select interval::text, open_time, open, close, trade_count from market.candles"
        " where interval in ('1m', '5m', '1d') order by interval, open_time"
    ).fetchall()


def test_late_ticks_either_side_of_utc_midnight_correct_every_candle_level_of_their_own_day(seeded):
    tick(seeded, MIDNIGHT - timedelta(microseconds=1), "100", trade_id="a")
    tick(seeded, MIDNIGHT, "200", trade_id="b")
    seeded.execute("select * from market.rollup_candles(until => %s)", [MIDNIGHT + timedelta(minutes=3)])
    # both arrive after their minutes, the 5m and the 1d candles above them were built
    tick(seeded, MIDNIGHT - timedelta(minutes=2), "50", trade_id="late-1")
    tick(seeded, MIDNIGHT + timedelta(minutes=2), "400", trade_id="late-2")
    seeded.execute("select * from market.rollup_candles(until => %s)", [MIDNIGHT + timedelta(minutes=4)])
    day = timedelta(days=1)
    assert closes_per_interval(seeded) == [
        ("1d", MIDNIGHT - day, D("50"), D("100"), 2),
        ("1d", MIDNIGHT, D("200"), D("400"), 2),
        ("1m", MIDNIGHT - timedelta(minutes=2), D("50"), D("50"), 1),
        ("1m", MIDNIGHT - timedelta(minutes=1), D("100"), D("100"), 1),
        ("1m", MIDNIGHT, D("200"), D("200"), 1),
        ("1m", MIDNIGHT + timedelta(minutes=2), D("400"), D("400"), 1),
        ("5m", MIDNIGHT - timedelta(minutes=5), D("50"), D("100"), 2),
        ("5m", MIDNIGHT, D("200"), D("400"), 2),
    ]


def test_a_flat_series_without_volume_is_rsi_100_bollinger_without_width_and_no_vwap(seeded):
    instrument = instrument_id(seeded)
    for minute in range(4):
        seeded.execute(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, 10, 10, 10, 10, 0, 0, 0)",
            [instrument, RECENT_NOON + timedelta(minutes=minute)],
        )
    rows = seeded.execute(
        "select r.rsi, b.middle, b.upper, b.lower, a.atr, v.vwap"
        " from market.rsi('binance', 'BTCUSDT', '1m', 2) r"
        " join market.bollinger('binance', 'BTCUSDT', '1m', 2) b using (open_time)"
        " join market.atr('binance', 'BTCUSDT', '1m', 2) a using (open_time)"
        " join market.vwap('binance', 'BTCUSDT', '1m') v using (open_time) order by open_time"
    ).fetchall()
    ten, zero = D("10.000000000000"), D("0E-12")
    assert rows == [
        (None, None, None, None, None, None),
        (None, ten, ten, ten, zero, None),
        # the README: RSI is 100 when the average loss is 0, also with no gain
        (D("100"), ten, ten, ten, zero, None),
        (D("100"), ten, ten, ten, zero, None),
    ]
