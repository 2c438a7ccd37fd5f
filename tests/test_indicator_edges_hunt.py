"""Candles and indicators at their edges, found in a hunt: rollups over candles loaded from files with
no tick to start from, and indicators of coins priced far below 1 (checked against an independent
computation in decimal arithmetic)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from itertools import groupby
from typing import Any

import psycopg

from indicator_reference import atr, bollinger, ema, macd, rsi, sma, vwap
from market_helpers import RECENT_NOON, instrument_id, tick

T0 = RECENT_NOON
D = Decimal
LENGTHS = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
Candle = tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal, int]


def load_minutes(conn: psycopg.Connection, rows: list[Candle]) -> None:
    """1m candles as `spreadedge ingest candles` stores a closed one: marked loaded."""
    with conn.cursor() as cur:
        cur.executemany(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count, loaded) values (%s, '1m', %s, %s, %s, %s, %s, %s, %s, %s, true)",
            [(instrument_id(conn), *row) for row in rows],
        )


def random_minutes(start: datetime, count: int, seed: int = 5) -> list[Candle]:
    rng = random.Random(seed)
    close, rows = D("100"), []
    for i in range(count):
        open_ = close
        close = open_ + D(rng.randint(-90, 90)) / 100
        high = max(open_, close) + D(rng.randint(0, 40)) / 100
        low = min(open_, close) - D(rng.randint(0, 40)) / 100
        volume = D(rng.randint(1, 900)) / 100
        rows.append(
            (start + timedelta(minutes=i), open_, high, low, close, volume, volume * close, rng.randint(1, 9))
        )
    return rows


def aggregated(minutes: list[Candle], interval: str) -> list[Candle]:
    """The candles of ``interval`` the minutes make up: the independent computation."""
    length = LENGTHS[interval]

    def start_of(row: Candle) -> datetime:
        return row[0] - (row[0] - T0.replace(hour=0)) % length

    out = []
    for start, group in groupby(minutes, key=start_of):
        part = list(group)
        out.append(
            (
                start,
                part[0][1],
                max(r[2] for r in part),
                min(r[3] for r in part),
                part[-1][4],
                sum(r[5] for r in part),
                sum(r[6] for r in part),
                sum(r[7] for r in part),
            )
        )
    return out


def stored(conn: psycopg.Connection, interval: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select open_time, open, high, low, close, volume, quote_volume, trade_count from market.candles"
        " where interval = %s order by open_time",
        [interval],
    ).fetchall()


def rollup(conn: psycopg.Connection, until: datetime, open_window: str = "10 minutes") -> dict[str, int]:
    return dict(
        conn.execute(
            "select candle_interval::text, candles from market.rollup_candles(until => %s, open_window => %s)",
            [until, open_window],
        ).fetchall()
    )


def watermark(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute("select built_until from market.rollup_watermarks where rollup = 'candles'").fetchone()
    return row and row[0]


# -- rollups over loaded candles -----------------------------------------------------------------------


def test_a_first_rollup_builds_the_longer_candles_of_minutes_loaded_without_any_tick(seeded):
    # a database fed with the exchanges' 1m candles alone: the run started at the oldest tick, found
    # none, and returned no row (as when another run holds the lock); no longer candle was ever built
    minutes = random_minutes(T0 - timedelta(minutes=47), 70)  # 11:13 to 12:22, across an hour
    load_minutes(seeded, minutes)
    assert rollup(seeded, T0 + timedelta(hours=2)) == {"1m": 0, "5m": 15, "15m": 6, "1h": 2, "4h": 2, "1d": 1}
    assert {interval: stored(seeded, interval) for interval in LENGTHS} == {
        interval: aggregated(minutes, interval) for interval in LENGTHS
    }


def test_a_first_rollup_builds_the_day_of_a_minute_loaded_days_before_the_first_tick(seeded):
    # the README's remedy for candles of a period the rollups passed, a run whose window reaches
    # back to them, did nothing on a first run: it started at the oldest tick's day whatever the window
    loaded = random_minutes(T0 - timedelta(days=2), 1)
    load_minutes(seeded, loaded)
    tick(seeded, T0 + timedelta(seconds=30), "104", "2", trade_id="a")
    rollup(seeded, T0 + timedelta(minutes=10), open_window="3 days")
    days = stored(seeded, "1d")
    assert days == [
        aggregated(loaded, "1d")[0],
        (T0.replace(hour=0), D("104"), D("104"), D("104"), D("104"), D("2"), D("208"), 1),
    ]


def test_rollups_over_loaded_minutes_alone_move_the_watermark_to_the_newest_minute(seeded):
    # with no trade built, the watermark stayed at the first run's start: every run (each minute)
    # rebuilt every longer candle from there to now, a longer history each day
    minutes = random_minutes(T0, 30)
    load_minutes(seeded, minutes[:20])
    rollup(seeded, T0 + timedelta(hours=1))
    assert watermark(seeded) == T0 + timedelta(minutes=19)
    load_minutes(seeded, minutes[20:])  # the next 10 minutes, loaded a while later
    assert rollup(seeded, T0 + timedelta(hours=2)) == {"1m": 0, "5m": 2, "15m": 1, "1h": 1, "4h": 1, "1d": 1}
    assert watermark(seeded) == T0 + timedelta(minutes=29)
    assert {interval: stored(seeded, interval) for interval in LENGTHS} == {
        interval: aggregated(minutes, interval) for interval in LENGTHS
    }


# -- indicators of coins priced far below 1 ------------------------------------------------------------


def decimals_of(close: Decimal) -> int:
    """12, plus one per zero after the decimal point of a close below 0.1, at most 24."""
    return 12 + (min(12, -close.adjusted() - 1) if close < D("0.1") else 0)


def rounded_to(values: list[Decimal | None], closes: list[Decimal]) -> list[Decimal | None]:
    return [
        None if v is None else v.quantize(D(1).scaleb(-decimals_of(c)), rounding=ROUND_HALF_UP)
        for v, c in zip(values, closes, strict=True)
    ]


def insert_candles(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, %s, %s, %s, %s, %s, %s, 1)",
            [(instrument_id(conn), *row) for row in rows],
        )


def tiny_candles(count: int = 60, seed: int = 3) -> list[tuple[Any, ...]]:
    """A coin around 0.0000000012 quoted in steps of 10^-13 (as Gate.io lists such coins)."""
    rng = random.Random(seed)
    step = D("1e-13")
    close, rows = D("0.0000000012"), []
    for i in range(count):
        open_ = close
        close = open_ + rng.randint(-40, 40) * step
        high = max(open_, close) + rng.randint(0, 20) * step
        low = min(open_, close) - rng.randint(0, 20) * step
        volume = D(rng.randint(1, 10**9))
        rows.append((T0 + timedelta(minutes=i), open_, high, low, close, volume, volume * close))
    return rows


def test_indicators_of_a_coin_priced_around_0_0000000012_keep_12_significant_digits(seeded):
    # at 12 decimals they kept 3 or 4 digits, and ATR and MACD read 0.000000000000 over candles
    # that moved: no volatility, no momentum
    rows = tiny_candles()
    insert_candles(seeded, rows)
    closes = [row[4] for row in rows]
    actual = seeded.execute(
        "select s.sma, e.ema, m.macd, m.signal, m.histogram, b.middle, b.upper, b.lower, v.vwap, a.atr, r.rsi"
        " from market.sma('binance', 'BTCUSDT', '1m', 5) s"
        " join market.ema('binance', 'BTCUSDT', '1m', 5) e using (open_time)"
        " join market.macd('binance', 'BTCUSDT', '1m') m using (open_time)"
        " join market.bollinger('binance', 'BTCUSDT', '1m') b using (open_time)"
        " join market.vwap('binance', 'BTCUSDT', '1m') v using (open_time)"
        " join market.atr('binance', 'BTCUSDT', '1m') a using (open_time)"
        " join market.rsi('binance', 'BTCUSDT', '1m') r using (open_time) order by open_time"
    ).fetchall()
    with localcontext() as context:
        context.prec = 60
        line, signal, histogram = macd(closes)
        bands = bollinger(closes)
        expected = [
            rounded_to(sma(closes, 5), closes),
            rounded_to(ema(closes, 5), closes),
            rounded_to(line, closes),
            rounded_to(signal, closes),
            rounded_to(histogram, closes),
            *(rounded_to([b[part] for b in bands], closes) for part in range(3)),
            rounded_to(vwap(rows), closes),
            rounded_to(atr(rows), closes),
            # RSI is 0 to 100 whatever the price: 12 decimals
            [None if v is None else v.quantize(D("1e-12"), rounding=ROUND_HALF_UP) for v in rsi(closes)],
        ]
    columns = [[row[i] for row in actual] for i in range(11)]
    assert [(i, c) for i, (c, e) in enumerate(zip(columns, expected, strict=True)) if c != e] == []
    assert all(a != 0 for a in columns[9][13:])  # the ATR of moving candles is not 0


def test_an_indicator_has_12_decimals_from_a_close_of_0_1_and_one_more_per_zero_below_up_to_24(seeded):
    closes = ["0.1", "0.0999", "0.05", "0.0000000012", "0.00000000000001234", "3"]
    insert_candles(
        seeded,
        [(T0 + timedelta(minutes=i), D(c), D(c), D(c), D(c), D(1), D(c)) for i, c in enumerate(closes)],
    )
    # SMA(1) is the close itself
    assert [
        f"{row[0]:f}" for row in seeded.execute("select sma from market.sma('binance', 'BTCUSDT', '1m', 1)")
    ] == [
        "0.100000000000",
        "0.0999000000000",
        "0.0500000000000",
        "0.00000000120000000000",
        "0.000000000000012340000000",
        "3.000000000000",
    ]
