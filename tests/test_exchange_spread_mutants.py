"""Rules of exchange-initiated fills and spread trades that a plausible slip in their SQL broke
without any other test noticing: each test here kills one mutant of the mutation run of
38_trading_exchange_fills.sql and 48_trading_spread_trades.sql.

The run: 60 mutants (28 of 38_trading_exchange_fills.sql, 32 of 48_trading_spread_trades.sql).
Of record_exchange_fill and its helpers, 5 were caught by the existing tests and 23 survived: 2
equivalent (the new order's updated_at at now() instead of executed_at, which record_fill sets to
now() in the same transaction anyway; a risk limit's exchange condition widened to any limit of an
instrument, which the instrument condition then excludes unless it is this instrument, on this
exchange) and 21 holes, each killed by a test below (one test kills both the payload's trade id
and its observed value). Of the spread trade functions 20 were caught (the property test of
tests/test_spread_money_hunt.py catches most of spread_trade_pnl's) and 12 survived: 2 equivalent
(the period filtered on the buy leg's created_at, which place_order sets to opened_at; the legs'
contract sizes compared on perpetuals only, as spot and margin instruments always have 1), 8 holes
killed below (one test kills both dropped "other leg not rejected" conditions), and 2 left open:
uneven_trades counted by residual_exposure instead of residual_quantity (they differ only for a
residual whose value rounds to 0 at 12 decimals), and the captured spread's value per unit at 16
instead of 24 decimals (a 3,000,000 BTC leg matched in part did not tell them apart).

Every expected value is worked out by hand in its comment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest

from auth_helpers import acting_as
from market_helpers import RECENT_NOON
from ops_helpers import cli
from test_exchange_initiated_fills import PERP, open_position
from test_exchange_initiated_fills import exchange_fill as record_exchange_fill
from trading_helpers import (
    call,
    expect_refusal,
    fill,
    legs,
    list_okx_btc_spot,
    list_perpetual,
    list_spot,
    open_spread,
    order,
    place,
    rows,
)

T0 = RECENT_NOON


def exchange_fill(
    conn: psycopg.Connection, side: str, quantity: str, price: str, kind: str = "liquidation", **kwargs: Any
) -> int:
    """An exchange fill of alpha on okx's perpetual, a liquidation "L-1" unless kwargs say otherwise."""
    return record_exchange_fill(conn, side, quantity, price, kind, **{"exchange_trade_id": "L-1", **kwargs})


def order_of(conn: psycopg.Connection, trade_id: int) -> int:
    return conn.execute("select order_id from trading.trades where trade_id = %s", [trade_id]).fetchone()[0]


# -- an exchange fill delivered again --------------------------------------------------------------


def test_an_exchange_fill_again_under_another_exchange_order_id_is_a_conflict(seeded):
    open_position(seeded, "buy", "10", "60000")
    trade_id = exchange_fill(seeded, "sell", "10", "55000", exchange_order_id="F-1")
    # the same instrument, side, trade id, kind, quantity and price, but another exchange order:
    # not the fill recorded, so not its trade id back
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "L-1" is already recorded as trade {trade_id} with different values',
        lambda: exchange_fill(seeded, "sell", "10", "55000", exchange_order_id="F-2"),
    )
    assert error.diag.message_detail == (
        f"stored: alpha liquidation sell 10 @ 55000, fee 0 USDT, exchange order F-1 (order"
        f" {order_of(seeded, trade_id)}); retried: alpha liquidation sell 10 @ 55000, fee 0 USDT,"
        " exchange order F-2"
    )


# -- the notification of an exchange fill --------------------------------------------------------


def test_a_liquidations_notification_carries_its_trade_and_its_realized_pnl_net_of_its_fee(seeded):
    open_position(seeded, "buy", "10", "60000")
    place(seeded, "buy", "1", "50000", **PERP)  # never filled: order ids run ahead of trade ids
    call(seeded, "monitor.set_risk_limit", strategy="alpha", channels=["slack"])
    trade_id = exchange_fill(seeded, "sell", "10", "59000", fee=D("1"))
    # trade 2 of order 3; 10 x 0.01 x (59000 - 60000) = -100 gross, less the fee 1: -101
    assert (trade_id, order_of(seeded, trade_id)) == (2, 3)
    assert seeded.execute(
        "select (payload ->> 'trade_id')::bigint, (payload ->> 'order_id')::bigint, payload ->> 'instrument',"
        " (payload ->> 'observed_value')::numeric from monitor.notifications"
    ).fetchall() == [(2, 3, "okx/BTC-USDT-SWAP", D("-101"))]


def test_an_exchange_trade_id_another_user_recorded_is_refused_without_describing_their_fill(desks, auth_db):
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        exchange_fill(auth_db, "sell", "1", "59000", strategy="alice-arb")
    # bob's fill of the same instrument, side and trade id: alice's trade must not be named to him
    with acting_as(auth_db, "spreadedge_app", desks["bob"]), pytest.raises(psycopg.Error) as caught:
        exchange_fill(auth_db, "sell", "1", "59000", strategy="bob-arb")
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "23S06",
        'exchange trade id "L-1" is already recorded',
        None,
    )


def test_an_exchange_fill_again_with_an_invalid_fee_currency_is_an_invalid_argument(seeded):
    exchange_fill(seeded, "sell", "1", "59000")
    # a fee of 0 matches any stored fee, so only the currency's own check tells this retry apart
    expect_refusal(
        seeded,
        "22S09",
        'fee currency must be an alphanumeric asset code of at most 32 characters, got "US DT"',
        lambda: exchange_fill(seeded, "sell", "1", "59000", fee_currency="US DT"),
    )


# -- fills of one exchange order -------------------------------------------------------------------


def refused_reuse(conn: psycopg.Connection, first: dict[str, Any], second: dict[str, Any]) -> tuple[int, str]:
    """Record an exchange fill (sell 1 @ 59000, exchange order id "X-1", ``first``'s arguments), then
    another under the same exchange order id (trade id "X-2", ``second``'s), which must be refused
    (23S06, the first fill's order named): that order and the refusal's detail."""
    order_id = order_of(conn, exchange_fill(conn, "sell", "1", "59000", exchange_order_id="X-1", **first))
    error = expect_refusal(
        conn,
        "23S06",
        f'exchange order id "X-1" is already recorded for order {order_id}',
        lambda: exchange_fill(
            conn, "sell", "1", "59000", exchange_trade_id="X-2", exchange_order_id="X-1", **second
        ),
    )
    return order_id, error.diag.message_detail


def test_an_exchange_order_id_of_one_strategy_is_refused_for_another_strategys_fill(seeded):
    # beta's liquidation naming alpha's liquidation order: not another fill of that order
    order_id, detail = refused_reuse(seeded, {}, {"strategy": "beta"})

    assert detail == (
        f"order {order_id} is a liquidation sell of strategy alpha; the fill is a liquidation sell of strategy beta"
    )
    assert seeded.execute(
        "select quantity from trading.orders where order_id = %s", [order_id]
    ).fetchone() == (D("1"),)


def test_an_exchange_order_id_of_a_placed_order_of_the_same_side_is_refused_for_a_liquidation(seeded):
    order_id = place(seeded, "sell", "10", "60000", **PERP)
    call(seeded, "trading.acknowledge_order", order_id=order_id, exchange_order_id="OKX-1")
    # the strategy's own sell, and a liquidation sell naming its exchange order: a placed order
    # has no kind, and is no exchange-initiated order to add fills to
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange order id "OKX-1" is already recorded for order {order_id}',
        lambda: exchange_fill(seeded, "sell", "10", "59000", exchange_order_id="OKX-1"),
    )
    assert error.diag.message_detail == (
        f"order {order_id} is an order the strategy placed; the fill is a liquidation sell of strategy alpha"
    )


def test_an_exchange_order_id_of_a_liquidation_is_refused_for_an_adl(seeded):
    # the same strategy and side, another kind: an ADL is not a fill of the liquidation order
    order_id, detail = refused_reuse(seeded, {}, {"kind": "adl"})

    assert detail == (
        f"order {order_id} is a liquidation sell of strategy alpha; the fill is an adl sell of strategy alpha"
    )


# bug: the detail read "the fill is a adl sell": the article goes with the kind
def test_an_exchange_order_id_of_an_adl_is_refused_for_a_liquidation_naming_an_adl(seeded):
    order_id, detail = refused_reuse(seeded, {"kind": "adl"}, {})

    assert detail == (
        f"order {order_id} is an adl sell of strategy alpha; the fill is a liquidation sell of strategy alpha"
    )


def test_an_exchange_order_id_another_user_recorded_is_refused_without_describing_their_order(desks, auth_db):
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        exchange_fill(auth_db, "sell", "1", "59000", strategy="alice-arb", exchange_order_id="LQ-1")
    # another trade id, so only the exchange order id collides: alice's order is not named to bob
    with acting_as(auth_db, "spreadedge_app", desks["bob"]), pytest.raises(psycopg.Error) as caught:
        exchange_fill(auth_db, "sell", "1", "59000", strategy="bob-arb", exchange_trade_id="L-2",
                      exchange_order_id="LQ-1")  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "23S06",
        'exchange order id "LQ-1" is already recorded',
        None,
    )


def test_a_new_fill_of_an_exchange_order_that_cleanup_removed_is_refused_naming_the_removal(seeded, db_url):
    long_ago = datetime.now(UTC) - timedelta(days=60)
    bought = place(seeded, "buy", "1", "60000", placed_at=long_ago, **PERP)
    fill(seeded, bought, "1", "60000", executed_at=long_ago)
    # flat again: cleanup removes the orders of a closed position
    trade_id = exchange_fill(seeded, "sell", "1", "59000", exchange_order_id="LQ-1", executed_at=long_ago)
    order_id = order_of(seeded, trade_id)
    seeded.execute("update trading.orders set updated_at = created_at")
    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)
    assert result.exit_code == 0, result.output
    assert seeded.execute("select count(*) from trading.orders").fetchone() == (0,)
    # a second trade of the removed order: its quantity can no longer be raised to take it
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange order id "LQ-1" is already recorded for order {order_id}',
        lambda: exchange_fill(seeded, "sell", "1", "59000", exchange_trade_id="L-2", exchange_order_id="LQ-1",
                              executed_at=long_ago),
    )  # fmt: skip
    assert error.diag.message_detail == (
        f"order {order_id} is removed by orders cleanup; the fill is a liquidation sell of strategy alpha"
    )


def notified_channels(conn: psycopg.Connection) -> list[str]:
    return [
        row[0] for row in conn.execute("select channel::text from monitor.notifications order by channel")
    ]


def test_a_liquidation_is_not_notified_on_the_channels_of_a_limit_of_another_instrument(seeded):
    list_okx_btc_spot(seeded)
    call(seeded, "monitor.set_risk_limit", strategy="alpha", exchange="okx", symbol="BTC-USDT-SWAP",
         channels=["slack"])  # fmt: skip
    call(seeded, "monitor.set_risk_limit", strategy="alpha", exchange="okx", symbol="BTC-USDT",
         channels=["discord"])  # fmt: skip
    exchange_fill(seeded, "sell", "1", "59000")
    # the perpetual's limit is in scope, okx's BTC/USDT spot's is not
    assert notified_channels(seeded) == ["slack"]


def test_a_liquidation_is_not_notified_on_the_channels_of_another_strategys_limit(seeded):
    call(seeded, "monitor.set_risk_limit", strategy="alpha", channels=["slack"])
    call(seeded, "monitor.set_risk_limit", strategy="beta", channels=["discord"])
    exchange_fill(seeded, "sell", "1", "59000")
    assert notified_channels(seeded) == ["slack"]


# -- what an exchange fill stores ----------------------------------------------------------------


def fee_of(conn: psycopg.Connection, trade_id: int) -> tuple:
    return conn.execute(
        "select fee, fee_currency, fee_quote from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()


def test_an_exchange_fills_fee_in_a_third_currency_is_valued_at_the_fee_quote_given(seeded):
    # okx lists no BNB market: without the 6 USDT given the fee could not be valued at all
    trade_id = exchange_fill(
        seeded, "sell", "1", "59000", fee=D("0.01"), fee_currency="BNB", fee_quote=D("6")
    )
    assert fee_of(seeded, trade_id) == (D("0.01"), "BNB", D("6"))


def test_a_later_fill_of_an_exchange_orders_fee_in_a_third_currency_is_valued_at_the_fee_quote_given(seeded):
    exchange_fill(seeded, "sell", "1", "59000", exchange_order_id="LQ-1")
    trade_id = exchange_fill(seeded, "sell", "2", "58000", exchange_trade_id="L-2", exchange_order_id="LQ-1",
                             fee=D("0.02"), fee_currency="BNB", fee_quote=D("12"))  # fmt: skip
    assert fee_of(seeded, trade_id) == (D("0.02"), "BNB", D("12"))


def test_a_buy_and_a_sell_exchange_fill_of_one_trade_id_are_two_fills(seeded):
    sold = exchange_fill(seeded, "sell", "1", "59000")
    # the key is (instrument, side, trade id): the buy is a new fill, not the sell delivered again
    bought = exchange_fill(seeded, "buy", "1", "59000", kind="adl")
    assert bought != sold
    assert seeded.execute("select side::text from trading.trades order by trade_id").fetchall() == [
        ("sell",),
        ("buy",),
    ]


def test_exchange_fills_of_one_trade_id_on_two_instruments_are_two_fills(seeded):
    on_okx = exchange_fill(seeded, "sell", "1", "59000")
    on_binance = exchange_fill(seeded, "sell", "1", "59000", exchange="binance", symbol="BTCUSDT")
    assert on_binance != on_okx
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (2,)


def test_an_exchange_fill_with_a_128_character_trade_id_is_recorded(seeded):
    trade_id = exchange_fill(seeded, "sell", "1", "59000", exchange_trade_id="t" * 128)
    assert seeded.execute(
        "select length(exchange_trade_id) from trading.trades where trade_id = %s", [trade_id]
    ).fetchone() == (128,)


def test_an_exchange_fill_with_a_128_character_exchange_order_id_is_recorded(seeded):
    trade_id = exchange_fill(seeded, "sell", "1", "59000", exchange_order_id="o" * 128)
    assert seeded.execute(
        "select length(exchange_order_id) from trading.orders where order_id = %s",
        [order_of(seeded, trade_id)],
    ).fetchone() == (128,)


def test_an_exchange_fill_with_an_empty_exchange_order_id_is_an_invalid_argument(seeded):
    expect_refusal(
        seeded,
        "22S09",
        "exchange_order_id must be 1 to 128 characters, got 0",
        lambda: exchange_fill(seeded, "sell", "1", "59000", exchange_order_id=""),
    )


def test_an_exchange_initiated_order_is_created_at_the_fills_execution_time(seeded):
    # recorded a day after the exchange made it: the order is new as of T0 in its history too
    trade_id = exchange_fill(seeded, "sell", "1", "59000", executed_at=T0)
    order_id = order_of(seeded, trade_id)
    assert seeded.execute(
        "select o.created_at, e.occurred_at from trading.orders o"
        " join trading.order_events e on e.order_id = o.order_id and e.to_status = 'new'"
        " where o.order_id = %s",
        [order_id],
    ).fetchall() == [(T0, T0)]


def test_an_exchange_fill_whose_notional_overflows_only_by_its_contract_size_is_an_invalid_argument(seeded):
    # a perpetual of 10^50000 BTC a contract; quantity and price each below 10^43690, but
    # 10^43000 x 10^43000 x 10^50000 = 10^136000 is past numeric's 10^131072
    list_perpetual(seeded, "bybit", "BTCUSDT", "1e50000")
    expect_refusal(
        seeded,
        "22S09",
        "fill notional (quantity 1.000e+43000 x price 1.000e+43000 x multiplier 1.000e+50000) is too large a number",
        lambda: exchange_fill(seeded, "sell", "1e43000", "1e43000", exchange="bybit", symbol="BTCUSDT"),
    )


# -- opening a spread trade ------------------------------------------------------------------------


def leg_symbols(conn: psycopg.Connection, spread_trade_id: int) -> list[tuple]:
    """(exchange, symbol) of the buy leg, then of the sell leg."""
    return [
        conn.execute(
            "select e.code, i.symbol from trading.orders o join ref.instruments i using (instrument_id)"
            " join ref.exchanges e on e.exchange_id = i.exchange_id where o.order_id = %s",
            [leg],
        ).fetchone()
        for leg in legs(conn, spread_trade_id)
    ]


def test_a_spread_trades_leg_goes_to_the_first_listed_of_two_active_instruments_of_the_pair(seeded):
    list_okx_btc_spot(seeded)
    list_spot(seeded, "okx", "BTC-USDT-2")  # listed after it: a greater instrument id
    assert leg_symbols(seeded, open_spread(seeded)) == [("binance", "BTCUSDT"), ("okx", "BTC-USDT")]


def test_a_spread_trades_leg_goes_to_an_instrument_of_the_pairs_quote_asset(seeded):
    # okx's BTC/USDC spot, listed first (a lower id), trades BTC but not against USDT
    call(seeded, "ref.upsert_instrument", exchange="okx", symbol="BTC-USDC", base_asset="BTC", quote_asset="USDC",
         market_type="spot", tick_size=D("0.01"), lot_size=D("0.0001"))  # fmt: skip
    list_okx_btc_spot(seeded)
    assert leg_symbols(seeded, open_spread(seeded)) == [("binance", "BTCUSDT"), ("okx", "BTC-USDT")]


def test_a_margin_spread_trade_is_placed_on_the_margin_instruments(seeded):
    for exchange, symbol in (("binance", "BTCUSDT-M"), ("okx", "BTC-USDT-M")):
        call(seeded, "ref.upsert_instrument", exchange=exchange, symbol=symbol, base_asset="BTC",
             quote_asset="USDT", market_type="margin", tick_size=D("0.01"), lot_size=D("0.0001"))  # fmt: skip
    assert leg_symbols(seeded, open_spread(seeded, market_type="margin")) == [
        ("binance", "BTCUSDT-M"),
        ("okx", "BTC-USDT-M"),
    ]


def test_a_client_spread_id_of_123_characters_is_accepted(seeded):
    list_okx_btc_spot(seeded)
    spread = open_spread(seeded, client_spread_id="s" * 123)
    # its legs' client order ids are 123 + 4 and 123 + 5 = 128 characters, the most an order takes
    assert [len(order(seeded, leg)["client_order_id"]) for leg in legs(seeded, spread)] == [127, 128]


def test_a_client_spread_id_retried_for_another_market_type_is_a_conflict(seeded):
    list_okx_btc_spot(seeded)
    list_perpetual(seeded, "binance", "BTCUSDT-PERP", "0.01")  # okx BTC-USDT-SWAP is seeded
    first = open_spread(seeded, client_spread_id="arb-1")
    error = expect_refusal(
        seeded,
        "23S06",
        f'client spread id "arb-1" is already used by spread trade {first} with different values',
        lambda: open_spread(seeded, client_spread_id="arb-1", market_type="perpetual"),
    )
    assert error.diag.message_detail == (
        "stored: alpha buys 2 BTC/USDT spot on binance @ 100, sells on okx @ 101;"
        " retried: alpha buys 2 BTC/USDT perpetual on binance @ 100, sells on okx @ 101"
    )


def test_a_spread_trade_whose_legs_are_both_rejected_keeps_each_legs_own_reason(seeded):
    list_okx_btc_spot(seeded)
    call(seeded, "monitor.set_kill_switch", strategy="alpha", enabled=True)  # on every exchange
    spread = open_spread(seeded)
    # neither leg is left unhedged by the other: each keeps the reason place_order gave it
    assert [
        (order(seeded, leg)["status"], order(seeded, leg)["status_reason"]) for leg in legs(seeded, spread)
    ] == [
        ("rejected", "kill switch is on"),
        ("rejected", "kill switch is on"),
    ]


# -- spread trade PnL ------------------------------------------------------------------------------


def test_spread_trade_pnl_of_a_period_whose_since_is_its_until_is_empty_not_refused(seeded):
    list_okx_btc_spot(seeded)
    open_spread(seeded, opened_at=T0)
    assert rows(seeded, "trading.spread_trade_pnl", since=T0, until=T0) == []
