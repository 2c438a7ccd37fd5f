"""Rules of the history pages and the trade summary that a plausible slip in their SQL (a bound
off by one, a dropped check, a sum of the wrong column) broke without any other test noticing: each
test here kills one such mutant of the mutation run of 55_trading_history.sql,
56_trading_history_orders.sql, 57_trading_history_trades.sql and 58_trading_history_portfolio.sql.

The run: 60 mutants, 51 caught by the existing tests (three of them, a cursor's own row read again
on the orders, trades or snapshots list, then only by a walk of one-row pages that never ended:
the walks of test_history_edges.py and test_history_merge.py now fail on the first row repeated;
and portfolio_latest taking the greatest taken_at only by test_clock_step_money_hunt.py), 9 survived:
0 equivalent, 9 holes, each killed by a test below (the page size test's two cases kill one mutant
each: 1001 let through, 0 let through), 0 left open. The holes: a trade or snapshot page of exactly
the last rows offering a next_cursor to an empty page; an admin's trade page by symbol letting in
a trade at exactly end_date (the instrument driver's slice end made inclusive); the page size
bounds 1 and 1000 each moved by one; a page range with start_date equal to end_date, and a summary
range given backwards, answered instead of refused; the summary adding fees in the currency paid
instead of their quote value; the summary's UTC day keyed in the session's time zone.

Every expected value is worked out by hand in its comment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from test_history_edges import MONTH, US, order_at
from trading_helpers import call, expect_refusal, fill, place

# -- next_cursor at the last page ------------------------------------------------------------------


def test_a_trade_page_holding_exactly_the_last_trades_has_no_next_cursor(seeded: psycopg.Connection) -> None:
    at = MONTH + timedelta(minutes=3)
    order_at(seeded, "alpha", "binance", at)
    order_at(seeded, "alpha", "binance", at + timedelta(seconds=1))
    # two trades, a page of two: it is the last page, and a cursor would only lead to an empty one
    page = call(seeded, "trading.trade_history_page", page_size=2)
    assert (len(page["items"]), page["next_cursor"]) == (2, None)


def test_a_snapshot_page_holding_exactly_the_last_rows_has_no_next_cursor(seeded: psycopg.Connection) -> None:
    call(seeded, "trading.take_portfolio_snapshot")
    # one snapshot of the seeded desk: a row for alpha, one for beta and the total row
    page = call(seeded, "trading.portfolio_snapshot_page", page_size=3)
    assert (len(page["items"]), page["next_cursor"]) == (3, None)


# -- the page size and the time range --------------------------------------------------------------


@pytest.mark.parametrize("page_size", [0, 1001])
def test_a_page_size_just_outside_1_to_1000_is_an_invalid_argument(
    seeded: psycopg.Connection, page_size: int
) -> None:
    # psql callers reach the bound the API checks first (422): 0 and 1001 are the nearest sizes out
    expect_refusal(
        seeded,
        "22S09",
        f"page_size must be between 1 and 1000, got {page_size}",
        lambda: call(seeded, "trading.order_history_page", page_size=page_size),
    )


# a page whose [start, end) starts where it ends holds no instant, and a summary window given
# backwards no trade: each a mistake to name, not an empty page or a summary of no groups
@pytest.mark.parametrize(
    ("function", "start_month"),
    [("trading.trade_history_page", 1), ("trading.trade_summary", 2)],
    ids=["page-start-at-its-end", "summary-start-after-its-end"],
)
def test_a_time_range_that_does_not_start_before_it_ends_is_an_invalid_argument(
    seeded: psycopg.Connection, function: str, start_month: int
) -> None:
    expect_refusal(
        seeded,
        "22S09",
        f"start_date 2026-0{start_month}-01 00:00:00+00 is not before end_date 2026-01-01 00:00:00+00",
        lambda: call(
            seeded,
            function,
            start_date=datetime(2026, start_month, 1, tzinfo=UTC),
            end_date=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )


# -- time bounds of each kind of driver ------------------------------------------------------------


def test_a_trade_page_by_symbol_of_a_caller_who_sees_every_strategy_excludes_its_end_date(
    seeded: psycopg.Connection,
) -> None:
    # a symbol and every strategy: the page reads the instrument's trades (the instrument driver)
    at = MONTH + timedelta(minutes=4)
    order_at(seeded, "alpha", "binance", at - US)
    order_at(seeded, "alpha", "binance", at)
    before = seeded.execute("select trade_id from trading.trades where executed_at < %s", [at]).fetchone()[0]
    # end_date is exclusive: the trade at exactly end_date belongs to the next window
    page = call(seeded, "trading.trade_history_page", symbol="BTCUSDT", end_date=at)
    assert [item["trade_id"] for item in page["items"]] == [before]


# -- the trade summary -----------------------------------------------------------------------------


def test_the_summary_adds_fees_up_at_their_quote_value_not_in_the_currency_paid(
    seeded: psycopg.Connection,
) -> None:
    order_id = place(seeded, "buy", "0.1", "60000")
    # 0.01 BNB worth 6 USDT, and 1.5 USDT: the group's fees are 7.5 USDT (0.01 + 1.5 = 1.51 adds
    # BNB to USDT at par)
    fill(seeded, order_id, "0.05", "60000", fee=Decimal("0.01"), fee_currency="BNB", fee_quote=Decimal("6"))
    fill(seeded, order_id, "0.05", "60000", fee=Decimal("1.5"))
    [group] = call(seeded, "trading.trade_summary")["groups"]
    assert (group["key"], group["quote_asset"], group["fees"]) == ("alpha", "USDT", "7.5")


def test_the_summary_by_day_keys_a_trade_by_its_utc_day_whatever_the_session_time_zone(
    seeded: psycopg.Connection,
) -> None:
    # 20:00 UTC on the month's first day is 05:00 on its second day in Tokyo (UTC+9)
    order_at(seeded, "alpha", "binance", MONTH + timedelta(hours=20))
    seeded.execute("set time zone 'Asia/Tokyo'")
    summary = call(seeded, "trading.trade_summary", group_by="day")
    assert [group["key"] for group in summary["groups"]] == [MONTH.strftime("%Y-%m-%d")]
