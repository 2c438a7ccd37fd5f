"""ref.upsert_instrument: what it refuses, and what an instrument with orders may no longer change."""

from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from trading_helpers import call, place, trade

BTCUSDT = {
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "base_asset": "BTC",
    "quote_asset": "USDT",
    "market_type": "spot",
    "tick_size": D("0.01"),
    "lot_size": D("0.0001"),
    "min_notional": D("5"),
    "multiplier": D("1"),
}


def upsert(conn: psycopg.Connection, **changes: Any) -> int:
    return call(conn, "ref.upsert_instrument", **(BTCUSDT | changes))


def listed(conn: psycopg.Connection) -> tuple[str, str, str, D]:
    return conn.execute(
        "select base_asset, quote_asset, market_type::text, tick_size from ref.instruments"
        " where symbol = 'BTCUSDT'"
    ).fetchone()


@pytest.mark.parametrize("rule", ["tick_size", "lot_size"])
def test_a_missing_tick_size_or_lot_size_is_an_invalid_argument(seeded, rule):
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, symbol="NEWUSDT", **{rule: None})
    assert raised.value.sqlstate == "22S09"


def test_a_symbol_longer_than_128_characters_is_an_invalid_argument(seeded):
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, symbol="X" * 129)
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "22S09",
        "symbol must be 1 to 128 characters, got 129 characters",
    )


def test_an_asset_code_longer_than_32_characters_is_an_invalid_argument(seeded):
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, symbol="LONGUSDT", base_asset="B" * 33)
    assert raised.value.sqlstate == "22S09"


def test_an_instrument_without_orders_may_change_its_market_type(seeded):
    upsert(seeded, market_type="margin")
    assert listed(seeded)[2] == "margin"


def test_an_instrument_with_orders_keeps_its_market_type(seeded):
    place(seeded, "buy", "1", "100")
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, market_type="margin")
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "55S07",
        "BTCUSDT on binance has orders, trades or funding payments: its assets and market type stay BTC/USDT spot",
    )
    assert listed(seeded)[2] == "spot"


def test_an_instrument_with_trades_keeps_its_assets(seeded):
    trade(seeded, "buy", "1", "100", fee="0.001", fee_currency="BTC")
    seeded.execute("delete from trading.orders")  # an orders cleanup keeps the trades
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, base_asset="ETH")
    assert raised.value.sqlstate == "55S07"
    assert listed(seeded)[:2] == ("BTC", "USDT")
    # what the spot fill realized stays consistent with what the instrument is listed as
    assert seeded.execute(
        "select count(*) from ops.check_invariants() where invariant not like 'audit%'"
    ).fetchone() == (0,)


def test_an_instrument_with_orders_may_change_its_tick_size(seeded):
    place(seeded, "buy", "1", "100")
    upsert(seeded, tick_size=D("0.1"))
    assert listed(seeded) == ("BTC", "USDT", "spot", D("0.1"))


@pytest.mark.parametrize("symbol", [" NEWUSDT", "NEWUSDT\t", "NEW\nUSDT"], ids=["space", "tab", "newline"])
def test_a_symbol_with_surrounding_white_space_or_a_control_character_is_an_invalid_argument(seeded, symbol):
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, symbol=symbol)
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "22S09",
        f'symbol "{symbol}" has surrounding white space or a control character',
    )


def test_an_instrument_whose_base_and_quote_assets_are_one_is_an_invalid_argument(seeded):
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, symbol="BTCBTC", quote_asset="btc")
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "22S09",
        "base and quote assets must differ, got BTC for both",
    )


@pytest.mark.parametrize("market_type", ["spot", "margin"])
def test_a_spot_or_margin_instrument_with_a_multiplier_other_than_1_is_an_invalid_argument(
    seeded, market_type
):
    # a base-asset fee would be taken off the position in contracts, not in base units
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, symbol="NEWUSDT", market_type=market_type, multiplier=D("0.01"))
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "22S09",
        f"multiplier of a {market_type} instrument must be 1, got 0.01",
    )


def test_a_perpetual_with_only_funding_payments_keeps_its_market_type(seeded):
    swap = {
        "exchange": "okx",
        "symbol": "BTC-USDT-SWAP",
        "base_asset": "BTC",
        "quote_asset": "USDT",
        "tick_size": D("0.1"),
        "lot_size": D("1"),
        "min_notional": D("0"),
        "multiplier": D("0.01"),
    }
    call(
        seeded,
        "trading.record_funding",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=D("-2"),
        paid_at=datetime.now(UTC),
    )
    with pytest.raises(psycopg.Error) as raised:
        call(seeded, "ref.upsert_instrument", market_type="futures", **swap)
    assert raised.value.sqlstate == "55S07"
    assert seeded.execute(
        "select market_type::text from ref.instruments where symbol = 'BTC-USDT-SWAP'"
    ).fetchone() == ("perpetual",)
