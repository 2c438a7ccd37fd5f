"""Order amendments (trading.amend_order): a working order's quantity, price or stop price changed in
place, held to place_order's rules, to the filled quantity and, when it takes on more risk, to the
strategy's pre-trade risk limits; each amendment an order event, a replay a no-op."""

import asyncio
from decimal import Decimal as D

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from monitor_helpers import notifications
from spreadedge.managers import ManagerConfig, PersistentOrderManager
from trading_helpers import (
    call,
    counts,
    expect_refusal,
    fill,
    legs,
    list_okx_btc_spot,
    open_spread,
    order,
    place,
    rows,
)


def amend(conn, order_id, **kwargs):
    """trading.amend_order's one row, as (amended, reason)."""
    row = rows(conn, "trading.amend_order", order_id=order_id, **kwargs)
    assert len(row) == 1
    return row[0]["amended"], row[0]["reason"]


def events(conn, order_id):
    return conn.execute(
        "select from_status::text, to_status::text, reason from trading.order_events where order_id = %s"
        " order by event_id",
        [order_id],
    ).fetchall()


def risk_events(conn):
    return conn.execute(
        "select order_id, limit_kind::text, limit_value, observed_value, reason from monitor.risk_events"
        " order by risk_event_id"
    ).fetchall()


def expect_amend_refusal(conn, sqlstate, message, order_id, **kwargs):
    """The amendment must raise sqlstate with this message and leave the order and every table
    (order events, audit log included) as they were."""
    before = order(conn, order_id)
    error = expect_refusal(conn, sqlstate, message, lambda: amend(conn, order_id, **kwargs))
    assert order(conn, order_id) == before
    return error


def test_an_upsized_order_records_fills_up_to_its_new_quantity(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "0.5", "100")

    assert amend(seeded, order_id, quantity=D("2")) == (True, None)
    fill(seeded, order_id, "1.5", "100")  # beyond the first quantity: overfill (23S05) before

    stored = order(seeded, order_id)
    assert (stored["status"], stored["quantity"], stored["filled_quantity"]) == ("filled", D("2"), D("2.0"))
    assert seeded.execute("select quantity from trading.positions").fetchone() == (D("2.0"),)


def test_a_downsized_order_is_filled_at_its_new_quantity(seeded):
    order_id = place(seeded, "buy", "2", "100")
    fill(seeded, order_id, "0.5", "100")

    assert amend(seeded, order_id, quantity=D("1")) == (True, None)
    assert order(seeded, order_id)["status"] == "partially_filled"
    fill(seeded, order_id, "0.5", "100")

    stored = order(seeded, order_id)
    assert (stored["status"], stored["quantity"], stored["filled_quantity"]) == ("filled", D("1"), D("1.0"))


def test_a_price_amendment_keeps_the_order_its_status_and_its_exchange_order_id(seeded):
    order_id = place(seeded, "buy", "1", "100")
    call(seeded, "trading.acknowledge_order", order_id=order_id, exchange_order_id="BN-1")

    assert amend(seeded, order_id, price=D("101")) == (True, None)

    stored = order(seeded, order_id)
    assert (stored["price"], stored["quantity"], stored["status"], stored["exchange_order_id"]) == (
        D("101"),
        D("1"),
        "open",
        "BN-1",
    )


def test_a_stop_price_amendment_changes_the_stop_price_alone(seeded):
    order_id = place(seeded, "sell", "1", "99", order_type="stop_limit", stop_price=D("100"))

    assert amend(seeded, order_id, stop_price=D("99.5")) == (True, None)

    stored = order(seeded, order_id)
    assert (stored["stop_price"], stored["price"], stored["quantity"]) == (D("99.5"), D("99"), D("1"))


@pytest.mark.parametrize(
    ("kwargs", "sqlstate", "message"),
    [
        ({"quantity": D("0")}, "22S01", "quantity must be positive and finite, got 0"),
        ({"quantity": D("NaN")}, "22S01", "quantity must be positive and finite, got NaN"),
        ({"price": D("-5")}, "22S02", "price of a limit order must be positive and finite, got -5"),
        (
            {"price": D("100.005")},
            "22S03",
            "price 100.005 is not a multiple of the tick size 0.01 of BTCUSDT",
        ),
        (
            {"quantity": D("1.00015")},
            "22S04",
            "quantity 1.00015 is not a multiple of the lot size 0.0001 of BTCUSDT",
        ),
        ({"quantity": D("0.01")}, "22S05", "order notional 1.00 is below the minimum 5 of BTCUSDT"),
        ({"stop_price": D("99")}, "22S07", "limit orders take no stop price, got 99"),
        (
            {"quantity": D("1e100000"), "price": D("1e100000")},
            "22S09",
            "order notional (quantity 1.000e+100000 x price 1.000e+100000 x multiplier 1.000e+00)"
            " is too large a number",
        ),
        ({}, "22S09", "nothing to amend: quantity, price and stop_price are all null"),
    ],
    ids=[
        "zero-quantity",
        "nan-quantity",
        "negative-price",
        "price-off-tick",
        "quantity-off-lot",
        "below-min-notional",
        "stop-price-of-a-limit-order",
        "notional-overflow",
        "nothing-to-amend",
    ],
)
def test_an_amendment_breaking_the_order_rules_is_refused_like_a_placement_and_writes_nothing(
    seeded, kwargs, sqlstate, message
):
    order_id = place(seeded, "buy", "1", "100")
    expect_amend_refusal(seeded, sqlstate, message, order_id, **kwargs)


def test_a_price_for_an_order_type_without_one_is_refused_with_a_hint_that_the_type_stays(seeded):
    order_id = place(seeded, "buy", "1", None, order_type="stop_market", stop_price=D("100"))
    error = expect_amend_refusal(
        seeded, "22S07", "stop_market orders take no price, got 100", order_id, price=D("100")
    )
    assert error.diag.message_hint == "Omit price: an amendment keeps the order type (stop_market)."


@pytest.mark.parametrize("status", ["filled", "cancelled", "rejected", "expired"])
def test_an_order_that_is_not_working_cannot_be_amended(seeded, status):
    order_id = place(seeded, "buy", "1", "100")
    if status == "filled":
        fill(seeded, order_id, "1", "100")
    else:
        verb = {"cancelled": "cancel", "rejected": "reject", "expired": "expire"}[status]
        call(seeded, f"trading.{verb}_order", order_id=order_id)
    expect_amend_refusal(
        seeded, "55S01", f"order {order_id} cannot be amended: it is {status}", order_id, price=D("101")
    )


def test_an_unknown_order_is_unknown_as_for_a_cancel(seeded):
    expect_refusal(
        seeded, "23S04", "order 987654321 does not exist", lambda: amend(seeded, 987654321, price=D("1"))
    )


def test_another_traders_order_is_refused_as_cancel_order_refuses_it(auth_db, desks):
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        order_id = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    before = counts(auth_db)
    refusals = []
    with acting_as(auth_db, "spreadedge_app", desks["bob"]):
        for attempt in (
            lambda: call(auth_db, "trading.cancel_order", order_id=order_id),
            lambda: amend(auth_db, order_id, quantity=D("2")),
        ):
            with pytest.raises(psycopg.Error) as caught:
                attempt()
            refusals.append(
                (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_hint)
            )

    assert refusals == [("23S04", f"order {order_id} does not exist", None)] * 2
    assert counts(auth_db) == before


@pytest.mark.parametrize("quantity", ["0.5", "0.4"], ids=["equal", "below"])
def test_a_quantity_not_above_the_filled_quantity_is_overfill_with_a_hint_to_cancel(seeded, quantity):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "0.5", "100")
    error = expect_amend_refusal(
        seeded,
        "23S05",
        f"order {order_id} has 0.5 filled: an amended quantity of {quantity} would leave nothing to fill",
        order_id,
        quantity=D(quantity),
    )
    assert error.diag.message_hint == "Cancel the order instead: nothing would be left to fill."


def test_an_amendment_replayed_writes_nothing_and_reports_it_amended(seeded):
    order_id = place(seeded, "buy", "1", "100")
    amend(seeded, order_id, quantity=D("2"), price=D("101"))
    before = counts(seeded)

    assert amend(seeded, order_id, quantity=D("2.00"), price=D("101")) == (True, None)

    assert counts(seeded) == before


def test_an_amendment_replayed_after_the_order_filled_is_not_refused(seeded):
    order_id = place(seeded, "buy", "1", "100")
    amend(seeded, order_id, quantity=D("2"))
    fill(seeded, order_id, "2", "100")
    before = counts(seeded)

    assert amend(seeded, order_id, quantity=D("2")) == (True, None)

    assert counts(seeded) == before


def test_an_amendment_is_an_order_event_that_keeps_the_status_and_says_what_changed(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "0.5", "100")

    amend(seeded, order_id, quantity=D("2.000"), price=D("100.50"), reason="  chasing the bid ")
    amend(seeded, order_id, price=D("100.4"), reason=" ")

    assert events(seeded, order_id)[-2:] == [
        (
            "partially_filled",
            "partially_filled",
            "amended: quantity 1 -> 2, price 100 -> 100.5: chasing the bid",
        ),
        ("partially_filled", "partially_filled", "amended: price 100.5 -> 100.4"),
    ]


def test_an_amendment_is_audited_as_an_update_of_the_order_with_the_actor(seeded):
    order_id = place(seeded, "buy", "1", "100")
    seeded.execute("select set_config('spreadedge.actor', 'desk-7', false)")

    amend(seeded, order_id, quantity=D("2"))

    audited = seeded.execute(
        "select operation, actor, old_row ->> 'quantity', new_row ->> 'quantity' from audit.log"
        " where table_name = 'trading.orders' order by audit_id"
    ).fetchall()
    assert audited[-1] == ("UPDATE", "desk-7", "1", "2")


def test_an_amended_order_passes_every_invariant(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "0.5", "100")
    amend(seeded, order_id, quantity=D("3"), price=D("101"))
    fill(seeded, order_id, "2.5", "101")
    other = place(seeded, "sell", "2", "102")
    amend(seeded, other, quantity=D("1"))

    assert rows(seeded, "ops.check_invariants") == []


def test_a_spread_trade_legs_quantity_cannot_be_amended_but_its_price_can(seeded):
    list_okx_btc_spot(seeded)
    buy_leg, _ = legs(seeded, open_spread(seeded))

    expect_amend_refusal(
        seeded,
        "22S09",
        f"order {buy_leg} is a leg of a spread trade: its quantity is the spread trade's",
        buy_leg,
        quantity=D("3"),
    )
    assert amend(seeded, buy_leg, price=D("99.5")) == (True, None)
    assert rows(seeded, "ops.check_invariants") == []


def limit(conn, **limits):
    return call(conn, "monitor.set_risk_limit", strategy="alpha", **limits)


def test_with_the_kill_switch_on_an_upsize_is_refused_recorded_and_notified(seeded):
    order_id = place(seeded, "buy", "0.01", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    before = order(seeded, order_id)

    assert amend(seeded, order_id, quantity=D("0.02")) == (False, "kill switch is on")

    assert order(seeded, order_id) == before
    assert events(seeded, order_id) == [(None, "new", None)]
    assert risk_events(seeded)[-1] == (order_id, "kill_switch", None, None, "kill switch is on")
    assert notifications(seeded)[-1] == (
        "email",
        "pending",
        f"[RISK] alpha: order {order_id} amendment refused: kill switch is on",
    )


def test_with_the_kill_switch_on_a_downsize_is_amended(seeded):
    order_id = place(seeded, "buy", "0.02", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)

    assert amend(seeded, order_id, quantity=D("0.01"), price=D("60100")) == (True, None)

    assert order(seeded, order_id)["quantity"] == D("0.01")
    assert [event[1] for event in risk_events(seeded)] == ["kill_switch"]  # the switch's own


def test_with_the_kill_switch_on_a_larger_market_order_is_refused(seeded):
    order_id = place(seeded, "buy", "0.01", None)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)

    assert amend(seeded, order_id, quantity=D("0.02")) == (False, "kill switch is on")
    assert order(seeded, order_id)["quantity"] == D("0.01")


def test_an_upsize_beyond_max_order_notional_is_refused_with_its_risk_event(seeded):
    limit(seeded, max_order_notional=D("1000"))
    order_id = place(seeded, "buy", "0.01", "60000")
    reason = "order notional 1200 exceeds max_order_notional 1000"

    assert amend(seeded, order_id, quantity=D("0.02")) == (False, reason)

    assert order(seeded, order_id)["quantity"] == D("0.01")
    assert risk_events(seeded) == [(order_id, "max_order_notional", D("1000"), D("1200.00"), reason)]


def test_a_strategy_at_max_open_orders_may_still_enlarge_a_working_order(seeded):
    limit(seeded, max_open_orders=1)
    order_id = place(seeded, "buy", "0.01", "60000")

    assert amend(seeded, order_id, quantity=D("0.02")) == (True, None)
    assert risk_events(seeded) == []


INACTIVE = {
    "strategy": (
        "update trading.strategies set is_active = false where name = 'alpha'",
        'strategy "alpha" is inactive: order {} can only be made smaller',
    ),
    "instrument": (
        "update ref.instruments set is_active = false where symbol = 'BTCUSDT'",
        'instrument "BTCUSDT" on "binance" is inactive: order {} can only be made smaller',
    ),
}


# bug: an inactive strategy or instrument placed no new order, but an amendment doubled a paused
# strategy's working order or moved a delisted instrument's order where it would fill
@pytest.mark.parametrize("kind", INACTIVE)
@pytest.mark.parametrize("change", [{"quantity": D("0.02")}, {"price": D("60100")}], ids=["upsize", "dearer"])
def test_an_amendment_taking_on_more_risk_is_refused_for_an_inactive_strategy_or_instrument(
    seeded, kind, change
):
    order_id = place(seeded, "buy", "0.01", "60000")
    deactivate, message = INACTIVE[kind]
    seeded.execute(deactivate)

    error = expect_amend_refusal(seeded, "22S09", message.format(order_id), order_id, **change)

    assert error.diag.message_hint.startswith(f"An inactive {kind} takes on no new risk")
    assert events(seeded, order_id) == [(None, "new", None)]


@pytest.mark.parametrize("kind", INACTIVE)
def test_an_order_of_an_inactive_strategy_or_instrument_can_still_be_shrunk(seeded, kind):
    order_id = place(seeded, "buy", "0.02", "60000")
    seeded.execute(INACTIVE[kind][0])

    assert amend(seeded, order_id, quantity=D("0.01"), price=D("59900")) == (True, None)
    assert (order(seeded, order_id)["quantity"], order(seeded, order_id)["price"]) == (D("0.01"), D("59900"))


def test_the_order_manager_amends_an_order_and_returns_it(seeded, config: ManagerConfig):
    order_id = place(seeded, "buy", "0.5", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)

    async def run():
        async with PersistentOrderManager(config) as manager:
            shrunk = await manager.amend_order(order_id, quantity=D("0.4"), reason="less")
            refused = await manager.amend_order(order_id, price=D("60001"))
            return shrunk, refused

    shrunk, refused = asyncio.run(run())
    assert (shrunk.amended, shrunk.reason, shrunk.order.quantity, shrunk.order.price) == (
        True,
        None,
        D("0.4"),
        D("60000"),
    )
    assert (refused.amended, refused.reason, refused.order.price) == (False, "kill switch is on", D("60000"))
    assert seeded.execute(
        "select actor from audit.log where table_name = 'trading.orders' order by audit_id desc limit 1"
    ).fetchone() == ("test-manager",)


def test_a_user_without_orders_write_gets_permission_denied(auth_db, desks):
    order_id = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    viewer = make_user(auth_db, "vic", "viewer")
    with acting_as(auth_db, "spreadedge_app", viewer), pytest.raises(psycopg.Error) as caught:
        amend(auth_db, order_id, price=D("101"))
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {viewer} lacks the permission orders:write",
    )
