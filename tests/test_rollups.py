"""market.rollup_candles: 1m candles from ticks, 5m..1d from 1m, incremental, late ticks."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, tick, ticks_in_one_statement

T0 = RECENT_NOON


def rollup(conn, until, open_window="10 minutes"):
    return dict(
        conn.execute(
            "select candle_interval::text, candles from market.rollup_candles(until => %s, open_window => %s)",
            [until, open_window],
        ).fetchall()
    )


def candles(conn, interval):
    return conn.execute(
        "select open_time, open, high, low, close, volume, quote_volume, trade_count from market.candles"
        " where interval = %s order by open_time",
        [interval],
    ).fetchall()


def test_one_minute_candles_are_built_from_the_ticks_of_each_minute(seeded):
    tick(seeded, T0 + timedelta(seconds=1), "100", "1", trade_id="a")
    tick(seeded, T0 + timedelta(seconds=20), "103", "2", trade_id="b")
    tick(seeded, T0 + timedelta(seconds=40), "99", "1", trade_id="c")
    tick(seeded, T0 + timedelta(seconds=59), "101", "0.5", trade_id="d")
    tick(seeded, T0 + timedelta(seconds=61), "102", "1", trade_id="e")
    rollup(seeded, T0 + timedelta(minutes=5))
    D = Decimal
    assert candles(seeded, "1m") == [
        (T0, D("100"), D("103"), D("99"), D("101"), D("4.5"), D("455.5"), 4),
        (T0 + timedelta(minutes=1), D("102"), D("102"), D("102"), D("102"), D("1"), D("102"), 1),
    ]


def test_trades_of_one_time_open_and_close_a_candle_in_numeric_trade_id_order(seeded):
    # as text, '10' sorts before '9' and '100' before '99'
    ticks_in_one_statement(seeded, T0, [("9", "50"), ("10", "60")])
    tick(seeded, T0 + timedelta(seconds=30), "55", trade_id="11")
    ticks_in_one_statement(seeded, T0 + timedelta(seconds=59), [("99", "52"), ("100", "58")])
    rollup(seeded, T0 + timedelta(minutes=5))
    D = Decimal
    assert candles(seeded, "1m") == [(T0, D("50"), D("60"), D("50"), D("58"), D("5"), D("275"), 5)]


def test_longer_candles_are_built_from_the_one_minute_candles(seeded):
    for minute, price in enumerate(["100", "104", "98", "101", "102", "105"]):
        tick(seeded, T0 + timedelta(minutes=minute, seconds=30), price, "1", trade_id=f"t{minute}")
    rollup(seeded, T0 + timedelta(minutes=10))
    D = Decimal
    assert candles(seeded, "5m") == [
        (T0, D("100"), D("104"), D("98"), D("102"), D("5"), D("505"), 5),
        (T0 + timedelta(minutes=5), D("105"), D("105"), D("105"), D("105"), D("1"), D("105"), 1),
    ]
    assert candles(seeded, "1d") == [
        (T0 - timedelta(hours=12), D("100"), D("105"), D("98"), D("105"), D("6"), D("610"), 6),
    ]


def test_a_late_tick_inside_the_open_window_is_in_the_candles_after_the_next_run(seeded):
    tick(seeded, T0 + timedelta(seconds=10), "100", "1", trade_id="a")
    rollup(seeded, T0 + timedelta(minutes=2))
    tick(seeded, T0 + timedelta(seconds=50), "110", "1", trade_id="late")
    written = rollup(seeded, T0 + timedelta(minutes=4), open_window="5 minutes")
    assert written["1m"] == 1
    assert candles(seeded, "1m") == [
        (T0, Decimal("100"), Decimal("110"), Decimal("100"), Decimal("110"), Decimal("2"), Decimal("210"), 2)
    ]
    assert candles(seeded, "1h")[0][4] == Decimal("110")


def test_a_run_with_nothing_new_writes_no_candle(seeded):
    tick(seeded, T0 + timedelta(seconds=10), "100", "1", trade_id="a")
    rollup(seeded, T0 + timedelta(minutes=2))
    assert rollup(seeded, T0 + timedelta(minutes=3)) == {
        "1m": 0,
        "5m": 0,
        "15m": 0,
        "1h": 0,
        "4h": 0,
        "1d": 0,
    }


def test_a_tick_later_than_the_open_window_is_left_out(seeded):
    tick(seeded, T0 + timedelta(seconds=10), "100", "1", trade_id="a")
    # the watermark stops at the newest trade built: the window is counted back from it
    tick(seeded, T0 + timedelta(minutes=29), "100", "1", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=30))
    tick(seeded, T0 + timedelta(seconds=20), "90", "1", trade_id="too-late")
    rollup(seeded, T0 + timedelta(minutes=31), open_window="10 minutes")
    assert candles(seeded, "1m")[0][3] == Decimal("100")


def test_a_negative_open_window_is_refused(seeded):
    with pytest.raises(psycopg.DataError) as caught:
        rollup(seeded, T0, open_window="-1 minute")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "open_window -00:01:00 must be zero or more",
    )


def test_an_open_window_reaching_back_thousands_of_years_rebuilds_from_the_oldest_tick(seeded):
    # subtracted from the watermark it failed with a raw 22008 (timestamp out of range)
    tick(seeded, T0 + timedelta(seconds=10), "100", "1", trade_id="a")
    rollup(seeded, T0 + timedelta(minutes=30))
    tick(seeded, T0 + timedelta(seconds=20), "90", "1", trade_id="late")
    rollup(seeded, T0 + timedelta(minutes=31), open_window="10000 years")
    assert candles(seeded, "1m")[0][3] == Decimal("90")


def test_a_run_with_an_until_before_the_watermark_rebuilds_candles_from_all_their_trades(seeded):
    tick(seeded, T0 + timedelta(seconds=30), "100", "1", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=5, seconds=10), "105", "1", trade_id="b")
    tick(seeded, T0 + timedelta(minutes=5, seconds=30), "110", "1", trade_id="c")
    tick(seeded, T0 + timedelta(minutes=7, seconds=30), "120", "1", trade_id="d")
    rollup(seeded, T0 + timedelta(minutes=10))
    # a backfill run that ends before the watermark, inside minute 5
    rollup(seeded, T0 + timedelta(minutes=5, seconds=15), open_window="10 minutes")
    D = Decimal
    assert candles(seeded, "1m")[1] == (
        T0 + timedelta(minutes=5),
        D("105"),
        D("110"),
        D("105"),
        D("110"),
        D("2"),
        D("215"),
        2,
    )
    assert candles(seeded, "1h") == [(T0, D("100"), D("120"), D("100"), D("120"), D("4"), D("435"), 4)]
    assert candles(seeded, "1d") == [
        (T0 - timedelta(hours=12), D("100"), D("120"), D("100"), D("120"), D("4"), D("435"), 4)
    ]


def test_a_day_candle_of_a_dst_change_holds_the_whole_utc_day_whatever_the_session_time_zone(seeded):
    # candle_start + interval '1 day' counted the day in the session TimeZone: from a Berlin session
    # the 1d candle of 2024-03-31 (a 23-hour local day) ended at 23:00 UTC and left its last hour out
    seeded.execute(
        "select partman.create_partition_time('market.ticks',"
        " array['2024-03-31 00:00+00', '2024-04-01 00:00+00']::timestamptz[])"
    )
    seeded.execute(
        "select partman.create_partition_time('market.candles', array['2024-03-01 00:00+00']::timestamptz[])"
    )
    day = datetime(2024, 3, 31, tzinfo=UTC)
    tick(seeded, day + timedelta(minutes=30), "100", "1", trade_id="a")
    tick(seeded, day + timedelta(hours=23, minutes=30), "110", "1", trade_id="b")
    seeded.execute("set timezone = 'Europe/Berlin'")
    rollup(seeded, day + timedelta(days=1))
    seeded.execute("set timezone = 'UTC'")
    assert candles(seeded, "1d") == [
        (day, Decimal("100"), Decimal("110"), Decimal("100"), Decimal("110"), Decimal("2"), Decimal("210"), 2)
    ]


def test_every_longer_candle_equals_its_one_minute_candles_after_runs_with_late_ticks(seeded):
    # 30 hours of ticks across a UTC midnight, rolled up every 20 minutes with ticks arriving up to
    # 7 minutes late: each 5m..1d candle, built from the next shorter interval, must hold exactly
    # what its 1m candles add up to
    start = T0.replace(hour=6)
    arrivals = sorted(
        (
            start + timedelta(minutes=m + (7 if m % 11 == 0 else 0)),
            start + timedelta(minutes=m, seconds=m % 60),
            m,
        )
        for m in range(0, 30 * 60, 13)
    )
    run_at = start + timedelta(minutes=20)
    for arrived_at, traded_at, m in arrivals:
        while run_at <= arrived_at:
            rollup(seeded, run_at)
            run_at += timedelta(minutes=20)
        tick(seeded, traded_at, str(100 + (m * 37) % 23), str(1 + m % 3), trade_id=f"t{m}")
    rollup(seeded, run_at)
    mismatched = seeded.execute(
        """
        select c.interval::text, c.open_time
        from market.candles c
        left join lateral (
            select (array_agg(m.open order by m.open_time))[1] as open, max(m.high) as high, min(m.low) as low,
                   (array_agg(m.close order by m.open_time desc))[1] as close, sum(m.volume) as volume,
                   sum(m.quote_volume) as quote_volume, sum(m.trade_count) as trade_count
            from market.candles m
            where m.instrument_id = c.instrument_id and m.interval = '1m'
              and m.open_time >= c.open_time and m.open_time < c.open_time + market.interval_length(c.interval)
        ) a on true
        where c.interval <> '1m'
          and (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count)
              is distinct from (a.open, a.high, a.low, a.close, a.volume, a.quote_volume, a.trade_count)
        """
    ).fetchall()
    counts = dict(
        seeded.execute("select interval::text, count(*) from market.candles group by interval").fetchall()
    )
    assert mismatched == []
    assert (counts["1d"], counts["4h"], counts["1m"]) == (2, 8, 139)
