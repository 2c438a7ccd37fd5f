"""Spread trades: both legs placed in one transaction, captured spread, fees, uneven fills."""

from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, quote
from trading_helpers import call, counts, fill, list_okx_btc_spot, rows

T0 = RECENT_NOON


@pytest.fixture
def venues(seeded):
    """BTC/USDT spot on binance (seeded) and okx."""
    list_okx_btc_spot(seeded)
    return seeded


def open_spread(conn, quantity="2", **kwargs):
    """alpha's BTC/USDT spread trade, buying on binance and selling on okx unless kwargs say otherwise."""
    kwargs.setdefault("buy_price", Decimal("100"))
    kwargs.setdefault("sell_price", Decimal("101"))
    kwargs.setdefault("buy_exchange", "binance")
    kwargs.setdefault("sell_exchange", "okx")
    return call(
        conn,
        "trading.open_spread_trade",
        strategy="alpha",
        symbol="BTC/USDT",
        quantity=Decimal(quantity),
        **kwargs,
    )


def legs(conn, spread_trade_id):
    return conn.execute(
        "select buy_order_id, sell_order_id from trading.spread_trades where spread_trade_id = %s",
        [spread_trade_id],
    ).fetchone()


def test_opening_a_spread_trade_places_a_buy_and_a_sell_order_on_the_two_exchanges(venues):
    spread = open_spread(venues)
    placed = venues.execute(
        "select h.exchange, h.symbol, h.side::text, h.quantity, h.price from trading.order_history h"
        " order by h.side"
    ).fetchall()
    assert placed == [
        ("binance", "BTCUSDT", "buy", Decimal("2"), Decimal("100")),
        ("okx", "BTC-USDT", "sell", Decimal("2"), Decimal("101")),
    ]
    assert legs(venues, spread)[0] != legs(venues, spread)[1]


def test_a_leg_that_fails_validation_leaves_nothing_written(venues):
    before = counts(venues)
    with pytest.raises(psycopg.DataError) as caught:
        open_spread(venues, sell_price=Decimal("101.005"))
    assert caught.value.sqlstate == "22S03"
    assert counts(venues) == before
    assert venues.execute("select count(*) from trading.spread_trades").fetchone()[0] == 0


def test_both_legs_on_one_exchange_are_refused(venues):
    with pytest.raises(psycopg.DataError) as caught:
        call(
            venues,
            "trading.open_spread_trade",
            strategy="alpha",
            symbol="BTC/USDT",
            buy_exchange="okx",
            sell_exchange="okx",
            quantity=Decimal("1"),
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S20",
        "buy and sell legs are both on okx",
    )


def list_perpetual(conn, exchange: str, symbol: str, multiplier: str) -> None:
    conn.execute(
        "select ref.upsert_instrument(exchange => %s, symbol => %s, base_asset => 'BTC', quote_asset => 'USDT',"
        " market_type => 'perpetual', tick_size => 0.1, lot_size => 1, min_notional => 0, multiplier => %s)",
        [exchange, symbol, Decimal(multiplier)],
    )


PERPETUALS = {"buy_exchange": "okx", "sell_exchange": "bybit", "market_type": "perpetual"}
PERPETUAL_PRICES = {"buy_price": Decimal("60000"), "sell_price": Decimal("60100")}


def test_legs_whose_contracts_differ_in_size_are_refused_and_nothing_is_written(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "1")  # okx BTC-USDT-SWAP (seeded) is 0.01 BTC
    before = counts(seeded)
    with pytest.raises(psycopg.DataError) as caught:
        open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S20",
        "the legs' contracts differ in size: BTC-USDT-SWAP on okx is 0.01 BTC, BTCUSDT on bybit is 1 BTC",
    )
    assert counts(seeded) == before


def test_legs_whose_contracts_are_of_one_size_are_placed(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    spread = open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES)
    placed = seeded.execute(
        "select h.exchange, h.symbol, h.side::text, h.quantity from trading.order_history h order by h.side"
    ).fetchall()
    assert spread is not None
    assert placed == [
        ("okx", "BTC-USDT-SWAP", "buy", Decimal("10")),
        ("bybit", "BTCUSDT", "sell", Decimal("10")),
    ]


def test_an_exchange_without_the_pair_is_refused(venues):
    with pytest.raises(psycopg.IntegrityError) as caught:
        call(
            venues,
            "trading.open_spread_trade",
            strategy="alpha",
            symbol="BTC/USDT",
            buy_exchange="binance",
            sell_exchange="kraken",
            quantity=Decimal("1"),
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S02",
        "no spot instrument trades BTC/USDT on kraken",
    )


def test_a_retried_open_with_the_same_client_spread_id_returns_the_same_spread_trade(venues):
    first = open_spread(venues, client_spread_id="arb-1")
    assert open_spread(venues, client_spread_id="arb-1") == first
    assert venues.execute("select count(*) from trading.orders").fetchone()[0] == 2


def test_spread_trade_pnl_reports_captured_spread_fees_and_net(venues):
    spread = open_spread(venues)
    buy, sell = legs(venues, spread)
    fill(venues, buy, "2", "100", fee=Decimal("0.2"), executed_at=T0)
    fill(venues, sell, "2", "101", fee=Decimal("0.202"), executed_at=T0)
    report = rows(venues, "trading.spread_trade_pnl", strategy="alpha")
    assert [
        (r["matched_quantity"], r["captured_spread"], r["fees"], r["net_pnl"], r["residual_quantity"])
        for r in report
    ] == [(Decimal("2"), Decimal("2"), Decimal("0.402"), Decimal("1.598"), Decimal("0"))]


def test_uneven_leg_fills_show_the_residual_exposure_at_the_mark(venues):
    spread = open_spread(venues)
    buy, sell = legs(venues, spread)
    fill(venues, buy, "2", "100", executed_at=T0)
    fill(venues, sell, "0.5", "101", executed_at=T0)
    quote(venues, T0, "99", "101")  # binance mid 100
    (r,) = rows(venues, "trading.spread_trade_pnl")
    assert (r["matched_quantity"], r["captured_spread"], r["residual_quantity"], r["residual_exposure"]) == (
        Decimal("0.5"),
        Decimal("0.5"),
        Decimal("1.5"),
        Decimal("150"),
    )


def test_the_summary_sums_spread_trades_per_strategy(venues):
    for n, (buy_qty, sell_qty) in enumerate([("2", "2"), ("2", "1")]):
        spread = open_spread(venues, client_spread_id=f"s{n}")
        buy, sell = legs(venues, spread)
        fill(venues, buy, buy_qty, "100", executed_at=T0)
        fill(venues, sell, sell_qty, "101", executed_at=T0)
    summary = rows(venues, "trading.spread_trade_summary")
    assert summary == [
        {
            "strategy_name": "alpha",
            "spread_trades": 2,
            "matched_quantity": Decimal("3"),
            "captured_spread": Decimal("3"),
            "fees": Decimal("0"),
            "net_pnl": Decimal("3"),
            "uneven_trades": 1,
        }
    ]
