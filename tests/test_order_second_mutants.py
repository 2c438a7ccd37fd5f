"""Rules of order placement, status changes, acknowledgements and amendments that a second round of
plausible slips in their SQL broke without any other test noticing: each test here kills one
mutant of the second mutation run of 30_trading_order_rules.sql, 30_trading_orders.sql and
30_trading_orders_amend.sql (the first run and its tests are tests/test_order_mutants.py; none of
its mutants is repeated).

The run: 28 mutants (10 of 30_trading_order_rules.sql, 15 of 30_trading_orders.sql, 3 of
30_trading_orders_amend.sql), each run against tests/test_orders.py, test_orders_edges.py,
test_order_mutants.py, test_order_amendments.py and test_order_notional_overflow.py and the files
that cover its code (test_scope_leaks.py, test_fills*.py, test_fill_after_cleanup.py,
test_exchange_initiated_fills.py, test_message_replay_hunt.py, test_monitor_risk.py,
test_spread_trades.py, ...). 12 were caught, 16 survived: 1 equivalent and 15 holes, each killed
by one test below.

Caught: a NaN quantity allowed; a stop_limit order's price refused; a stop price allowed on a
limit order; the stop price held to the lot instead of the tick; a stop price off the
tick named by the limit price; the overflow message naming the price for the reference; 22S03 for
a quantity off the lot; an unknown order taken for one removed by cleanup; a retry of another
user's differing order described; the key dated now(), not placed_at; a cancel of any filled order
that has an order event a no-op; an expiry delivered again after a late fill 55S01.

Equivalent: internal.change_order_status storing no trade id on its event (no caller passes one:
a fill writes its order's events itself).

Holes (30_trading_order_rules.sql): the overflow guard without its quantity (a huge quantity made
a bare 22003); the lot hint naming the tick; an amendment's no-stop-price hint suggesting another
type. (30_trading_orders.sql): internal.lock_order giving another user's removed order to
record_fill (her trade id returned to bob); match_retried_order naming another user's removed
order; the side left out of a retry's comparison; a market order described "@ limit"; the orders
row's updated_at now(), not placed_at; a risk rejection's event dated now(); a status change
keeping updated_at; an exchange order id refused on every instrument, not the order's own;
refuse_taken_exchange_order_id naming another user's order. (30_trading_orders_amend.sql): the
amendment text without trim_scale of the old quantity; the sell leg of a spread trade resizable;
a stop_market order's upsize valued at its null price (no risk check).

Also killed below, though not run against the existing tests for lack of time: the amended row's
updated_at kept, a quantity amendment dropping the stop price, the risk check of an upsize counting
only what is left to fill, and the mark of a market order's amendment taken as an unowned
strategy's (any trader's latest fill).

Not run: equivalent by reading, the order type left out of a retry's comparison (the type is
fixed by which of price and stop price an order has, and they are compared), "% > 0" for
"% <> 0" on the lot (both operands positive), "<>" for "is distinct from" on the amended price
(the type fixes whether it is null); for lack of time, a new order of an inactive instrument,
the dropped FOR UPDATE / FOR KEY SHARE locks and the concurrent client_order_id path (they need
race tests), and the amendment's blank reason, status check, from_status, replay check, filled
bound and risk side (each with an existing test that reads as covering it).

Every expected value is worked out by hand in its comment."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from auth_helpers import acting_as
from market_helpers import RECENT_NOON, tick
from test_order_mutants import amend
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
    trade,
)

# -- the instrument's rules and what a refusal says --------------------------------------------------


def test_an_order_whose_quantity_alone_is_huge_and_whose_notional_overflows_is_an_invalid_argument(seeded):
    # the price 10^40000 is below 10^43690, where a factor alone could not overflow, but
    # 10^100000 x 10^40000 = 10^140000 is beyond numeric's 10^131072: the quantity is the huge factor
    expect_refusal(
        seeded,
        "22S09",
        "order notional (quantity 1.000e+100000 x price 1.000e+40000 x multiplier 1.000e+00) is too large a number",
        lambda: place(seeded, "buy", "1e100000", "1e40000"),
    )


def test_a_quantity_off_the_lot_hints_at_the_lot_size_not_the_tick_size(seeded):
    # binance's BTCUSDT: tick 0.01, lot 0.0001
    error = expect_refusal(
        seeded,
        "22S04",
        "quantity 0.00015 is not a multiple of the lot size 0.0001 of BTCUSDT",
        lambda: place(seeded, "buy", "0.00015", "100000"),
    )
    assert error.diag.message_hint == "Round the quantity to a multiple of 0.0001."


def test_a_stop_price_amended_onto_a_limit_order_hints_that_the_type_stays(seeded):
    order_id = place(seeded, "buy", "1", "100")
    # a placement would be told to use order_type => 'stop_limit'; an amendment cannot change it
    error = expect_refusal(
        seeded,
        "22S07",
        "limit orders take no stop price, got 99",
        lambda: amend(seeded, order_id, stop_price=D("99")),
    )
    assert error.diag.message_hint == "Omit stop_price: an amendment keeps the order type (limit)."
    assert order(seeded, order_id)["stop_price"] is None


# -- idempotent placement ----------------------------------------------------------------------------


def test_a_client_order_id_retried_on_the_other_side_is_a_conflict(seeded):
    place(seeded, "buy", "1", "100", client_order_id="c-1")
    # the same strategy, instrument, type, quantity and price: only the side differs, and a sell
    # returned as the stored buy would leave the engine believing it had sold
    error = expect_refusal(
        seeded,
        "23S06",
        'client order id "c-1" is already used by order 1 with different values',
        lambda: place(seeded, "sell", "1", "100", client_order_id="c-1"),
    )
    assert (
        error.diag.message_detail
        == "stored: alpha buy 1 BTCUSDT limit @ 100; retried: alpha sell 1 BTCUSDT limit @ 100"
    )


def test_a_market_orders_conflict_details_show_it_at_the_market(seeded):
    tick(seeded, RECENT_NOON, "100", trade_id="t-1")  # the mark values a market order: 1 x 100
    place(seeded, "buy", "1", client_order_id="c-1")
    error = expect_refusal(
        seeded,
        "23S06",
        'client order id "c-1" is already used by order 1 with different values',
        lambda: place(seeded, "buy", "2", client_order_id="c-1"),
    )
    assert (
        error.diag.message_detail
        == "stored: alpha buy 1 BTCUSDT market @ market; retried: alpha buy 2 BTCUSDT market @ market"
    )


# -- what a placement records ------------------------------------------------------------------------


def test_an_order_placed_earlier_was_last_updated_when_it_was_placed(seeded):
    order_id = place(seeded, "buy", "1", "100", placed_at=RECENT_NOON)
    assert (order(seeded, order_id)["created_at"], order(seeded, order_id)["updated_at"]) == (
        RECENT_NOON,
        RECENT_NOON,
    )


def test_an_order_rejected_by_a_risk_limit_is_rejected_when_it_was_placed(seeded):
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    order_id = place(seeded, "buy", "1", "100", placed_at=RECENT_NOON)
    # both events of its placement are dated when it was placed, not when it was recorded
    events = seeded.execute(
        "select from_status::text, to_status::text, occurred_at, reason from trading.order_events"
        " where order_id = %s order by event_id",
        [order_id],
    ).fetchall()
    assert events == [
        (None, "new", RECENT_NOON, None),
        ("new", "rejected", RECENT_NOON, "kill switch is on"),
    ]


# -- status changes and acknowledgements -------------------------------------------------------------


def test_a_cancel_dates_the_orders_last_update(seeded):
    order_id = place(seeded, "buy", "1", "100", placed_at=RECENT_NOON)
    with seeded.transaction():
        call(seeded, "trading.cancel_order", order_id=order_id)
        cancelled_at = seeded.execute("select now()").fetchone()[0]
    assert order(seeded, order_id)["updated_at"] == cancelled_at


def test_the_same_exchange_order_id_on_another_instrument_is_accepted(seeded):
    # an exchange order id is unique per instrument: binance numbers each symbol's orders apart
    btc = place(seeded, "buy", "1", "100")
    bnb = place(seeded, "buy", "1", "100", symbol="BNBUSDT")
    call(seeded, "trading.acknowledge_order", order_id=btc, exchange_order_id="42")
    call(seeded, "trading.acknowledge_order", order_id=bnb, exchange_order_id="42")
    assert [(order(seeded, o)["status"], order(seeded, o)["exchange_order_id"]) for o in (btc, bnb)] == [
        ("open", "42"),
        ("open", "42"),
    ]


# -- amendments --------------------------------------------------------------------------------------


def test_a_quantity_amendment_of_a_stop_limit_order_keeps_its_stop_price(seeded):
    order_id = place(seeded, "sell", "1", "98", order_type="stop_limit", stop_price=D("99"))
    assert amend(seeded, order_id, quantity=D("2")) == (True, None)
    stored = order(seeded, order_id)
    assert (stored["quantity"], stored["price"], stored["stop_price"]) == (D("2"), D("98"), D("99"))


def test_an_amendment_dates_the_orders_last_update(seeded):
    order_id = place(seeded, "buy", "1", "100", placed_at=RECENT_NOON)
    with seeded.transaction():
        amend(seeded, order_id, price=D("101"))
        amended_at = seeded.execute("select now()").fetchone()[0]
    assert order(seeded, order_id)["updated_at"] == amended_at


def test_an_amendments_event_shows_the_old_quantity_without_trailing_zeros(seeded):
    order_id = place(seeded, "buy", "1.000", "100")
    amend(seeded, order_id, quantity=D("2"))
    reason = seeded.execute(
        "select reason from trading.order_events where order_id = %s order by event_id desc limit 1",
        [order_id],
    ).fetchone()[0]
    assert reason == "amended: quantity 1 -> 2"


def test_the_sell_leg_of_a_spread_trade_cannot_be_resized(seeded):
    list_okx_btc_spot(seeded)
    _, sell_leg = legs(seeded, open_spread(seeded))
    expect_refusal(
        seeded,
        "22S09",
        f"order {sell_leg} is a leg of a spread trade: its quantity is the spread trade's",
        lambda: amend(seeded, sell_leg, quantity=D("3")),
    )


def test_with_the_kill_switch_on_an_upsized_stop_market_order_is_refused(seeded):
    # a stop_market order is valued at its stop price: 0.02 x 60000 = 1200 > 0.01 x 60000 = 600
    order_id = place(seeded, "buy", "0.01", None, order_type="stop_market", stop_price=D("60000"))
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    assert amend(seeded, order_id, quantity=D("0.02")) == (False, "kill switch is on")
    assert order(seeded, order_id)["quantity"] == D("0.01")


def test_a_market_order_is_amended_at_the_mark_its_strategys_owner_sees(auth_db, desks):
    trade(auth_db, "buy", "0.1", "100", strategy="alice-arb")
    trade(auth_db, "buy", "1", "10", strategy="bob-arb")  # the instrument's latest fill, bob's
    order_id = place(auth_db, "sell", "0.1", strategy="alice-arb")
    # valued at alice's own fill: 0.06 x 100 = 6.00, not below binance BTCUSDT's minimum of 5; at
    # bob's private price it would be 0.06 x 10 = 0.60 and refused
    assert amend(auth_db, order_id, quantity=D("0.06")) == (True, None)
    assert order(auth_db, order_id)["quantity"] == D("0.06")


def test_an_upsize_of_a_partly_filled_order_is_held_to_max_order_notional_for_its_whole_quantity(seeded):
    call(seeded, "monitor.set_risk_limit", strategy="alpha", max_order_notional=D("1000"))
    order_id = place(seeded, "buy", "0.01", "60000")  # 0.01 x 60000 = 600
    fill(seeded, order_id, "0.005", "60000")
    # the whole order on the exchange: 0.02 x 60000 = 1200 > 1000; what is left to fill alone,
    # (0.02 - 0.005) x 60000 = 900, would pass
    reason = "order notional 1200 exceeds max_order_notional 1000"
    assert amend(seeded, order_id, quantity=D("0.02")) == (False, reason)
    assert order(seeded, order_id)["quantity"] == D("0.01")


# -- another user's orders ---------------------------------------------------------------------------


def removed_round_trip(conn):
    """alice's buy (client order id "c-1", exchange trade id "rt-1") and sell of 1 BTC at 100, both
    filled 60 days ago and then removed by orders cleanup (their keys stay: trades refer to them);
    the buy order's id."""
    long_ago = datetime.now(UTC) - timedelta(days=60)
    bought = place(conn, "buy", "1", "100", strategy="alice-arb", placed_at=long_ago, client_order_id="c-1")
    fill(conn, bought, "1", "100", executed_at=long_ago, exchange_trade_id="rt-1")
    sold = place(conn, "sell", "1", "100", strategy="alice-arb", placed_at=long_ago)
    fill(conn, sold, "1", "100", executed_at=long_ago, exchange_trade_id="rt-2")
    conn.execute("update trading.orders set updated_at = created_at")
    conn.execute("select ops.cleanup_delete_batch('orders', interval '30 days')")
    assert order(conn, bought) is None
    return bought


def refusal_to(conn, user_id, action):
    """The (SQLSTATE, message, detail) with which action, run as the application user, is refused."""
    with acting_as(conn, "spreadedge_app", user_id), pytest.raises(psycopg.Error) as caught:
        action()
    return caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail


def test_a_fill_of_another_users_order_that_cleanup_removed_is_an_unknown_order(auth_db, desks):
    bought = removed_round_trip(auth_db)
    before = counts(auth_db)
    # bob delivering alice's fill again learns neither her trade's id nor that the order was hers
    refusal = refusal_to(
        auth_db, desks["bob"], lambda: fill(auth_db, bought, "1", "100", exchange_trade_id="rt-1")
    )
    assert refusal == ("23S04", f"order {bought} does not exist", None)
    assert counts(auth_db) == before


def test_a_client_order_id_of_another_users_order_that_cleanup_removed_is_used_without_saying_whose(
    auth_db, desks
):
    removed_round_trip(auth_db)
    before = counts(auth_db)
    # the id stays taken on binance, but bob is told neither alice's order id nor when she placed it
    refusal = refusal_to(
        auth_db,
        desks["bob"],
        lambda: place(auth_db, "buy", "1", "100", strategy="bob-arb", client_order_id="c-1"),
    )
    assert refusal == ("23S06", 'client order id "c-1" is already used', None)
    assert counts(auth_db) == before


def test_an_exchange_order_id_of_another_users_order_is_refused_without_saying_whose(auth_db, desks):
    alices = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    call(auth_db, "trading.acknowledge_order", order_id=alices, exchange_order_id="E-7")
    bobs = place(auth_db, "buy", "1", "100", strategy="bob-arb")
    before = counts(auth_db)
    refusal = refusal_to(
        auth_db,
        desks["bob"],
        lambda: call(auth_db, "trading.acknowledge_order", order_id=bobs, exchange_order_id="E-7"),
    )
    assert refusal == ("23S06", 'exchange order id "E-7" is already recorded', None)
    assert (counts(auth_db), order(auth_db, bobs)["status"]) == (before, "new")
