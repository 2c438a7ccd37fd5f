"""Market data edge cases: a day candle lasts 24 hours in every session time zone, and a loaded
candle's trade count fits the sums the rollups make of it."""

from datetime import datetime, timedelta

import psycopg

from market_helpers import RECENT_NOON, as_stored, candle_file, load, rejects_of, stored_candle, tick
from spreadedge import ingest

DAY_CANDLE = "95,120,80,102,5000,500000,90000"


def clock_change_zone(day: datetime) -> str:
    """A POSIX time zone in which the local day starting at ``day`` 00:00 UTC is 54 hours long:
    UTC+15 until 16:00 local that day, when the clocks go back 30 hours to UTC-15 (for about a
    year). A real zone's DST day is 23 or 25 hours; this one makes the difference between '1 day'
    and 24 hours larger than the hours since the candle closed, whatever the time of the test."""
    start = day.timetuple().tm_yday - 1  # zero-based day of the year, 29 February counted
    end = start - 1 if start > 0 else 365  # the day before: the clocks go forward again a year later
    return f"AAA-15BBB15,{start}/16,{end}/0"


def test_a_day_candle_lasts_24_hours_across_a_dst_change_in_a_berlin_session(seeded):
    # interval '1 day' added in the session TimeZone is 23 hours on the day Berlin moves its clocks
    # forward and 25 on the day it moves them back: a day candle's end was an hour off
    seeded.execute("set timezone = 'Europe/Berlin'")
    ends = seeded.execute(
        "select (timestamptz '2026-03-29 00:00:00+00' + market.interval_length('1d')) at time zone 'UTC',"
        " (timestamptz '2026-10-25 00:00:00+00' + market.interval_length('1d')) at time zone 'UTC'"
    ).fetchone()
    assert ends == (datetime(2026, 3, 30), datetime(2026, 10, 26))


def test_a_closed_day_candle_loaded_in_a_session_whose_clocks_change_that_day_is_marked_loaded(
    seeded_url, seeded, tmp_path
):
    # yesterday's day candle has closed; counted as a '1 day' of the session's wall clock it ended
    # only tomorrow, so it was stored unmarked, and the next rollup run overwrote the exchange's
    # candle with the few trades spreadedge had received
    day = RECENT_NOON.replace(hour=0)
    path = candle_file(tmp_path, "day.csv", ("1d", day, DAY_CANDLE))
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("select set_config('timezone', %s, false)", [clock_change_zone(day)])
        local_day = conn.execute("select (%s::timestamptz + interval '1 day') - %s::timestamptz", [day, day])
        assert local_day.fetchone()[0] == timedelta(hours=54)  # the zone is what the test needs
        assert ingest.ingest(conn, "candles", [path]).loaded == 1
    assert stored_candle(seeded, "1d", day) == as_stored(DAY_CANDLE, loaded=True)


def test_a_minute_candle_with_more_trades_than_a_minute_can_hold_is_rejected_naming_the_bound(
    seeded_url, tmp_path
):
    # two minutes of 2,000,000,000 trades (a volume column read as the count) loaded, and every
    # later rollup run failed adding them up into the 5m candle with a raw 22003
    path = candle_file(
        tmp_path,
        "minutes.csv",
        ("1m", RECENT_NOON, "100,100,100,100,1,100,2000000000"),
        ("1m", RECENT_NOON + timedelta(minutes=1), "100,100,100,100,1,100,1491308"),
    )
    summary = load(seeded_url, "candles", path)
    assert (summary.loaded, summary.rejected) == (1, 1)
    assert rejects_of(path) == [
        "line,reason",
        "2,trade_count 2000000000 is more than a 1m candle holds"
        " (at most 1491308: the candles of a day add up to at most 2147483647 trades)",
    ]


def test_a_rollup_after_a_load_of_the_largest_trade_counts_builds_the_day_candle(
    seeded_url, seeded, tmp_path
):
    # every candle of a day at its bound: the day candle still holds their sum
    day = RECENT_NOON.replace(hour=0)
    path = candle_file(
        tmp_path,
        "hours.csv",
        *(("4h", day + timedelta(hours=4 * n), "100,100,100,100,1,100,357913941") for n in range(6)),
    )
    assert load(seeded_url, "candles", path).loaded == 6
    tick(seeded, RECENT_NOON, "100", trade_id="a")
    seeded.execute("select * from market.rollup_candles(until => %s)", [RECENT_NOON + timedelta(minutes=1)])
    assert stored_candle(seeded, "1d", day)[6] == 6 * 357913941
