"""More edges of order placement: numbers at the edge of numeric's range."""

from __future__ import annotations

from decimal import Decimal as D

import psycopg

from trading_helpers import expect_refusal, order, place


# Overflow (bug: quantity and price each within numeric's range, but with a product beyond it,
# failed the minimum notional check with a bare 22003 "value overflows numeric format")
def test_an_order_whose_notional_overflows_numeric_is_an_invalid_argument(seeded: psycopg.Connection) -> None:
    expect_refusal(
        seeded,
        "22S09",
        "order notional (quantity 1.000e+100000 x price 1.000e+100000 x multiplier 1.000e+00) is too large a number",
        lambda: place(seeded, "buy", "1e100000", "1e100000"),
    )


def test_a_market_order_whose_notional_at_the_mark_price_overflows_numeric_is_an_invalid_argument(
    seeded: psycopg.Connection,
) -> None:
    place(seeded, "buy", "1", "1e100000", client_order_id="mark")
    seeded.execute(
        "select trading.record_fill(order_id => o.order_id, exchange_trade_id => 'm1', quantity => 1,"
        " price => o.price) from trading.orders o where o.client_order_id = 'mark'"
    )
    expect_refusal(
        seeded,
        "22S09",
        "order notional (quantity 1.000e+100000 x price 1.000e+100000 x multiplier 1.000e+00) is too large a number",
        lambda: place(seeded, "sell", "1e100000"),
    )


def test_an_order_with_huge_factors_whose_notional_fits_numeric_is_placed(seeded: psycopg.Connection) -> None:
    # the perpetual's multiplier of 0.01 brings 10^100000 x 10^31071 back within numeric's range
    order_id = place(seeded, "buy", "1e100000", "1e31071", exchange="okx", symbol="BTC-USDT-SWAP")
    assert (order(seeded, order_id)["quantity"], order(seeded, order_id)["status"]) == (D("1e100000"), "new")
