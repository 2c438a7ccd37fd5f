"""Rules of market data, spreads, candles, indicators, spread trades and history that no other test
pinned down: each test here fails on a small, plausible bug in the rule it names (a mutant of the
SQL) that the rest of the suite let through."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, instrument_id, opportunities, quote, tick
from trading_helpers import (
    legs,
    list_okx_btc_spot,
    list_perpetual,
    list_spot,
    open_spread,
    order,
    rows,
    trade,
)

T0 = RECENT_NOON


def test_of_quotes_of_one_instrument_in_one_batch_the_newest_is_the_latest_price(seeded):
    # one insert (one ingest batch) of two quotes, the newer first: the statement trigger keeps the
    # newer, whatever the order of the rows
    seeded.execute(
        "insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)"
        " values (%(i)s, %(late)s, 109, 1, 111, 1), (%(i)s, %(early)s, 104, 1, 106, 1)",
        {"i": instrument_id(seeded), "late": T0 + timedelta(seconds=1), "early": T0},
    )
    assert seeded.execute(
        "select bid, ask, quoted_at from market.latest_prices where instrument_id = %s",
        [instrument_id(seeded)],
    ).fetchone() == (Decimal("109"), Decimal("111"), T0 + timedelta(seconds=1))


def test_current_spreads_gives_the_sell_legs_bid_size_in_base_asset_units(seeded: psycopg.Connection):
    # buy binance's 1 BTC perpetual, sell okx's 0.01 BTC one: okx bids for 300 contracts, 3 BTC
    list_perpetual(seeded, "binance", "BTCUSDT-PERP", "1")
    quote(seeded, T0, "100", "100.1", symbol="BTCUSDT-PERP", size="4")
    quote(seeded, T0, "101", "101.1", exchange="okx", symbol="BTC-USDT-SWAP", size="300")
    assert seeded.execute(
        "select buy_symbol, ask_size, sell_symbol, bid_size from market.current_spreads"
    ).fetchall() == [("BTCUSDT-PERP", Decimal("4"), "BTC-USDT-SWAP", Decimal("3.00"))]


def spot_venues(conn: psycopg.Connection, *listings: tuple[str, str]) -> None:
    """BTC/USDT spot on binance (seeded) and on these (exchange, symbol), each at the exchange's taker
    fee (binance and okx 0.1 %, gateio 0.2 %)."""
    for exchange, symbol in listings:
        list_spot(conn, exchange, symbol)


def test_current_spreads_never_sells_on_a_delisted_instrument(seeded):
    spot_venues(seeded, ("okx", "BTC-USDT"), ("gateio", "BTC_USDT"))
    quote(seeded, T0, "100", "100.1")
    quote(seeded, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    quote(seeded, T0, "103", "103.1", exchange="gateio", symbol="BTC_USDT")
    seeded.execute("update ref.instruments set is_active = false where symbol = 'BTC_USDT'")
    # (100.5 x 0.999 - 100.1 x 1.001) / 100.1 x 10,000 = 0.1994 / 100.1 x 10,000 = 19.9201 bps
    assert seeded.execute(
        "select buy_exchange, sell_exchange, bid, net_bps from market.current_spreads"
    ).fetchall() == [("binance", "okx", Decimal("100.5"), Decimal("19.9201"))]


def test_current_spreads_sells_at_the_best_bid_of_an_exchange_that_lists_the_pair_twice(seeded):
    spot_venues(seeded, ("okx", "BTC-USDT"), ("okx", "BTC-USDT-2"))
    quote(seeded, T0, "100", "100.1")
    quote(seeded, T0, "100.4", "100.7", exchange="okx", symbol="BTC-USDT-2")
    quote(seeded, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    # okx's better bid, 100.5: 19.9201 bps net as above (at 100.4 it would be 9.9401)
    assert seeded.execute(
        "select buy_exchange, sell_symbol, bid, net_bps from market.current_spreads"
    ).fetchall() == [("binance", "BTC-USDT", Decimal("100.5"), Decimal("19.9201"))]


def test_spread_opportunities_leave_out_the_quotes_at_until(seeded):
    spot_venues(seeded, ("okx", "BTC-USDT"))
    for at in (T0, T0 + timedelta(seconds=1)):
        quote(seeded, at, "100", "100.1")
        quote(seeded, at, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    found = opportunities(seeded, T0)  # [T0, T0 + 1 s): until is exclusive
    assert [(r["bucket_start"], r["buy_exchange"], r["sell_exchange"], r["net_bps"]) for r in found] == [
        (T0, "binance", "okx", Decimal("19.9201"))
    ]


def test_spread_opportunities_list_a_spread_of_exactly_min_net_bps(seeded):
    spot_venues(seeded, ("okx", "BTC-USDT"))
    quote(seeded, T0, "100", "100.1")
    quote(seeded, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    found = opportunities(seeded, T0, min_net_bps=Decimal("19.9201"))  # "at least": 19.9201 is in
    assert [(r["buy_exchange"], r["sell_exchange"], r["net_bps"]) for r in found] == [
        ("binance", "okx", Decimal("19.9201"))
    ]


def rollup(conn: psycopg.Connection, until: object, open_window: str = "10 minutes") -> dict[str, int]:
    return dict(
        conn.execute(
            "select candle_interval::text, candles from market.rollup_candles(until => %s, open_window => %s)",
            [until, open_window],
        ).fetchall()
    )


def minute_candles(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "select open_time, open, close, volume, trade_count from market.candles where interval = '1m'"
        " order by open_time"
    ).fetchall()


def test_a_late_tick_minutes_before_the_watermark_but_inside_the_open_window_gets_its_candle(seeded):
    tick(seeded, T0 + timedelta(seconds=10), "100", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=3, seconds=10), "102", trade_id="b")
    rollup(seeded, T0 + timedelta(minutes=5))  # the watermark: the newest trade built, T0 + 3m10s
    tick(seeded, T0 + timedelta(minutes=1, seconds=30), "90", trade_id="late")
    # the window reaches back 10 minutes from the watermark, to before T0: the late minute is built
    assert rollup(seeded, T0 + timedelta(minutes=6))["1m"] == 1
    assert minute_candles(seeded) == [
        (T0, Decimal("100"), Decimal("100"), Decimal("1"), 1),
        (T0 + timedelta(minutes=1), Decimal("90"), Decimal("90"), Decimal("1"), 1),
        (T0 + timedelta(minutes=3), Decimal("102"), Decimal("102"), Decimal("1"), 1),
    ]


def test_a_run_until_a_whole_minute_leaves_the_minute_that_starts_there_unbuilt(seeded):
    tick(seeded, T0 + timedelta(seconds=30), "100", trade_id="a")
    tick(seeded, T0 + timedelta(minutes=1, seconds=30), "101", trade_id="b")
    # [.., until): the minute from T0 + 1m starts at until, none of it is before it
    assert rollup(seeded, T0 + timedelta(minutes=1))["1m"] == 1
    assert minute_candles(seeded) == [(T0, Decimal("100"), Decimal("100"), Decimal("1"), 1)]


def minute_candles_of(conn: psycopg.Connection, *ohlc: tuple[str, str, str, str]) -> None:
    """binance BTCUSDT 1m candles from T0, one a minute, of these (open, high, low, close), volume 1."""
    for n, (open_, high, low, close) in enumerate(ohlc):
        conn.execute(
            "insert into market.candles (instrument_id, interval, open_time, open, high, low, close, volume,"
            " quote_volume, trade_count) values (%s, '1m', %s, %s, %s, %s, %s, 1, %s, 1)",
            [instrument_id(conn), T0 + timedelta(minutes=n), *map(Decimal, (open_, high, low, close)), close],
        )


def test_atr_takes_the_gap_down_from_the_previous_close_to_the_low_as_the_true_range(seeded):
    minute_candles_of(seeded, ("100", "102", "98", "100"), ("90", "91", "89", "90"), ("90", "92", "89", "91"))
    # true ranges: 102 - 98 = 4 (first row); max(91 - 89, |91 - 100|, |89 - 100|) = 11;
    # max(92 - 89, |92 - 90|, |89 - 90|) = 3. ATR(2): (4 + 11) / 2 = 7.5, then (7.5 x 1 + 3) / 2 = 5.25
    assert seeded.execute(
        "select open_time, atr from market.atr('binance', 'BTCUSDT', '1m', period => 2)"
    ).fetchall() == [
        (T0, None),
        (T0 + timedelta(minutes=1), Decimal("7.5")),
        (T0 + timedelta(minutes=2), Decimal("5.25")),
    ]


def compute_indicators(conn: psycopg.Connection, since: object = None) -> int:
    return conn.execute(
        "select market.compute_indicators(exchange => 'binance', symbol => 'BTCUSDT', candle_interval => '1m',"
        " since => %s)",
        [since],
    ).fetchone()[0]


def test_computing_again_stores_no_vwap_once_the_days_volume_is_zero(seeded):
    minute_candles_of(seeded, ("100", "102", "98", "100"))  # volume 1, quote volume 100: VWAP 100
    compute_indicators(seeded)
    # the exchange's own candle of that minute, with no trade, replaces it: VWAP has no warm-up,
    # the new value (none while the day's volume is 0) replaces the stored one
    seeded.execute("update market.candles set volume = 0, quote_volume = 0, trade_count = 0")
    compute_indicators(seeded)
    assert seeded.execute("select open_time, vwap from market.technical_indicators").fetchall() == [
        (T0, None)
    ]


def test_computing_again_from_a_later_since_keeps_each_macd_line_with_its_stored_signal(seeded):
    closes = [100 + (n * 7) % 11 for n in range(60)]
    minute_candles_of(seeded, *((str(c), str(c + 2), str(c - 2), str(c)) for c in closes))
    macd = "select open_time, macd, macd_signal, macd_histogram from market.technical_indicators order by open_time"
    compute_indicators(seeded)
    before = seeded.execute(macd).fetchall()
    # from the 21st candle the new run's MACD line starts at the 46th (its 26th) and its signal at
    # the 54th (its 34th): on the 46th to 53rd the stored signal stays, and so must the line it
    # was computed with (its histogram is their difference), not the new run's line seeded at the 21st
    compute_indicators(seeded, T0 + timedelta(minutes=20))
    after = seeded.execute(macd).fetchall()
    assert after[:53] == before[:53]
    assert after[45][1] is not None and after[52][2] is not None


def spread_ids(conn: psycopg.Connection, **filters: object) -> list[int]:
    return [r["spread_trade_id"] for r in rows(conn, "trading.spread_trade_pnl", **filters)]


def test_spread_trade_pnl_reports_the_spread_trades_opened_from_since_to_before_until(seeded):
    list_okx_btc_spot(seeded)
    first, second, later = (open_spread(seeded, opened_at=T0 + timedelta(hours=h)) for h in (-1, 0, 1))
    assert spread_ids(seeded, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1)) == [first, second]
    assert spread_ids(seeded, since=T0 + timedelta(hours=1)) == [later]


def test_a_spread_trade_leg_goes_to_the_listed_instrument_of_the_pair_not_a_delisted_one(seeded):
    list_okx_btc_spot(seeded)
    seeded.execute("update ref.instruments set is_active = false where symbol = 'BTC-USDT'")
    list_spot(seeded, "okx", "BTC-USDT-2")  # listed after it: a greater instrument id
    _, sell = legs(seeded, open_spread(seeded))
    assert seeded.execute(
        "select i.symbol from ref.instruments i where i.instrument_id = %s",
        [order(seeded, sell)["instrument_id"]],
    ).fetchone() == ("BTC-USDT-2",)


def test_a_history_page_whose_start_date_is_its_end_date_is_refused_naming_end_date(seeded):
    # [start, end) with start = end holds no time: refused, as a start after the end
    with pytest.raises(psycopg.DataError) as caught:
        seeded.execute("select trading.trade_history_page(start_date => %s, end_date => %s)", [T0, T0])
    assert (caught.value.sqlstate, caught.value.diag.column_name) == ("22S09", "end_date")
    assert caught.value.diag.message_primary.startswith("start_date ")


def test_an_order_page_holding_the_last_orders_exactly_has_no_next_cursor(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "sell", "1", "101")
    page = rows(seeded, "trading.order_history_page", page_size=2)[0]["order_history_page"]
    # two orders, a page of two: nothing is left for a next page
    assert (len(page["items"]), page["next_cursor"]) == (2, None)


def summary_groups(conn: psycopg.Connection, **arguments: object) -> list[tuple]:
    groups = rows(conn, "trading.trade_summary", **arguments)[0]["trade_summary"]["groups"]
    return [(g["key"], g["trades"], g["volume"]) for g in groups]


def test_the_trade_summary_by_day_keys_each_trade_by_its_utc_day_whatever_the_session_time_zone(seeded):
    # 20:00 UTC is 05:00 the next day in Tokyo
    trade(seeded, "buy", "1", "100", placed_at=T0 + timedelta(hours=8), executed_at=T0 + timedelta(hours=8))
    seeded.execute("set timezone = 'Asia/Tokyo'")
    assert summary_groups(seeded, group_by="day") == [(f"{T0:%Y-%m-%d}", 1, "1")]


def test_the_trade_summary_leaves_out_the_trades_executed_at_its_end_date(seeded):
    for hours, quantity in ((0, "1"), (1, "2")):
        at = T0 + timedelta(hours=hours)
        trade(seeded, "buy", quantity, "100", placed_at=at, executed_at=at)
    # [start_date, end_date): the trade at T0 + 1 h is out
    assert summary_groups(seeded, start_date=T0, end_date=T0 + timedelta(hours=1)) == [("alpha", 1, "1")]
