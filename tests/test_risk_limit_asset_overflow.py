"""An order whose notional fits numeric but not once converted into a risk limit's limit_asset."""

from __future__ import annotations

import psycopg
import pytest

from trading_helpers import counts, fill, list_binance_eth_btc, place


# bug: an order whose notional fits numeric, on an instrument quoted in BTC, placed by a strategy
# whose limit is in USDT, failed with a bare 22003 "value overflows numeric format" when
# internal.risk_breach converted the notional into the limit asset; place_order refuses an order
# whose own notional overflows with 22S09 too
@pytest.mark.parametrize("limit", ["max_order_notional", "max_position_notional"])
def test_an_order_whose_notional_overflows_in_the_limit_asset_is_an_invalid_argument(
    seeded: psycopg.Connection, limit: str
) -> None:
    list_binance_eth_btc(seeded)
    fill(seeded, place(seeded, "buy", "1", "60000"), "1", "60000")  # BTC priced at 60,000 USDT
    seeded.execute(
        f"select monitor.set_risk_limit(strategy => 'beta', {limit} => 1000000, limit_asset => 'USDT')"
    )
    before = counts(seeded)
    with pytest.raises(psycopg.Error) as caught:
        # 9e131071 BTC fits numeric; times 60,000 USDT a BTC it does not
        place(seeded, "buy", "1", "9e131071", strategy="beta", symbol="ETHBTC")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "order notional 9.000e+131071 is too large a number in USDT",
    )
    assert counts(seeded) == before
