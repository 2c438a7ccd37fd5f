"""Spreads and spread trades: edges an earlier hunt left (max quote ages beyond the calendar)."""

from decimal import Decimal

import pytest

from market_helpers import RECENT_NOON, quote
from trading_helpers import list_okx_btc_spot

T0 = RECENT_NOON


@pytest.fixture
def venues(seeded):
    """BTC/USDT spot on binance (seeded) and okx, quoted at noon yesterday: buy on binance at
    100.5, sell on okx at 101 (29.7015 bps net of both 0.1 % taker fees)."""
    list_okx_btc_spot(seeded)
    quote(seeded, T0, "100", "100.5")
    quote(seeded, T0, "101", "101.5", exchange="okx", symbol="BTC-USDT")
    return seeded


# bug: the view computed statement_timestamp() - max_quote_age, which for an age reaching before
# 4714 BC failed every read with a raw 22008 (timestamp out of range) instead of counting every quote
@pytest.mark.parametrize("age", ["10000 years", "178000000 years"])
def test_a_max_quote_age_older_than_any_time_counts_every_newest_quote(venues, age):
    venues.execute("select set_config('spreadedge.max_quote_age', %s, false)", [age])
    spreads = venues.execute(
        "select symbol, buy_exchange, sell_exchange, net_bps from market.current_spreads"
    ).fetchall()
    assert spreads == [("BTC/USDT", "binance", "okx", Decimal("29.7015"))]
