"""ref.upsert_instrument at its edges: what a re-upsert keeps, a listing raced, symbols that look alike."""

import threading
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from trading_helpers import call, position, trade, waits_for_a_lock

SWAP = {
    "exchange": "okx",
    "symbol": "BTC-USDT-SWAP",
    "base_asset": "BTC",
    "quote_asset": "USDT",
    "market_type": "perpetual",
    "tick_size": D("0.1"),
    "lot_size": D("1"),
}
BTCUSDT = {
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "base_asset": "BTC",
    "quote_asset": "USDT",
    "market_type": "spot",
    "tick_size": D("0.01"),
    "lot_size": D("0.0001"),
}


def upsert(conn: psycopg.Connection, listing: dict[str, Any], **changes: Any) -> int:
    return call(conn, "ref.upsert_instrument", **(listing | changes))


def rules(conn: psycopg.Connection, symbol: str) -> tuple[str, D, D, D, D, D, D]:
    return conn.execute(
        "select market_type::text, tick_size, lot_size, min_notional, maker_fee, taker_fee, multiplier"
        " from ref.instruments where symbol = %s",
        [symbol],
    ).fetchone()


def test_a_re_upsert_without_a_multiplier_keeps_the_listed_multiplier(seeded):
    upsert(seeded, SWAP, tick_size=D("0.5"))
    assert rules(seeded, "BTC-USDT-SWAP")[1::5] == (D("0.5"), D("0.01"))


def test_a_re_upsert_without_a_multiplier_leaves_an_open_positions_pnl_as_it_was(seeded):
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")
    upsert(seeded, SWAP, tick_size=D("0.5"))
    held = position(seeded, "alpha", "okx", "BTC-USDT-SWAP", mark_price=D("61000"))
    assert held["unrealized_pnl"] == D("100")  # 10 x 0.01 x 1000, not 10 x 1 x 1000


def test_a_new_contract_listed_without_a_multiplier_has_a_multiplier_of_1(seeded):
    upsert(seeded, SWAP, symbol="ETH-USDT-SWAP", base_asset="ETH")
    assert rules(seeded, "ETH-USDT-SWAP")[6] == D("1")


def test_a_multiplier_of_0_is_an_invalid_argument(seeded):
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, SWAP, multiplier=D("0"))
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "22S09",
        "multiplier must be positive and finite, got 0",
    )


def test_a_re_upsert_without_a_minimum_notional_keeps_the_listed_one(seeded):
    upsert(seeded, BTCUSDT, tick_size=D("0.1"))
    assert rules(seeded, "BTCUSDT")[1:4:2] == (D("0.1"), D("5"))


def test_a_re_upsert_without_fee_rates_keeps_the_listed_ones(seeded):
    upsert(seeded, BTCUSDT, maker_fee=D("0.0001"), taker_fee=D("0.0002"))
    upsert(seeded, BTCUSDT, tick_size=D("0.1"))
    assert rules(seeded, "BTCUSDT")[4:6] == (D("0.0001"), D("0.0002"))


def test_a_new_market_type_without_fee_rates_gets_the_exchanges_rates_for_it(seeded):
    listing = {**BTCUSDT, "exchange": "kraken", "symbol": "ETHUSD", "base_asset": "ETH", "quote_asset": "USD"}
    upsert(seeded, listing, maker_fee=D("0.001"), taker_fee=D("0.002"))
    upsert(seeded, listing, market_type="perpetual", multiplier=D("0.1"))
    assert rules(seeded, "ETHUSD") == (
        "perpetual",
        D("0.01"),
        D("0.0001"),
        D("0"),
        D("0.0002"),
        D("0.0005"),
        D("0.1"),
    )


def test_a_re_upsert_racing_the_first_listing_keeps_the_rules_it_does_not_give(seeded, seeded_url):
    listing = {**BTCUSDT, "symbol": "ETHUSDT", "base_asset": "ETH"}
    failures: list[Exception] = []

    def relist(conn: psycopg.Connection) -> None:
        try:
            upsert(conn, listing, tick_size=D("0.1"))
        except Exception as exc:  # asserted on below
            failures.append(exc)

    with psycopg.connect(seeded_url) as lister, psycopg.connect(seeded_url, autocommit=True) as relister:
        upsert(lister, listing, min_notional=D("5"), maker_fee=D("0.0001"), taker_fee=D("0.0002"))
        thread = threading.Thread(target=relist, args=(relister,))
        thread.start()
        waited = waits_for_a_lock(seeded, relister.info.backend_pid)
        lister.commit()
        thread.join(timeout=30)
    assert (waited, failures) == (True, [])
    assert rules(seeded, "ETHUSDT") == (
        "spot",
        D("0.1"),
        D("0.0001"),
        D("5"),
        D("0.0001"),
        D("0.0002"),
        D("1"),
    )


@pytest.mark.parametrize(
    "symbol",
    ["BTCUSDT\u00a0", "BTCUSDT\u202f", "BTCUSDT\u200b", "BTC\u2060USDT", "\ufeffBTCUSDT"],
    ids=["no-break-space", "narrow-no-break-space", "zero-width-space", "word-joiner", "byte-order-mark"],
)
def test_a_symbol_with_an_invisible_character_or_a_unicode_space_is_an_invalid_argument(seeded, symbol):
    # each looks like BTCUSDT but is a second instrument that no caller typing BTCUSDT can find
    with pytest.raises(psycopg.Error) as raised:
        upsert(seeded, BTCUSDT, symbol=symbol)
    assert (raised.value.sqlstate, raised.value.diag.message_primary) == (
        "22S09",
        f'symbol "{symbol}" holds an invisible character or a space other than U+0020',
    )
    assert seeded.execute("select count(*) from ref.instruments").fetchone() == (4,)
