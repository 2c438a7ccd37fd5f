"""ops.check_invariants on a realistic history: silent after every legal sequence (orders cleanup,
fees in the base asset and in a third currency, a late fill, a flip with funding, a spread trade,
fills a month apart), and each corruption it did not report before named precisely.

Each test breaks one thing behind the API's back, as in tests/test_invariants.py; writes that must
skip foreign keys and audit triggers run with session_replication_role = replica. The audit
checks' own reports of such a write are left out: they are tests/test_invariants.py's subject.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ops_helpers import cli
from test_invariants import violations
from trading_helpers import call, fill, list_binance_eth_btc, list_okx_btc_spot, open_spread, place, trade

LONG_AGO = datetime.now(UTC) - timedelta(days=60)


@pytest.fixture
def history(seeded: psycopg.Connection, db_url: str) -> dict[str, Any]:
    """A round trip 60 days ago whose orders cleanup removed (their keys stay: trades refer to
    them); alpha's BTCUSDT bought (a fee in USDT, one in BTC), sold through zero, partly by an
    order cancelled and then filled late (a fee in BNB); beta's perpetual long, funded, flipped
    short and funded again; gamma's ETHUSD bought with an ETH fee (part sold 23 hours ahead)
    and ETHBTC (quoted in BTC) traded; alpha's open BTC/USDT spread trade. The ids the tests
    corrupt."""
    db = seeded
    list_okx_btc_spot(db)
    list_binance_eth_btc(db)
    call(db, "trading.create_strategy", name="gamma")
    old_buy = place(db, "buy", "0.01", "50000", placed_at=LONG_AGO)
    fill(db, old_buy, "0.01", "50000", fee="0.5", executed_at=LONG_AGO)
    old_sell = place(db, "sell", "0.01", "51000", placed_at=LONG_AGO)
    fill(db, old_sell, "0.004", "51000", executed_at=LONG_AGO)
    fill(db, old_sell, "0.006", "51010", executed_at=LONG_AGO + timedelta(hours=1))
    unfilled = place(db, "buy", "0.5", "100", placed_at=LONG_AGO)
    call(db, "trading.cancel_order", order_id=unfilled, reason="stale")
    db.execute("update trading.orders set updated_at = created_at")
    result = cli("cleanup", "orders", "--older-than", "30d", database_url=db_url)
    assert result.exit_code == 0, result.output

    quote_fee = trade(db, "buy", "0.5", "30000", fee="1.5")
    base_fee = trade(db, "buy", "0.25", "30400", fee="0.0002", fee_currency="BTC")
    sold = place(db, "sell", "0.3", "31000")
    fill(db, sold, "0.3", "31000", fee="0.0001", fee_currency="BTC")
    cancelled = place(db, "sell", "1", "29000")
    third_fee = fill(db, cancelled, "0.7", "29000", fee="0.01", fee_currency="BNB", fee_quote=Decimal("3.1"))
    call(db, "trading.cancel_order", order_id=cancelled, reason="test")
    fill(db, cancelled, "0.1", "29010")  # late fill
    swap = {"exchange": "okx", "symbol": "BTC-USDT-SWAP", "strategy": "beta"}
    trade(db, "buy", "3", "60000.5", **swap)
    call(
        db,
        "trading.record_funding",
        **swap,
        amount=Decimal("-0.42"),
        paid_at=datetime.now(UTC) - timedelta(hours=4),
    )
    trade(db, "sell", "5", "60100", **swap)  # flips the long short
    call(
        db,
        "trading.record_funding",
        **swap,
        amount=Decimal("0.17"),
        paid_at=datetime.now(UTC) - timedelta(hours=2),
    )
    trade(
        db,
        "buy",
        "2",
        "1500",
        exchange="kraken",
        symbol="ETHUSD",
        strategy="gamma",
        fee="0.001",
        fee_currency="ETH",
    )
    # a fill stamped 23 hours ahead (the latest record_fill takes): tomorrow's rollup rows
    eth_usd = {"exchange": "kraken", "symbol": "ETHUSD", "strategy": "gamma"}
    trade(db, "sell", "0.5", "1510", **eth_usd, executed_at=datetime.now(UTC) + timedelta(hours=23))
    eth_btc = {"exchange": "binance", "symbol": "ETHBTC", "strategy": "gamma"}
    gamma_buy = place(db, "buy", "1", "0.05", **eth_btc)
    gamma_trade = fill(db, gamma_buy, "1", "0.05", fee="0.00001")
    trade(db, "sell", "0.4", "0.051", **eth_btc)
    spread_trade_id = open_spread(db)
    return {
        "db": db,
        "old_buy": old_buy,
        "quote_fee": quote_fee,
        "base_fee": base_fee,
        "sold": sold,
        "cancelled": cancelled,
        "third_fee": third_fee,
        "gamma_buy": gamma_buy,
        "gamma_trade": gamma_trade,
        "spread_trade_id": spread_trade_id,
    }


def ids(conn: psycopg.Connection, query: str, *params: Any) -> tuple[Any, ...]:
    return conn.execute(query, params).fetchone()


def derived_violations(conn: psycopg.Connection) -> list[tuple[str, dict, str]]:
    return [r for r in violations(conn) if not r[0].startswith("audit")]


def behind_the_back(conn: psycopg.Connection, statement: str, *params: Any) -> None:
    conn.execute("set session_replication_role = replica")
    conn.execute(statement, params)
    conn.execute("reset session_replication_role")


def test_a_realistic_history_with_cleanup_flips_funding_and_fees_has_no_violations(history):
    db = history["db"]
    assert ids(db, "select count(*) from trading.orders where order_id = %s", history["old_buy"]) == (0,)
    assert violations(db) == []


# bug: the multiplier and quote asset a position copies from its instrument (the risk check reads
# them) were held only by foreign keys; a write that skipped them went unreported
def test_a_position_multiplier_that_is_not_its_instruments_is_reported(history):
    db = history["db"]
    (strategy_id, instrument_id) = ids(
        db,
        "select p.strategy_id, p.instrument_id from trading.positions p"
        " join ref.instruments i using (instrument_id) where i.symbol = 'BTC-USDT-SWAP'",
    )
    behind_the_back(
        db, "update trading.positions set multiplier = 0.02 where instrument_id = %s", instrument_id
    )
    assert derived_violations(db) == [
        (
            "position_instrument",
            {"strategy_id": strategy_id, "instrument_id": instrument_id},
            "multiplier: 0.02 -> 0.01 (stored -> ref.instruments)",
        )
    ]


# bug: the daily rollup's quote asset (the risk check's daily loss adds up rows in one asset) was
# not compared with the instrument's at all
def test_a_daily_rollup_quote_asset_that_is_not_its_instruments_is_reported(history):
    db = history["db"]
    (strategy_id, instrument_id, day) = ids(
        db,
        "select d.strategy_id, d.instrument_id, d.day::text from trading.daily_pnl d"
        " join ref.instruments i using (instrument_id) where i.symbol = 'ETHBTC'",
    )
    behind_the_back(
        db, "update trading.daily_pnl set quote_asset = 'USDT' where instrument_id = %s", instrument_id
    )
    assert derived_violations(db) == [
        (
            "rollup_daily",
            {"strategy_id": strategy_id, "day": day, "instrument_id": instrument_id},
            'quote_asset: "USDT" -> "BTC" (stored -> ref.instruments)',
        )
    ]


# bug: a position row of zeros with no trade and no funding payment (none is made without one)
# was not reported, even when its insert was audited
def test_a_position_row_without_trades_or_funding_is_reported(history):
    db = history["db"]
    (strategy_id, instrument_id) = ids(
        db,
        "select s.strategy_id, i.instrument_id from trading.strategies s, ref.instruments i"
        " where s.name = 'beta' and i.symbol = 'BNBUSDT'",
    )
    db.execute(
        "insert into trading.positions (strategy_id, instrument_id, multiplier, quote_asset)"
        " values (%s, %s, 1, 'USDT')",
        [strategy_id, instrument_id],
    )
    assert violations(db) == [
        (
            "position_fold",
            {"strategy_id": strategy_id, "instrument_id": instrument_id},
            "the position row exists but no trades or funding payments do",
        )
    ]


# bug: an hourly rollup row of zeros in an hour without fills or funding was not reported
def test_an_hourly_rollup_row_without_trades_or_funding_is_reported(history):
    db = history["db"]
    (strategy_id, instrument_id) = ids(
        db,
        "select strategy_id, instrument_id from trading.hourly_pnl order by hour desc, strategy_id, instrument_id limit 1",
    )
    db.execute(
        "insert into trading.hourly_pnl (strategy_id, hour, instrument_id) values (%s, '2026-01-02 03:00Z', %s)",
        [strategy_id, instrument_id],
    )
    assert violations(db) == [
        (
            "rollup_hourly",
            {"strategy_id": strategy_id, "hour": "2026-01-02T03:00:00Z", "instrument_id": instrument_id},
            "a rollup row, but no trades or funding payments in its hour",
        )
    ]


# bug: order events were not checked at all: the lost event of a cancel went unreported
def test_a_lost_cancel_event_is_reported(history):
    db = history["db"]
    order_id = history["cancelled"]
    db.execute("delete from trading.order_events where order_id = %s and to_status = 'cancelled'", [order_id])
    (latest,) = ids(db, "select max(event_id) from trading.order_events where order_id = %s", order_id)
    assert violations(db) == [
        (
            "order_events",
            {"order_id": order_id},
            f"status cancelled, but its latest event, {latest}, went to partially_filled",
        )
    ]


def test_order_events_out_of_order_are_reported(history):
    db = history["db"]
    order_id = history["cancelled"]
    placed, partly, cancel = (
        r[0]
        for r in db.execute(
            "select event_id from trading.order_events where order_id = %s order by event_id", [order_id]
        ).fetchall()
    )
    # the partial fill's event moved after the cancel's
    db.execute("update trading.order_events set event_id = %s where event_id = %s", [cancel + 1000, partly])
    moved = cancel + 1000
    assert violations(db) == [
        (
            "order_events",
            {"order_id": order_id, "event_id": cancel},
            f"goes from partially_filled to cancelled, but event {placed} before it went to new",
        ),
        (
            "order_events",
            {"order_id": order_id, "event_id": moved},
            f"goes from new to partially_filled, but event {cancel} before it went to cancelled",
        ),
        (
            "order_events",
            {"order_id": order_id},
            f"status cancelled, but its latest event, {moved}, went to partially_filled",
        ),
    ]


def test_an_order_without_events_is_reported(history):
    db = history["db"]
    order_id = history["gamma_buy"]
    db.execute("delete from trading.order_events where order_id = %s", [order_id])
    assert violations(db) == [
        ("order_events", {"order_id": order_id}, "status filled, but the order has no events")
    ]


def test_a_status_changed_without_an_event_is_reported(history):
    db = history["db"]
    order_id = history["cancelled"]
    db.execute("update trading.orders set status = 'expired' where order_id = %s", [order_id])
    (latest,) = ids(db, "select max(event_id) from trading.order_events where order_id = %s", order_id)
    assert violations(db) == [
        (
            "order_events",
            {"order_id": order_id},
            f"status expired, but its latest event, {latest}, went to cancelled",
        )
    ]


# bug: nothing compared trading.order_keys with the orders: an order without its key row, a key
# naming another partition time (lookups by id then miss the order) or a key with nothing to
# keep it went unreported
def test_an_order_without_its_key_row_is_reported(history):
    db = history["db"]
    order_id = history["cancelled"]
    behind_the_back(db, "delete from trading.order_keys where order_id = %s", order_id)
    found = [r for r in derived_violations(db) if r[0] == "order_keys"]
    assert found == [("order_keys", {"order_id": order_id}, "order has no trading.order_keys row")]


def test_an_order_key_with_another_created_at_is_reported(history):
    db = history["db"]
    order_id = history["sold"]
    db.execute(
        "update trading.order_keys set created_at = created_at - interval '1 day' where order_id = %s",
        [order_id],
    )
    (key_time, order_time) = ids(
        db,
        "select to_jsonb(k.created_at)::text, to_jsonb(o.created_at)::text"
        " from trading.order_keys k join trading.orders o using (order_id) where order_id = %s",
        order_id,
    )
    assert violations(db) == [
        ("order_keys", {"order_id": order_id}, f"created_at: {key_time} -> {order_time} (key row -> order)")
    ]


def test_an_order_key_that_nothing_refers_to_is_reported(history):
    db = history["db"]
    (strategy_id, instrument_id, exchange_id) = ids(
        db,
        "select o.strategy_id, o.instrument_id, k.exchange_id from trading.orders o"
        " join trading.order_keys k using (order_id) where order_id = %s",
        history["sold"],
    )
    db.execute(
        "insert into trading.order_keys (order_id, created_at, exchange_id, strategy_id, instrument_id)"
        " values (999999, now(), %s, %s, %s)",
        [exchange_id, strategy_id, instrument_id],
    )
    assert violations(db) == [
        (
            "order_keys",
            {"order_id": 999999},
            "trading.order_keys row has no order, and no trade or risk event refers to it",
        )
    ]


# bug: a trade's fee_quote off was reported only as its position's fees and its rollups
# differing, blaming the derived rows and never naming the trade
def test_a_quote_asset_fee_valued_wrong_names_the_trade(history):
    db = history["db"]
    trade_id = history["quote_fee"]
    behind_the_back(db, "update trading.trades set fee_quote = 1.6 where trade_id = %s", trade_id)
    found = [r for r in derived_violations(db) if r[0] == "trade_fee"]
    assert found == [
        (
            "trade_fee",
            {"trade_id": trade_id},
            "fee_quote 1.6, but a fee of 1.5 USDT on a fill at 30000 is worth 1.5 USDT",
        )
    ]


def test_a_base_asset_fee_valued_wrong_names_the_trade(history):
    db = history["db"]
    trade_id = history["base_fee"]
    behind_the_back(db, "update trading.trades set fee_quote = 6.1 where trade_id = %s", trade_id)
    found = [r for r in derived_violations(db) if r[0] == "trade_fee"]
    assert found == [
        (
            "trade_fee",
            {"trade_id": trade_id},
            "fee_quote 6.1, but a fee of 0.0002 BTC on a fill at 30400 is worth 6.0800 USDT",
        )
    ]


def test_a_third_currency_fee_valued_as_a_rebate_names_the_trade(history):
    db = history["db"]
    trade_id = history["third_fee"]
    behind_the_back(db, "update trading.trades set fee_quote = -3.1 where trade_id = %s", trade_id)
    found = [r for r in derived_violations(db) if r[0] == "trade_fee"]
    assert found == [
        ("trade_fee", {"trade_id": trade_id}, "fee_quote -3.1 and the fee 0.01 BNB differ in sign")
    ]


# bug: nothing held a trade's side to its order's
def test_an_order_of_the_other_side_than_its_trade_is_reported(history):
    db = history["db"]
    order_id = history["gamma_buy"]
    db.execute("update trading.orders set side = 'sell' where order_id = %s", [order_id])
    assert violations(db) == [
        (
            "trade_order",
            {"trade_id": history["gamma_trade"]},
            f"a buy, but its order {order_id} is a sell order",
        )
    ]


def test_a_trade_of_another_strategy_than_its_order_is_reported(history):
    db = history["db"]
    trade_id = history["gamma_trade"]
    (beta,) = ids(db, "select strategy_id from trading.strategies where name = 'beta'")
    (gamma, instrument_id) = ids(
        db, "select strategy_id, instrument_id from trading.trades where trade_id = %s", trade_id
    )
    behind_the_back(db, "update trading.trades set strategy_id = %s where trade_id = %s", beta, trade_id)
    found = [r for r in derived_violations(db) if r[0] == "trade_order"]
    assert found == [
        (
            "trade_order",
            {"trade_id": trade_id},
            f"of strategy {beta}, instrument {instrument_id}, but its order {history['gamma_buy']}"
            f" is of strategy {gamma}, instrument {instrument_id}",
        )
    ]


# bug: a spread trade whose leg is an order on another pair was not reported as such
def test_a_spread_leg_on_another_pair_is_reported(history):
    db = history["db"]
    spread_trade_id = history["spread_trade_id"]
    (buy,) = ids(
        db, "select buy_order_id from trading.spread_trades where spread_trade_id = %s", spread_trade_id
    )
    (other, gamma) = ids(
        db,
        "select o.order_id, o.strategy_id from trading.orders o join ref.instruments i using (instrument_id)"
        " where i.symbol = 'ETHBTC' and o.side = 'sell'",
    )
    (alpha,) = ids(db, "select strategy_id from trading.strategies where name = 'alpha'")
    behind_the_back(
        db,
        "update trading.spread_trades set sell_order_id = %s where spread_trade_id = %s",
        other,
        spread_trade_id,
    )
    found = [r for r in derived_violations(db) if r[0] == "spread_legs"]
    assert found == [
        (
            "spread_legs",
            {"spread_trade_id": spread_trade_id},
            f"sell leg order {other} is of strategy {gamma}, the spread trade of strategy {alpha};"
            f" quantity 2, but sell leg order {other} is for 0.4; both legs are on binance;"
            f" the buy leg order {buy} trades BTC/USDT spot, the sell leg order {other} ETH/BTC spot",
        )
    ]
