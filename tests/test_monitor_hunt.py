"""Monitoring edges found in a bug hunt: averages compared with a threshold finer than their
rounding."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from market_helpers import tick
from monitor_helpers import add_rule, evaluate, metric

NOW = datetime.now(UTC).replace(microsecond=0)


# bug: the average was rounded to 12 decimals before the comparison, so the average of 0, 0 and 1
# (a third) read 0.333333333333 and a rule avg > 0.3333333333333 stayed quiet, though a third is
# above it
def test_an_avg_rule_fires_on_an_average_above_a_threshold_finer_than_12_decimals(
    seeded: psycopg.Connection,
) -> None:
    for seconds, value in ((3, "0"), (2, "0"), (1, "1")):
        metric(seeded, "app.hits", value, NOW - timedelta(seconds=seconds))
    add_rule(seeded, "hits-avg", "system", ">", "0.3333333333333", metric="app.hits", aggregate="avg")
    assert evaluate(seeded, NOW) == [("hits-avg", "fired", Decimal("0.333333333333333"), False)]


# bug: the other way round on the ticks' average price: 2, 2 and 1 average 1.666666666667 at 12
# decimals, and a rule avg < 1.6666666666667 (which five thirds is below) stayed quiet
def test_a_price_avg_rule_fires_on_an_average_below_a_threshold_finer_than_12_decimals(
    seeded: psycopg.Connection,
) -> None:
    for seconds, price in ((3, "2"), (2, "2"), (1, "1")):
        tick(seeded, NOW - timedelta(seconds=seconds), price, trade_id=f"t{seconds}")
    add_rule(seeded, "btc-avg", "price", "<", "1.6666666666667", exchange="binance", symbol="BTCUSDT",
             aggregate="avg")  # fmt: skip
    assert evaluate(seeded, NOW) == [("btc-avg", "fired", Decimal("1.666666666666667"), False)]


# bug: a third rounded to 0.333333333333 matched a rule avg = 0.333333333333 (and avg <> it stayed
# quiet), though a third is not that number
def test_an_avg_rule_on_equality_does_not_fire_on_an_average_that_only_rounds_to_its_threshold(
    seeded: psycopg.Connection,
) -> None:
    for seconds, value in ((3, "0"), (2, "0"), (1, "1")):
        metric(seeded, "app.hits", value, NOW - timedelta(seconds=seconds))
    add_rule(seeded, "hits-third", "system", "=", "0.333333333333", metric="app.hits", aggregate="avg")
    add_rule(seeded, "hits-not-third", "system", "<>", "0.333333333333", metric="app.hits", aggregate="avg")
    assert evaluate(seeded, NOW) == [("hits-not-third", "fired", Decimal("0.33333333333333"), False)]
