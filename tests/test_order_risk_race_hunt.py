"""Order placement and pre-trade risk limits under concurrency: a change of a strategy's limits
(kill switch, a lowered limit) and its placements in flight take turns, and racing placements of
one client_order_id record one order and one risk event."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from monitor_helpers import notifications
from trading_helpers import call, order, place, race


def limit(conn: psycopg.Connection, **limits: object) -> int:
    return call(conn, "monitor.set_risk_limit", strategy="alpha", **limits)


def kill(conn: psycopg.Connection) -> None:
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=True)


def risk_event_kinds(conn: psycopg.Connection) -> list[tuple[int | None, str]]:
    return conn.execute(
        "select order_id, limit_kind::text from monitor.risk_events order by risk_event_id"
    ).fetchall()


# --- a change of the limits and the placements in flight ---------------------------------------


def test_a_kill_switch_turned_on_waits_for_a_placement_in_flight_to_commit(seeded, seeded_url):
    limit(seeded, max_order_notional=Decimal("1000000"))
    # why it matters: on return the operator sweeps the strategy's working orders; an order
    # committed after the switch (checked before it) escaped both the switch and the sweep
    placed, _ = race(
        seeded, seeded_url, lambda c: place(c, "buy", "0.01", "60000"), kill, wait_event="advisory"
    )

    assert order(seeded, placed)["status"] == "new"
    assert risk_event_kinds(seeded) == [(None, "kill_switch")]
    assert order(seeded, place(seeded, "buy", "0.01", "60000"))["status_reason"] == "kill switch is on"


def test_a_placement_that_comes_while_a_kill_switch_is_turned_on_is_rejected_by_it(seeded, seeded_url):
    limit(seeded, max_order_notional=Decimal("1000000"))
    _, placed = race(
        seeded, seeded_url, kill, lambda c: place(c, "buy", "0.01", "60000"), wait_event="advisory"
    )

    stored = order(seeded, placed)
    assert (stored["status"], stored["status_reason"]) == ("rejected", "kill switch is on")
    assert risk_event_kinds(seeded) == [(None, "kill_switch"), (placed, "kill_switch")]


def test_the_first_kill_switch_of_a_strategy_without_limits_waits_for_a_placement_in_flight(
    seeded, seeded_url
):
    # why: the kill switch of a strategy that had no limit row is the urgent one; a placement that
    # read no limits before it must still commit before the switch returns
    placed, _ = race(
        seeded, seeded_url, lambda c: place(c, "buy", "0.01", "60000"), kill, wait_event="advisory"
    )

    assert order(seeded, placed)["status"] == "new"
    assert risk_event_kinds(seeded) == [(None, "kill_switch")]


def test_a_placement_that_comes_while_the_first_kill_switch_is_turned_on_is_rejected_by_it(
    seeded, seeded_url
):
    _, placed = race(
        seeded, seeded_url, kill, lambda c: place(c, "buy", "0.01", "60000"), wait_event="advisory"
    )

    stored = order(seeded, placed)
    assert (stored["status"], stored["status_reason"]) == ("rejected", "kill switch is on")
    assert risk_event_kinds(seeded) == [(None, "kill_switch"), (placed, "kill_switch")]


def test_a_placement_that_comes_while_a_limit_is_lowered_is_checked_against_the_new_limit(seeded, seeded_url):
    limit(seeded, max_order_notional=Decimal("1000000"))
    _, placed = race(
        seeded,
        seeded_url,
        lambda c: limit(c, max_order_notional=Decimal("100")),
        lambda c: place(c, "buy", "0.01", "60000"),
        wait_event="advisory",
    )

    assert order(seeded, placed)["status_reason"] == "order notional 600 exceeds max_order_notional 100"


def test_a_limit_lowered_waits_for_a_placement_in_flight_to_commit(seeded, seeded_url):
    limit(seeded, max_order_notional=Decimal("1000000"))
    placed, limit_id = race(
        seeded,
        seeded_url,
        lambda c: place(c, "buy", "0.01", "60000"),
        lambda c: limit(c, max_order_notional=Decimal("100")),
        wait_event="advisory",
    )

    assert order(seeded, placed)["status"] == "new"
    assert seeded.execute(
        "select max_order_notional from monitor.risk_limits where limit_id = %s", [limit_id]
    ).fetchone() == (Decimal("100"),)


@pytest.mark.parametrize("with_limits", [False, True], ids=["without limits", "with limits"])
def test_placements_of_a_strategy_do_not_wait_for_each_other(seeded, seeded_url, with_limits):
    if with_limits:
        limit(seeded, max_order_notional=Decimal("1000000"))
    first, second = race(
        seeded,
        seeded_url,
        lambda c: place(c, "buy", "0.01", "60000"),
        lambda c: place(c, "sell", "0.01", "60000"),
        must_wait=False,
    )

    assert [order(seeded, o)["status"] for o in (first, second)] == ["new", "new"]


# --- one client_order_id placed twice at once ---------------------------------------------------


def test_a_risk_rejected_placement_raced_by_its_retry_records_one_risk_event_and_notification(
    seeded, seeded_url
):
    limit(seeded, max_order_notional=Decimal("100"))
    first, retried = race(
        seeded,
        seeded_url,
        lambda c: place(c, "buy", "0.01", "60000", client_order_id="c-1"),
        lambda c: place(c, "buy", "0.01", "60000", client_order_id="c-1"),
    )

    assert retried == first
    assert order(seeded, first)["status"] == "rejected"
    assert risk_event_kinds(seeded) == [(first, "max_order_notional")]
    assert [n[2] for n in notifications(seeded)] == [
        f"[RISK] alpha: order {first} rejected: order notional 600 exceeds max_order_notional 100"
    ]


def test_a_placement_raced_by_one_of_its_client_order_id_with_another_price_is_refused(seeded, seeded_url):
    first, refused = race(
        seeded,
        seeded_url,
        lambda c: place(c, "buy", "0.01", "60000", client_order_id="c-1"),
        lambda c: place(c, "buy", "0.01", "60001", client_order_id="c-1"),
    )

    assert isinstance(refused, psycopg.Error)
    assert (refused.sqlstate, refused.diag.message_primary) == (
        "23S06",
        f'client order id "c-1" is already used by order {first} with different values',
    )
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (1,)
