"""Pre-trade risk limits: max_open_orders under an isolation level whose snapshot predates
its turn, and a position without market data valued at another trader's private fill."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from auth_helpers import acting_as
from trading_helpers import call, fill, order, place

NOW = datetime.now(UTC).replace(microsecond=0)


def limit(conn, strategy="alpha", **limits):
    return call(conn, "monitor.set_risk_limit", strategy=strategy, **limits)


def working_orders(conn):
    return conn.execute(
        "select count(*) from trading.orders where status in ('new', 'open', 'partially_filled')"
    ).fetchone()[0]


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_a_placement_whose_snapshot_predates_another_cannot_slip_past_max_open_orders(
    seeded, seeded_url, isolation
):
    limit(seeded, max_open_orders=1)
    with psycopg.connect(seeded_url) as late:
        late.execute(f"set transaction isolation level {isolation}")
        late.execute("select 1")  # its snapshot, taken before the other order is placed
        place(seeded, "buy", "0.01", "60000")  # committed: the one working order the limit allows
        with pytest.raises(psycopg.Error) as caught:
            place(late, "buy", "0.01", "60000")  # its snapshot never sees the order placed above
        late.rollback()

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        f"an order under a max_open_orders limit must run in a READ COMMITTED transaction, not {isolation.upper()}",
    )
    assert working_orders(seeded) == 1


def test_a_placement_under_repeatable_read_outside_a_max_open_orders_scope_is_checked_as_usual(
    seeded, seeded_url
):
    limit(seeded, exchange="kraken", max_open_orders=1)
    limit(seeded, max_order_notional=Decimal("1000"))
    with psycopg.connect(seeded_url) as conn:
        conn.execute("set transaction isolation level repeatable read")
        placed = place(conn, "buy", "0.01", "60000")
        rejected = place(conn, "buy", "0.02", "60000")
        conn.commit()

    assert (order(seeded, placed)["status"], order(seeded, rejected)["status_reason"]) == (
        "new",
        "order notional 1200 exceeds max_order_notional 1000",
    )


def bnb_bought_by_alice_at_600_then_by_bob_at_700(conn):
    """BNB has no market data: alice's fill at 600 is hers, bob's later one at 700 is his private price."""
    bought = place(conn, "buy", "1", "600", strategy="alice-arb", symbol="BNBUSDT")
    fill(conn, bought, "1", "600", executed_at=NOW - timedelta(minutes=2))
    bought = place(conn, "buy", "1", "700", strategy="bob-arb", symbol="BNBUSDT")
    fill(conn, bought, "1", "700", executed_at=NOW - timedelta(minutes=1))


@pytest.mark.parametrize("limit_asset", [None, "USDT"])
def test_position_notional_values_a_traders_position_without_market_data_at_their_own_fill_not_anothers(
    desks, auth_db, limit_asset
):
    bnb_bought_by_alice_at_600_then_by_bob_at_700(auth_db)
    limit(auth_db, "alice-arb", max_position_notional=Decimal("1000"), limit_asset=limit_asset)

    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        rejected = place(auth_db, "buy", "0.01", "60000", strategy="alice-arb")
        reason = auth_db.execute(
            "select status_reason from trading.orders where order_id = %s", [rejected]
        ).fetchone()[0]

    suffix = "" if limit_asset is None else " USDT"
    # BTC 0.01 x 60000 + BNB 1 x 600 (alice's fill); 1300 told alice bob's price
    assert reason == (
        f"position notional 1200{suffix} after the order exceeds max_position_notional 1000{suffix}"
    )


def test_an_exchange_limit_values_a_traders_position_without_market_data_at_their_own_fill(desks, auth_db):
    bnb_bought_by_alice_at_600_then_by_bob_at_700(auth_db)
    limit(auth_db, "alice-arb", exchange="binance", max_position_notional=Decimal("1000"))

    rejected = place(auth_db, "buy", "0.01", "60000", strategy="alice-arb")  # the engine, unscoped

    assert auth_db.execute(
        "select observed_value from monitor.risk_events where order_id = %s", [rejected]
    ).fetchone() == (Decimal("1200.00"),)


def test_a_market_order_placed_by_the_engine_is_valued_at_the_owners_fill_not_anothers(desks, auth_db):
    bnb_bought_by_alice_at_600_then_by_bob_at_700(auth_db)
    limit(auth_db, strategy="alice-arb", max_order_notional=Decimal("500"))
    rejected = place(auth_db, "buy", "1", strategy="alice-arb", symbol="BNBUSDT")  # no price: a market order
    # valued at bob's later fill, the reason read "order notional 700 exceeds ..."
    assert order(auth_db, rejected)["status_reason"] == "order notional 600 exceeds max_order_notional 500"
