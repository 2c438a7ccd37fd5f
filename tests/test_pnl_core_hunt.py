"""PnL core edges: amounts at the edge of numeric's range in fees and funding payments."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import psycopg

from market_helpers import RECENT_NOON
from trading_helpers import call, expect_refusal, fill, place, rows

# 9 x 10^131071: finite, and as close to numeric's end (10^131072) as a value gets
NEAR_NUMERIC_END = D("9e131071")


def funding(conn: psycopg.Connection, amount: D, hours: int) -> int:
    return call(
        conn,
        "trading.record_funding",
        strategy="alpha",
        exchange="okx",
        symbol="BTC-USDT-SWAP",
        amount=amount,
        paid_at=RECENT_NOON + timedelta(hours=hours),
    )


# Funding (bug: an amount near numeric's end was recorded; the position's next payment then
# failed with a bare 22003 "value overflows numeric format", and so did pnl_summary for good)
def test_a_funding_amount_of_10_to_the_100000_or_more_is_an_invalid_argument(
    seeded: psycopg.Connection,
) -> None:
    expect_refusal(
        seeded,
        "22S09",
        "funding amount must be below 10^100000 in magnitude, got -9.000e+131071",
        lambda: funding(seeded, -NEAR_NUMERIC_END, 0),
    )


def test_a_funding_amount_just_below_10_to_the_100000_is_recorded_and_summed(
    seeded: psycopg.Connection,
) -> None:
    big = D("9.99e99999")
    funding(seeded, big, 0)
    funding(seeded, big, 8)
    summary = rows(seeded, "trading.pnl_summary", strategy="alpha", group_by="total")
    assert [(r["funding"], r["realized_pnl"]) for r in summary] == [(2 * big, 2 * big)]


# Fees (bug: a fee near numeric's end was recorded; the position's next fee then failed with a
# bare 22003, and pnl_summary and portfolio snapshots summing fees failed with it)
def test_a_fee_of_10_to_the_100000_or_more_is_an_invalid_argument(seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "1", "100")
    expect_refusal(
        seeded,
        "22S09",
        "fee must be below 10^100000 in magnitude, got 9.000e+131071",
        lambda: fill(seeded, order_id, "1", "100", fee=NEAR_NUMERIC_END),
    )


def test_a_fee_quote_of_10_to_the_100000_or_more_is_an_invalid_argument(seeded: psycopg.Connection) -> None:
    order_id = place(seeded, "buy", "1", "100")
    expect_refusal(
        seeded,
        "22S09",
        "fee_quote must be below 10^100000 in magnitude, got 9.000e+131071",
        lambda: fill(
            seeded, order_id, "1", "100", fee=D("1"), fee_currency="BNB", fee_quote=NEAR_NUMERIC_END
        ),
    )


def test_a_fee_just_below_10_to_the_100000_is_recorded_and_summed(seeded: psycopg.Connection) -> None:
    big = D("9.99e99999")
    for _ in range(2):
        fill(seeded, place(seeded, "buy", "1", "100"), "1", "100", fee=big)
    summary = rows(seeded, "trading.pnl_summary", strategy="alpha", group_by="total")
    assert [(r["trades"], r["fees"]) for r in summary] == [(2, 2 * big)]
