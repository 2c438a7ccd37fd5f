"""Alert rules on counters: the aggregate increase (how much a counter rose in the window, a fall
counted as a restart of the counter), on recorded values and on db.rollbacks as collected."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from monitor_helpers import add_rule, evaluate, metric, notifications
from trading_helpers import call

NOW = datetime.now(UTC).replace(microsecond=0)


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def test_an_increase_rule_fires_on_the_rise_of_a_counter_in_its_window(seeded):
    metric(seeded, "app.rejects", "900", ago(9))  # before the value before the window: not read
    metric(seeded, "app.rejects", "1000", ago(7))  # the value before the window (5 minutes)
    for minutes, value in ((4, "1010"), (3, "1050"), (1, "1130")):
        metric(seeded, "app.rejects", value, ago(minutes))
    add_rule(seeded, "reject-burst", "system", ">", "100", metric="app.rejects", aggregate="increase",
             channels=["slack"])  # fmt: skip
    assert evaluate(seeded, NOW) == [("reject-burst", "fired", Decimal("130"), True)]
    assert notifications(seeded) == [
        ("slack", "pending", "[WARNING] reject-burst fired: app.rejects increase = 130 (threshold > 100)")
    ]


def test_an_increase_rule_counts_each_rise_in_the_window_it_ends_in(seeded):
    # collected each minute, 22 more each time: 110 in any five minutes, 22 in any one
    for minutes in range(12):
        metric(seeded, "app.rollbacks", str(1000 + 22 * (12 - minutes)), ago(minutes))
    add_rule(seeded, "five-minutes", "system", ">", "100", metric="app.rollbacks", aggregate="increase")
    add_rule(seeded, "one-minute", "system", ">=", "22", metric="app.rollbacks", aggregate="increase",
             evaluation_window=timedelta(minutes=1))  # fmt: skip
    assert sorted(evaluate(seeded, NOW)) == [
        ("five-minutes", "fired", Decimal("110"), False),
        ("one-minute", "fired", Decimal("22"), False),
    ]


def test_an_increase_rule_reads_no_value_from_before_one_more_window(seeded):
    metric(seeded, "app.rejects", "1000", ago(11))  # more than two windows back
    metric(seeded, "app.rejects", "1100", ago(1))
    add_rule(seeded, "rejects", "system", "=", "0", metric="app.rejects", aggregate="increase")
    assert evaluate(seeded, NOW) == [("rejects", "fired", Decimal("0"), False)]


def test_an_increase_rule_counts_a_fall_as_a_restart_of_the_counter(seeded):
    # 5,000 → 5,040, then the server crashed and the counter started again: 30, then 90
    for minutes, value in ((4, "5000"), (3, "5040"), (2, "30"), (1, "90")):
        metric(seeded, "app.commits", value, ago(minutes))
    add_rule(seeded, "commits-move", "system", ">", "0", metric="app.commits", aggregate="increase")
    assert evaluate(seeded, NOW) == [("commits-move", "fired", Decimal("130"), False)]


def test_a_change_pct_rule_reads_the_same_restart_as_a_fall_of_nearly_all(seeded):
    # why this test: the reason increase exists; change_pct of a restarted counter is not its rise
    for minutes, value in ((4, "5000"), (3, "5040"), (2, "30"), (1, "90")):
        metric(seeded, "app.commits", value, ago(minutes))
    add_rule(seeded, "commits-fall", "system", "<", "-90", metric="app.commits", aggregate="change_pct")
    assert evaluate(seeded, NOW) == [("commits-fall", "fired", Decimal("-98.200000"), False)]


def test_an_increase_rule_resolves_once_the_counter_stops_rising(seeded):
    metric(seeded, "app.rejects", "10", ago(4))
    metric(seeded, "app.rejects", "60", ago(3))
    add_rule(seeded, "reject-burst", "system", ">=", "50", metric="app.rejects", aggregate="increase")
    assert evaluate(seeded, NOW) == [("reject-burst", "fired", Decimal("50"), False)]
    # four minutes later the window (5 minutes) holds 60 again, which rose by nothing from the 60
    # before it
    metric(seeded, "app.rejects", "60", NOW + timedelta(minutes=3))
    assert evaluate(seeded, NOW + timedelta(minutes=4)) == [("reject-burst", "resolved", Decimal("0"), False)]


def test_an_increase_rule_over_a_window_without_values_reads_zero(seeded):
    metric(seeded, "app.rejects", "10", ago(30))  # outside the window
    add_rule(seeded, "quiet", "system", "=", "0", metric="app.rejects", aggregate="increase")
    assert evaluate(seeded, NOW) == [("quiet", "fired", Decimal("0"), False)]


def test_an_increase_rule_without_labels_adds_up_the_rises_of_each_series(seeded):
    # one series' restart is not taken as a fall of the total: each series rises on its own
    for minutes, okx, kraken in ((4, "100", "7"), (2, "130", "17"), (1, "5", "20")):
        metric(seeded, "app.rejects", okx, ago(minutes), venue="okx")
        metric(seeded, "app.rejects", kraken, ago(minutes), venue="kraken")
    add_rule(seeded, "all-venues", "system", ">", "0", metric="app.rejects", aggregate="increase")
    add_rule(seeded, "kraken-only", "system", ">", "0", metric="app.rejects", aggregate="increase",
             labels={"venue": "kraken"})  # fmt: skip
    assert sorted(evaluate(seeded, NOW)) == [
        ("all-venues", "fired", Decimal("48"), False),  # okx 30 + 5, kraken 10 + 3
        ("kraken-only", "fired", Decimal("13"), False),
    ]


def test_an_increase_rule_counts_the_larger_value_of_a_time_recorded_twice(seeded):
    metric(seeded, "app.rejects", "100", ago(3))
    metric(seeded, "app.rejects", "150", ago(2))
    metric(seeded, "app.rejects", "120", ago(2))
    metric(seeded, "app.rejects", "200", ago(1))
    add_rule(seeded, "rejects", "system", ">", "0", metric="app.rejects", aggregate="increase")
    assert evaluate(seeded, NOW) == [("rejects", "fired", Decimal("100"), False)]


def test_an_increase_rule_on_db_rollbacks_counts_the_rollbacks_between_two_collections(seeded, seeded_url):
    call(seeded, "monitor.collect_metrics", collected_at=NOW)
    # why another connection, closed: a backend sends its statistics when it exits
    with psycopg.connect(seeded_url) as other:
        for _ in range(5):
            other.execute("select 1")
            other.rollback()
    call(seeded, "monitor.collect_metrics", collected_at=NOW + timedelta(minutes=1))
    first, second = (
        row[0]
        for row in seeded.execute(
            "select value from monitor.metrics where name = 'db.rollbacks' order by recorded_at"
        ).fetchall()
    )
    assert second - first >= 5
    add_rule(seeded, "rollback-burst", "system", ">=", "5", metric="db.rollbacks", aggregate="increase")
    assert evaluate(seeded, NOW + timedelta(minutes=1)) == [
        ("rollback-burst", "fired", second - first, False)
    ]


@pytest.mark.parametrize(("kind", "place", "allowed"), [
    ("price", {"exchange": "binance", "symbol": "BTCUSDT"}, "last, avg, min, max, change_pct"),
    ("volume", {"exchange": "binance", "symbol": "BTCUSDT"}, "sum, count"),
])  # fmt: skip
def test_a_market_data_rule_refuses_the_increase_aggregate(seeded, kind, place, allowed):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "btc", kind, ">", "1", aggregate="increase", **place)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S12",
        f'the aggregate of a {kind} rule must be one of {allowed}, got "increase"',
    )


def test_the_stored_rules_refuse_an_aggregate_the_evaluation_does_not_know(seeded):
    metric(seeded, "app.rejects", "10", ago(1))
    add_rule(seeded, "rejects", "system", ">", "0", metric="app.rejects", aggregate="increase")
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        seeded.execute("update monitor.alert_rules set aggregate = 'rate' where name = 'rejects'")
    assert caught.value.diag.constraint_name == "alert_rules_aggregate_check"
