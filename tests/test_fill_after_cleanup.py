"""A fill delivered again after orders cleanup removed its order (its key stays while trades refer to
it): the stored trade, as for any redelivered fill, and a clear error for anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from ops_helpers import cli
from trading_helpers import expect_refusal, fill, place

LONG_AGO = datetime.now(UTC) - timedelta(days=60)


def removed_round_trip(db: psycopg.Connection, db_url: str) -> tuple[int, int]:
    """A buy and a sell of 0.01 BTC filled 60 days ago (a closed position), both orders then
    removed by cleanup; the buy order's id and its trade's id."""
    buy = place(db, "buy", "0.01", "50000", placed_at=LONG_AGO, client_order_id="rt-buy")
    bought = fill(db, buy, "0.01", "50000", fee="0.5", executed_at=LONG_AGO, exchange_trade_id="rt-1")
    sell = place(db, "sell", "0.01", "51000", placed_at=LONG_AGO, client_order_id="rt-sell")
    fill(db, sell, "0.01", "51000", executed_at=LONG_AGO, exchange_trade_id="rt-2")
    db.execute("update trading.orders set updated_at = created_at")
    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)
    assert result.exit_code == 0, result.output
    assert db.execute(
        "select count(*) from trading.orders where order_id in (%s, %s)", [buy, sell]
    ).fetchone() == (0,)
    return buy, bought


# bug: an engine replaying the exchange's trade history after cleanup got 23S04 "order does not
# exist" for a fill already recorded, where a redelivered fill returns the stored trade
def test_a_fill_redelivered_after_cleanup_removed_its_order_returns_the_stored_trade(
    seeded: psycopg.Connection, db_url: str
) -> None:
    buy, bought = removed_round_trip(seeded, db_url)
    again = fill(seeded, buy, "0.01", "50000", fee="0.5", executed_at=LONG_AGO, exchange_trade_id="rt-1")
    assert again == bought
    assert seeded.execute("select count(*), sum(quantity) from trading.trades").fetchone() == (
        2,
        Decimal("0.02"),
    )


def test_a_fill_redelivered_after_cleanup_with_another_quantity_is_a_conflicting_duplicate(
    seeded: psycopg.Connection, db_url: str
) -> None:
    buy, bought = removed_round_trip(seeded, db_url)
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "rt-1" is already recorded as trade {bought} with different values',
        lambda: fill(seeded, buy, "0.02", "50000", fee="0.5", exchange_trade_id="rt-1"),
    )


def test_a_new_fill_of_an_order_removed_by_cleanup_is_an_unknown_order_saying_so(
    seeded: psycopg.Connection, db_url: str
) -> None:
    buy, _ = removed_round_trip(seeded, db_url)
    expect_refusal(
        seeded,
        "23S04",
        f'order {buy} was removed by orders cleanup and has no trade with exchange trade id "rt-9"',
        lambda: fill(seeded, buy, "0.01", "50000", exchange_trade_id="rt-9"),
    )
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (2,)
