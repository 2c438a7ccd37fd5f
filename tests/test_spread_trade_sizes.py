"""Money reports at their edges: spread trades whose legs filled at different contract sizes."""

from decimal import Decimal

import psycopg

from market_helpers import RECENT_NOON
from trading_helpers import fill, legs, open_spread, rows

T0 = RECENT_NOON


def list_perpetual(conn: psycopg.Connection, exchange: str, symbol: str, multiplier: str) -> None:
    """A BTC/USDT perpetual of multiplier BTC a contract (listed, or its contract size changed)."""
    conn.execute(
        "select ref.upsert_instrument(exchange => %s, symbol => %s, base_asset => 'BTC', quote_asset => 'USDT',"
        " market_type => 'perpetual', tick_size => 0.1, lot_size => 1, min_notional => 0, multiplier => %s)",
        [exchange, symbol, Decimal(multiplier)],
    )


def test_a_spread_whose_sell_leg_filled_after_its_contract_shrank_captures_the_spread_of_the_btc_matched(
    seeded: psycopg.Connection,
) -> None:
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")  # the size of okx BTC-USDT-SWAP (seeded)
    spread = open_spread(
        seeded,
        "10",
        buy_exchange="okx",
        sell_exchange="bybit",
        market_type="perpetual",
        buy_price=Decimal("60000"),
        sell_price=Decimal("60100"),
    )
    buy, sell = legs(seeded, spread)
    fill(seeded, buy, "10", "60000", fee=Decimal("0.6"), executed_at=T0)  # 0.1 BTC for 6,000 USDT
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.001")  # bybit shrinks its contract meanwhile
    fill(seeded, sell, "10", "60100", fee=Decimal("0.6"), executed_at=T0)  # 0.01 BTC for 601 USDT

    (r,) = rows(seeded, "trading.spread_trade_pnl")

    # 0.01 BTC matched, bought at 60,000 and sold at 60,100: 1 USDT captured, 1.2 of fees
    assert (r["captured_spread"], r["fees"], r["net_pnl"]) == (Decimal("1"), Decimal("1.2"), Decimal("-0.2"))
