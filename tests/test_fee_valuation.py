"""Fee valuation: what a fee in the base asset or a third currency is worth in the quote asset.

A base-asset fee on spot and margin changes the quantity received or delivered and counts at
fee x fill price; on perpetuals and futures (priced in the base asset) it counts at the fee_quote
given, else at fee x fill price; on options (priced as a premium) it is valued like a third-currency
fee. Third-currency fees are priced from spot or margin markets first, then perpetuals and futures,
the fill's exchange first within each, and never from an option's premium.
"""

from decimal import Decimal as D

import psycopg
import pytest

from market_helpers import RECENT_NOON, quote
from trading_helpers import (
    call,
    expect_refusal,
    fill,
    list_okx_btc_spot,
    list_spot,
    place,
    position,
    rows,
    trade,
)

OPTION = "BTC-USDT-261225-100000-C"


def list_instrument(conn: psycopg.Connection, exchange: str, symbol: str, market_type: str) -> None:
    """A BTC/USDT instrument of market_type: contracts of 0.01 BTC, whole lots (margin: as spot)."""
    contract = market_type not in ("spot", "margin")
    call(
        conn,
        "ref.upsert_instrument",
        exchange=exchange,
        symbol=symbol,
        base_asset="BTC",
        quote_asset="USDT",
        market_type=market_type,
        tick_size=D("0.1") if contract else D("0.01"),
        lot_size=D("1") if contract else D("0.0001"),
        min_notional=D("0"),
        multiplier=D("0.01") if contract else D("1"),
    )


def list_option(conn: psycopg.Connection) -> None:
    """An okx BTC call quoted in USDT: its price is a premium, not the price of BTC."""
    list_instrument(conn, "okx", OPTION, "option")


def list_okx_eth_spot(conn: psycopg.Connection) -> None:
    list_spot(conn, "okx", "ETH-USDT", base_asset="ETH")


def stored_fee(conn: psycopg.Connection, trade_id: int) -> tuple[D, D]:
    return conn.execute(
        "select fee_quote, position_delta from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()


def btc_spot_on_binance_at_60000(conn: psycopg.Connection) -> None:
    trade(conn, "buy", "0.01", "60000", strategy="beta")


# --- base-asset fees by market type -----------------------------------------------------------


def test_an_option_base_asset_fee_counts_at_the_fee_quote_given(seeded):
    list_option(seeded)
    trade_id = trade(
        seeded,
        "buy",
        "10",
        "500",
        exchange="okx",
        symbol=OPTION,
        fee=D("0.0003"),
        fee_currency="BTC",
        fee_quote=D("18"),
    )
    # the premium 500 is not the price of BTC: 0.0003 x 500 = 0.15 would undercount the fee
    assert stored_fee(seeded, trade_id) == (D("18"), D("10"))
    assert position(seeded, "alpha", "okx", OPTION)["fees_paid"] == D("18")


def test_an_option_base_asset_fee_without_a_fee_quote_is_priced_from_the_base_asset_market(seeded):
    list_option(seeded)
    btc_spot_on_binance_at_60000(seeded)
    trade_id = trade(
        seeded, "buy", "10", "500", exchange="okx", symbol=OPTION, fee=D("0.0003"), fee_currency="BTC"
    )
    # 0.0003 BTC at binance BTCUSDT 60000 = 18 USDT
    assert stored_fee(seeded, trade_id) == (D("18.0000"), D("10"))


def test_an_option_base_asset_fee_is_not_priced_from_the_option_premium(seeded):
    list_option(seeded)
    trade(seeded, "buy", "1", "500", exchange="okx", symbol=OPTION, strategy="beta")
    btc_spot_on_binance_at_60000(seeded)
    trade_id = trade(
        seeded, "buy", "10", "520", exchange="okx", symbol=OPTION, fee=D("0.0003"), fee_currency="BTC"
    )
    # the option on the fill's exchange has a price (500) too, but a premium prices no BTC
    assert stored_fee(seeded, trade_id)[0] == D("18.0000")


def test_an_unpriced_option_base_asset_fee_is_refused_with_a_hint_and_writes_nothing(seeded):
    list_option(seeded)
    order_id = call(
        seeded,
        "trading.place_order",
        strategy="alpha",
        exchange="okx",
        symbol=OPTION,
        side="buy",
        quantity=D("10"),
        price=D("500"),
    )
    error = expect_refusal(
        seeded,
        "22S08",
        "fee of 0.0003 BTC cannot be valued in USDT: no market price for BTC/USDT",
        lambda: call(
            seeded,
            "trading.record_fill",
            order_id=order_id,
            exchange_trade_id="OPT-1",
            quantity=D("10"),
            price=D("500"),
            fee=D("0.0003"),
            fee_currency="BTC",
        ),
    )
    assert error.diag.message_hint == "Pass fee_quote => the fee's value in USDT."


@pytest.mark.parametrize(
    ("market_type", "symbol"),
    [("perpetual", "BTC-USDT-SWAP"), ("futures", "BTC-USDT-261225")],
)
def test_a_derivative_base_asset_fee_counts_at_the_fee_quote_given(seeded, market_type, symbol):
    list_instrument(seeded, "okx", symbol, market_type)
    trade_id = trade(
        seeded,
        "buy",
        "2",
        "60000",
        exchange="okx",
        symbol=symbol,
        fee=D("0.0003"),
        fee_currency="BTC",
        fee_quote=D("17.5"),
    )
    # the caller's value (the venue's own conversion) stands; the position is not reduced
    assert stored_fee(seeded, trade_id) == (D("17.5"), D("2"))


@pytest.mark.parametrize(
    ("market_type", "symbol"),
    [("perpetual", "BTC-USDT-SWAP"), ("futures", "BTC-USDT-261225")],
)
def test_a_derivative_base_asset_fee_without_a_fee_quote_counts_at_the_fill_price(
    seeded, market_type, symbol
):
    list_instrument(seeded, "okx", symbol, market_type)
    trade_id = trade(
        seeded, "buy", "2", "60000", exchange="okx", symbol=symbol, fee=D("0.0003"), fee_currency="BTC"
    )
    # 0.0003 x 60000 = 18; a contract's price is the price of the base asset
    assert stored_fee(seeded, trade_id) == (D("18.0000"), D("2"))


@pytest.mark.parametrize("market_type", ["spot", "margin"])
def test_a_spot_or_margin_base_asset_fee_counts_at_the_fill_price_whatever_fee_quote_is_given(
    seeded, market_type
):
    list_instrument(seeded, "okx", "BTC-USDT", market_type)
    trade_id = trade(
        seeded,
        "buy",
        "1",
        "50000",
        exchange="okx",
        symbol="BTC-USDT",
        fee=D("0.001"),
        fee_currency="BTC",
        fee_quote=D("7"),
    )
    # received 1 - 0.001 BTC; the fee is that BTC, worth 0.001 x 50000 = 50
    assert stored_fee(seeded, trade_id) == (D("50.000"), D("0.999"))


def test_base_asset_fees_on_every_market_type_keep_the_invariants(seeded):
    list_option(seeded)
    list_instrument(seeded, "okx", "BTC-USDT-261225", "futures")
    list_instrument(seeded, "okx", "BTC-USDT", "margin")
    btc_spot_on_binance_at_60000(seeded)
    trade(seeded, "buy", "1", "60000", fee=D("0.001"), fee_currency="BTC")
    trade(seeded, "sell", "0.5", "60100", fee=D("0.001"), fee_currency="BTC")
    trade(seeded, "buy", "1", "60000", exchange="okx", symbol="BTC-USDT", fee=D("0.001"), fee_currency="BTC")
    for symbol in ("BTC-USDT-SWAP", "BTC-USDT-261225"):
        trade(seeded, "buy", "2", "60000", exchange="okx", symbol=symbol, fee=D("0.0003"), fee_currency="BTC")
        trade(
            seeded,
            "sell",
            "1",
            "60100",
            exchange="okx",
            symbol=symbol,
            fee=D("0.0003"),
            fee_currency="BTC",
            fee_quote=D("18"),
        )
    trade(seeded, "buy", "10", "500", exchange="okx", symbol=OPTION, fee=D("0.0003"), fee_currency="BTC")
    trade(
        seeded,
        "sell",
        "4",
        "510",
        exchange="okx",
        symbol=OPTION,
        fee=D("0.0003"),
        fee_currency="BTC",
        fee_quote=D("18"),
    )
    assert rows(seeded, "ops.check_invariants") == []


# --- third-currency fees priced from market data -------------------------------------------------


def test_a_third_currency_fee_is_not_priced_from_an_option_premium(seeded):
    list_okx_eth_spot(seeded)
    list_option(seeded)
    btc_spot_on_binance_at_60000(seeded)
    trade(seeded, "buy", "1", "500", exchange="okx", symbol=OPTION, strategy="beta")
    trade_id = trade(
        seeded, "buy", "1", "3000", exchange="okx", symbol="ETH-USDT", fee=D("0.0001"), fee_currency="BTC"
    )
    # 0.0001 BTC at binance spot 60000 = 6, not at the okx option premium 500 = 0.05
    assert stored_fee(seeded, trade_id)[0] == D("6.0000")


def test_a_third_currency_fee_priced_only_by_an_option_is_refused(seeded):
    list_okx_eth_spot(seeded)
    list_option(seeded)
    trade(seeded, "buy", "1", "500", exchange="okx", symbol=OPTION, strategy="beta")
    order_id = call(
        seeded,
        "trading.place_order",
        strategy="alpha",
        exchange="okx",
        symbol="ETH-USDT",
        side="buy",
        quantity=D("1"),
        price=D("3000"),
    )
    expect_refusal(
        seeded,
        "22S08",
        "fee of 0.0001 BTC cannot be valued in USDT: no market price for BTC/USDT",
        lambda: call(
            seeded,
            "trading.record_fill",
            order_id=order_id,
            exchange_trade_id="ETH-1",
            quantity=D("1"),
            price=D("3000"),
            fee=D("0.0001"),
            fee_currency="BTC",
        ),
    )


def test_a_third_currency_fee_prefers_spot_elsewhere_to_a_perpetual_on_the_same_exchange(seeded):
    list_okx_eth_spot(seeded)
    btc_spot_on_binance_at_60000(seeded)
    quote(seeded, RECENT_NOON, "61000", "61002", exchange="okx", symbol="BTC-USDT-SWAP")
    trade_id = trade(
        seeded, "buy", "1", "3000", exchange="okx", symbol="ETH-USDT", fee=D("0.0001"), fee_currency="BTC"
    )
    # binance spot 60000, not the okx perpetual's mid 61001
    assert stored_fee(seeded, trade_id)[0] == D("6.0000")


def test_a_third_currency_fee_prefers_spot_on_the_same_exchange(seeded):
    list_okx_eth_spot(seeded)
    list_okx_btc_spot(seeded)
    btc_spot_on_binance_at_60000(seeded)
    trade(seeded, "buy", "0.01", "60500", exchange="okx", symbol="BTC-USDT", strategy="beta")
    trade_id = trade(
        seeded, "buy", "1", "3000", exchange="okx", symbol="ETH-USDT", fee=D("0.0001"), fee_currency="BTC"
    )
    assert stored_fee(seeded, trade_id)[0] == D("6.0500")


def test_a_third_currency_fee_is_priced_from_a_perpetual_when_no_spot_market_has_a_price(seeded):
    list_okx_eth_spot(seeded)
    quote(seeded, RECENT_NOON, "61000", "61002", exchange="okx", symbol="BTC-USDT-SWAP")
    trade_id = trade(
        seeded, "buy", "1", "3000", exchange="okx", symbol="ETH-USDT", fee=D("0.0001"), fee_currency="BTC"
    )
    assert stored_fee(seeded, trade_id)[0] == D("6.1001")


@pytest.mark.parametrize(("fee", "fee_quote"), [("0.01", "-5"), ("-0.01", "5")])
def test_a_fee_quote_of_the_other_sign_than_the_fee_is_refused_and_writes_nothing(seeded, fee, fee_quote):
    order_id = call(
        seeded,
        "trading.place_order",
        strategy="alpha",
        exchange="binance",
        symbol="BTCUSDT",
        side="buy",
        quantity=D("0.01"),
        price=D("60000"),
    )
    expect_refusal(
        seeded,
        "22S09",
        f"fee_quote {fee_quote} and the fee {fee} BNB differ in sign",
        lambda: call(
            seeded,
            "trading.record_fill",
            order_id=order_id,
            exchange_trade_id="sign-1",
            quantity=D("0.01"),
            price=D("60000"),
            fee=D(fee),
            fee_currency="BNB",
            fee_quote=D(fee_quote),
        ),
    )


def test_a_tiny_fee_valued_at_a_fee_quote_of_zero_is_recorded_at_zero(seeded):
    order_id = place(seeded, "buy", "0.01", "60000")
    trade_id = fill(seeded, order_id, "0.01", "60000", fee=D("0.00001"), fee_currency="BNB", fee_quote=D("0"))
    assert stored_fee(seeded, trade_id)[0] == 0
