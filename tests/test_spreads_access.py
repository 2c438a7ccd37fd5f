"""Spreads for every role granted them, and a spread trade's time refused under its own name."""

from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as
from market_helpers import RECENT_NOON, quote
from trading_helpers import call, counts, list_okx_btc_spot

T0 = RECENT_NOON


@pytest.fixture
def venues(seeded):
    """BTC/USDT spot on binance (seeded) and okx, both with a 0.1 % taker fee."""
    list_okx_btc_spot(seeded)
    return seeded


@pytest.mark.parametrize("role", ["spreadedge_readonly", "spreadedge_app", "spreadedge_engine"])
def test_current_spreads_can_be_read_by_every_role_it_is_granted_to(venues, role):
    # the view called internal helpers that only its owner may execute: reading it as a dashboard
    # (readonly) or the trading engine answered "permission denied for function net_bps_of_legs"
    quote(venues, T0, "100", "100.1")
    quote(venues, T0, "100.5", "100.6", exchange="okx", symbol="BTC-USDT")
    with acting_as(venues, role):
        spreads = venues.execute(
            "select symbol, buy_exchange, sell_exchange, gross_bps, net_bps from market.current_spreads"
        ).fetchall()
    assert spreads == [("BTC/USDT", "binance", "okx", Decimal("39.9600"), Decimal("19.9201"))]


@pytest.mark.parametrize(
    ("opened_at", "shown"),
    [(None, "null"), ("infinity", "infinity")],
)
def test_an_invalid_opened_at_is_refused_naming_opened_at_and_nothing_is_written(venues, opened_at, shown):
    # the legs' place_order refused it as "placed_at", a parameter open_spread_trade does not have
    before = counts(venues)
    with pytest.raises(psycopg.DataError) as caught:
        call(
            venues,
            "trading.open_spread_trade",
            strategy="alpha",
            symbol="BTC/USDT",
            buy_exchange="binance",
            sell_exchange="okx",
            quantity=Decimal("1"),
            buy_price=Decimal("100"),
            sell_price=Decimal("101"),
            opened_at=opened_at,
        )
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"opened_at must be a time between 2009-01-03 and one day from now, got {shown}",
    )
    assert counts(venues) == before
