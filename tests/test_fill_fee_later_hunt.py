"""A fill's fee reported after the fill (trading.record_fill_fee).

Exchanges often report a fill before its fee: Coinbase's websocket ``match`` carries none (its REST
/fills does, later), other venues send the commission in a later message. The fill is recorded with
fee 0; before trading.record_fill_fee, record_fill with the real fee was a conflicting redelivery
(23S06) and the fee was never recorded: realized PnL, fees_paid, the rollups and pnl_summary
overstated PnL by it for good. Every test here failed on the old code (no such function, 42883).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from market_helpers import RECENT_NOON
from spreadedge.managers import ManagerConfig, PersistentOrderManager
from trading_helpers import call, counts, expect_refusal, fill, place, position, race, rows

# the fill's time: 12:30 of yesterday (UTC), inside one hour and one day of the rollups
AT = RECENT_NOON + timedelta(minutes=30)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}


def set_fee(conn: psycopg.Connection, order_id: int, exchange_trade_id: str, fee: str, **kwargs: Any) -> int:
    return call(
        conn,
        "trading.record_fill_fee",
        order_id=order_id,
        exchange_trade_id=exchange_trade_id,
        fee=D(fee),
        **kwargs,
    )


def trade_fee(conn: psycopg.Connection, trade_id: int) -> tuple[D, str, D, D]:
    return conn.execute(
        "select fee, fee_currency, fee_quote, realized_pnl from trading.trades where trade_id = %s",
        [trade_id],
    ).fetchone()


def rollup_fees(conn: psycopg.Connection) -> tuple[list[tuple], list[tuple]]:
    """(day, trades, fees, realized_pnl) of the daily rollup and (hour, trades, fees) of the hourly."""
    daily = conn.execute(
        "select day, trades, fees, realized_pnl from trading.daily_pnl order by day, instrument_id"
    ).fetchall()
    hourly = conn.execute(
        "select hour, trades, fees from trading.hourly_pnl order by hour, instrument_id"
    ).fetchall()
    return daily, hourly


def invariants(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select invariant, detail from ops.check_invariants()").fetchall()


def test_a_quote_fee_set_later_on_a_buy_is_realized_in_the_trade_position_and_rollups(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-1", executed_at=AT)

    assert set_fee(seeded, order_id, "CB-1", "0.1") == trade_id

    assert trade_fee(seeded, trade_id) == (D("0.1"), "USDT", D("0.1"), D("-0.1"))
    held = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (held["quantity"], held["avg_entry_price"], held["fees_paid"], held["realized_pnl"]) == (
        D("1"), D("100"), D("0.1"), D("-0.1"),
    )  # fmt: skip
    assert rollup_fees(seeded) == (
        [(AT.date(), 1, D("0.1"), D("-0.1"))],
        [(RECENT_NOON, 1, D("0.1"))],
    )
    assert invariants(seeded) == []


def test_a_quote_fee_set_later_on_a_closing_sell_lowers_realized_pnl_by_exactly_the_fee(seeded):
    fill(seeded, place(seeded, "buy", "1", "100"), "1", "100", fee=D("0.1"), executed_at=AT)
    sell = place(seeded, "sell", "1", "110")
    trade_id = fill(seeded, sell, "1", "110", exchange_trade_id="CB-2", executed_at=AT)
    # gross 1 x (110 - 100) = 10, less the buy's fee 0.1
    assert position(seeded, "alpha", "binance", "BTCUSDT")["realized_pnl"] == D("9.9")

    set_fee(seeded, sell, "CB-2", "0.11")

    held = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (held["quantity"], held["realized_pnl_gross"], held["fees_paid"], held["realized_pnl"]) == (
        D("0"), D("10"), D("0.21"), D("9.79"),
    )  # fmt: skip
    assert trade_fee(seeded, trade_id) == (D("0.11"), "USDT", D("0.11"), D("9.89"))
    assert rollup_fees(seeded)[0] == [(AT.date(), 2, D("0.21"), D("9.79"))]
    assert invariants(seeded) == []


def test_a_rebate_set_later_raises_realized_pnl(seeded):
    order_id = place(seeded, "buy", "2", "100")
    trade_id = fill(seeded, order_id, "2", "100", exchange_trade_id="MK-1", executed_at=AT)

    set_fee(seeded, order_id, "MK-1", "-0.02")

    assert trade_fee(seeded, trade_id) == (D("-0.02"), "USDT", D("-0.02"), D("0.02"))
    held = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (held["fees_paid"], held["realized_pnl"]) == (D("-0.02"), D("0.02"))
    assert rollup_fees(seeded) == ([(AT.date(), 1, D("-0.02"), D("0.02"))], [(RECENT_NOON, 1, D("-0.02"))])
    assert invariants(seeded) == []


def test_a_third_currency_fee_set_later_counts_at_its_fee_quote(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="BN-1", executed_at=AT)

    set_fee(seeded, order_id, "BN-1", "0.0005", fee_currency="bnb", fee_quote=D("0.3"))

    assert trade_fee(seeded, trade_id) == (D("0.0005"), "BNB", D("0.3"), D("-0.3"))
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("0.3")
    assert rollup_fees(seeded)[1] == [(RECENT_NOON, 1, D("0.3"))]
    assert invariants(seeded) == []


def test_a_third_currency_fee_without_a_quote_value_or_market_price_is_refused_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100", exchange_trade_id="BN-2", executed_at=AT)
    error = expect_refusal(
        seeded,
        "22S08",
        "fee of 0.0005 BNB cannot be valued in USDT: no market price for BNB/USDT",
        lambda: set_fee(seeded, order_id, "BN-2", "0.0005", fee_currency="BNB"),
    )
    assert error.diag.message_hint == "Pass fee_quote => the fee's value in USDT."
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("0")


def test_a_base_asset_fee_set_later_on_a_perpetual_with_a_multiplier_counts_at_fee_times_price(seeded):
    fill(seeded, place(seeded, "buy", "10", "60000", **SWAP), "10", "60000", executed_at=AT)
    sell = place(seeded, "sell", "10", "60100", **SWAP)
    trade_id = fill(seeded, sell, "10", "60100", exchange_trade_id="OK-1", executed_at=AT)

    # 0.00005 BTC at the fill's price 60100: 3.005 USDT; the quantity is contracts, not changed
    set_fee(seeded, sell, "OK-1", "0.00005", fee_currency="BTC")

    assert trade_fee(seeded, trade_id) == (D("0.00005"), "BTC", D("3.005"), D("6.995"))
    held = position(seeded, "alpha", **SWAP)
    # gross: 10 contracts x 0.01 BTC x (60100 - 60000) = 10
    assert (held["quantity"], held["realized_pnl_gross"], held["fees_paid"], held["realized_pnl"]) == (
        D("0"), D("10"), D("3.005"), D("6.995"),
    )  # fmt: skip
    assert seeded.execute(
        "select position_delta from trading.trades where trade_id = %s", [trade_id]
    ).fetchone() == (D("-10"),)
    assert invariants(seeded) == []


def test_a_base_asset_fee_on_spot_is_refused_since_it_changes_the_quantity_received(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100", exchange_trade_id="BN-3", executed_at=AT)
    error = expect_refusal(
        seeded,
        "22S09",
        "a fee in BTC, the base asset of spot instrument BTCUSDT, cannot be set after the fill",
        lambda: set_fee(seeded, order_id, "BN-3", "0.001", fee_currency="BTC"),
    )
    assert error.diag.message_detail == (
        "It changes the quantity the fill added to the position, which later fills were applied to."
    )
    assert position(seeded, "alpha", "binance", "BTCUSDT")["quantity"] == D("1")
    assert invariants(seeded) == []


def test_the_same_fee_again_returns_the_trade_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-3", executed_at=AT)
    set_fee(seeded, order_id, "CB-3", "0.0010", fee_currency="BNB", fee_quote=D("0.6"))
    before = counts(seeded)

    # the same amount and currency (as record_fill compares a redelivery: not fee_quote)
    assert set_fee(seeded, order_id, "CB-3", "0.001", fee_currency="bnb", fee_quote=D("0.6")) == trade_id
    assert set_fee(seeded, order_id, "CB-3", "0.001", fee_currency="BNB") == trade_id

    assert counts(seeded) == before
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("0.6")
    assert invariants(seeded) == []


def test_a_zero_fee_set_on_a_fill_without_one_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-4", executed_at=AT)
    before = counts(seeded)
    assert set_fee(seeded, order_id, "CB-4", "0", fee_currency="BNB") == trade_id
    assert counts(seeded) == before
    # and a fee may still be set afterwards
    set_fee(seeded, order_id, "CB-4", "0.1")
    assert trade_fee(seeded, trade_id)[:3] == (D("0.1"), "USDT", D("0.1"))


def test_another_fee_once_one_is_set_is_a_conflict_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-5", executed_at=AT)
    set_fee(seeded, order_id, "CB-5", "0.1")
    error = expect_refusal(
        seeded,
        "23S06",
        f'trade {trade_id} (exchange trade id "CB-5") already has a fee of 0.1 USDT',
        lambda: set_fee(seeded, order_id, "CB-5", "0.2"),
    )
    assert error.diag.message_detail == "stored: fee 0.1 USDT; given: fee 0.2 USDT"
    # a fee recorded with the fill stands the same way
    other = place(seeded, "buy", "1", "100")
    fill(seeded, other, "1", "100", exchange_trade_id="CB-6", fee=D("0.1"))
    expect_refusal(
        seeded,
        "23S06",
        f'trade {trade_id + 1} (exchange trade id "CB-6") already has a fee of 0.1 USDT',
        lambda: set_fee(seeded, other, "CB-6", "0.1", fee_currency="BNB", fee_quote=D("0.1")),
    )
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("0.2")
    assert invariants(seeded) == []


def test_the_fill_redelivered_with_its_fee_after_the_fee_was_set_is_the_same_fill(seeded):
    # the REST reconciliation's record_fill of a fill whose fee the websocket's match lacked
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-7", executed_at=AT)
    set_fee(seeded, order_id, "CB-7", "0.1")
    before = counts(seeded)
    assert (
        fill(seeded, order_id, "1", "100", exchange_trade_id="CB-7", fee=D("0.1"), executed_at=AT) == trade_id
    )
    assert counts(seeded) == before


def test_the_rollups_and_pnl_summary_agree_with_the_trades_after_a_fee_is_set(seeded):
    buy = place(seeded, "buy", "2", "100")
    fill(seeded, buy, "2", "100", exchange_trade_id="CB-8", executed_at=AT)
    sell = place(seeded, "sell", "1", "130")
    fill(seeded, sell, "1", "130", exchange_trade_id="CB-9", executed_at=AT + timedelta(hours=2))
    set_fee(seeded, buy, "CB-8", "0.2")
    set_fee(seeded, sell, "CB-9", "0.13")

    # the whole day (the daily rollup), whole hours (the hourly rollup) and a part of an hour
    # (the trades themselves): fees 0.33, gross 30, net 29.67 whichever is read
    day = AT.replace(hour=0, minute=0)
    periods = {
        "day": (day, day + timedelta(days=1)),
        "hours": (RECENT_NOON, RECENT_NOON + timedelta(hours=3)),
        "minutes": (AT - timedelta(minutes=1), AT + timedelta(hours=2, minutes=1)),
    }
    for name, (since, until) in periods.items():
        (summary,) = rows(
            seeded, "trading.pnl_summary", strategy="alpha", since=since, until=until, group_by="total"
        )
        assert (summary["trades"], summary["fees"], summary["realized_pnl_gross"], summary["realized_pnl"]) == (
            2, D("0.33"), D("30"), D("29.67"),
        ), name  # fmt: skip
    assert rollup_fees(seeded) == (
        [(AT.date(), 2, D("0.33"), D("29.67"))],
        [(RECENT_NOON, 1, D("0.2")), (RECENT_NOON + timedelta(hours=2), 1, D("0.13"))],
    )
    assert position(seeded, "alpha", "binance", "BTCUSDT")["realized_pnl"] == D("29.67")
    assert invariants(seeded) == []


def test_the_audit_log_shows_the_fee_set_and_who_set_it(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-10", executed_at=AT)
    seeded.execute("set spreadedge.actor = 'fee-reconciler'")

    set_fee(seeded, order_id, "CB-10", "0.1")

    history = rows(
        seeded,
        "audit.history",
        table_name="trading.trades",
        key=psycopg.types.json.Jsonb({"trade_id": trade_id}),
    )
    assert [(h["operation"], h["actor"]) for h in history] == [("INSERT", None), ("UPDATE", "fee-reconciler")]
    changed = {k: (history[1]["old_row"][k], history[1]["new_row"][k]) for k in history[1]["new_row"]
               if history[1]["old_row"][k] != history[1]["new_row"][k]}  # fmt: skip
    assert changed == {"fee": (0, 0.1), "fee_quote": (0, 0.1), "realized_pnl": (0, -0.1)}
    (position_change,) = seeded.execute(
        "select actor, (old_row ->> 'fees_paid')::numeric, (new_row ->> 'fees_paid')::numeric from audit.log"
        " where table_name = 'trading.positions' and operation = 'UPDATE' and actor = 'fee-reconciler'"
    ).fetchall()
    assert position_change == ("fee-reconciler", D("0"), D("0.1"))
    assert invariants(seeded) == []


def test_a_fee_for_a_trade_the_order_does_not_have_is_an_unknown_order_error(seeded):
    order_id = place(seeded, "buy", "1", "100")
    other = place(seeded, "buy", "1", "100")
    fill(seeded, other, "1", "100", exchange_trade_id="CB-11")
    hint = "A fee is set on a fill trading.record_fill recorded for the order; check the order id and the exchange trade id."
    for exchange_trade_id in ("CB-11", "no-such-trade"):  # another order's trade, and none
        error = expect_refusal(
            seeded,
            "23S04",
            f'order {order_id} has no trade with exchange trade id "{exchange_trade_id}"',
            lambda e=exchange_trade_id: set_fee(seeded, order_id, e, "0.1"),
        )
        assert error.diag.message_hint == hint
    expect_refusal(
        seeded, "23S04", "order 999999 does not exist", lambda: set_fee(seeded, 999999, "CB-11", "0.1")
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"fee": None}, "fee must be a finite number, got null"),
        ({"fee": D("NaN")}, "fee must be a finite number, got NaN"),
        ({"fee": D("Infinity")}, "fee must be a finite number, got Infinity"),
        ({"fee": D("1e100000")}, "fee must be below 10^100000 in magnitude, got 1.000e+100000"),
        ({"fee": D("1"), "fee_currency": "B N B"}, 'fee currency must be an alphanumeric asset code of at most 32 characters, got "B N B"'),
        ({"fee": D("1"), "fee_currency": "BNB", "fee_quote": D("-1")}, "fee_quote -1 and the fee 1 BNB differ in sign"),
        ({"fee": D("1"), "exchange_trade_id": ""}, "exchange_trade_id must be 1 to 128 characters, got 0"),
    ],
)  # fmt: skip
def test_a_malformed_fee_is_an_invalid_argument_and_writes_nothing(seeded, arguments, message):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100", exchange_trade_id="CB-12")
    given = {"order_id": order_id, "exchange_trade_id": "CB-12", **arguments}
    expect_refusal(seeded, "22S09", message, lambda: call(seeded, "trading.record_fill_fee", **given))


def test_a_trade_stays_immutable_but_for_setting_a_missing_fee(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-13")
    refused = [
        "update trading.trades set price = 1",
        "update trading.trades set fee = 1, price = 1",  # a fee with another change
        "delete from trading.trades",
    ]
    for statement in refused:
        with pytest.raises(psycopg.Error) as caught:
            seeded.execute(statement)
        assert caught.value.sqlstate == "55S02", statement
    # the trigger lets the fee columns alone change on a fill without a fee (record_fill_fee
    # applies the rest in its transaction)
    with seeded.transaction(force_rollback=True):
        seeded.execute("update trading.trades set fee = 1, fee_quote = 1")
    set_fee(seeded, order_id, "CB-13", "0.1")
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute("update trading.trades set fee = 0.2, fee_quote = 0.2")  # a fee once set stays
    assert caught.value.sqlstate == "55S02"
    assert trade_fee(seeded, trade_id)[:3] == (D("0.1"), "USDT", D("0.1"))


def test_a_user_without_orders_write_or_outside_the_strategy_cannot_set_a_fee(desks, auth_db):
    alice, bob = desks["alice"], desks["bob"]
    viewer = make_user(auth_db, "vera", "viewer")
    order_id = place(auth_db, "buy", "1", "100", strategy="alice-arb")
    fill(auth_db, order_id, "1", "100", exchange_trade_id="CB-14")
    with acting_as(auth_db, "spreadedge_app", viewer), pytest.raises(psycopg.Error) as caught:
        set_fee(auth_db, order_id, "CB-14", "0.1")
    assert caught.value.sqlstate == "42S01"
    with acting_as(auth_db, "spreadedge_app", bob), pytest.raises(psycopg.Error) as caught:
        set_fee(auth_db, order_id, "CB-14", "0.1")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S04",
        f"order {order_id} does not exist",
    )
    with acting_as(auth_db, "spreadedge_app", alice):
        set_fee(auth_db, order_id, "CB-14", "0.1")
    assert position(auth_db, "alice-arb", "binance", "BTCUSDT")["fees_paid"] == D("0.1")


def test_two_sessions_setting_different_fees_take_turns_and_the_second_is_a_conflict(seeded, db_url):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-15")
    _, second = race(
        seeded,
        db_url,
        lambda conn: set_fee(conn, order_id, "CB-15", "0.1"),
        lambda conn: set_fee(conn, order_id, "CB-15", "0.2"),
    )
    assert isinstance(second, psycopg.Error)
    assert second.sqlstate == "23S06"
    assert trade_fee(seeded, trade_id)[:3] == (D("0.1"), "USDT", D("0.1"))
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("0.1")
    assert invariants(seeded) == []


def test_the_order_manager_sets_a_fill_s_fee(config: ManagerConfig, seeded) -> None:
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="CB-16")

    async def run() -> tuple[int, int]:
        async with PersistentOrderManager(config) as manager:
            first = await manager.record_fill_fee(order_id, "CB-16", D("0.1"))
            return first, await manager.record_fill_fee(order_id, "CB-16", D("0.1"), fee_currency="USDT")

    assert asyncio.run(run()) == (trade_id, trade_id)
    assert position(seeded, "alpha", "binance", "BTCUSDT")["fees_paid"] == D("0.1")
    assert seeded.execute(
        "select actor from audit.log where table_name = 'trading.trades' and operation = 'UPDATE'"
    ).fetchall() == [("test-manager",)]
