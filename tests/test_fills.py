"""Fills: recorded once, refused when they cannot be true, and applied to order, position and rollup."""

from datetime import timedelta
from decimal import Decimal as D

import psycopg
import pytest

from market_helpers import RECENT_NOON
from trading_helpers import call, counts, expect_refusal, fill, order, place, position, trade


def test_each_fill_keeps_the_quantity_of_the_position_it_closed(seeded):
    # opens 2, adds 1, closes 1, flips (closes 2, opens 2 short), covers 0.5
    trades = [
        trade(seeded, side, quantity, "100")
        for side, quantity in [("buy", "2"), ("buy", "1"), ("sell", "1"), ("sell", "4"), ("buy", "0.5")]
    ]
    closed = seeded.execute(
        "select closed_quantity from trading.trades where trade_id = any(%s) order by trade_id", [trades]
    ).fetchall()
    assert [row[0] for row in closed] == [D("0"), D("0"), D("1"), D("2"), D("0.5")]


def test_a_fill_delivered_twice_is_recorded_once(seeded):
    order_id = place(seeded, "buy", "2", "100")
    first = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1")
    before = counts(seeded)
    again = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1")
    assert again == first
    assert counts(seeded) == before
    assert position(seeded, "alpha", "binance", "BTCUSDT")["quantity"] == D("1")


# the same order and fee at another quantity, or 1 USDT a BTC dearer: not the same fact, and
# returning the stored trade would hide a cost difference (1 x (101 - 100) = 1 USDT at the price)
@pytest.mark.parametrize(("quantity", "price"), [("0.5", "100"), ("1", "101")], ids=["quantity", "price"])
def test_an_exchange_trade_id_reused_with_different_values_is_a_conflict(seeded, quantity, price):
    order_id = place(seeded, "buy", "2", "101")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1")
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "T-1" is already recorded as trade {trade_id} with different values',
        lambda: fill(seeded, order_id, quantity, price, exchange_trade_id="T-1"),
    )
    assert (
        error.diag.message_detail
        == f"stored: order {order_id}, 1 @ 100, fee 0 USDT; retried: order {order_id}, {quantity} @ {price}, fee 0 USDT"
    )
    assert seeded.execute("select quantity, trade_count from trading.positions").fetchone() == (D("1"), 1)


def test_a_fill_redelivered_with_another_fee_is_a_conflict_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "2", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1", fee=D("0.1"))
    before = counts(seeded)
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "T-1" is already recorded as trade {trade_id} with different values',
        lambda: fill(seeded, order_id, "1", "100", exchange_trade_id="T-1", fee=D("0.2")),
    )
    assert (
        error.diag.message_detail
        == f"stored: order {order_id}, 1 @ 100, fee 0.1 USDT; retried: order {order_id}, 1 @ 100, fee 0.2 USDT"
    )
    assert counts(seeded) == before


def test_a_fill_redelivered_with_the_same_fee_in_lower_case_is_the_same_fill(seeded):
    order_id = place(seeded, "buy", "2", "100")
    first = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1", fee=D("0.0010"), fee_currency="BTC")

    again = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1", fee=D("0.001"), fee_currency="btc")

    assert again == first


def test_a_zero_fee_redelivered_in_another_currency_is_the_same_fill(seeded):
    order_id = place(seeded, "buy", "2", "100")
    first = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1")

    again = fill(seeded, order_id, "1", "100", exchange_trade_id="T-1", fee_currency="BNB")

    assert again == first


def test_the_same_exchange_trade_id_on_another_exchange_is_another_fill(seeded):
    binance = place(seeded, "buy", "1", "100")
    kraken = place(seeded, "buy", "1", "10", exchange="kraken", symbol="ETHUSD")
    assert fill(seeded, binance, "1", "100", exchange_trade_id="T-1") != fill(
        seeded, kraken, "1", "10", exchange_trade_id="T-1"
    )


@pytest.mark.parametrize("exchange_trade_id", ["", "t" * 129])
def test_an_empty_or_overlong_exchange_trade_id_is_an_invalid_argument(seeded, exchange_trade_id):
    order_id = place(seeded, "buy", "1", "100")
    expect_refusal(
        seeded,
        "22S09",
        f"exchange_trade_id must be 1 to 128 characters, got {len(exchange_trade_id)}",
        lambda: fill(seeded, order_id, "1", "100", exchange_trade_id=exchange_trade_id),
    )


def test_an_overfill_is_refused_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "2", "100")
    fill(seeded, order_id, "1.5", "100")
    expect_refusal(
        seeded,
        "23S05",
        f"fill of 1 would overfill order {order_id}: 1.5 of 2 already filled",
        lambda: fill(seeded, order_id, "1", "100"),
    )


def test_a_fill_for_an_unknown_order_is_refused(seeded):
    expect_refusal(seeded, "23S04", "order 424242 does not exist", lambda: fill(seeded, 424242, "1", "100"))


@pytest.mark.parametrize(
    ("quantity", "price", "sqlstate", "message"),
    [
        ("0", "100", "22S01", "fill quantity must be positive and finite, got 0"),
        ("NaN", "100", "22S01", "fill quantity must be positive and finite, got NaN"),
        ("1", "-3", "22S02", "fill price must be positive and finite, got -3"),
        ("1", "Infinity", "22S02", "fill price must be positive and finite, got Infinity"),
    ],
    ids=["zero-quantity", "nan-quantity", "negative-price", "infinite-price"],
)
def test_a_fill_with_an_impossible_quantity_or_price_is_refused(seeded, quantity, price, sqlstate, message):
    order_id = place(seeded, "buy", "2", "100")
    expect_refusal(seeded, sqlstate, message, lambda: fill(seeded, order_id, quantity, price))


def test_a_fill_updates_the_order_filled_quantity_and_average_price(seeded):
    order_id = place(seeded, "buy", "4", "101")
    fill(seeded, order_id, "1", "100")
    fill(seeded, order_id, "3", "101")
    # (1 x 100 + 3 x 101) / 4 = 100.75
    row = order(seeded, order_id)
    assert (row["status"], row["filled_quantity"], row["avg_fill_price"]) == ("filled", D("4"), D("100.75"))


def test_a_fill_adds_to_the_daily_rollup_of_its_utc_day(seeded):
    order_id = place(seeded, "buy", "2", "100")
    day = RECENT_NOON.date()
    fill(seeded, order_id, "1", "100", fee=D("0.1"), executed_at=f"{day} 23:59:59+00")
    fill(seeded, order_id, "1", "102", fee=D("0.1"), executed_at=f"{day + timedelta(days=1)} 00:00:00+00")
    days = seeded.execute(
        "select day::text, trades, volume, notional, fees from trading.daily_pnl order by day"
    ).fetchall()
    assert days == [
        (str(day), 1, D("1"), D("100"), D("0.1")),
        (str(day + timedelta(days=1)), 1, D("1"), D("102"), D("0.1")),
    ]


def test_funding_recorded_twice_is_recorded_once(seeded):
    args = {
        "strategy": "alpha",
        "exchange": "okx",
        "symbol": "BTC-USDT-SWAP",
        "amount": D("1.25"),
        "paid_at": RECENT_NOON - timedelta(hours=4),
    }
    first = call(seeded, "trading.record_funding", **args)
    before = counts(seeded)
    assert call(seeded, "trading.record_funding", **args) == first
    assert counts(seeded) == before


def test_funding_with_a_different_amount_at_the_same_time_is_a_conflict(seeded):
    args = {
        "strategy": "alpha",
        "exchange": "okx",
        "symbol": "BTC-USDT-SWAP",
        "paid_at": RECENT_NOON - timedelta(hours=4),
    }
    call(seeded, "trading.record_funding", amount=D("1.25"), **args)
    expect_refusal(
        seeded,
        "23S06",
        f"funding at {RECENT_NOON:%Y-%m-%d} 08:00:00+00 for BTC-USDT-SWAP on okx is already recorded as 1.25 (got 2)",
        lambda: call(seeded, "trading.record_funding", amount=D("2"), **args),
    )


def test_funding_on_a_spot_instrument_is_refused(seeded):
    expect_refusal(
        seeded,
        "22S10",
        "funding applies to perpetuals only; BTCUSDT on binance is a spot instrument",
        lambda: call(
            seeded,
            "trading.record_funding",
            strategy="alpha",
            exchange="binance",
            symbol="BTCUSDT",
            amount=D("1"),
            paid_at=RECENT_NOON,
        ),
    )


def test_trades_are_immutable(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100")
    for statement in (
        "update trading.trades set price = 1",
        "delete from trading.trades",
        "truncate trading.trades",
    ):
        with pytest.raises(psycopg.Error) as caught:
            seeded.execute(statement)
        assert caught.value.sqlstate == "55S02"
    assert seeded.execute("select price from trading.trades").fetchall() == [(D("100"),)]
