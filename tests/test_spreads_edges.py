"""Spreads at their edges: an exchange that lists a pair under two symbols is one place to trade it."""

from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, opportunities, quote
from trading_helpers import list_spot

T0 = RECENT_NOON


@pytest.fixture
def okx_twice(seeded: psycopg.Connection) -> psycopg.Connection:
    """BTC/USDT spot on binance (seeded) and, under two symbols, on okx; a 0.1 % taker fee on each."""
    list_spot(seeded, "okx", "BTC-USDT", min_notional=Decimal("5"))
    list_spot(seeded, "okx", "BTC-USDT-2")
    return seeded


def test_spread_opportunities_list_an_exchange_pair_once_per_bucket_at_its_best_net_spread(okx_twice):
    # both okx bids are above binance's ask: compared instrument by instrument, binance -> okx was
    # listed twice for one second, and a sum over the rows counted its quantity twice
    quote(okx_twice, T0, "100", "100.1", size="2")
    quote(okx_twice, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT", size="0.5")
    quote(okx_twice, T0, "100.4", "100.7", exchange="okx", symbol="BTC-USDT-2", size="3")

    found = opportunities(okx_twice, T0)

    assert [
        (r["buy_exchange"], r["ask"], r["sell_exchange"], r["bid"], r["quantity"], r["net_bps"])
        for r in found
    ] == [("binance", Decimal("100.1"), "okx", Decimal("100.5"), Decimal("0.5"), Decimal("19.9201"))]
