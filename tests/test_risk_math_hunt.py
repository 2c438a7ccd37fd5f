"""The numbers of the pre-trade risk check, against an independent exact computation: amounts
converted into a limit's limit_asset at an inverse pair (USDT in BTC), at the limit exactly and
just beyond it, and the amounts a rejection's reason shows."""

from decimal import Decimal, localcontext

import psycopg

from market_helpers import RECENT_NOON, quote
from test_monitor_risk import limit
from test_risk_limit_asset import risk_events
from trading_helpers import order, place, trade


def in_btc(usdt: Decimal, btc_usdt_mark: Decimal) -> Decimal:
    """USDT in BTC at BTC/USDT's mark, the README's way (the price of a USDT is 1 / the mark),
    to 50 digits."""
    with localcontext() as context:
        context.prec = 50
        return usdt / btc_usdt_mark


# bug: a limit in BTC valued an order in USDT at 1 / BTC/USDT's mark rounded to 16 digits, so
# 60,000 USDT at a mark of 60,000 was 1.00000000000000000002 BTC, and an order that meets a
# 1 BTC limit exactly (limits are inclusive) was rejected
def test_an_order_exactly_at_a_btc_max_order_notional_valued_at_an_inverse_pair_is_placed(
    seeded: psycopg.Connection,
) -> None:
    quote(seeded, RECENT_NOON, "59999", "60001")  # BTC/USDT marked at 60,000
    limit(seeded, max_order_notional=Decimal("1"), limit_asset="BTC")
    assert in_btc(Decimal("60000"), Decimal("60000")) == Decimal("1")

    at_the_limit = place(seeded, "buy", "1", "60000")

    assert (order(seeded, at_the_limit)["status"], risk_events(seeded)) == ("new", [])


def test_an_order_one_lot_beyond_a_btc_max_order_notional_is_rejected_with_its_exact_notional(
    seeded: psycopg.Connection,
) -> None:
    quote(seeded, RECENT_NOON, "59999", "60001")
    limit(seeded, max_order_notional=Decimal("1"), limit_asset="BTC")

    beyond = place(seeded, "buy", "1.0001", "60000")  # 60,006 USDT

    reason = "order notional 1.0001 BTC exceeds max_order_notional 1 BTC"
    assert order(seeded, beyond)["status_reason"] == reason
    assert risk_events(seeded) == [
        ("max_order_notional", Decimal("1"), in_btc(Decimal("60006"), Decimal("60000")), reason)
    ]


# bug: the same rounding held the order's position and the strategy's other positions (a
# perpetual's contracts x multiplier x its mark) to a 1 BTC limit they meet exactly
def test_positions_exactly_at_a_btc_max_position_notional_valued_at_an_inverse_pair_are_placed(
    seeded: psycopg.Connection,
) -> None:
    trade(seeded, "buy", "10", "60000", exchange="okx", symbol="BTC-USDT-SWAP")  # 10 x 0.01 x 60,000 USDT
    quote(seeded, RECENT_NOON, "59999", "60001")
    quote(seeded, RECENT_NOON, "59999", "60001", exchange="okx", symbol="BTC-USDT-SWAP")
    limit(seeded, max_position_notional=Decimal("1"), limit_asset="BTC")
    assert in_btc(Decimal("6000"), Decimal("60000")) + in_btc(Decimal("54000"), Decimal("60000")) == 1

    at_the_limit = place(seeded, "buy", "0.9", "60000")  # 0.1 BTC of perpetual + 0.9 BTC of spot
    beyond = place(seeded, "buy", "0.9001", "60000")

    assert (order(seeded, at_the_limit)["status"], order(seeded, beyond)["status"]) == ("new", "rejected")
    assert risk_events(seeded) == [
        (
            "max_position_notional",
            Decimal("1"),
            Decimal("1.0001"),
            "position notional 1.0001 BTC after the order exceeds max_position_notional 1 BTC",
        )
    ]


# bug: rounded the other way (1 / 49,999.5 is 0.0000200002000020000200002...), a day's loss of
# 499.995 USDT, exactly a 0.01 BTC limit, was 0.00999999999999999999... BTC: the limit was not
# reached and the strategy kept trading
def test_a_daily_loss_in_usdt_exactly_at_a_btc_max_daily_loss_reaches_it(seeded: psycopg.Connection) -> None:
    quote(seeded, RECENT_NOON, "49999", "50000")  # BTC/USDT marked at 49,999.5
    assert in_btc(Decimal("499.995"), Decimal("49999.5")) == Decimal("0.01")
    # one transaction: the loss's UTC day (the fills' now()) is the day the risk check reads (its now())
    with seeded.transaction():
        trade(seeded, "buy", "0.1", "50000")
        trade(seeded, "sell", "0.1", "45000.05")  # a loss of 0.1 x 4,999.95 = 499.995 USDT
        limit(seeded, max_daily_loss=Decimal("0.01"), limit_asset="BTC")

        rejected = place(seeded, "buy", "0.001", "50000")

    reason = "realized loss today 0.01 BTC reached max_daily_loss 0.01 BTC"
    assert order(seeded, rejected)["status_reason"] == reason
    assert risk_events(seeded) == [("max_daily_loss", Decimal("0.01"), Decimal("0.01"), reason)]


# bug: a converted amount showed every digit of its division ("order notional
# 0.012000120001200012 BTC"); the risk event keeps them, the reason shows 12 decimals
def test_a_reason_shows_an_amount_converted_at_an_inverse_pair_to_12_decimals(
    seeded: psycopg.Connection,
) -> None:
    quote(seeded, RECENT_NOON, "49999", "50000")
    limit(seeded, max_order_notional=Decimal("0.01"), limit_asset="BTC")

    rejected = place(seeded, "buy", "0.01", "60000")  # 600 USDT

    exact = in_btc(Decimal("600"), Decimal("49999.5"))  # 0.0120001200012000120001...
    reason = "order notional 0.012000120001 BTC exceeds max_order_notional 0.01 BTC"
    assert order(seeded, rejected)["status_reason"] == reason
    [(kind, value, observed, stored_reason)] = risk_events(seeded)
    assert (kind, value, stored_reason) == ("max_order_notional", Decimal("0.01"), reason)
    assert abs(observed - exact) < Decimal("1e-18")


def test_a_reason_shows_the_decimals_that_put_an_amount_beyond_its_limit(seeded: psycopg.Connection) -> None:
    quote(seeded, RECENT_NOON, "5999999", "6000001")  # BTC/USDT marked at 6,000,000
    limit(seeded, max_order_notional=Decimal("0.0001"), limit_asset="BTC")

    rejected = place(seeded, "buy", "0.0001", "6000000.01")  # 600.000001 USDT

    # 0.0001000000001666... BTC: at 12 decimals it would read 0.0001, as if at the limit
    assert round(in_btc(Decimal("600.000001"), Decimal("6000000")), 12) == Decimal("0.0001")
    assert order(seeded, rejected)["status_reason"] == (
        "order notional 0.0001000000002 BTC exceeds max_order_notional 0.0001 BTC"
    )
