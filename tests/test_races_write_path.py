"""Races on the trading write path: two sessions acting on one order, position or strategy at once.

Each test holds one session's transaction open at the critical point, starts the other, sees it
wait for a lock, then ends the first: the result must be one of the serial orders, consistent
(ops.check_invariants() empty), with no lost or doubled update and no deadlock."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import psycopg

from trading_helpers import call, fill, order, place, position, race, rows, trade, waits_for_a_lock

SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}
HOUR = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def _invariants(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return rows(conn, "ops.check_invariants")


def _events(conn: psycopg.Connection, order_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select from_status::text, to_status::text, trade_id is not null from trading.order_events"
        " where order_id = %s order by event_id",
        [order_id],
    ).fetchall()


# --- funding and fills of one position ---------------------------------------------------------


def test_a_fill_waiting_on_a_funding_payment_of_its_position_applies_after_it(seeded, seeded_url):
    opened = trade(seeded, "buy", "10", "60000", executed_at=HOUR, **SWAP)
    closing = place(seeded, "sell", "4", "61000", **SWAP)
    _, trade_id = race(
        seeded,
        seeded_url,
        lambda c: call(
            c, "trading.record_funding", strategy="alpha", amount=D("-1.25"), paid_at=HOUR, **SWAP
        ),
        lambda c: fill(c, closing, "4", "61000", fee=D("0.5"), executed_at=HOUR + timedelta(minutes=5)),
    )
    assert isinstance(trade_id, int) and trade_id > opened
    pos = position(seeded, "alpha", mark_price=D("61000"), **SWAP)
    # 4 x 0.01 x 1,000 realized, a fee of 0.5, funding of -1.25
    assert (pos["quantity"], pos["realized_pnl_gross"], pos["fees_paid"], pos["funding"]) == (
        D("6"),
        D("40"),
        D("0.5"),
        D("-1.25"),
    )
    assert seeded.execute(
        "select trades, realized_pnl_gross, fees, funding from trading.hourly_pnl"
    ).fetchall() == [(2, D("40"), D("0.5"), D("-1.25"))]
    assert _invariants(seeded) == []


def test_a_funding_payment_waiting_on_a_fill_of_its_position_applies_after_it(seeded, seeded_url):
    trade(seeded, "buy", "10", "60000", executed_at=HOUR, **SWAP)
    closing = place(seeded, "sell", "4", "61000", **SWAP)
    _, funding_id = race(
        seeded,
        seeded_url,
        lambda c: fill(c, closing, "4", "61000", fee=D("0.5"), executed_at=HOUR + timedelta(minutes=5)),
        lambda c: call(
            c, "trading.record_funding", strategy="alpha", amount=D("-1.25"), paid_at=HOUR, **SWAP
        ),
    )
    assert isinstance(funding_id, int)
    pos = position(seeded, "alpha", mark_price=D("61000"), **SWAP)
    assert (pos["quantity"], pos["realized_pnl_gross"], pos["fees_paid"], pos["funding"]) == (
        D("6"),
        D("40"),
        D("0.5"),
        D("-1.25"),
    )
    assert seeded.execute(
        "select trades, realized_pnl_gross, fees, funding from trading.daily_pnl"
    ).fetchall() == [(2, D("40"), D("0.5"), D("-1.25"))]
    assert _invariants(seeded) == []


def test_a_first_fill_waiting_on_a_first_funding_payment_opens_the_position_it_created(seeded, seeded_url):
    buy = place(seeded, "buy", "10", "60000", **SWAP)
    _, trade_id = race(
        seeded,
        seeded_url,
        lambda c: call(c, "trading.record_funding", strategy="alpha", amount=D("2"), paid_at=HOUR, **SWAP),
        lambda c: fill(c, buy, "10", "60000", executed_at=HOUR),
    )
    assert isinstance(trade_id, int)
    assert seeded.execute("select quantity, funding, trade_count from trading.positions").fetchall() == [
        (D("10"), D("2"), 1)
    ]
    assert _invariants(seeded) == []


def test_a_first_funding_payment_waiting_on_a_first_fill_adds_to_the_position_it_opened(seeded, seeded_url):
    buy = place(seeded, "buy", "10", "60000", **SWAP)
    trade_id, _ = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "10", "60000", executed_at=HOUR),
        lambda c: call(c, "trading.record_funding", strategy="alpha", amount=D("2"), paid_at=HOUR, **SWAP),
    )
    assert isinstance(trade_id, int)
    assert seeded.execute("select quantity, funding, trade_count from trading.positions").fetchall() == [
        (D("10"), D("2"), 1)
    ]
    assert _invariants(seeded) == []


# --- cancel, acknowledge, reject and fills of one order ------------------------------------------------


def test_a_fill_waiting_on_a_cancel_of_its_order_is_late_and_completes_it(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, trade_id = race(
        seeded,
        seeded_url,
        lambda c: call(c, "trading.cancel_order", order_id=buy, reason="spread closed"),
        lambda c: fill(c, buy, "1", "50000"),
    )
    assert isinstance(trade_id, int)
    got = order(seeded, buy)
    assert (got["status"], got["filled_quantity"], got["status_reason"]) == ("filled", D("1"), None)
    assert seeded.execute("select is_late from trading.trades").fetchall() == [(True,)]
    assert _events(seeded, buy) == [
        (None, "new", False),
        ("new", "cancelled", False),
        ("cancelled", "filled", True),
    ]
    assert _invariants(seeded) == []


def test_a_cancel_waiting_on_a_fill_that_completes_its_order_is_refused(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, refused = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "1", "50000"),
        lambda c: call(c, "trading.cancel_order", order_id=buy, reason="spread closed"),
    )
    assert isinstance(refused, psycopg.Error)
    assert (refused.sqlstate, refused.diag.message_primary) == (
        "55S01",
        f"order {buy} cannot go from filled to cancelled",
    )
    got = order(seeded, buy)
    assert (got["status"], got["filled_quantity"]) == ("filled", D("1"))
    assert _events(seeded, buy) == [(None, "new", False), ("new", "filled", True)]
    assert _invariants(seeded) == []


def test_a_cancel_waiting_on_a_partial_fill_cancels_the_partially_filled_order(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, cancelled = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "0.4", "50000"),
        lambda c: call(c, "trading.cancel_order", order_id=buy, reason="spread closed"),
    )
    assert not isinstance(cancelled, psycopg.Error)
    got = order(seeded, buy)
    assert (got["status"], got["filled_quantity"], got["status_reason"]) == (
        "cancelled",
        D("0.4"),
        "spread closed",
    )
    assert _events(seeded, buy) == [
        (None, "new", False),
        ("new", "partially_filled", True),
        ("partially_filled", "cancelled", False),
    ]
    assert _invariants(seeded) == []


def test_an_acknowledgement_waiting_on_a_cancel_keeps_the_cancel_and_records_the_exchange_id(
    seeded, seeded_url
):
    buy = place(seeded, "buy", "1", "50000")
    _, acknowledged = race(
        seeded,
        seeded_url,
        lambda c: call(c, "trading.cancel_order", order_id=buy, reason="spread closed"),
        lambda c: call(c, "trading.acknowledge_order", order_id=buy, exchange_order_id="BN-1"),
    )
    assert not isinstance(acknowledged, psycopg.Error)
    got = order(seeded, buy)
    assert (got["status"], got["exchange_order_id"], got["status_reason"]) == (
        "cancelled",
        "BN-1",
        "spread closed",
    )
    assert _events(seeded, buy) == [(None, "new", False), ("new", "cancelled", False)]
    assert _invariants(seeded) == []


def test_a_cancel_waiting_on_an_acknowledgement_cancels_the_open_order(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, cancelled = race(
        seeded,
        seeded_url,
        lambda c: call(c, "trading.acknowledge_order", order_id=buy, exchange_order_id="BN-1"),
        lambda c: call(c, "trading.cancel_order", order_id=buy, reason="spread closed"),
    )
    assert not isinstance(cancelled, psycopg.Error)
    got = order(seeded, buy)
    assert (got["status"], got["exchange_order_id"]) == ("cancelled", "BN-1")
    assert _events(seeded, buy) == [
        (None, "new", False),
        ("new", "open", False),
        ("open", "cancelled", False),
    ]
    assert _invariants(seeded) == []


def test_a_reject_waiting_on_a_partial_fill_of_a_new_order_is_refused(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, refused = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "0.4", "50000"),
        lambda c: call(c, "trading.reject_order", order_id=buy, reason="insufficient margin"),
    )
    assert isinstance(refused, psycopg.Error)
    assert (refused.sqlstate, refused.diag.message_primary) == (
        "55S01",
        f"order {buy} cannot go from partially_filled to rejected",
    )
    assert _invariants(seeded) == []


def test_a_fill_waiting_on_a_reject_of_its_order_is_refused_and_writes_nothing(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, refused = race(
        seeded,
        seeded_url,
        lambda c: call(c, "trading.reject_order", order_id=buy, reason="insufficient margin"),
        lambda c: fill(c, buy, "0.4", "50000"),
    )
    assert isinstance(refused, psycopg.Error)
    assert (refused.sqlstate, refused.diag.message_primary) == (
        "55S01",
        f"order {buy} was rejected and cannot be filled",
    )
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (0,)
    assert seeded.execute("select count(*) from trading.positions").fetchone() == (0,)
    assert _invariants(seeded) == []


# --- two fills of one position -----------------------------------------------------------------


def test_two_fills_of_two_orders_of_one_position_apply_in_trade_id_order(seeded, seeded_url):
    trade(seeded, "buy", "1", "50000")
    first_order = place(seeded, "sell", "0.6", "51000")
    second_order = place(seeded, "buy", "0.5", "52000")
    first, second = race(
        seeded,
        seeded_url,
        lambda c: fill(c, first_order, "0.6", "51000"),
        lambda c: fill(c, second_order, "0.5", "52000"),
    )
    assert second > first
    pos = position(seeded, "alpha", exchange="binance", symbol="BTCUSDT")
    # 0.6 x 1,000 realized; 0.4 left at 50,000, then 0.5 bought at 52,000
    assert (pos["quantity"], pos["realized_pnl_gross"], pos["avg_entry_price"]) == (
        D("0.9"),
        D("600"),
        D("51111.111111111111111111"),
    )
    assert _invariants(seeded) == []


def test_two_first_fills_of_one_position_open_it_once_and_apply_in_trade_id_order(seeded, seeded_url):
    first_order = place(seeded, "buy", "1", "50000")
    second_order = place(seeded, "sell", "0.4", "51000")
    first, second = race(
        seeded,
        seeded_url,
        lambda c: fill(c, first_order, "1", "50000"),
        lambda c: fill(c, second_order, "0.4", "51000"),
    )
    assert second > first
    assert seeded.execute(
        "select quantity, realized_pnl_gross, trade_count from trading.positions"
    ).fetchall() == [(D("0.6"), D("400"), 2)]
    assert _invariants(seeded) == []


# --- duplicates delivered by two sessions ------------------------------------------------------


def test_one_exchange_trade_id_delivered_by_two_sessions_at_once_is_one_trade(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    first, second = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "0.5", "50000", exchange_trade_id="T-1"),
        lambda c: fill(c, buy, "0.5", "50000", exchange_trade_id="T-1"),
    )
    assert second == first
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (1,)
    assert order(seeded, buy)["filled_quantity"] == D("0.5")
    assert _invariants(seeded) == []


def test_one_exchange_trade_id_on_two_orders_of_one_side_is_recorded_once(seeded, seeded_url):
    alpha = place(seeded, "buy", "1", "50000")
    beta = place(seeded, "buy", "1", "50000", strategy="beta")
    first, refused = race(
        seeded,
        seeded_url,
        lambda c: fill(c, alpha, "0.5", "50000", exchange_trade_id="T-1"),
        lambda c: fill(c, beta, "0.5", "50000", exchange_trade_id="T-1"),
    )
    assert isinstance(refused, psycopg.Error)
    assert refused.sqlstate == "23S06"
    assert seeded.execute("select trade_id, order_id from trading.trades").fetchall() == [(first, alpha)]
    assert _invariants(seeded) == []


def test_a_duplicate_fill_waiting_on_a_first_delivery_that_rolls_back_is_recorded(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, second = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "0.5", "50000", exchange_trade_id="T-1"),
        lambda c: fill(c, buy, "0.5", "50000", exchange_trade_id="T-1"),
        commit=False,
    )
    assert isinstance(second, int)
    assert seeded.execute("select trade_id from trading.trades").fetchall() == [(second,)]
    assert _invariants(seeded) == []


def test_one_client_order_id_placed_by_two_sessions_at_once_is_one_order(seeded, seeded_url):
    first, second = race(
        seeded,
        seeded_url,
        lambda c: place(c, "buy", "1", "50000", client_order_id="arb-1"),
        lambda c: place(c, "buy", "1", "50000", client_order_id="arb-1"),
    )
    assert second == first
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (1,)
    assert seeded.execute("select count(*) from trading.order_events").fetchone() == (1,)
    assert _invariants(seeded) == []


def test_a_placement_waiting_on_one_with_its_client_order_id_that_rolls_back_places_it(seeded, seeded_url):
    _, second = race(
        seeded,
        seeded_url,
        lambda c: place(c, "buy", "1", "50000", client_order_id="arb-1"),
        lambda c: place(c, "buy", "1", "50000", client_order_id="arb-1"),
        commit=False,
    )
    assert isinstance(second, int)
    assert seeded.execute("select order_id from trading.orders").fetchall() == [(second,)]
    assert _invariants(seeded) == []


# --- the instrument changing under a fill ------------------------------------------------------


def test_a_multiplier_change_waiting_on_a_fill_carries_over_to_its_position(seeded, seeded_url):
    buy = place(seeded, "buy", "10", "60000", **SWAP)
    change = (
        "select ref.upsert_instrument(exchange => 'okx', symbol => 'BTC-USDT-SWAP', base_asset => 'BTC',"
        " quote_asset => 'USDT', market_type => 'perpetual', tick_size => 0.1, lot_size => 1,"
        " multiplier => 0.02)"
    )
    trade_id, _ = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "10", "60000"),
        lambda c: c.execute(change).fetchone(),
    )
    assert seeded.execute("select trade_id, multiplier from trading.trades").fetchall() == [
        (trade_id, D("0.01"))
    ]
    assert seeded.execute("select quantity, multiplier from trading.positions").fetchall() == [
        (D("10"), D("0.02"))
    ]
    assert _invariants(seeded) == []


# --- portfolio snapshot during a fill ----------------------------------------------------------


def test_a_snapshot_taken_while_a_fill_is_uncommitted_is_of_the_state_before_it(seeded, seeded_url):
    trade(seeded, "buy", "1", "50000")
    sell = place(seeded, "sell", "1", "51000")
    with psycopg.connect(seeded_url) as filler:
        fill(filler, sell, "1", "51000")
        taken = rows(seeded, "trading.take_portfolio_snapshot")
        filler.commit()
    total = next(r for r in taken if r["strategy_id"] is None)
    assert (total["realized_pnl"], total["open_positions"]) == (D("0"), 1)
    assert _invariants(seeded) == []


def test_a_second_fill_waiting_on_one_that_fills_the_order_is_an_overfill(seeded, seeded_url):
    buy = place(seeded, "buy", "1", "50000")
    _, refused = race(
        seeded,
        seeded_url,
        lambda c: fill(c, buy, "0.6", "50000"),
        lambda c: fill(c, buy, "0.6", "50000"),
    )
    assert isinstance(refused, psycopg.Error)
    assert (refused.sqlstate, refused.diag.message_primary) == (
        "23S05",
        f"fill of 0.6 would overfill order {buy}: 0.6 of 1 already filled",
    )
    assert _invariants(seeded) == []


# --- orders cleanup and fills ------------------------------------------------------------------

LONG_AGO = datetime.now(UTC) - timedelta(days=60)
CLEANUP = "select ops.cleanup_delete_batch(target => 'orders', older_than => interval '30 days')"


def test_a_redelivered_fill_waiting_on_cleanup_of_its_order_returns_the_stored_trade(seeded, seeded_url):
    buy = place(seeded, "buy", "0.01", "50000", placed_at=LONG_AGO)
    bought = fill(seeded, buy, "0.01", "50000", executed_at=LONG_AGO, exchange_trade_id="rt-1")
    sell = place(seeded, "sell", "0.01", "51000", placed_at=LONG_AGO)
    fill(seeded, sell, "0.01", "51000", executed_at=LONG_AGO, exchange_trade_id="rt-2")
    seeded.execute("update trading.orders set updated_at = created_at")
    removed, again = race(
        seeded,
        seeded_url,
        lambda c: c.execute(CLEANUP).fetchone(),
        lambda c: fill(c, buy, "0.01", "50000", executed_at=LONG_AGO, exchange_trade_id="rt-1"),
    )
    assert removed == (2,)
    assert again == bought
    assert _invariants(seeded) == []


def test_a_late_fill_waiting_on_cleanup_of_its_unfilled_order_is_an_unknown_order(seeded, seeded_url):
    buy = place(seeded, "buy", "0.01", "50000", placed_at=LONG_AGO)
    call(seeded, "trading.cancel_order", order_id=buy)
    seeded.execute("update trading.orders set updated_at = created_at")
    removed, refused = race(
        seeded,
        seeded_url,
        lambda c: c.execute(CLEANUP).fetchone(),
        lambda c: fill(c, buy, "0.01", "50000", exchange_trade_id="late-1"),
    )
    assert removed == (1,)
    assert isinstance(refused, psycopg.Error)
    assert (refused.sqlstate, refused.diag.message_primary) == (
        "23S04",
        f'order {buy} was removed by orders cleanup and has no trade with exchange trade id "late-1"',
    )
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (0,)
    assert _invariants(seeded) == []


# bug: cleanup read its batch from one snapshot; a fill of a new order that reopened a flat
# position while the cleanup waited for a lock did not keep that position's old filled orders,
# which the rule keeps while their position is open
def test_cleanup_keeps_the_orders_of_a_position_a_fill_reopened_while_it_waited(seeded, seeded_url):
    buy = place(seeded, "buy", "0.01", "50000", placed_at=LONG_AGO)
    fill(seeded, buy, "0.01", "50000", executed_at=LONG_AGO, exchange_trade_id="rt-1")
    sell = place(seeded, "sell", "0.01", "51000", placed_at=LONG_AGO)
    fill(seeded, sell, "0.01", "51000", executed_at=LONG_AGO, exchange_trade_id="rt-2")
    other = place(seeded, "buy", "1", "600", placed_at=LONG_AGO, symbol="BNBUSDT")
    call(seeded, "trading.cancel_order", order_id=other)
    seeded.execute("update trading.orders set updated_at = created_at")
    with (
        psycopg.connect(seeded_url) as holder,
        psycopg.connect(seeded_url, autocommit=True) as cleaner,
        ThreadPoolExecutor(1) as pool,
    ):
        # the cleanup comes to wait for the other removable order, its batch already read
        holder.execute("select from trading.orders where order_id = %s for update", [other])
        running = pool.submit(lambda: cleaner.execute(CLEANUP).fetchone())
        assert waits_for_a_lock(seeded, cleaner.info.backend_pid)
        # meanwhile a new buy reopens the position
        reopening = place(seeded, "buy", "0.01", "50500")
        fill(seeded, reopening, "0.01", "50500", exchange_trade_id="rt-3")
        holder.commit()
        assert running.result(timeout=30) == (1,)
    left = {r[0] for r in seeded.execute("select order_id from trading.orders")}
    assert left == {buy, sell, reopening}
    assert position(seeded, "alpha", "binance", "BTCUSDT")["quantity"] == D("0.01")
    assert _invariants(seeded) == []
