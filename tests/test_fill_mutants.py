"""Rules of fills, their fees, funding and positions that a plausible slip in their SQL (a bound
off by one, a dropped condition, a dropped filter) broke without any other test noticing: each test
here kills one such mutant of the mutation run of 31_trading_fills.sql, 31_trading_fill_fees.sql,
32_trading_funding.sql and 33_trading_positions.sql (none of them a mutant that
test_money_mutants.py already kills).

The run: 53 mutants, 41 caught by the existing tests, 12 survived: 1 equivalent (the fee trigger
dropping its test that a fill without a fee has a fee_quote of 0: record_fill stores fee_quote 0
for every fee of 0, and the trigger refuses any update that would leave a fee of 0 with another
fee_quote, so no trade it could let through exists), 10 holes, each killed by a test below (the
two cases of the fee trigger's test kill one mutant), and 1 left open (get_position dropping the
average entry price from the factors that send the unrealized PnL to the overflow check: only a
position of more than one fill on separate days of an instrument with a multiplier above 1 at an
entry near 10^131069 reaches it).

Every expected value is worked out by hand in its comment."""

from datetime import UTC, datetime
from decimal import Decimal as D

import psycopg
import pytest

from market_helpers import RECENT_NOON
from test_fill_after_cleanup import removed_round_trip
from trading_helpers import call, expect_refusal, fill, list_perpetual, order, place

# -- helpers ----------------------------------------------------------------------------------------


def trade_row(conn, trade_id: int) -> tuple:
    """(fee, fee_currency, fee_quote, position_delta) of a trade."""
    return conn.execute(
        "select fee, fee_currency, fee_quote, position_delta from trading.trades where trade_id = %s",
        [trade_id],
    ).fetchone()


# -- a fill's fee ----------------------------------------------------------------------------------


def test_a_zero_fee_in_a_currency_without_a_market_price_is_recorded_at_zero(seeded):
    order_id = place(seeded, "buy", "1", "100")
    # no market prices XYZ: a fee of 0 XYZ is worth 0 USDT without one, and must not be refused
    # as an unpriced fee (22S08)
    trade_id = fill(seeded, order_id, "1", "100", fee=D("0"), fee_currency="XYZ")
    assert trade_row(seeded, trade_id) == (D("0"), "XYZ", D("0"), D("1"))


def test_a_rebate_of_exactly_10_to_the_100000_is_an_invalid_argument_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    # the bound is on the magnitude: -10^100000 is as far out as 10^100000
    expect_refusal(
        seeded,
        "22S09",
        "fee must be below 10^100000 in magnitude, got -1.000e+100000",
        lambda: fill(seeded, order_id, "1", "100", fee=D("-1e100000")),
    )


# -- a fill delivered again ----------------------------------------------------------------------------


def test_a_fill_recorded_without_a_fee_redelivered_with_one_is_a_conflicting_duplicate(seeded):
    order_id = place(seeded, "buy", "1", "100")
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="cb-1")
    # a fee 0 matches any stored fee, but not the other way round: the stored fill has no fee and
    # this one has 0.5 USDT, which only trading.record_fill_fee may set
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "cb-1" is already recorded as trade {trade_id} with different values',
        lambda: fill(seeded, order_id, "1", "100", fee=D("0.5"), exchange_trade_id="cb-1"),
    )


def test_a_removed_orders_fill_under_another_removed_orders_trade_id_is_an_unknown_order(seeded, db_url):
    buy, _ = removed_round_trip(seeded, db_url)
    # "rt-2" is the sell's trade on the same instrument, not one of the buy's: the buy has no such
    # fill, so this is a new fill of a removed order (23S04), not a redelivery that disagrees
    expect_refusal(
        seeded,
        "23S04",
        f'order {buy} was removed by orders cleanup and has no trade with exchange trade id "rt-2"',
        lambda: fill(seeded, buy, "0.01", "51000", exchange_trade_id="rt-2"),
    )


def test_an_exchange_trade_id_of_exactly_128_characters_is_recorded_and_redelivered(seeded):
    order_id = place(seeded, "buy", "1", "100")
    # 128 is the longest id allowed (129 is refused): recorded, and the same fill again is it
    trade_id = fill(seeded, order_id, "1", "100", exchange_trade_id="t" * 128)
    assert fill(seeded, order_id, "1", "100", exchange_trade_id="t" * 128) == trade_id
    assert seeded.execute("select count(*) from trading.trades").fetchone() == (1,)


# -- funding ---------------------------------------------------------------------------------------------


def funding(conn, exchange: str, symbol: str, amount: str, paid_at=RECENT_NOON) -> int:
    return call(
        conn,
        "trading.record_funding",
        strategy="alpha",
        exchange=exchange,
        symbol=symbol,
        amount=D(amount),
        paid_at=paid_at,
    )


def test_funding_of_two_perpetuals_at_one_time_is_each_retried_to_its_own_payment(seeded):
    list_perpetual(seeded, "bybit", "BTCUSDT", "0.001")
    okx = funding(seeded, "okx", "BTC-USDT-SWAP", "1")
    bybit = funding(seeded, "bybit", "BTCUSDT", "2")
    # one funding time, two instruments: each retry is its own instrument's payment (1 on okx, 2
    # on bybit), not a conflict with the other instrument's amount
    assert (funding(seeded, "okx", "BTC-USDT-SWAP", "1"), funding(seeded, "bybit", "BTCUSDT", "2")) == (
        okx,
        bybit,
    )
    assert seeded.execute("select count(*), sum(amount) from trading.funding_payments").fetchone() == (
        2,
        D("3"),
    )


def test_funding_paid_before_2009_is_an_invalid_argument_and_writes_nothing(seeded):
    # mid-2008, shown in the session's time zone: before the genesis block (2009-01-03) in any zone
    with pytest.raises(psycopg.Error) as caught:
        funding(seeded, "okx", "BTC-USDT-SWAP", "1", paid_at=datetime(2008, 6, 30, 12, tzinfo=UTC))
    assert caught.value.sqlstate == "22S09"
    assert caught.value.diag.message_primary.startswith(
        "paid_at must be a time between 2009-01-03 and one day from now, got 2008-"
    )
    assert seeded.execute("select count(*) from trading.funding_payments").fetchone() == (0,)


# -- what a fill writes ----------------------------------------------------------------------------------


def test_an_orders_average_fill_price_keeps_18_decimals(seeded):
    order_id = place(seeded, "buy", "3", "101")
    fill(seeded, order_id, "1", "100")
    fill(seeded, order_id, "2", "101")
    # (1 x 100 + 2 x 101) / 3 = 302 / 3 = 100.6666..., rounded to 18 decimals
    assert order(seeded, order_id)["avg_fill_price"] == D("100.666666666666666667")


def test_a_fill_that_leaves_an_order_partially_filled_again_adds_no_order_event(seeded):
    order_id = place(seeded, "buy", "3", "100")
    for _ in range(3):
        fill(seeded, order_id, "1", "100")
    # placed (new), the first fill (partially_filled), the third (filled): the second fill
    # changed no status, so it is no event
    events = seeded.execute(
        "select from_status::text, to_status::text from trading.order_events where order_id = %s order by event_id",
        [order_id],
    ).fetchall()
    assert events == [(None, "new"), ("new", "partially_filled"), ("partially_filled", "filled")]


# -- a fee set later --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    ["update trading.trades set fee_quote = 5", "update trading.trades set fee_currency = 'BNB'"],
    ids=["a-fee-value-without-a-fee", "a-currency-without-a-fee"],
)
def test_a_fill_without_a_fee_keeps_its_fee_columns_unless_it_is_given_a_fee(seeded, statement):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100")
    # the trigger lets a fill without a fee be given one (fee <> 0), nothing else: a fee_quote or a
    # currency alone, the fee staying 0, would be a fee value without a fee
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(statement)
    assert caught.value.sqlstate == "55S02"
    assert seeded.execute("select fee, fee_currency, fee_quote from trading.trades").fetchall() == [
        (D("0"), "USDT", D("0"))
    ]
