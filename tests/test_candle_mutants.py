"""Rules of candles, their rollup, indicators and spreads that a plausible slip in their SQL let
through: each test here kills a mutant of the second mutation run of 40_market_intervals.sql,
44_market_spreads.sql, 45_market_rollups.sql, 46_market_indicators.sql and
47_market_indicator_api.sql (none of them a mutant that test_market_mutants.py, the first run,
already kills).

The run: 77 mutants, 59 caught by the existing tests, 18 survived: 12 holes, each killed by a
test below (one test kills two or three mutants of one rule: the open window's first instant, the
tie-break of one trade time) but one, an indicator range whose since is its until answered with
no rows, killed by the "equal" case of test_indicators.py's range test; 5 equivalent:
- the first rollup no longer starting at the UTC day of the oldest tick or candle: that oldest
  row is the oldest of every instrument, and every longer candle is built from the start of its
  own interval (candle_start(interval, start)), so nothing lies between the day's start and it;
- rollup_candles without `set timezone = 'UTC'`: every time it computes is a date_bin over a fixed
  length or a sum of minutes (a day is '24 hours'), which no session TimeZone changes;
- ATR without its first-row case (true range = high - low): on row 1 the previous close is null,
  |high - null| and |low - null| are null and greatest() skips nulls, leaving high - low;
- ATR's |high - previous close| without abs(): high - close is below 0 only when the high, so
  also the low, is under the previous close, and then |low - close| is the larger term;
- the extra decimals from a close <= 0.1 instead of < 0.1: at 0.1 exactly they are
  -floor(log(0.1)) - 1 = 0 either way;
and 1 left open: the longer candles' upper bound taken from the end of until's minute instead of
the minute before it, which, when until is aligned to a longer interval, also rebuilds the candle
that starts at until from the shorter candles already stored. Only a candle loaded after the last
rollup over it, then a backfill ending exactly there, tells it apart, and the mutant then writes
what the next forward run writes anyway: no wrong value to pin down.

Every expected value is worked out by hand in its comment."""

from datetime import timedelta
from decimal import Decimal as D

from market_helpers import RECENT_NOON, quote, tick, ticks_in_one_statement
from test_indicator_edges_hunt import load_minutes, watermark
from test_market_mutants import minute_candles_of, spot_venues
from test_rollups import candles, rollup

T0 = RECENT_NOON

# -- 1m candles from ticks -------------------------------------------------------------------------


def test_trades_of_one_time_with_ids_of_one_length_open_at_the_lowest_id_and_close_at_the_highest(seeded):
    # one time, ids of one length: the lower id traded first. Inserted the other way round, so
    # that neither the insert order nor a tie-break running the wrong way passes by luck
    ticks_in_one_statement(seeded, T0, [("12", "60"), ("11", "50")])
    rollup(seeded, T0 + timedelta(minutes=5))
    # open = id 11 (50), close = id 12 (60); volume 2, quote volume 50 + 60 = 110, 2 trades
    assert candles(seeded, "1m") == [(T0, D("50"), D("60"), D("50"), D("60"), D("2"), D("110"), 2)]


def test_trades_at_one_price_each_count_in_the_candles_trade_count(seeded):
    tick(seeded, T0 + timedelta(seconds=1), "100", trade_id="a")
    tick(seeded, T0 + timedelta(seconds=2), "100", trade_id="b")
    tick(seeded, T0 + timedelta(seconds=3), "101", trade_id="c")
    rollup(seeded, T0 + timedelta(minutes=5))
    # three trades (two of them at 100): volume 3, quote volume 100 + 100 + 101 = 301
    assert candles(seeded, "1m") == [(T0, D("100"), D("101"), D("100"), D("101"), D("3"), D("301"), 3)]
    assert candles(seeded, "1d")[0][7] == 3


def test_a_late_tick_at_the_very_first_instant_of_the_open_window_gets_into_its_candle(seeded):
    tick(seeded, T0 + timedelta(seconds=10), "100", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=10, seconds=10), "102", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=15))  # the watermark: the newest trade built, T0 + 10m10s
    # the next run starts at the minute of watermark - 10 minutes: T0 itself. A trade at T0:00.000
    # is the first instant of that window, and the first trade of its minute
    tick(seeded, T0, "90", trade_id="late")
    rollup(seeded, T0 + timedelta(minutes=16))
    # minute T0: open 90 (the late trade, 10 s before a), high 100, low 90, close 100, 2 trades
    assert candles(seeded, "1m")[0] == (T0, D("90"), D("100"), D("90"), D("100"), D("2"), D("190"), 2)


def test_a_late_tick_rebuilds_the_first_minute_of_the_window_from_all_its_trades(seeded):
    tick(seeded, T0 + timedelta(seconds=5), "100", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=10, seconds=20), "102", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=15))  # the watermark: T0 + 10m20s
    # the window starts at T0 + 20 s, inside minute T0: the minute is rebuilt from its start, so
    # trade a (T0 + 5 s, before the window) stays in it next to the late one
    tick(seeded, T0 + timedelta(seconds=50), "110", trade_id="late")
    rollup(seeded, T0 + timedelta(minutes=16))
    # open 100 (a), high 110, low 100, close 110 (late); volume 2, quote volume 210, 2 trades
    assert candles(seeded, "1m")[0] == (T0, D("100"), D("110"), D("100"), D("110"), D("2"), D("210"), 2)


def test_a_trade_at_the_very_instant_of_until_is_left_to_the_next_run(seeded):
    tick(seeded, T0 + timedelta(seconds=30), "100", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=1), "101", trade_id="b")
    # [.., until): the trade at until itself is after the range; its minute is not built
    assert rollup(seeded, T0 + timedelta(minutes=1))["1m"] == 1
    assert candles(seeded, "1m") == [(T0, D("100"), D("100"), D("100"), D("100"), D("1"), D("100"), 1)]


def test_a_backfill_run_ending_before_the_watermark_leaves_the_watermark_where_it_was(seeded):
    tick(seeded, T0 + timedelta(seconds=30), "100", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=10, seconds=30), "101", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=15))
    assert watermark(seeded) == T0 + timedelta(minutes=10, seconds=30)  # the newest trade built
    # a backfill until T0 + 5m builds up to trade a (T0 + 30 s) only. Moved back there, the
    # watermark would have the next run rebuild everything since (after a backfill of last week:
    # the whole week)
    rollup(seeded, T0 + timedelta(minutes=5))
    assert watermark(seeded) == T0 + timedelta(minutes=10, seconds=30)


# -- indicators -------------------------------------------------------------------------------------


def test_an_indicator_until_a_candles_open_time_leaves_that_candle_out(seeded):
    minute_candles_of(
        seeded, ("100", "100", "100", "100"), ("102", "102", "102", "102"), ("110", "110", "110", "110")
    )
    # [since, until): the candle opening at until (T0 + 2m) is not in the range. SMA(2) of the
    # second candle: (100 + 102) / 2 = 101
    assert seeded.execute(
        "select open_time, sma from market.sma('binance', 'BTCUSDT', '1m', period => 2, until => %s)",
        [T0 + timedelta(minutes=2)],
    ).fetchall() == [(T0, None), (T0 + timedelta(minutes=1), D("101"))]


def test_vwap_runs_over_the_utc_day_also_in_a_session_whose_midnight_falls_inside_it(seeded):
    # 11:59 and 12:00 UTC: one UTC day. In a session 12 hours behind UTC (Etc/GMT+12), 12:00 UTC
    # is local midnight, which must not restart the VWAP. Volume 1 each, quote volume = close
    load_minutes(
        seeded,
        [
            (T0 - timedelta(minutes=1), D("100"), D("100"), D("100"), D("100"), D("1"), D("100"), 1),
            (T0, D("110"), D("110"), D("110"), D("110"), D("1"), D("110"), 1),
        ],
    )
    seeded.execute("set timezone = 'Etc/GMT+12'")
    # 100 / 1 = 100, then (100 + 110) / 2 = 105 (a restart at local midnight would give 110)
    assert seeded.execute(
        "select open_time, vwap from market.vwap('binance', 'BTCUSDT', '1m')"
    ).fetchall() == [
        (T0 - timedelta(minutes=1), D("100")),
        (T0, D("105")),
    ]


# -- spreads ----------------------------------------------------------------------------------------


def test_current_spreads_sells_at_the_best_bid_net_of_its_fee_not_the_best_bid_before_fees(seeded):
    spot_venues(seeded, ("okx", "BTC-USDT"), ("kraken", "XBTUSDT"), ("coinbase", "BTC-USDT"))
    quote(seeded, T0, "99.9", "100")  # binance: the cheapest buy, 100 x 1.001 = 100.1 with its fee
    # the bids net of the spot taker fees: coinbase 100.8 x 0.994 = 100.1952, kraken
    # 100.7 x 0.996 = 100.2972, okx 100.5 x 0.999 = 100.3995. The two highest bids are coinbase's
    # and kraken's, the best sale is okx's
    quote(seeded, T0, "100.8", "101.5", exchange="coinbase", symbol="BTC-USDT")
    quote(seeded, T0, "100.7", "101.5", exchange="kraken", symbol="XBTUSDT")
    quote(seeded, T0, "100.5", "101.5", exchange="okx", symbol="BTC-USDT")
    # (100.3995 - 100.1) / 100 x 10,000 = 29.95 bps (kraken's would be 19.72)
    assert seeded.execute(
        "select buy_exchange, sell_exchange, bid, net_bps from market.current_spreads"
    ).fetchall() == [("binance", "okx", D("100.5"), D("29.9500"))]
