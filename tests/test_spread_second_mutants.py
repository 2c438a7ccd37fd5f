"""Rules of spread trades and exchange-initiated fills that a second round of plausible slips in
their SQL broke without any other test noticing: each test here kills one mutant of the second
mutation run of 48_trading_spread_trades.sql and 38_trading_exchange_fills.sql (the first run and
its tests are tests/test_exchange_spread_mutants.py; none of its mutants is repeated).

The run: 32 mutants (23 of 48_trading_spread_trades.sql, 9 of 38_trading_exchange_fills.sql),
each run against tests/test_spread*.py, test_spreads_access.py and test_exchange_spread_mutants.py
(48) or test_exchange_initiated_fills.py, test_exchange_sequences_hunt.py and
test_exchange_spread_mutants.py (38). 19 were caught, 13 survived: 12 holes killed below, 1 left
open; none was equivalent.

Caught (48): net PnL captured + fees; fees of the buy leg only; the matched base quantity without
its "nothing matched" guard; uneven_trades counting residual_quantity > 0 only; contract sizes
compared with > only; opened_at not checked; the summary ordered by quote asset first;
spread_trade_pnl ordered by id alone; the stored quantity x the multiplier; the residual's mark
price taken from the other leg; the residual exposure without its 0 branch; a retry of another
user's client_spread_id described; a retry not returning the stored spread trade; the spread
trade stored at now(), not at opened_at; the residual in base units, not divided by the leg's
multiplier.
Caught (38): a later fill of an exchange order setting its quantity to the greater of the two, not
the sum; the risk event's observed value less the fee again; the placement event at now(); the
retried fill compared with a null fee currency for the quote asset.

Holes, each killed by one test below (48):
- the residual in contracts without trim_scale (1.5000000000000000 equals 1.5 as a Decimal)
- a reversed period refused only when since is more than a second after until
- a period's since exclusive (opened_at > since)
- the legs' instrument chosen inactive first (order by is_active, not is_active desc)
- the legs placed at now(), not at opened_at
- the sell exchange left out of a retried client_spread_id's comparison
- the quote asset left out of it (BTC/USDC returned the BTC/USDT spread trade)
Holes (38):
- a fill delivered again by another strategy returned the first strategy's trade id
- a buy naming a sell liquidation's exchange order added to it (recorded as a sell)
- the liquidation's risk event reason naming the order id as "(trade N)"
- the fee's size not checked before a delivered-again fill is compared (23S06, not 22S09)
- a 33-character fee currency accepted before that comparison (23S06, not 22S09)

Left open: internal.refuse_taken_leg_id without its scope check (another user's order holding a
leg's client order id named by its order id): it needs two users' sessions, and the timebox ran
out; tests/test_spread_trades.py covers the spread id itself, not a leg's order id. Planned but
not run for lack of time: the residual's divisor legs swapped, greatest for least in the matched
base quantity, the legs' position deltas replaced by their quantities, rounding of the captured
spread and the exposure, the summary's net PnL, a retry's buy/sell price and exchanges and
strategy compared, client_spread_id of 124 characters, ADL without a risk event.

Every expected value is worked out by hand in its comment."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import psycopg
import pytest

from market_helpers import RECENT_NOON
from test_exchange_initiated_fills import exchange_fill, open_position
from trading_helpers import (
    call,
    expect_refusal,
    fill,
    legs,
    list_okx_btc_spot,
    list_spot,
    open_spread,
    order,
    place,
    rows,
)

T0 = RECENT_NOON


# -- spread trade PnL ------------------------------------------------------------------------------


def test_a_residual_in_contracts_is_shown_without_the_divisions_trailing_zeros(
    seeded: psycopg.Connection,
) -> None:
    list_okx_btc_spot(seeded)
    buy, sell = legs(seeded, open_spread(seeded))
    fill(seeded, buy, "2", "100", executed_at=T0)
    fill(seeded, sell, "0.5", "101", executed_at=T0)
    (r,) = rows(seeded, "trading.spread_trade_pnl")
    # 2 - 0.5 = 1.5 BTC long, / the buy leg's multiplier 1 = 1.5 contracts; numeric's division
    # gives 1.5000000000000000, which Decimal equality alone would not tell apart
    assert str(r["residual_quantity"]) == "1.5"


def test_spread_trade_pnl_refuses_a_since_a_microsecond_after_its_until(seeded: psycopg.Connection) -> None:
    # reversed by one microsecond: refused as any reversed period, not an empty report
    with pytest.raises(psycopg.errors.DataError) as caught:
        rows(seeded, "trading.spread_trade_pnl", since=T0 + timedelta(microseconds=1), until=T0)
    assert caught.value.sqlstate == "22S09"
    assert " is after until " in caught.value.diag.message_primary


def test_spread_trade_pnl_includes_a_spread_trade_opened_at_its_since(seeded: psycopg.Connection) -> None:
    list_okx_btc_spot(seeded)
    spread = open_spread(seeded, opened_at=T0)
    # [since, until): opened at since is in the period
    assert [r["spread_trade_id"] for r in rows(seeded, "trading.spread_trade_pnl", since=T0)] == [spread]


# -- opening a spread trade ------------------------------------------------------------------------


def test_a_spread_trades_leg_goes_to_the_active_instrument_of_the_pair_not_a_delisted_one(
    seeded: psycopg.Connection,
) -> None:
    list_okx_btc_spot(seeded)  # okx BTC-USDT, then BTC-USDT-2: a greater instrument id
    list_spot(seeded, "okx", "BTC-USDT-2")
    seeded.execute("update ref.instruments set is_active = false where symbol = 'BTC-USDT'")
    _, sell = legs(seeded, open_spread(seeded))
    assert seeded.execute(
        "select i.symbol from trading.orders o join ref.instruments i using (instrument_id) where o.order_id = %s",
        [sell],
    ).fetchone() == ("BTC-USDT-2",)


def test_a_spread_trades_legs_are_placed_at_its_opened_at(seeded: psycopg.Connection) -> None:
    list_okx_btc_spot(seeded)
    opened_at = T0 - timedelta(minutes=5)
    spread = open_spread(seeded, opened_at=opened_at)
    # both legs' orders were placed when the spread trade was opened, not when it was recorded
    assert [order(seeded, leg)["created_at"] for leg in legs(seeded, spread)] == [opened_at, opened_at]


@pytest.mark.parametrize(
    ("changed", "retried"),
    [
        # the same buy leg, but selling on bybit
        ({"sell_exchange": "bybit"}, "alpha buys 2 BTC/USDT spot on binance @ 100, sells on bybit @ 101"),
        # BTC/USDC, not BTC/USDT: another pair
        ({"symbol": "BTC/USDC"}, "alpha buys 2 BTC/USDC spot on binance @ 100, sells on okx @ 101"),
    ],
    ids=["sell-exchange", "quote-asset"],
)
def test_a_client_spread_id_retried_with_another_sell_exchange_or_quote_asset_is_a_conflict(
    seeded: psycopg.Connection, changed: dict[str, str], retried: str
) -> None:
    list_okx_btc_spot(seeded)
    call(seeded, "ref.upsert_instrument", exchange="okx", symbol="BTC-USDC", base_asset="BTC", quote_asset="USDC",
         market_type="spot", tick_size=D("0.01"), lot_size=D("0.0001"))  # fmt: skip
    first = open_spread(seeded, client_spread_id="arb-1")
    # another spread trade, not the one stored
    error = expect_refusal(
        seeded,
        "23S06",
        f'client spread id "arb-1" is already used by spread trade {first} with different values',
        lambda: open_spread(seeded, client_spread_id="arb-1", **changed),
    )
    assert error.diag.message_detail == (
        f"stored: alpha buys 2 BTC/USDT spot on binance @ 100, sells on okx @ 101; retried: {retried}"
    )


# -- exchange-initiated fills ----------------------------------------------------------------------


def test_an_exchange_fill_again_for_another_strategy_is_a_conflict_not_the_first_strategys_trade(
    seeded: psycopg.Connection,
) -> None:
    open_position(seeded, "buy", "10", "60000")
    trade_id = exchange_fill(seeded, "sell", "10", "55000", "liquidation", exchange_trade_id="L-1")
    # beta reports alpha's liquidation, every other value the same: not beta's fill to get back
    expect_refusal(
        seeded,
        "23S06",
        f'exchange trade id "L-1" is already recorded as trade {trade_id} with different values',
        lambda: exchange_fill(
            seeded, "sell", "10", "55000", "liquidation", exchange_trade_id="L-1", strategy="beta"
        ),
    )


def test_an_exchange_order_id_of_a_sell_liquidation_is_refused_for_a_buy_liquidation(
    seeded: psycopg.Connection,
) -> None:
    trade_id = exchange_fill(
        seeded, "sell", "1", "59000", "liquidation", exchange_trade_id="X-1", exchange_order_id="F-1"
    )
    order_id = seeded.execute(
        "select order_id from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()[0]
    # a buy naming the sell's exchange order: added to it, it would be recorded as a second sell
    expect_refusal(
        seeded,
        "23S06",
        f'exchange order id "F-1" is already recorded for order {order_id}',
        lambda: exchange_fill(
            seeded, "buy", "1", "59000", "liquidation", exchange_trade_id="X-2", exchange_order_id="F-1"
        ),
    )


def test_a_liquidations_risk_event_names_its_trade_not_its_order(seeded: psycopg.Connection) -> None:
    place(seeded, "buy", "1", "100")  # an order without a trade: order ids run ahead of trade ids
    trade_id = exchange_fill(seeded, "sell", "1", "59000", "liquidation", exchange_trade_id="L-1")
    order_id = seeded.execute(
        "select order_id from trading.trades where trade_id = %s", [trade_id]
    ).fetchone()[0]
    assert order_id != trade_id
    # no position before: realized 0; the reason names the trade the fill was recorded as
    assert seeded.execute("select reason from monitor.risk_events").fetchall() == [
        (f"liquidation by okx: sell 1 BTC-USDT-SWAP @ 59000 (trade {trade_id}), realized 0 USDT",)
    ]


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"fee": D("1e100000")}, "fee must be below 10^100000 in magnitude, got 1.000e+100000"),
        # an asset code is at most 32 characters
        (
            {"fee_currency": "A" * 33},
            f'fee currency must be an alphanumeric asset code of at most 32 characters, got "{"A" * 33}"',
        ),
    ],
    ids=["fee-too-large", "fee-currency-of-33-characters"],
)
def test_an_exchange_fill_again_with_an_invalid_fee_is_an_invalid_argument_not_a_conflict(
    seeded: psycopg.Connection, changed: dict[str, object], message: str
) -> None:
    exchange_fill(seeded, "sell", "1", "59000", "liquidation", exchange_trade_id="L-1")
    # the fee is checked before the fill is compared with the stored one
    expect_refusal(
        seeded,
        "22S09",
        message,
        lambda: exchange_fill(
            seeded, "sell", "1", "59000", "liquidation", exchange_trade_id="L-1", **changed
        ),
    )
