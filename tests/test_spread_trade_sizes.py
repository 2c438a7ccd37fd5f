"""Money reports at their edges: spread trades whose legs filled at different contract sizes."""

from decimal import Decimal

import psycopg

from market_helpers import RECENT_NOON
from trading_helpers import (
    PERPETUAL_PRICES,
    PERPETUALS,
    fill,
    legs,
    list_perpetual,
    list_spot,
    open_spread,
    rows,
)

T0 = RECENT_NOON


def test_a_spread_whose_sell_leg_filled_after_its_contract_shrank_captures_the_spread_of_the_btc_matched(
    seeded: psycopg.Connection,
) -> None:
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")  # the size of okx BTC-USDT-SWAP (seeded)
    spread = open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES)
    buy, sell = legs(seeded, spread)
    fill(seeded, buy, "10", "60000", fee=Decimal("0.6"), executed_at=T0)  # 0.1 BTC for 6,000 USDT
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.001")  # bybit shrinks its contract meanwhile
    fill(seeded, sell, "10", "60100", fee=Decimal("0.6"), executed_at=T0)  # 0.01 BTC for 601 USDT

    (r,) = rows(seeded, "trading.spread_trade_pnl")

    # 0.01 BTC matched, bought at 60,000 and sold at 60,100: 1 USDT captured, 1.2 of fees
    assert (r["captured_spread"], r["fees"], r["net_pnl"]) == (Decimal("1"), Decimal("1.2"), Decimal("-0.2"))


def _perpetual_spread(conn: psycopg.Connection, contracts: str, client_spread_id: str) -> None:
    """A BTC/USDT perpetual spread trade of okx against bybit (0.01 BTC contracts), both legs filled."""
    spread = open_spread(conn, contracts, **PERPETUALS, **PERPETUAL_PRICES, client_spread_id=client_spread_id)
    buy, sell = legs(conn, spread)
    fill(conn, buy, contracts, "60000", executed_at=T0)
    fill(conn, sell, contracts, "60100", executed_at=T0)


def test_a_spread_trade_reports_its_matched_quantity_in_contracts_and_in_the_base_asset(
    seeded: psycopg.Connection,
) -> None:
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    _perpetual_spread(seeded, "10", "perp")
    (r,) = rows(seeded, "trading.spread_trade_pnl")
    assert (r["base_asset"], r["matched_quantity"], r["matched_base_quantity"]) == (
        "BTC",
        Decimal("10"),
        Decimal("0.1"),
    )


def test_an_unfilled_leg_matches_nothing_in_the_base_asset_either(seeded: psycopg.Connection) -> None:
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    spread = open_spread(seeded, "10", **PERPETUALS, **PERPETUAL_PRICES)
    buy, _ = legs(seeded, spread)
    fill(seeded, buy, "10", "60000", executed_at=T0)
    (r,) = rows(seeded, "trading.spread_trade_pnl")
    assert (r["matched_quantity"], r["matched_base_quantity"]) == (Decimal("0"), Decimal("0"))


# bug: the summary added the matched quantities of a strategy's spread trades whatever their base
# asset and contract size: 10 perpetual contracts of 0.01 BTC and 2 spot BTC made 12, and an
# ETH/USDT spread's ETH went into the same number
def test_the_summary_sums_matched_quantities_per_pair_in_units_of_the_base_asset(
    seeded: psycopg.Connection,
) -> None:
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.01")
    _perpetual_spread(seeded, "10", "perp")  # 0.1 BTC
    list_spot(seeded, "okx", "BTC-USDT")
    spot = legs(seeded, open_spread(seeded, "2", client_spread_id="spot"))  # 2 BTC, binance vs okx
    fill(seeded, spot[0], "2", "100", executed_at=T0)
    fill(seeded, spot[1], "2", "101", executed_at=T0)
    list_spot(seeded, "binance", "ETHUSDT", base_asset="ETH")
    list_spot(seeded, "okx", "ETH-USDT", base_asset="ETH")
    eth = legs(seeded, open_spread(seeded, "30", symbol="ETH/USDT", client_spread_id="eth"))
    fill(seeded, eth[0], "30", "100", executed_at=T0)
    fill(seeded, eth[1], "30", "101", executed_at=T0)

    summary = rows(seeded, "trading.spread_trade_summary")

    assert [
        (r["base_asset"], r["quote_asset"], r["spread_trades"], r["matched_base_quantity"]) for r in summary
    ] == [
        ("BTC", "USDT", 2, Decimal("2.1")),
        ("ETH", "USDT", 1, Decimal("30")),
    ]
