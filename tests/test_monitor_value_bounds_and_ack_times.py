"""Monitoring edges: metric values an evaluation cannot add up, averages at their own scale, and
acknowledgements of alerts opened at a time ahead of now."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from market_helpers import tick, ticks_in_one_statement
from monitor_helpers import add_rule, evaluate, metric, now_to_the_second
from trading_helpers import call, expect_refusal

NOW = datetime.now(UTC).replace(microsecond=0)


# bug: a custom metric value near numeric's limit (9e131071 is finite) was recorded, and the sum of
# two of them in a rule's window overflowed: every evaluation, of every rule, failed with a bare
# 22003 "value overflows numeric format"
def test_a_metric_value_too_large_for_a_windows_sum_is_refused_when_recorded(
    seeded: psycopg.Connection,
) -> None:
    expect_refusal(
        seeded,
        "22S14",
        "value of metric app.big must be below 10^100000 in magnitude, got 9.000e+131071",
        lambda: metric(seeded, "app.big", "9e131071", NOW),
    )


def test_a_negative_metric_value_too_large_for_a_windows_sum_is_refused_when_recorded(
    seeded: psycopg.Connection,
) -> None:
    expect_refusal(
        seeded,
        "22S14",
        "value of metric app.big must be below 10^100000 in magnitude, got -1.000e+100000",
        lambda: metric(seeded, "app.big", "-1e100000", NOW),
    )


def test_rules_on_the_largest_and_smallest_metric_values_are_evaluated(seeded: psycopg.Connection) -> None:
    largest = Decimal("9.999e99999")
    for seconds in (1, 2, 3):
        metric(seeded, "app.big", str(largest), NOW - timedelta(seconds=seconds))
    metric(seeded, "app.tiny", "1e-16383", NOW - timedelta(seconds=2))
    metric(seeded, "app.tiny", str(largest), NOW - timedelta(seconds=1))
    add_rule(seeded, "big-sum", "system", ">", "0", metric="app.big", aggregate="sum")
    add_rule(seeded, "big-avg", "system", ">", "0", metric="app.big", aggregate="avg")
    add_rule(seeded, "tiny-change", "system", ">", "0", metric="app.tiny", aggregate="change_pct")
    assert [(rule, transition) for rule, transition, _value, _notified in evaluate(seeded, NOW)] == [
        ("big-sum", "fired"),
        ("big-avg", "fired"),
        ("tiny-change", "fired"),
    ]
    assert seeded.execute(
        "select r.name, a.opened_value from monitor.alerts a join monitor.alert_rules r using (rule_id)"
        " where r.name like 'big-%%' order by a.alert_id"
    ).fetchall() == [("big-sum", largest * 3), ("big-avg", largest)]


# bug: an evaluation may run up to a day ahead of now; an alert it opened at T + 1 hour and then
# acknowledged was stamped acknowledged at now(), an hour before it fired (internal.
# resolve_alert_of_disabled_rule already takes the later of the two)
def test_an_alert_opened_ahead_of_now_is_acknowledged_no_earlier_than_it_fired(
    seeded: psycopg.Connection,
) -> None:
    ahead = now_to_the_second(seeded) + timedelta(hours=1)
    metric(seeded, "app.lag", "20", ahead)
    add_rule(seeded, "lag", "system", ">", "10", metric="app.lag", channels=["slack"])
    assert evaluate(seeded, ahead) == [("lag", "fired", Decimal("20"), True)]
    call(seeded, "monitor.acknowledge_alert", alert_id=1, acknowledged_by="alice")
    assert seeded.execute(
        "select transition::text, actor, occurred_at from monitor.alert_events order by event_id"
    ).fetchall() == [("fired", None, ahead), ("acknowledged", "alice", ahead)]
    assert seeded.execute("select status::text, acknowledged_at from monitor.alerts").fetchall() == [
        ("acknowledged", ahead)
    ]


# bug: avg was rounded to 12 decimals before the comparison, so the average of the one value
# 0.5000000000001 read 0.5 and the rule avg > 0.5 stayed quiet, while last, min and max fired
def test_an_avg_rule_compares_the_average_at_the_values_own_scale(seeded: psycopg.Connection) -> None:
    metric(seeded, "app.ratio", "0.5000000000001", NOW - timedelta(minutes=1))
    add_rule(seeded, "ratio-avg", "system", ">", "0.5", metric="app.ratio", aggregate="avg")
    add_rule(seeded, "ratio-max", "system", ">", "0.5", metric="app.ratio", aggregate="max")
    assert evaluate(seeded, NOW) == [
        ("ratio-avg", "fired", Decimal("0.5000000000001"), False),
        ("ratio-max", "fired", Decimal("0.5000000000001"), False),
    ]


# bug: change_pct took ticks of one time in time order alone, so its last price at a tie was any of
# them (here the first); a rule on last takes the one with the greatest trade id (the shorter first)
def test_a_price_change_rule_ends_at_the_tick_a_last_rule_reads_when_ticks_share_a_time(
    seeded: psycopg.Connection,
) -> None:
    tick(seeded, NOW - timedelta(minutes=5), "100", trade_id="1")
    # trade b came after trade a (ids of one length are in text order)
    ticks_in_one_statement(seeded, NOW - timedelta(minutes=1), [("a", "120"), ("b", "110")])
    for name, aggregate in (("btc-last", "last"), ("btc-change", "change_pct")):
        add_rule(seeded, name, "price", ">", "0", exchange="binance", symbol="BTCUSDT", aggregate=aggregate,
                 evaluation_window=timedelta(minutes=10))  # fmt: skip
    assert evaluate(seeded, NOW) == [
        ("btc-last", "fired", Decimal("110"), False),
        ("btc-change", "fired", Decimal("10.000000"), False),
    ]
