"""Mark price freshness: of an instrument's newest quote and newest trade (tick), the newer marks it;
the quote mid when both are of one time. A quote feed that stopped while trades went on must not
hold every mark at its last mid."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from market_helpers import RECENT_NOON, instrument_id, quote, tick
from trading_helpers import call, order, place, position, trade

T0 = RECENT_NOON


def mark_price(conn: psycopg.Connection, symbol: str = "BTCUSDT") -> Decimal | None:
    return conn.execute("select trading.mark_price(%s)", [instrument_id(conn, symbol=symbol)]).fetchone()[0]


def test_a_quote_older_than_the_last_trade_gives_way_to_the_trades_price(seeded):
    quote(seeded, T0 - timedelta(days=1), "109", "111")  # the quote feed stopped a day earlier
    tick(seeded, T0, "105", trade_id="a")
    assert mark_price(seeded) == Decimal("105")


def test_a_quote_newer_than_the_last_trade_marks_at_its_mid(seeded):
    tick(seeded, T0, "105", trade_id="a")
    quote(seeded, T0 + timedelta(seconds=1), "109", "111")
    assert mark_price(seeded) == Decimal("110")


def test_a_quote_of_the_last_trades_time_marks_at_its_mid(seeded):
    tick(seeded, T0, "105", trade_id="a")
    quote(seeded, T0, "109", "111")
    assert mark_price(seeded) == Decimal("110")


def test_a_strategy_owners_mark_takes_the_trade_newer_than_the_quote(seeded):
    # internal.owner_mark_price marks portfolio snapshots and values fees in a third currency
    quote(seeded, T0 - timedelta(days=1), "109", "111")
    tick(seeded, T0, "105", trade_id="a")
    mark = seeded.execute("select internal.owner_mark_price(%s, null)", [instrument_id(seeded)]).fetchone()[0]
    assert mark == Decimal("105")


def test_unrealized_pnl_is_marked_at_a_trade_newer_than_the_quote(seeded):
    trade(seeded, "buy", "2", "100")
    quote(seeded, T0 - timedelta(days=1), "109", "111")
    tick(seeded, T0, "105", trade_id="a")
    p = position(seeded, "alpha", "binance", "BTCUSDT")
    assert (p["mark"], p["unrealized_pnl"]) == (Decimal("105"), Decimal("10"))


@pytest.mark.parametrize(
    ("scope", "unit"),
    [({}, ""), ({"exchange": "binance"}, ""), ({"limit_asset": "USDT"}, " USDT")],
    ids=["strategy", "exchange", "limit_asset"],
)
def test_position_notional_values_another_position_at_a_trade_newer_than_its_quote(seeded, scope, unit):
    # BNB: 1 held, quoted at a mid of 600 a day before it traded at 700. At the stale mid the
    # order's 600 would make 1200, within the limit; at the trade's price it makes 1300
    trade(seeded, "buy", "1", "600", symbol="BNBUSDT")
    quote(seeded, T0 - timedelta(days=1), "599.9", "600.1", symbol="BNBUSDT")
    tick(seeded, T0, "700", trade_id="a", symbol="BNBUSDT")
    call(seeded, "monitor.set_risk_limit", strategy="alpha", max_position_notional=Decimal("1250"), **scope)

    placed = place(seeded, "buy", "0.01", "60000")

    stored = order(seeded, placed)
    assert (stored["status"], stored["status_reason"]) == (
        "rejected",
        f"position notional 1300{unit} after the order exceeds max_position_notional 1250{unit}",
    )


def test_the_market_data_mark_is_inlined_into_a_query_that_joins_latest_prices(seeded):
    # why it matters: the pre-trade risk check values every other position through a join to
    # market.latest_prices; a mark PostgreSQL does not inline is a function call per position
    plan = seeded.execute(
        "explain (verbose, costs off)"
        " select internal.market_mark(lp.bid, lp.bid_size, lp.ask, lp.ask_size, lp.quoted_at, lp.last_price, lp.traded_at)"
        " from trading.positions p left join market.latest_prices lp on lp.instrument_id = p.instrument_id"
    ).fetchall()
    assert not any("market_mark(" in line for (line,) in plan), plan


# an empty side of a book (size 0) is no price: the mid of a bid of 50 left on an empty side and an
# ask of 100 marked at 75
@pytest.mark.parametrize(("bid_size", "ask_size"), [("0", "1"), ("1", "0")], ids=["empty bid", "empty ask"])
def test_a_quote_with_an_empty_side_gives_way_to_the_last_trade(seeded, bid_size, ask_size):
    tick(seeded, T0 - timedelta(seconds=5), "99", trade_id="a")
    quote(seeded, T0, "50", "100", bid_size=bid_size, ask_size=ask_size)
    assert mark_price(seeded) == Decimal("99")


def test_a_quote_with_an_empty_side_and_no_trade_marks_at_the_latest_fill(seeded):
    trade(seeded, "buy", "0.01", "60000")
    quote(seeded, T0, "50", "100", bid_size="0")
    assert mark_price(seeded) == Decimal("60000")
