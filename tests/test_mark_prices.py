"""Mark prices: the newer of the newest quote mid and the newest tick, else the latest fill."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, instrument_id, quote, tick, ticks_in_one_statement
from trading_helpers import call, list_binance_eth_btc, position, trade, waits_for_a_lock

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


def last_price(conn: psycopg.Connection) -> tuple[datetime, Decimal]:
    return conn.execute(
        "select traded_at, last_price from market.latest_prices where instrument_id = %s",
        [instrument_id(conn)],
    ).fetchone()


@pytest.mark.parametrize("first_trade_of_the_instrument", [True, False])
def test_a_trade_at_the_kept_time_loaded_concurrently_does_not_replace_the_later_trade(
    seeded, db_url, first_trade_of_the_instrument
):
    # trade 100 is loaded, not yet committed, when trade 99 of the same time is loaded in another
    # session: 99's batch cannot see 100 until it commits, and must not then overwrite its price
    if not first_trade_of_the_instrument:
        tick(seeded, T0 - timedelta(seconds=1), "90", trade_id="1")
    failures: list[Exception] = []

    def load_trade_99(conn: psycopg.Connection) -> None:
        try:
            tick(conn, T0, "101", trade_id="99")
        except Exception as exc:  # asserted on by the test
            failures.append(exc)

    with psycopg.connect(db_url) as first, psycopg.connect(db_url, autocommit=True) as second:
        tick(first, T0, "103", trade_id="100")
        thread = threading.Thread(target=load_trade_99, args=(second,))
        thread.start()
        waited = waits_for_a_lock(seeded, second.info.backend_pid)
        first.commit()
        thread.join(timeout=30)
    assert (waited, failures) == (True, [])
    assert last_price(seeded) == (T0, Decimal("103"))


def test_a_tick_newer_than_the_quote_marks_the_position(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "101", "103")
    tick(seeded, T0 + timedelta(seconds=5), "107", trade_id="a")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("107")


def test_a_quote_hours_ahead_of_the_clock_does_not_freeze_the_mark(seeded):
    # a file whose local times were read as UTC: without the horizon its quote stayed the newest,
    # and the real quotes after it changed nothing for hours
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "101", "103")
    quote(seeded, datetime.now(UTC) + timedelta(hours=8), "199", "201")
    quote(seeded, datetime.now(UTC), "109", "111")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("110")


def test_a_quote_seconds_ahead_of_the_clock_marks_the_position(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0, "101", "103")
    quote(seeded, datetime.now(UTC) + timedelta(seconds=20), "109", "111")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("110")


def test_a_trade_hours_ahead_of_the_clock_does_not_freeze_the_last_price(seeded):
    trade(seeded, "buy", "2", "100")
    tick(seeded, T0, "101", trade_id="a")
    tick(seeded, datetime.now(UTC) + timedelta(hours=8), "300", trade_id="b")
    tick(seeded, datetime.now(UTC), "105", trade_id="c")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["mark"] == Decimal("105")


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


def test_a_fee_in_the_quote_asset_of_the_inverse_pair_is_priced_at_one_over_its_mark(seeded):
    # a USDT fee on an ETH/BTC fill: no USDT/BTC market, but BTC/USDT is quoted at mid 50000
    list_binance_eth_btc(seeded)
    quote(seeded, T0, "49999", "50001")
    trade_id = trade(seeded, "buy", "1", "0.05", symbol="ETHBTC", fee=Decimal("10"), fee_currency="USDT")
    fee_quote = seeded.execute(
        "select fee_quote from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()[0]
    assert fee_quote == Decimal("0.0002")


def binance_asset_price(conn: psycopg.Connection, asset: str, quote_asset: str) -> Decimal | None:
    return conn.execute(
        "select trading.asset_price(e.exchange_id, %s, %s) from ref.exchanges e where e.code = 'binance'",
        [asset, quote_asset],
    ).fetchone()[0]


def test_an_asset_is_priced_from_its_own_pair_before_the_inverse_pair(seeded):
    list_binance_eth_btc(seeded)
    call(
        seeded,
        "ref.upsert_instrument",
        exchange="binance",
        symbol="BTCETH",
        base_asset="BTC",
        quote_asset="ETH",
        market_type="spot",
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"),
        min_notional=Decimal("0"),
    )
    quote(seeded, T0, "0.05", "0.05", symbol="ETHBTC")
    quote(seeded, T0, "25", "25", symbol="BTCETH")
    assert binance_asset_price(seeded, "ETH", "BTC") == Decimal("0.05")


def test_an_asset_is_worth_one_of_itself(seeded):
    assert binance_asset_price(seeded, "USDT", "USDT") == 1


def test_a_fill_a_day_ahead_committed_by_a_later_transaction_marks_an_earlier_ones_reads(seeded, db_url):
    # the reader's transaction starts first; the writer's fill is dated a day past the writer's
    # own now(), the most record_fill allows, which is past the reader's now() + 1 day
    trade(seeded, "buy", "1", "100", executed_at=T0)
    with psycopg.connect(db_url) as reader, psycopg.connect(db_url) as writer:
        reader.execute("select now()")
        ahead = writer.execute("select now() + interval '1 day'").fetchone()[0]
        trade(writer, "buy", "1", "107", executed_at=ahead)
        writer.commit()
        mark = reader.execute("select trading.mark_price(%s)", [instrument_id(reader)]).fetchone()[0]
    assert mark == Decimal("107")
