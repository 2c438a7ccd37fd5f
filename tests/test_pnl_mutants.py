"""Rules of trading.pnl_summary, the PnL rollups written per fill, portfolio snapshots and the
trading views that a plausible slip in their SQL (a bound off by one, a dropped condition or term,
a wrong column, a session time zone where UTC is meant) broke without any other test noticing:
each test here kills one such mutant of the mutation run of 34_trading_pnl.sql,
22_trading_rollups.sql, 35_trading_portfolio.sql and 50_trading_views.sql (after the few of
test_money_mutants.py).

The run: 51 mutants, 31 caught by the existing tests, 20 survived: 2 equivalent
(internal.utc_boundary rounding up a since already on an hour or a day to the next one: that first
hour or day is then read from the trades instead of the rollup, which always holds the same sums,
written in the fill's own transaction, money history never deleted; take_portfolio_snapshot
pricing a position in the valuation asset itself through internal.asset_price_as, which gives 1
for an asset in itself) and 18 holes, each killed by a test below (one test kills both mutants of
the funding read for a period inside one hour).

Every expected value is worked out by hand in its comment."""

from datetime import timedelta
from decimal import Decimal as D

import psycopg
from psycopg import sql

from market_helpers import RECENT_NOON, quote
from trading_helpers import call, position, rows, trade

# a recent UTC day, so its monthly trades partition exists
DAY = RECENT_NOON.date() - timedelta(days=5)
SWAP = {"exchange": "okx", "symbol": "BTC-USDT-SWAP"}


def total(conn, **kwargs) -> list[tuple]:
    """(trades, volume, notional, fees, realized_pnl_gross, funding, realized_pnl, unrealized_pnl) of
    each row of alpha's pnl_summary grouped by total (one a quote asset)."""
    return [
        (
            r["trades"],
            r["volume"],
            r["notional"],
            r["fees"],
            r["realized_pnl_gross"],
            r["funding"],
            r["realized_pnl"],
            r["unrealized_pnl"],
        )
        for r in rows(conn, "trading.pnl_summary", strategy="alpha", group_by="total", **kwargs)
    ]


# -- pnl_summary: the unrealized PnL ----------------------------------------------------------------


def test_pnl_summary_rounds_the_unrealized_pnl_to_12_decimals_as_get_position_does(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "buy", "2", "100.01")
    trade(seeded, "sell", "1", "100.01")
    quote(seeded, RECENT_NOON, "109", "111")
    # entry (100 + 2 x 100.01) / 3 = 100.006666666666666667 (18 decimals), long 2 after the sell,
    # marked at the mid 110: 2 x 9.993333333333333333 = 19.986666666666666666, to 12 decimals
    # 19.986666666667 (to 8 it would be 19.98666667)
    [row] = rows(seeded, "trading.pnl_summary", strategy="alpha", group_by="total")
    assert row["unrealized_pnl"] == D("19.986666666667")
    assert position(seeded, "alpha", "binance", "BTCUSDT")["unrealized_pnl"] == D("19.986666666667")


def test_a_period_starting_exactly_now_reaches_the_present_and_has_the_unrealized_pnl_of_now(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, RECENT_NOON, "109", "111")
    # since = now() is "at or before now()": the period reaches the present; its one open
    # position (long 2 at 100, mid 110) gives a row of no trades and 2 x 10 = 20 unrealized
    got = seeded.execute(
        "select trades, unrealized_pnl from trading.pnl_summary(since => now(), group_by => 'total')"
    ).fetchall()
    assert got == [(0, D("20"))]


def test_pnl_summary_shows_the_unrealized_pnl_of_a_position_marked_at_its_entry_without_needless_zeros(
    seeded,
):
    trade(seeded, "buy", "2", "100")
    # no market data: marked at its own fill, 100, 2 x (100 - 100) rounded to 12 decimals; shown as
    # 0, not 0.000000000000 (Decimal('0E-12'), which Python prints in exponent form)
    [row] = rows(seeded, "trading.pnl_summary", group_by="total")
    assert str(row["unrealized_pnl"]) == "0"


def test_by_day_a_fill_dated_tomorrow_has_no_unrealized_pnl_on_its_row(seeded):
    # one transaction, so now() and today's UTC day do not move between the fill and the summary
    with seeded.transaction():
        tomorrow_now = seeded.execute("select now() + interval '24 hours'").fetchone()[0]
        trade(seeded, "buy", "2", "100", executed_at=tomorrow_now)
        quote(seeded, RECENT_NOON, "109", "111")
        got = seeded.execute(
            "select day - (now() at time zone 'UTC')::date, trades, unrealized_pnl"
            " from trading.pnl_summary(group_by => 'day')"
        ).fetchall()
    # a fill may be dated up to 24 hours ahead: its row is tomorrow's, and only today's row has the
    # unrealized PnL of the position it opened (long 2 at 100, mid 110: 20)
    assert got == [(0, 0, D("20")), (1, 1, None)]


def test_pnl_summary_grouped_by_null_is_one_total_row(seeded):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "buy", "1", "110", strategy="beta")
    # group_by null means total: one row of both strategies, 2 trades, notional 100 + 110 = 210
    got = [
        (r["strategy_name"], r["trades"], r["notional"])
        for r in rows(seeded, "trading.pnl_summary", group_by=None)
    ]
    assert got == [(None, 2, D("210"))]


# -- pnl_summary: the pieces of a period -------------------------------------------------------------


def test_a_period_inside_one_hour_leaves_out_a_trade_after_its_end_in_that_hour(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 09:10:00+00")
    trade(seeded, "sell", "1", "110", executed_at=f"{DAY} 09:20:00+00")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 09:40:00+00")
    # [09:05, 09:30) holds no whole hour (the first at or after 09:05 is 10:00): all of it is read
    # from the trades, up to 09:30, not to 10:00. The 09:10 buy and 09:20 sell: 2 trades, volume 2,
    # notional 100 + 110 = 210, realized 1 x (110 - 100) = 10; the period is past (null unrealized)
    assert total(seeded, since=f"{DAY} 09:05:00+00", until=f"{DAY} 09:30:00+00") == [
        (2, D("2"), D("210"), D("0"), D("10"), D("0"), D("10"), None)
    ]


def funding(conn, amount: str, paid_at: str) -> None:
    call(conn, "trading.record_funding", strategy="alpha", amount=D(amount), paid_at=paid_at, **SWAP)


def test_a_period_inside_one_hour_leaves_out_a_funding_payment_after_its_end_in_that_hour(seeded):
    funding(seeded, "-3", f"{DAY} 09:10:00+00")
    funding(seeded, "-5", f"{DAY} 09:40:00+00")
    # as for trades: [09:05, 09:30) is read from the payments up to 09:30; the 09:40 payment is
    # after it: funding -3, realized -3
    assert total(seeded, since=f"{DAY} 09:05:00+00", until=f"{DAY} 09:30:00+00") == [
        (0, D("0"), D("0"), D("0"), D("0"), D("-3"), D("-3"), None)
    ]


def test_a_trade_exactly_at_a_since_between_hours_counts_in_the_period(seeded):
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 09:15:00+00")
    # [09:15, 09:45) starts with the buy, read from the trades (09:15 is no whole hour): 1 trade,
    # volume 1, notional 100
    assert total(seeded, since=f"{DAY} 09:15:00+00", until=f"{DAY} 09:45:00+00") == [
        (1, D("1"), D("100"), D("0"), D("0"), D("0"), D("0"), None)
    ]


def test_by_day_the_unrealized_pnl_is_on_the_current_utc_days_row_in_any_session_time_zone(seeded):
    trade(seeded, "buy", "2", "100", executed_at=f"{DAY} 09:00:00+00")
    quote(seeded, RECENT_NOON, "109", "111")
    # long 2 at 100, mid 110: 20, on the row of today's UTC day, whatever the session's zone; of
    # UTC+14 and UTC-12, one is on another calendar day than UTC at any moment
    for zone in ("Etc/GMT-14", "Etc/GMT+12"):
        seeded.execute("select set_config('timezone', %s, false)", [zone])
        got = seeded.execute(
            "select day = (now() at time zone 'UTC')::date, trades, unrealized_pnl"
            " from trading.pnl_summary(since => now(), group_by => 'day')"
        ).fetchall()
        assert (zone, got) == (zone, [(True, 0, D("20"))])


# -- the rollups written per fill -----------------------------------------------------------------


def test_a_fill_recorded_in_a_time_zone_on_another_day_is_rolled_up_in_its_utc_day(seeded):
    seeded.execute("set timezone = 'Pacific/Kiritimati'")
    trade(seeded, "buy", "1", "100", executed_at=f"{DAY} 22:00:00+00")
    # 22:00 UTC is noon of the next day at UTC+14; the fill's day is its UTC day. A whole UTC day
    # is read from the daily rollup alone and finds the buy there
    assert total(seeded, since=f"{DAY} 00:00:00+00", until=f"{DAY + timedelta(days=1)} 00:00:00+00") == [
        (1, D("1"), D("100"), D("0"), D("0"), D("0"), D("0"), None)
    ]


# -- portfolio snapshots ----------------------------------------------------------------------------


def snapshot_of(conn, strategy: str | None = "alpha", **arguments) -> dict:
    """The row of a strategy (None: the total row) of a snapshot taken now."""
    strategy_id = None
    if strategy is not None:
        strategy_id = conn.execute(
            "select strategy_id from trading.strategies where name = %s", [strategy]
        ).fetchone()[0]
    return next(
        r
        for r in rows(conn, "trading.take_portfolio_snapshot", **arguments)
        if r["strategy_id"] == strategy_id
    )


def test_a_snapshot_keeps_a_realized_pnl_in_its_valuation_asset_to_every_decimal(seeded):
    trade(seeded, "buy", "1", "100", fee=D("0.1000000000005"))
    # a fee of 13 decimals in USDT: realized -0.1000000000005, not converted (USDT is the
    # valuation asset), so not rounded to 12 decimals (-0.100000000001)
    assert position(seeded, "alpha", "binance", "BTCUSDT")["realized_pnl"] == D("-0.1000000000005")
    assert snapshot_of(seeded)["realized_pnl"] == D("-0.1000000000005")


def test_a_snapshot_counts_a_position_with_no_mark_at_its_entry_price(seeded):
    trade(seeded, "buy", "2", "50", symbol="BNBUSDT")
    # no market data and, its fill removed behind the API's back (the triggers off), no fill: the
    # position has no mark at all (as in pnl_summary's test of that state)
    seeded.execute("set session_replication_role = replica")
    seeded.execute(
        "delete from trading.trades where instrument_id ="
        " (select instrument_id from ref.instruments where symbol = 'BNBUSDT')"
    )
    seeded.execute("reset session_replication_role")
    # counted at cost: marked at its entry 50, no unrealized PnL, gross and net exposure 2 x 50 = 100
    row = snapshot_of(seeded)
    assert (row["unrealized_pnl"], row["gross_exposure"], row["net_exposure"], row["open_positions"]) == (
        D("0"),
        D("100"),
        D("100"),
        1,
    )


def test_a_snapshots_total_row_sums_the_capital_of_every_strategy(seeded):
    call(seeded, "trading.create_strategy", name="gamma", capital=D("500"))
    # alpha 10000, beta 0 and gamma 500: 10500 in total, and with nothing traded equity is capital
    row = snapshot_of(seeded, None)
    assert (row["capital"], row["equity"]) == (D("10500"), D("10500"))


def test_a_snapshot_may_be_valued_in_an_asset_instruments_trade_only_as_their_base(seeded):
    # BNB is the base asset of binance's BNBUSDT and the quote asset of nothing: an asset some
    # instrument trades all the same. With no position, nothing needs converting
    row = snapshot_of(seeded, None, valuation_asset="BNB")
    assert (row["valuation_asset"], row["capital"], row["open_positions"]) == ("BNB", D("10000"), 0)


def test_a_snapshots_realized_pnl_is_net_of_fees_and_funding(seeded):
    trade(seeded, "buy", "10", "60000", fee=D("0.2"), **SWAP)
    trade(seeded, "sell", "5", "60100", fee=D("0.11"), **SWAP)
    funding(seeded, "-1", f"{DAY} 09:00:00+00")
    # gross 5 contracts x 0.01 x (60100 - 60000) = 5, less fees 0.2 + 0.11 = 0.31, plus funding
    # -1: 3.69
    assert snapshot_of(seeded)["realized_pnl"] == D("3.69")


# -- the trading views ------------------------------------------------------------------------------


def view_row(conn, view: str, **where) -> dict:
    """The one row of a trading view matching where (column = value)."""
    query = sql.SQL("select * from trading.{} where {}").format(
        sql.Identifier(view),
        sql.SQL(" and ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in where
        ),
    )
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        [row] = cur.execute(query, where).fetchall()
    return row


def test_position_summary_shows_the_unrealized_pnl_of_a_position_marked_at_its_entry_without_needless_zeros(
    seeded,
):
    trade(seeded, "buy", "2", "100")
    # marked at its own fill, 100: 2 x (100 - 100) rounded to 12 decimals, shown as 0, not
    # 0.000000000000 (Decimal('0E-12'))
    row = view_row(seeded, "position_summary", strategy="alpha", symbol="BTCUSDT")
    assert (row["mark_price"], str(row["unrealized_pnl"])) == (D("100"), "0")


def test_trade_history_shows_the_realized_pnl_each_trade_caused_net_of_its_fee(seeded):
    trade(seeded, "buy", "2", "100", fee=D("0.2"))
    sell = trade(seeded, "sell", "1", "110", fee=D("0.11"))
    # 1 x (110 - 100) = 10 gross, less the sell's fee 0.11: 9.89
    row = view_row(seeded, "trade_history", trade_id=sell)
    assert (row["realized_pnl_gross"], row["fee_quote"], row["realized_pnl"]) == (
        D("10"),
        D("0.11"),
        D("9.89"),
    )
