"""Edges of fills and the order lifecycle: late fills after a cancel or an expiry."""

from __future__ import annotations

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
