"""Fills and their exchange trade ids: what record_fill is idempotent on, and conflicting redeliveries."""

from __future__ import annotations

from decimal import Decimal

import psycopg

from trading_helpers import expect_refusal, fill, place

RECORD_FILL = "trading.record_fill(bigint, text, numeric, numeric, numeric, text, timestamptz, numeric)"


# bug: \df+ said record_fill was idempotent on (exchange, exchange_trade_id), but since migration
# 0033 an exchange trade id names one fill of its instrument (and since 0035 of its side): a reader
# trusting the comment took a BNBUSDT fill sharing a BTCUSDT fill's id on one exchange for a duplicate
def test_record_fill_is_described_as_idempotent_per_instrument_side_and_exchange_trade_id(
    seeded: psycopg.Connection,
) -> None:
    described = seeded.execute(
        "select obj_description(%s::regprocedure, 'pg_proc')", [RECORD_FILL]
    ).fetchone()[0]
    assert "Idempotent on (instrument, exchange_trade_id, side)" in described
    assert "(exchange, exchange_trade_id)" not in described


# bug: both sides of an exchange trade carry its id, and two strategies on two sub-accounts may be
# its two sides; keyed by (instrument, exchange trade id), the second side was refused as a
# conflicting duplicate (23S06) and beta's position missed the 0.1 BTC it sold
def test_two_strategies_on_the_two_sides_of_one_exchange_trade_each_record_their_fill(
    seeded: psycopg.Connection,
) -> None:
    buy = place(seeded, "buy", "0.1", "60000", strategy="alpha")
    sell = place(seeded, "sell", "0.1", "60000", strategy="beta")
    bought = fill(seeded, buy, "0.1", "60000", exchange_trade_id="m-1")
    sold = fill(seeded, sell, "0.1", "60000", exchange_trade_id="m-1")
    assert bought != sold
    assert seeded.execute(
        "select s.name, p.quantity from trading.positions p join trading.strategies s using (strategy_id)"
        " order by s.name"
    ).fetchall() == [("alpha", Decimal("0.1")), ("beta", Decimal("-0.1"))]


def test_each_side_of_a_shared_exchange_trade_id_is_redelivered_to_its_own_trade(
    seeded: psycopg.Connection,
) -> None:
    buy = place(seeded, "buy", "0.1", "60000", strategy="alpha")
    sell = place(seeded, "sell", "0.1", "60000", strategy="beta")
    bought = fill(seeded, buy, "0.1", "60000", exchange_trade_id="m-2")
    sold = fill(seeded, sell, "0.1", "60000", exchange_trade_id="m-2")
    assert (fill(seeded, buy, "0.1", "60000", exchange_trade_id="m-2"),
            fill(seeded, sell, "0.1", "60000", exchange_trade_id="m-2")) == (bought, sold)  # fmt: skip
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (2,)


def test_a_fill_of_another_order_on_the_same_side_of_a_recorded_exchange_trade_is_refused(
    seeded: psycopg.Connection,
) -> None:
    first = place(seeded, "sell", "0.1", "60000", strategy="alpha")
    second = place(seeded, "sell", "0.1", "60000", strategy="beta")
    recorded = fill(seeded, first, "0.1", "60000", exchange_trade_id="m-3")
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "m-3" is already recorded as trade {recorded} with different values',
        lambda: fill(seeded, second, "0.1", "60000", exchange_trade_id="m-3"),
    )
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (1,)
