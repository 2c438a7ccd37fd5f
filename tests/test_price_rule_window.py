"""A price rule's `last`: the instrument's price at the end of the rule's window (the newest quote mid
in it, else the newest tick), never a price older than the window or one from after the run's time."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from market_helpers import quote, tick
from monitor_helpers import add_rule, evaluate
from trading_helpers import trade

NOW = datetime.now(UTC).replace(microsecond=0)


def _btc_above_70k(conn: psycopg.Connection) -> None:
    add_rule(conn, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT")


# bug: last was trading.mark_price, the newest price known however old: a quote three days old
# fired a rule with a 5-minute window
def test_a_price_rule_does_not_fire_on_a_quote_older_than_its_window(seeded: psycopg.Connection) -> None:
    _btc_above_70k(seeded)
    quote(seeded, NOW - timedelta(days=3), "70999", "71001")
    assert evaluate(seeded, NOW) == []


def test_a_price_rule_whose_feed_stopped_keeps_its_alert_as_it_is(seeded: psycopg.Connection) -> None:
    _btc_above_70k(seeded)
    quote(seeded, NOW - timedelta(minutes=30, seconds=10), "70999", "71001")
    assert evaluate(seeded, NOW - timedelta(minutes=30)) == [
        ("btc-above-70k", "fired", Decimal("71000"), False)
    ]
    assert evaluate(seeded, NOW) == []  # no data in the window: nothing changes
    assert seeded.execute("select status::text from monitor.alerts").fetchone() == ("firing",)


def test_a_price_rule_run_at_a_past_time_reads_the_quote_of_then(seeded: psycopg.Connection) -> None:
    _btc_above_70k(seeded)
    quote(seeded, NOW - timedelta(minutes=10, seconds=30), "70999", "71001")
    quote(seeded, NOW - timedelta(seconds=30), "68999", "69001")  # after the run's time
    assert evaluate(seeded, NOW - timedelta(minutes=10)) == [
        ("btc-above-70k", "fired", Decimal("71000"), False)
    ]


def test_a_price_rule_without_a_quote_in_its_window_reads_the_newest_tick_in_it(
    seeded: psycopg.Connection,
) -> None:
    _btc_above_70k(seeded)
    quote(seeded, NOW - timedelta(hours=1), "68999", "69001")  # older than the window
    tick(seeded, NOW - timedelta(minutes=2), "70500", trade_id="9")
    tick(seeded, NOW - timedelta(minutes=1), "70600", trade_id="10")
    tick(seeded, NOW - timedelta(minutes=1), "70400", trade_id="9")  # same time: the shorter id first
    assert evaluate(seeded, NOW) == [("btc-above-70k", "fired", Decimal("70600"), False)]


def test_a_price_rule_is_not_fired_by_a_fill_price(seeded: psycopg.Connection) -> None:
    _btc_above_70k(seeded)
    trade(seeded, "buy", "0.01", "71000")  # the strategy's own fill is no market data
    assert evaluate(seeded, NOW) == []


def test_a_price_rule_reads_a_tick_newer_than_the_newest_quote_of_its_window(
    seeded: psycopg.Connection,
) -> None:
    add_rule(seeded, "btc-above-70k", "price", ">", "70000", exchange="binance", symbol="BTCUSDT",
             evaluation_window=timedelta(hours=1))  # fmt: skip
    quote(seeded, NOW - timedelta(minutes=50), "68999", "69001")  # the quote feed stopped then
    tick(seeded, NOW - timedelta(seconds=1), "70500", trade_id="1")
    assert evaluate(seeded, NOW) == [("btc-above-70k", "fired", Decimal("70500"), False)]


def test_a_price_rule_reads_a_quote_newer_than_the_newest_tick_of_its_window(
    seeded: psycopg.Connection,
) -> None:
    _btc_above_70k(seeded)
    tick(seeded, NOW - timedelta(minutes=2), "70500", trade_id="1")
    quote(seeded, NOW - timedelta(minutes=1), "68999", "69001")
    assert evaluate(seeded, NOW) == []
