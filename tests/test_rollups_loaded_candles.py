"""market.rollup_candles keeps candles loaded from files (`spreadedge ingest candles`) as they are."""

from datetime import timedelta
from decimal import Decimal as D

from market_helpers import RECENT_NOON, as_stored, candle_file, load, stored_candle, tick

T0 = RECENT_NOON


def load_candle(url, tmp_path, interval, open_time, values):
    path = candle_file(tmp_path, f"candles-{interval}.csv", (interval, open_time, values))
    assert load(url, "candles", path).loaded == 1


def rollup(conn, until):
    conn.execute("select * from market.rollup_candles(until => %s)", [until])


def test_a_loaded_minute_keeps_its_values_when_ticks_of_it_are_rolled_up(seeded_url, seeded, tmp_path):
    load_candle(seeded_url, tmp_path, "1m", T0, "100,110,90,105,10,1000,50")
    # one trade of the fifty the exchange counted: built from it, the minute read 101 101 101 101
    tick(seeded, T0 + timedelta(seconds=30), "101", "1", trade_id="a")
    rollup(seeded, T0 + timedelta(minutes=5))
    assert stored_candle(seeded, "1m", T0) == as_stored("100,110,90,105,10,1000,50", loaded=True)


def test_longer_candles_are_built_from_a_loaded_minute_like_any_other(seeded_url, seeded, tmp_path):
    load_candle(seeded_url, tmp_path, "1m", T0, "100,110,90,105,10,1000,50")
    tick(seeded, T0 + timedelta(minutes=1, seconds=30), "104", "2", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=5))
    assert stored_candle(seeded, "5m", T0) == (
        D("100"),
        D("110"),
        D("90"),
        D("104"),
        D("12"),
        D("1208"),
        51,
        False,
    )


def test_a_loaded_day_keeps_its_values_when_the_day_is_rolled_up_from_part_of_its_trades(
    seeded_url, seeded, tmp_path
):
    day = T0.replace(hour=0)
    load_candle(seeded_url, tmp_path, "1d", day, "95,120,80,102,5000,500000,90000")
    tick(seeded, T0 + timedelta(seconds=30), "101", "1", trade_id="a")
    rollup(seeded, T0 + timedelta(minutes=5))
    assert stored_candle(seeded, "1d", day) == as_stored("95,120,80,102,5000,500000,90000", loaded=True)
    # the hours the feed saw are built as before
    assert stored_candle(seeded, "1h", T0) == (
        D("101"),
        D("101"),
        D("101"),
        D("101"),
        D("1"),
        D("101"),
        1,
        False,
    )
