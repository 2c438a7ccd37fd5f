"""Rollups and spreads at their edges: a first rollup run next to candles loaded from files, and
spread_opportunities buckets with a month part."""

from datetime import timedelta

import psycopg
import pytest

from market_helpers import (
    RECENT_NOON,
    as_stored,
    candle_file,
    load,
    opportunities,
    quote,
    stored_candle,
    tick,
)
from trading_helpers import list_spot

T0 = RECENT_NOON


def rollup(conn, until):
    conn.execute("select * from market.rollup_candles(until => %s)", [until])


def test_a_first_rollup_builds_every_longer_candle_from_a_minute_loaded_before_the_first_tick(
    seeded_url, seeded, tmp_path
):
    # the exchange's 12:00 minute was loaded; the tick feed starts at 12:07. Starting at the oldest
    # tick, the first run read the 5m candles of 12:00-12:05 (never built) for the 15m candle, and
    # every longer candle left the loaded minute out: 1 trade of 2 instead of 51 trades of 12
    path = candle_file(tmp_path, "candles-1m.csv", ("1m", T0, "100,110,90,105,10,1000,50"))
    assert load(seeded_url, "candles", path).loaded == 1
    tick(seeded, T0 + timedelta(minutes=7, seconds=30), "104", "2", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=10))
    assert stored_candle(seeded, "1m", T0) == as_stored("100,110,90,105,10,1000,50", loaded=True)
    assert stored_candle(seeded, "5m", T0) == as_stored("100,110,90,105,10,1000,50", loaded=False)
    built = as_stored("100,110,90,104,12,1208,51", loaded=False)
    assert {
        interval: stored_candle(seeded, interval, start)
        for interval, start in (("15m", T0), ("1h", T0), ("4h", T0), ("1d", T0.replace(hour=0)))
    } == {"15m": built, "1h": built, "4h": built, "1d": built}


def test_a_first_rollup_builds_the_day_candle_from_a_minute_loaded_hours_before_the_first_tick(
    seeded_url, seeded, tmp_path
):
    # a minute of the morning loaded from the exchange's history, ticks from noon: the 1d candle
    # was the ticks' alone, and the morning's 5m..4h candles were never built
    morning = T0.replace(hour=9, minute=30)
    path = candle_file(tmp_path, "candles-1m.csv", ("1m", morning, "100,110,90,105,10,1000,50"))
    assert load(seeded_url, "candles", path).loaded == 1
    tick(seeded, T0 + timedelta(seconds=30), "104", "2", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=10))
    assert stored_candle(seeded, "4h", T0.replace(hour=8)) == as_stored(
        "100,110,90,105,10,1000,50", loaded=False
    )
    assert stored_candle(seeded, "1d", T0.replace(hour=0)) == as_stored(
        "100,110,90,104,12,1208,51", loaded=False
    )


def test_a_first_rollup_with_an_until_before_the_first_tick_builds_nothing(seeded):
    tick(seeded, T0 + timedelta(minutes=7, seconds=30), "104", "2", trade_id="b")
    assert seeded.execute("select count(*) from market.rollup_candles(until => %s)", [T0]).fetchone() == (0,)
    assert seeded.execute("select count(*) from market.rollup_watermarks").fetchone() == (0,)


def test_a_spread_opportunities_bucket_with_a_month_part_is_refused_with_22S09(seeded):
    # '1 mon -30 days 1 second' compares as one second, but date_bin cannot bin by months: a raw 0A000
    list_spot(seeded, "okx", "BTC-USDT")
    quote(seeded, T0, "100", "100.1")
    with pytest.raises(psycopg.DataError) as caught:
        opportunities(seeded, T0, bucket="1 mon -30 days 1 second")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "bucket 1 mon -30 days +00:00:01 is not between 0 and 1 day",
    )


def test_a_spread_opportunities_bucket_of_days_less_hours_still_bins(seeded):
    list_spot(seeded, "okx", "BTC-USDT")
    quote(seeded, T0, "100", "100.1")
    quote(seeded, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    found = opportunities(seeded, T0, bucket="2 days -47 hours")
    assert [(r["bucket_start"], r["buy_exchange"], r["sell_exchange"]) for r in found] == [
        (T0, "binance", "okx")
    ]
