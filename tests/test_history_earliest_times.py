"""History pages whose time range ends in PostgreSQL's first months (4714 BC) or before any trading
fact can be (2009-01-03) are empty pages, not a raw "timestamp out of range" (22008)."""

from __future__ import annotations

import psycopg
import pytest

from trading_helpers import call, place, trade

EARLY_END_DATES = pytest.mark.parametrize(
    "end_date",
    [
        "4714-11-24 00:00:00+00 BC",  # the earliest time PostgreSQL represents
        "4714-12-15 00:00:00+00 BC",  # in its first month: the month before it is out of range
        "2009-01-03 00:00:00+00",  # the earliest time a fill or order may have (internal.check_time)
    ],
)


@EARLY_END_DATES
@pytest.mark.parametrize(
    ("page_function", "record"),
    [
        ("trading.trade_history_page", lambda conn: trade(conn, "buy", "0.01", "50000")),
        ("trading.order_history_page", lambda conn: place(conn, "buy", "0.01", "50000")),
    ],
    ids=["trades", "orders"],
)
def test_a_page_ending_before_any_fill_or_order_can_be_is_an_empty_page(
    seeded: psycopg.Connection, end_date: str, page_function: str, record
) -> None:
    record(seeded)

    page = call(seeded, page_function, end_date=end_date)

    assert page == {"items": [], "next_cursor": None}


def test_a_trades_page_from_the_earliest_time_postgresql_represents_lists_every_trade(
    seeded: psycopg.Connection,
) -> None:
    trade_id = trade(seeded, "buy", "0.01", "50000")

    page = call(seeded, "trading.trade_history_page", start_date="4714-11-24 00:00:00+00 BC")

    assert ([item["trade_id"] for item in page["items"]], page["next_cursor"]) == ([trade_id], None)
