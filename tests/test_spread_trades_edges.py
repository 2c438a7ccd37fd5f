"""Spread trades at their edges: leg client order ids taken before the spread trade is opened."""

import psycopg
import pytest

from market_helpers import RECENT_NOON
from trading_helpers import counts, fill, list_okx_btc_spot, open_spread, place

T0 = RECENT_NOON


@pytest.fixture
def venues(seeded):
    """BTC/USDT spot on binance (seeded) and okx."""
    list_okx_btc_spot(seeded)
    return seeded


def test_a_spread_trade_whose_buy_legs_client_order_id_an_earlier_order_took_is_a_conflict_and_writes_nothing(
    venues,
):
    # the same order the buy leg would be, placed and filled on its own before the spread trade
    earlier = place(venues, "buy", "2", "100", client_order_id="arb-1-buy")
    fill(venues, earlier, "2", "100", executed_at=T0)
    before = counts(venues)
    with pytest.raises(psycopg.IntegrityError) as caught:
        open_spread(venues, client_spread_id="arb-1")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S06",
        f'client order id "arb-1-buy" of the buy leg is already used by order {earlier}',
    )
    assert counts(venues) == before
    assert venues.execute("select count(*) from trading.spread_trades").fetchone()[0] == 0


def test_a_spread_trade_whose_sell_legs_client_order_id_an_earlier_order_took_is_a_conflict(venues):
    earlier = place(
        venues, "sell", "2", "101", exchange="okx", symbol="BTC-USDT", client_order_id="arb-1-sell"
    )
    with pytest.raises(psycopg.IntegrityError) as caught:
        open_spread(venues, client_spread_id="arb-1")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S06",
        f'client order id "arb-1-sell" of the sell leg is already used by order {earlier}',
    )
    assert venues.execute("select count(*) from trading.orders").fetchone()[0] == 1
