"""Rules of the money path -- fills, their fees, positions, pnl_summary and the PnL rollups -- that a
third round of plausible slips in their SQL broke without any other test noticing: each test here
kills one mutant of the third mutation run of 31_trading_fills.sql, 31_trading_fill_fees.sql,
33_trading_positions.sql, 34_trading_pnl.sql and 22_trading_rollups.sql (the earlier rounds and
their tests are tests/test_fill_mutants.py, test_money_mutants.py and test_pnl_mutants.py; their
mutants are not repeated, but for one run by mistake and caught by them).

The run: 42 mutants (22 of 31_trading_fills.sql, 7 of 31_trading_fill_fees.sql, 2 of
33_trading_positions.sql, 10 of 34_trading_pnl.sql, 1 of 22_trading_rollups.sql), each run against
the test files that cover its function (test_fills, test_fill_keys, test_fee_valuation,
test_fee_scope, test_fill_after_cleanup, test_fill_fee_later_hunt, test_invariants, test_orders,
test_fills_edges, test_reliability_model, test_api_fuzz_hunt, test_positions_edges,
test_pnl_rules, test_pnl_core_hunt, test_pnl_rollups, test_pnl_summary_unrealized and the earlier
*_mutants files). 31 were caught, 11 survived: 1 equivalent, 10 holes, each killed by one test below.

Caught (fills): a fee's value checked only when both factors are large (or for either); its bound
exclusive (> 10^100000); a derivative's base-asset fee ignoring the fee_quote given; a fee_quote of
0 refused as of the wrong sign; a third-currency fee valued at the session's marks, not its
owner's; a redelivery's quantity not compared; a fill stored without a fee matching a redelivery
with one (an earlier round's mutant); a removed order's redelivery compared with a null fee
currency; a redelivery looked up on either side of a shared trade id; a base-asset fee as large
as the fill accepted (> for >=), and a rebate larger than it (abs dropped); closed_quantity the
whole fill on a flip; opened_at kept through a flip, and on a closed position; a late fill
completing a cancelled order leaving it cancelled; the cancel's status_reason kept on a filled
order; the rollups' fees at the fee instead of its quote value; their volume net of a base-asset
fee; position_delta without the base-asset fee. (Fill fees): the trade trigger letting the price
change with the fee; a retry of the same fee amount in another currency returning the trade; the
trade looked up without its order; fees_paid and the rollups at the fee instead of its quote
value. (Positions): realized PnL without funding. (pnl_summary): a period ending exactly now not
reaching the present; the trades' notional without the multiplier; the last day or hour boundary
rounded up; the first hourly piece up to D1 whatever the until; the second one from D2 without D1.

Equivalent: closed_quantity's test "the fill's sign is the opposite of the position's" written
"differs from the position's": they differ only for a flat position, where least(|delta|, 0) is
0 either way (a fill's position delta is never 0: a base-asset fee is smaller than the fill).

Holes, each killed by one test below:
- fee_in_quote storing a fee_quote without its size check (10^100000 stored)
- a redelivery's price not compared (the stored trade returned for a fill at another price): killed
  by the price case of test_fills.py's test_an_exchange_trade_id_reused_with_different_values_is_a_conflict
- the trade trigger without "the stored fee is 0" (a tiny fee valued at 0 changed by hand)
- record_fill_fee adding the fee to every strategy's position in the instrument
- get_position without the mark among the factors sent to the overflow check (a bare 22003)
- pnl_summary refusing since = until as reversed (>= for >)
- the trades after the last whole hour read up to and including until (<= for <)
- the hourly rollup read up to and including the hour until falls in (<= for <)
- the trades after the last whole hour counting the fee, not its quote value
- the hourly rollup keyed by the session time zone's hour (a UTC+05:30 session)

Planned but not run for lack of time: the rollups' notional without the multiplier; a base-asset
fee set later valued at the fill's quantity, or a derivative's taken as quote; record_fill_fee
without the size check; get_position's mark check dropped, its rounding to 8 decimals, a given mark
preferred after the market's; pnl_summary by instrument without the exchange, open positions'
unrealized PnL without the multiplier or for longs only, the daily rows' strategy filter dropped,
the last day included, the exchange always shown, net PnL without funding, an unmarked position
not NaN, scoped sessions seeing every strategy; the rollups counting a fee set later as a trade,
replacing funding or fees instead of adding, dropping notional or realized PnL. Judged equivalent
by reading, not run: get_position's unrealized PnL at the position's copy of the multiplier (kept
equal to the instrument's by its cascading foreign key), and record_fill's quote-asset shortcut
taken for a null currency only (internal.fee_in_quote returns a quote-asset fee itself, base_fee 0).

Every expected value is worked out by hand in its comment."""

from datetime import datetime
from decimal import Decimal as D

import psycopg
import pytest

from test_pnl_mutants import DAY, total
from trading_helpers import call, expect_refusal, fill, place, position, trade

# -- a fill's fee ------------------------------------------------------------------------------------


def test_a_fee_quote_of_10_to_the_100000_is_an_invalid_argument_and_writes_nothing(seeded):
    order_id = place(seeded, "buy", "1", "100")
    # 1 BNB valued at 10^100000 USDT: fee_quote is a sum of money and has the fee's bound; stored,
    # the position's fees_paid and every rollup summing it would be past it
    expect_refusal(
        seeded,
        "22S09",
        "fee_quote must be below 10^100000 in magnitude, got 1.000e+100000",
        lambda: fill(seeded, order_id, "1", "100", fee=D("1"), fee_currency="BNB", fee_quote=D("1e100000")),
    )


# -- a fee set later -------------------------------------------------------------------------------


def test_a_tiny_fee_valued_at_zero_cannot_be_changed_by_hand(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100", fee=D("0.00001"), fee_currency="BNB", fee_quote=D("0"))
    # the fill has a fee (0.00001 BNB, worth 0 USDT rounded): only a fill without one (fee 0) may
    # be given one, so this fee stands even though its fee_quote is 0
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute("update trading.trades set fee = 1, fee_quote = 600")
    assert caught.value.sqlstate == "55S02"
    assert seeded.execute("select fee, fee_currency, fee_quote from trading.trades").fetchall() == [
        (D("0.00001"), "BNB", D("0"))
    ]


def test_a_fee_set_later_is_paid_by_its_own_strategys_position_only(seeded):
    order_id = place(seeded, "buy", "1", "100")
    fill(seeded, order_id, "1", "100", exchange_trade_id="CB-1")
    trade(seeded, "buy", "1", "100", strategy="beta")
    call(seeded, "trading.record_fill_fee", order_id=order_id, exchange_trade_id="CB-1", fee=D("0.1"))
    # alpha's fill paid 0.1 USDT; beta holds the same instrument and paid nothing
    assert [position(seeded, s, "binance", "BTCUSDT")["fees_paid"] for s in ("alpha", "beta")] == [
        D("0.1"),
        D("0"),
    ]


# -- a position's unrealized PnL ---------------------------------------------------------------------


def test_the_unrealized_pnl_at_a_mark_too_large_for_numeric_is_22s09_not_a_bare_overflow(seeded):
    trade(seeded, "buy", "2", "100")
    # long 2 at 100, marked at 9e131071: 2 x (9e131071 - 100) is about 1.8e131072, past numeric;
    # the mark alone is a factor that sends the product to the checked computation
    expect_refusal(
        seeded,
        "22S09",
        "unrealized PnL (quantity 2.000e+00 x multiplier 1.000e+00 x (mark 9.000e+131071 - entry 1.000e+02))"
        " is too large a number",
        lambda: position(seeded, "alpha", "binance", "BTCUSDT", mark_price=D("9e131071")),
    )


# -- pnl_summary ------------------------------------------------------------------------------------


def test_an_empty_period_of_one_instant_has_no_rows(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 09:15:00+00")
    # [09:15, 09:15) is empty, not reversed: no fact in it, not even the buy at 09:15
    assert total(seeded, since=f"{DAY} 09:15:00+00", until=f"{DAY} 09:15:00+00") == []


def test_a_trade_exactly_at_an_until_between_hours_is_left_out_of_the_period(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 10:10:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY} 10:30:00+00")
    # [09:00, 10:30) ends where the sell is: 10:00 to 10:30 is read from the trades, the buy
    # only (1 trade, volume 1, notional 100); the sell and its realized 1 x (110 - 100) = 10 are
    # the next period's
    assert total(seeded, since=f"{DAY} 09:00:00+00", until=f"{DAY} 10:30:00+00") == [
        (1, D("1"), D("100"), D("0"), D("0"), D("0"), D("0"), None)
    ]


def test_the_hour_an_until_falls_in_is_read_from_the_trades_alone(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 10:10:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY} 10:40:00+00")
    # [00:00, 10:30): the whole hours 00:00 to 10:00 from the hourly rollup, 10:00 to 10:30 from
    # the trades: the buy, once (1 trade, volume 1, notional 100). The 10:00 rollup row holds the
    # buy and the 10:40 sell; read as well, the buy would count twice and the sell's 10 of
    # realized PnL after the period's end would be in it
    assert total(seeded, since=f"{DAY} 00:00:00+00", until=f"{DAY} 10:30:00+00") == [
        (1, D("1"), D("100"), D("0"), D("0"), D("0"), D("0"), None)
    ]


def test_a_third_currency_fee_after_the_last_whole_hour_counts_at_its_value_in_the_quote_asset(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 10:20:00+00", fee=D("0.01"), fee_currency="BNB",
          fee_quote=D("6"))  # fmt: skip
    # [09:00, 10:30): 10:00 to 10:30 is read from the trades. The fee of 0.01 BNB is worth 6 USDT:
    # fees 6, realized 0 - 6 = -6 (not 0.01 BNB counted as USDT)
    assert total(seeded, since=f"{DAY} 09:00:00+00", until=f"{DAY} 10:30:00+00") == [
        (1, D("1"), D("100"), D("6"), D("0"), D("0"), D("-6"), None)
    ]


# -- the rollups -----------------------------------------------------------------------------------


def test_a_fill_recorded_in_a_half_hour_time_zone_is_rolled_up_in_its_utc_hour(seeded):
    seeded.execute("set timezone = 'Asia/Kolkata'")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 09:10:00+00")
    # 09:10 UTC is 14:40 at UTC+05:30, whose hour starts at 09:00 UTC, not at 14:00 there (08:30
    # UTC): the hourly rollup row is 09:00 UTC
    got = seeded.execute("select hour at time zone 'UTC', trades from trading.hourly_pnl").fetchall()
    assert got == [(datetime.fromisoformat(f"{DAY} 09:00:00"), 1)]
