"""Fills the exchange makes (trading.record_exchange_fill): a liquidation, an ADL, a future's
settlement and a close at delisting are recorded whatever the strategy's risk limits, kill switch
and the instrument's rules say, through the fill path every fill takes (position, PnL, fees,
rollups, audit), once per exchange trade id, and marked in the order history with their kind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from auth_helpers import acting_as, make_user
from ops_helpers import cli
from spreadedge.managers import PersistentOrderManager
from trading_helpers import call, counts, expect_refusal, fill, order, place, position, race

PERP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}  # seeded: tick 0.1, lot 1, multiplier 0.01


def exchange_fill(
    conn: psycopg.Connection, side: str, quantity: str, price: str, kind: str, **kwargs: Any
) -> int:
    kwargs.setdefault("strategy", "alpha")
    for key, value in PERP.items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("exchange_trade_id", f"{kind}-1")
    return call(
        conn,
        "trading.record_exchange_fill",
        side=side,
        quantity=D(quantity),
        price=D(price),
        kind=kind,
        **kwargs,
    )


def open_position(conn: psycopg.Connection, side: str, quantity: str, price: str, **kwargs: Any) -> int:
    """A placed order of alpha on the okx perpetual (unless kwargs say otherwise), filled whole."""
    fee = kwargs.pop("fee", D("0"))
    order_id = place(conn, side, quantity, price, **{**PERP, **kwargs})
    fill(conn, order_id, quantity, price, fee=fee)
    return order_id


def events(conn: psycopg.Connection, order_id: int) -> list[tuple]:
    return conn.execute(
        "select from_status::text, to_status::text, trade_id is not null, reason from trading.order_events"
        " where order_id = %s order by event_id",
        [order_id],
    ).fetchall()


def kind_of(conn: psycopg.Connection, order_id: int) -> str | None:
    """The order's exchange_initiated, as trading.order_history shows it."""
    return conn.execute(
        "select exchange_initiated::text from trading.order_history where order_id = %s", [order_id]
    ).fetchone()[0]


def kind_of_key(conn: psycopg.Connection, order_id: int) -> str | None:
    """The kind trading.exchange_initiated_orders keeps for an order (also once cleanup removed it)."""
    row = conn.execute(
        "select kind::text from trading.exchange_initiated_orders where order_id = %s", [order_id]
    ).fetchone()
    return None if row is None else row[0]


def risk_events(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "select order_id, limit_kind::text, limit_id, observed_value, reason from monitor.risk_events"
        " order by risk_event_id"
    ).fetchall()


def trade_row(conn: psycopg.Connection, trade_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("select * from trading.trades where trade_id = %s", [trade_id]).fetchone()


def test_a_liquidation_closes_a_long_perpetual_while_the_kill_switch_is_on(seeded):
    open_position(seeded, "buy", "10", "60000", fee=D("0.3"))
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True, reason="margin call")

    # 55000.05 is off the 0.1 tick: the exchange's price is a fact
    trade_id = exchange_fill(
        seeded, "sell", "10", "55000.05", "liquidation", fee=D("2.75"), fee_currency="USDT"
    )

    held = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    # 10 contracts x 0.01 x (55000.05 - 60000) = -499.995; fees 0.3 + 2.75
    assert (held["quantity"], held["realized_pnl_gross"], held["fees_paid"], held["realized_pnl"]) == (
        D("0"),
        D("-499.995"),
        D("3.05"),
        D("-503.045"),
    )
    trade = trade_row(seeded, trade_id)
    assert (trade["realized_pnl_gross"], trade["fee_quote"], trade["realized_pnl"], trade["is_late"]) == (
        D("-499.995"),
        D("2.75"),
        D("-502.745"),
        False,
    )
    liquidation = order(seeded, trade["order_id"])
    assert {
        key: liquidation[key]
        for key in (
            "order_type",
            "quantity",
            "price",
            "status",
            "filled_quantity",
            "avg_fill_price",
            "client_order_id",
            "status_reason",
        )
    } == {
        "order_type": "market",
        "quantity": D("10"),
        "price": None,
        "status": "filled",
        "filled_quantity": D("10"),
        "avg_fill_price": D("55000.05"),
        "client_order_id": None,
        "status_reason": None,
    }
    assert kind_of(seeded, trade["order_id"]) == "liquidation"
    assert events(seeded, trade["order_id"]) == [
        (None, "new", False, "exchange-initiated: liquidation"),
        ("new", "filled", True, None),
    ]
    # the kill switch still rejects the strategy's own orders
    rejected = place(seeded, "buy", "1", "55000", **PERP)
    assert order(seeded, rejected)["status"] == "rejected"


def test_a_liquidation_is_a_risk_event_notified_on_the_strategys_limit_channels(seeded):
    open_position(seeded, "buy", "10", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    call(seeded, "monitor.set_risk_limit", strategy="alpha", exchange="okx", channels=["slack", "email"])
    call(seeded, "monitor.set_risk_limit", strategy="alpha", exchange="binance", channels=["discord"])

    trade_id = exchange_fill(seeded, "sell", "10", "59000", "liquidation", fee=D("1"))

    order_id = trade_row(seeded, trade_id)["order_id"]
    reason = f"liquidation by okx: sell 10 BTC-USDT-SWAP @ 59000 (trade {trade_id}), realized -101 USDT"
    assert risk_events(seeded)[1:] == [(order_id, "exchange_fill", None, D("-101"), reason)]
    # the strategy-wide limit's email and the okx limit's slack and email, each once; not binance's
    notified = seeded.execute(
        "select channel::text, subject, payload ->> 'exchange_fill_kind', (payload ->> 'order_id')::bigint"
        " from monitor.notifications where risk_event_id = (select max(risk_event_id) from monitor.risk_events)"
        " order by channel"
    ).fetchall()
    subject = f"[RISK] alpha: {reason}"
    assert notified == [
        ("email", subject, "liquidation", order_id),
        ("slack", subject, "liquidation", order_id),
    ]


def test_an_adl_partially_closes_a_short_position_at_its_entry(seeded):
    open_position(seeded, "sell", "20", "60000")

    exchange_fill(seeded, "buy", "5", "58000", "adl", exchange_trade_id="ADL-7")

    held = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    # 5 x 0.01 x (60000 - 58000) = 100 realized; 15 short stay at 60000
    assert (held["quantity"], held["avg_entry_price"], held["realized_pnl_gross"], held["realized_pnl"]) == (
        D("-15"),
        D("60000"),
        D("100"),
        D("100"),
    )
    assert [row[1:3] for row in risk_events(seeded)] == [("exchange_fill", None)]


def test_a_dated_future_settles_at_expiry_without_a_risk_event(seeded):
    call(
        seeded,
        "ref.upsert_instrument",
        exchange="okx",
        symbol="BTC-USDT-261225",
        base_asset="BTC",
        quote_asset="USDT",
        market_type="futures",
        tick_size=D("0.1"),
        lot_size=D("1"),
        min_notional=D("0"),
        multiplier=D("0.01"),
    )
    open_position(seeded, "buy", "3", "60000", symbol="BTC-USDT-261225")

    trade_id = exchange_fill(
        seeded, "sell", "3", "61234.56", "settlement", symbol="BTC-USDT-261225", fee=D("0.1")
    )

    held = position(seeded, "alpha", "okx", "BTC-USDT-261225")
    # 3 x 0.01 x (61234.56 - 60000) = 37.0368, less the 0.1 fee
    assert (held["quantity"], held["realized_pnl_gross"], held["realized_pnl"]) == (
        D("0"),
        D("37.0368"),
        D("36.9368"),
    )
    assert kind_of(seeded, trade_row(seeded, trade_id)["order_id"]) == "settlement"
    assert risk_events(seeded) == []


def test_a_delisted_instrument_of_a_retired_strategy_is_closed_below_its_minimum_notional(seeded):
    # binance BNBUSDT: tick 0.1, minimum notional 5
    order_id = place(seeded, "buy", "2.5", "600", symbol="BNBUSDT")
    fill(seeded, order_id, "2.5", "600")
    seeded.execute("update ref.instruments set is_active = false where symbol = 'BNBUSDT'")
    seeded.execute("update trading.strategies set is_active = false where name = 'alpha'")

    # 2.5 x 1.23 = 3.075 notional, below the minimum 5, at a price off the tick
    trade_id = exchange_fill(
        seeded, "sell", "2.5", "1.23", "delisting", exchange="binance", symbol="BNBUSDT", fee=D("0.01")
    )

    held = position(seeded, "alpha", "binance", "BNBUSDT")
    # 2.5 x (1.23 - 600) = -1496.925, less the 0.01 fee
    assert (held["quantity"], held["realized_pnl_gross"], held["realized_pnl"]) == (
        D("0"),
        D("-1496.925"),
        D("-1496.935"),
    )
    reason = f"delisting by binance: sell 2.5 BNBUSDT @ 1.23 (trade {trade_id}), realized -1496.935 USDT"
    assert [row[1:] for row in risk_events(seeded)] == [("exchange_fill", None, D("-1496.935"), reason)]
    # no limit, no channel: recorded, not notified
    assert seeded.execute("select count(*) from monitor.notifications").fetchone() == (0,)


def test_risk_limits_are_not_applied_to_an_exchange_fill(seeded):
    open_position(seeded, "buy", "10", "60000")
    call(
        seeded,
        "monitor.set_risk_limit",
        strategy="alpha",
        max_order_notional=D("1"),
        max_position_notional=D("1"),
        max_open_orders=1,
        max_daily_loss=D("1"),
    )
    # a loss beyond max_daily_loss, an order notional 5,000 times max_order_notional
    exchange_fill(seeded, "sell", "10", "50000", "liquidation", exchange_trade_id="L-1")
    # and a flip the strategy could never place: 10 short now
    exchange_fill(seeded, "sell", "10", "50000", "adl", exchange_trade_id="A-1")

    held = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    assert (held["quantity"], held["realized_pnl"]) == (D("-10"), D("-1000"))
    assert seeded.execute("select count(*) from trading.orders where status = 'rejected'").fetchone() == (0,)
    assert [row[1] for row in risk_events(seeded)] == ["exchange_fill", "exchange_fill"]


def test_the_same_exchange_fill_again_returns_its_trade_and_writes_nothing(seeded):
    open_position(seeded, "buy", "10", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    first = exchange_fill(
        seeded,
        "sell",
        "10",
        "55000",
        "liquidation",
        fee=D("2.5"),
        fee_currency="usdt",
        exchange_order_id="F-1",
    )
    before = counts(seeded)
    outbox = seeded.execute("select count(*) from monitor.notifications").fetchone()

    again = exchange_fill(
        seeded,
        "sell",
        "10",
        "55000.0",
        "liquidation",
        fee=D("2.50"),
        fee_currency="USDT",
        exchange_order_id="F-1",
    )

    assert again == first
    assert counts(seeded) == before
    assert seeded.execute("select count(*) from monitor.notifications").fetchone() == outbox
    assert len(risk_events(seeded)) == 2  # the kill switch and the liquidation, once


def test_an_exchange_fill_again_with_another_price_or_kind_is_a_conflict(seeded):
    open_position(seeded, "buy", "10", "60000")
    trade_id = exchange_fill(seeded, "sell", "10", "55000", "liquidation")
    order_id = trade_row(seeded, trade_id)["order_id"]
    message = (
        f'exchange trade id "liquidation-1" is already recorded as trade {trade_id} with different values'
    )

    error = expect_refusal(
        seeded, "23S06", message, lambda: exchange_fill(seeded, "sell", "10", "55000.1", "liquidation")
    )
    assert error.diag.message_detail == (
        f"stored: alpha liquidation sell 10 @ 55000, fee 0 USDT (order {order_id});"
        " retried: alpha liquidation sell 10 @ 55000.1, fee 0 USDT"
    )
    error = expect_refusal(
        seeded,
        "23S06",
        message,
        lambda: exchange_fill(seeded, "sell", "10", "55000", "adl", exchange_trade_id="liquidation-1"),
    )
    assert error.diag.message_detail == (
        f"stored: alpha liquidation sell 10 @ 55000, fee 0 USDT (order {order_id});"
        " retried: alpha adl sell 10 @ 55000, fee 0 USDT"
    )


def test_the_trade_id_of_a_placed_orders_fill_is_refused_as_an_exchange_fill(seeded):
    order_id = place(seeded, "buy", "10", "60000", **PERP)
    trade_id = fill(seeded, order_id, "10", "60000", exchange_trade_id="T-9")

    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "T-9" is already recorded as trade {trade_id} with different values',
        lambda: exchange_fill(seeded, "buy", "10", "60000", "liquidation", exchange_trade_id="T-9"),
    )
    assert error.diag.message_detail == (
        f"stored: alpha placed order: buy 10 @ 60000, fee 0 USDT (order {order_id});"
        " retried: alpha liquidation buy 10 @ 60000, fee 0 USDT"
    )


def test_fills_of_one_exchange_order_are_one_order_notified_once(seeded):
    open_position(seeded, "buy", "10", "60000")

    first = exchange_fill(
        seeded, "sell", "4", "59000", "liquidation", exchange_order_id="LQ-5", exchange_trade_id="a"
    )
    second = exchange_fill(
        seeded, "sell", "6", "58000", "liquidation", exchange_order_id="LQ-5", exchange_trade_id="b"
    )

    order_id = trade_row(seeded, first)["order_id"]
    assert trade_row(seeded, second)["order_id"] == order_id
    stored = order(seeded, order_id)
    # (4 x 59000 + 6 x 58000) / 10 = 58400
    assert (stored["quantity"], stored["filled_quantity"], stored["avg_fill_price"], stored["status"]) == (
        D("10"),
        D("10"),
        D("58400"),
        "filled",
    )
    # 0.04 x -1000 + 0.06 x -2000 = -160
    assert position(seeded, "alpha", "okx", "BTC-USDT-SWAP")["realized_pnl"] == D("-160")
    assert [row[0] for row in risk_events(seeded)] == [order_id]
    assert seeded.execute("select * from ops.check_invariants()").fetchall() == []


def test_an_exchange_order_id_another_order_has_is_refused(seeded):
    order_id = open_position(seeded, "buy", "10", "60000")
    call(seeded, "trading.acknowledge_order", order_id=order_id, exchange_order_id="OKX-1")

    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange order id "OKX-1" is already recorded for order {order_id}',
        lambda: exchange_fill(seeded, "sell", "10", "59000", "liquidation", exchange_order_id="OKX-1"),
    )
    assert error.diag.message_detail == (
        f"order {order_id} is an order the strategy placed; the fill is a liquidation sell of strategy alpha"
    )


def test_the_order_history_shows_the_kind_of_an_exchange_initiated_order(seeded):
    placed = open_position(seeded, "buy", "10", "60000")
    trade_id = exchange_fill(seeded, "sell", "10", "55000", "liquidation", exchange_order_id="LQ-1")
    liquidation = trade_row(seeded, trade_id)["order_id"]

    page = call(seeded, "trading.order_history_page", strategy="alpha")
    assert [
        (item["order_id"], item["exchange_initiated"], item["exchange_order_id"]) for item in page["items"]
    ] == [
        (liquidation, "liquidation", "LQ-1"),
        (placed, None, None),
    ]
    detail = call(seeded, "trading.order_detail", order_id=liquidation)
    assert [(e["from_status"], e["to_status"], e["reason"]) for e in detail["events"]] == [
        (None, "new", "exchange-initiated: liquidation"),
        ("new", "filled", None),
    ]
    assert seeded.execute(
        "select exchange_initiated::text from trading.order_history where order_id = %s", [liquidation]
    ).fetchone() == ("liquidation",)


def test_exchange_fills_keep_the_invariants_and_write_audit_rows(seeded):
    open_position(seeded, "buy", "10", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)
    trade_id = exchange_fill(seeded, "sell", "6", "55000", "liquidation", fee=D("1.5"))
    exchange_fill(seeded, "sell", "4", "56000", "adl")
    order_id = trade_row(seeded, trade_id)["order_id"]

    assert seeded.execute("select * from ops.check_invariants()").fetchall() == []
    audited = seeded.execute(
        "select table_name, operation, new_row ->> 'kind' from audit.log"
        " where (table_name in ('trading.orders', 'trading.exchange_initiated_orders')"
        "        and (new_row ->> 'order_id')::bigint = %s)"
        "    or (table_name = 'trading.trades' and (new_row ->> 'trade_id')::bigint = %s)"
        " order by audit_id",
        [order_id, trade_id],
    ).fetchall()
    assert audited == [
        ("trading.orders", "INSERT", None),
        ("trading.exchange_initiated_orders", "INSERT", "liquidation"),
        ("trading.trades", "INSERT", None),
        ("trading.orders", "UPDATE", None),
    ]
    # the liquidation left 4 of the 10 contracts, the ADL none
    assert seeded.execute(
        "select new_row ->> 'quantity' from audit.log where table_name = 'trading.positions'"
        " and operation = 'UPDATE' order by audit_id"
    ).fetchall()[-2:] == [("4",), ("0",)]
    # the daily rollup has both fills: 0.06 x -5000 + 0.04 x -4000 = -460 gross, 1.5 fees
    assert seeded.execute(
        "select sum(trades), sum(realized_pnl_gross), sum(fees) from trading.daily_pnl d"
        " join ref.instruments i using (instrument_id) where i.symbol = 'BTC-USDT-SWAP'"
    ).fetchone() == (3, D("-460"), D("1.5"))


@pytest.mark.parametrize(
    ("change", "sqlstate", "message"),
    [
        (
            {"kind": "margin_call"},
            "22S09",
            'kind must be liquidation, adl, settlement or delisting, got "margin_call"',
        ),
        ({"side": "short"}, "22S06", 'side must be buy or sell, got "short"'),
        ({"quantity": D("0")}, "22S01", "fill quantity must be positive and finite, got 0"),
        ({"price": D("NaN")}, "22S02", "fill price must be positive and finite, got NaN"),
        ({"strategy": "nobody"}, "23S03", 'strategy "nobody" does not exist'),
        ({"exchange_trade_id": ""}, "22S09", "exchange_trade_id must be 1 to 128 characters, got 0"),
    ],
)
def test_an_exchange_fill_is_still_checked_for_what_no_exchange_reports(seeded, change, sqlstate, message):
    arguments = {
        "strategy": "alpha",
        **PERP,
        "side": "sell",
        "quantity": D("1"),
        "price": D("100"),
        "kind": "liquidation",
        "exchange_trade_id": "X-1",
        **change,
    }
    expect_refusal(
        seeded, sqlstate, message, lambda: call(seeded, "trading.record_exchange_fill", **arguments)
    )


def test_an_exchange_fill_needs_orders_write_and_a_strategy_the_user_sees(desks, auth_db):
    auth_db.execute(
        "insert into auth.roles (role_name, description) values ('guest', 'No permission at all.')"
    )
    guest = make_user(auth_db, "gus", "guest")
    with acting_as(auth_db, "spreadedge_app", guest), pytest.raises(psycopg.Error) as caught:
        exchange_fill(auth_db, "sell", "1", "59000", "liquidation", strategy="bob-arb")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "42S01",
        f"user {guest} lacks the permission orders:write",
    )
    with acting_as(auth_db, "spreadedge_app", desks["alice"]), pytest.raises(psycopg.Error) as caught:
        exchange_fill(auth_db, "sell", "1", "59000", "liquidation", strategy="bob-arb")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "23S03",
        'strategy "bob-arb" does not exist',
    )
    with acting_as(auth_db, "spreadedge_app", desks["bob"]):
        trade_id = exchange_fill(auth_db, "sell", "1", "59000", "liquidation", strategy="bob-arb")
    assert (
        trade_row(auth_db, trade_id)["strategy_id"]
        == auth_db.execute("select strategy_id from trading.strategies where name = 'bob-arb'").fetchone()[0]
    )


def test_a_liquidation_redelivered_after_cleanup_removed_its_order_returns_its_trade(seeded, db_url):
    long_ago = datetime.now(UTC) - timedelta(days=60)
    bought = place(seeded, "buy", "10", "60000", placed_at=long_ago, **PERP)
    fill(seeded, bought, "10", "60000", executed_at=long_ago)
    trade_id = exchange_fill(seeded, "sell", "10", "55000", "liquidation", executed_at=long_ago)
    order_id = trade_row(seeded, trade_id)["order_id"]
    seeded.execute("update trading.orders set updated_at = created_at")
    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)
    assert result.exit_code == 0, result.output
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (0,)

    again = exchange_fill(seeded, "sell", "10", "55000", "liquidation", executed_at=long_ago)

    assert again == trade_id
    assert kind_of_key(seeded, order_id) == "liquidation"
    assert seeded.execute("select * from ops.check_invariants()").fetchall() == []


def test_two_deliveries_of_one_liquidation_at_once_record_one_trade(seeded, db_url):
    open_position(seeded, "buy", "10", "60000")

    def deliver(conn: psycopg.Connection) -> int:
        return exchange_fill(conn, "sell", "10", "55000", "liquidation")

    first, second = race(seeded, db_url, deliver, deliver, wait_event="advisory")

    assert second == first
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (2,)
    assert position(seeded, "alpha", "okx", "BTC-USDT-SWAP")["quantity"] == D("0")


def test_the_order_manager_records_a_liquidation_once(config, seeded):
    open_position(seeded, "buy", "10", "60000")
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)

    async def run() -> tuple[int, int]:
        async with PersistentOrderManager(config) as manager:
            arguments = dict(
                strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP", side="sell", quantity=D("10"),
                price=D("55000"), kind="liquidation", exchange_trade_id="LIQ-7", fee=D("2.75"),
            )  # fmt: skip
            return await manager.record_exchange_fill(**arguments), await manager.record_exchange_fill(
                **arguments
            )

    first, again = asyncio.run(run())
    assert first == again
    held = position(seeded, "alpha", "okx", "BTC-USDT-SWAP")
    # 10 x 0.01 x (55000 - 60000) = -500, less the fee 2.75
    assert (held["quantity"], held["realized_pnl"]) == (D("0"), D("-502.75"))
    assert kind_of(seeded, trade_row(seeded, first)["order_id"]) == "liquidation"
    assert seeded.execute(
        "select distinct actor from audit.log where table_name = 'trading.trades' and operation = 'INSERT'"
        " and (new_row ->> 'trade_id')::bigint = %s",
        [first],
    ).fetchall() == [("test-manager",)]
