"""Mark prices: the newest quote mid, else the newest tick, else the latest fill."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from market_helpers import RECENT_NOON, quote, tick, ticks_in_one_statement
from trading_helpers import position, trade

T0 = RECENT_NOON


def test_an_open_position_is_marked_at_the_newest_quote_mid(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "104", "106")
    quote(seeded, T0 + timedelta(seconds=1), "109", "111")
    p = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("110"), Decimal("20"))


def test_a_quote_arriving_late_does_not_replace_a_newer_one(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0 + timedelta(seconds=1), "109", "111")
    quote(seeded, T0, "104", "106")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("110")


def test_without_quotes_the_newest_tick_marks_the_position(seeded):
    trade(seeded, "buy", "2", "100")
    tick(seeded, T0 + timedelta(seconds=5), "103", trade_id="b")
    tick(seeded, T0, "101", trade_id="a")
    p = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("103"), Decimal("6"))


def test_of_trades_of_one_time_in_one_batch_the_greatest_numeric_trade_id_marks_the_position(seeded):
    # as text, '9' sorts after '10'
    trade(seeded, "buy", "2", "100")
    ticks_in_one_statement(seeded, T0, [("9", "101"), ("10", "103")])
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("103")


def test_a_trade_at_the_kept_time_with_a_greater_trade_id_loaded_later_marks_the_position(seeded):
    trade(seeded, "buy", "2", "100")
    tick(seeded, T0, "101", trade_id="99")
    tick(seeded, T0, "103", trade_id="100")
    p = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("103"), Decimal("6"))


def test_a_trade_at_the_kept_time_with_a_smaller_trade_id_loaded_later_changes_nothing(seeded):
    trade(seeded, "buy", "2", "100")
    tick(seeded, T0, "103", trade_id="100")
    tick(seeded, T0, "101", trade_id="99")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("103")


def test_a_quote_wins_over_a_newer_tick(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "101", "103")
    tick(seeded, T0 + timedelta(seconds=5), "107", trade_id="a")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("102")


def test_without_market_data_the_latest_fill_marks_the_position(seeded):
    trade(seeded, "buy", "2", "100")
    trade(seeded, "buy", "1", "104")
    p = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("104"), Decimal("8.000000000000"))


def test_without_market_data_a_fill_older_than_a_week_marks_the_position(seeded):
    now = datetime.now(UTC)
    trade(seeded, "buy", "2", "100", executed_at=now - timedelta(days=60))
    trade(seeded, "buy", "1", "104", executed_at=now - timedelta(days=30))
    p = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("104"), Decimal("8.000000000000"))


def test_without_market_data_a_fill_executed_ahead_of_now_is_the_latest(seeded):
    now = datetime.now(UTC)
    trade(seeded, "buy", "1", "104", executed_at=now + timedelta(hours=23))
    trade(seeded, "buy", "2", "100", executed_at=now - timedelta(hours=1))
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("104")


def test_a_mark_price_given_by_the_caller_wins_over_market_data(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "109", "111")
    p = position(seeded, "alpha", "binance", "BTCUSDT", mark_price=Decimal("99"))
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("99"), Decimal("-2"))


def test_quotes_of_another_instrument_do_not_mark_the_position(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "95", "96", exchange="binance", symbol="BNBUSDT")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("100")
