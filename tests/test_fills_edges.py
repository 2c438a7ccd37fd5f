"""Edges of fills and the order lifecycle: late fills after a cancel or an expiry."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from trading_helpers import call, fill, order, place

CLOSES = {
    "cancelled": "trading.cancel_order",
    "expired": "trading.expire_order",
}


# bug: a late fill completing a cancelled or expired order made it filled but kept the cancel's
# reason, so the filled order read "filled: spread closed"
@pytest.mark.parametrize("closed", list(CLOSES))
def test_a_late_fill_completing_a_closed_order_leaves_it_filled_without_the_close_reason(
    seeded: psycopg.Connection, closed: str
) -> None:
    order_id = place(seeded, "buy", "2", "100")
    call(seeded, CLOSES[closed], order_id=order_id, reason="spread closed")
    trade_id = fill(seeded, order_id, "2", "100")
    events = seeded.execute(
        "select from_status, to_status, trade_id, reason from trading.order_events where order_id = %s "
        "order by event_id",
        [order_id],
    ).fetchall()
    row = order(seeded, order_id)
    assert (row["status"], row["status_reason"]) == ("filled", None)
    assert events == [
        (None, "new", None, None),
        ("new", closed, None, "spread closed"),
        (closed, "filled", trade_id, None),
    ]


@pytest.mark.parametrize("closed", list(CLOSES))
def test_a_late_fill_that_does_not_complete_a_closed_order_keeps_its_status_and_reason(
    seeded: psycopg.Connection, closed: str
) -> None:
    order_id = place(seeded, "buy", "2", "100")
    call(seeded, CLOSES[closed], order_id=order_id, reason="spread closed")
    fill(seeded, order_id, "1", "100")
    row = order(seeded, order_id)
    assert (row["status"], row["status_reason"], row["filled_quantity"]) == (closed, "spread closed", 1)


# bug: exchange trade ids were unique per exchange, but exchanges number trades per symbol: a
# BNBUSDT fill whose id a BTCUSDT fill of binance already had was refused (23S06) and lost
def test_fills_of_two_instruments_of_one_exchange_may_share_an_exchange_trade_id(
    seeded: psycopg.Connection,
) -> None:
    btc = place(seeded, "buy", "0.1", "60000")
    bnb = place(seeded, "buy", "1", "600", symbol="BNBUSDT")
    btc_trade = fill(seeded, btc, "0.1", "60000", exchange_trade_id="12345")
    bnb_trade = fill(seeded, bnb, "1", "600", exchange_trade_id="12345")
    assert btc_trade != bnb_trade
    assert (order(seeded, btc)["status"], order(seeded, bnb)["status"]) == ("filled", "filled")
    assert seeded.execute(
        "select i.symbol, p.quantity from trading.positions p join ref.instruments i using (instrument_id)"
        " order by 1"
    ).fetchall() == [("BNBUSDT", Decimal("1")), ("BTCUSDT", Decimal("0.1"))]


def test_a_fill_redelivered_with_its_exchange_trade_id_on_its_instrument_is_recorded_once(
    seeded: psycopg.Connection,
) -> None:
    bnb = place(seeded, "buy", "1", "600", symbol="BNBUSDT")
    first = fill(seeded, bnb, "0.5", "600", exchange_trade_id="12345")
    again = fill(seeded, bnb, "0.5", "600", exchange_trade_id="12345")
    assert again == first
    assert order(seeded, bnb)["filled_quantity"] == Decimal("0.5")
