"""Edges of monitoring: alert windows in any session time zone, cooldowns evaluation can subtract,
the working orders a max_open_orders rejection reports, and the scope the CLI's kill switch names."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner

from monitor_helpers import add_rule, evaluate, metric
from spreadedge.cli import main
from trading_helpers import call, order, place

# Europe/Berlin moved its clocks forward at 01:00 UTC on 2024-03-31: that local day had 23 hours
BEFORE_DST = datetime(2024, 3, 30, 12, 30, tzinfo=UTC)
AFTER_DST = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)


def invoke(url, *args):
    return CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)


def test_a_one_day_window_is_24_hours_whatever_the_session_time_zone(seeded):
    # the metrics partitions are made around today: the DST day needs its own
    seeded.execute(
        "select partman.create_partition_time('monitor.metrics',"
        " array['2024-03-30 00:00+00', '2024-03-31 00:00+00']::timestamptz[])"
    )
    metric(seeded, "app.gap", "5", BEFORE_DST)  # 23.5 hours before AFTER_DST
    add_rule(seeded, "gap", "system", ">", "1", metric="app.gap", aggregate="max", evaluation_window="1 day")
    seeded.execute("set timezone = 'Europe/Berlin'")

    assert evaluate(seeded, AFTER_DST) == [("gap", "fired", Decimal("5"), False)]


def test_a_one_day_cooldown_is_24_hours_whatever_the_session_time_zone(seeded):
    # evaluated_at - cooldown counted the day in the session TimeZone: across Berlin's 23-hour day
    # a firing 23.5 hours after the last notified one was notified again
    seeded.execute(
        "select partman.create_partition_time('monitor.metrics',"
        " array['2024-03-30 00:00+00', '2024-03-31 00:00+00']::timestamptz[])"
    )
    metric(seeded, "app.gap", "5", BEFORE_DST)
    add_rule(
        seeded, "gap", "system", ">", "1", metric="app.gap", aggregate="max", evaluation_window="15 minutes",
        cooldown="1 day", channels=["webhook"],
    )  # fmt: skip
    seeded.execute("set timezone = 'Europe/Berlin'")
    assert evaluate(seeded, BEFORE_DST) == [("gap", "fired", Decimal("5"), True)]
    metric(seeded, "app.gap", "0", BEFORE_DST + timedelta(minutes=20))
    assert [t[1] for t in evaluate(seeded, BEFORE_DST + timedelta(minutes=20))] == ["resolved"]
    metric(seeded, "app.gap", "6", AFTER_DST - timedelta(minutes=1))

    assert evaluate(seeded, AFTER_DST) == [("gap", "fired", Decimal("6"), False)]


def test_a_cooldown_evaluation_cannot_subtract_from_its_time_is_refused_when_added(seeded):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "forever", "system", ">", "1", metric="db.size_bytes", cooldown="10000 years")
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S12",
        'cooldown must be zero or more and at most 1 year (366 days), with no negative part, got "10000 years"',
    )


def test_a_cooldown_of_a_year_is_accepted(seeded):
    add_rule(seeded, "yearly", "system", ">", "1", metric="db.size_bytes", cooldown="1 year 6 days")
    assert seeded.execute("select cooldown::text from monitor.alert_rules").fetchone() == ("1 year 6 days",)


def test_a_max_open_orders_rejection_reports_every_working_order(seeded):
    for _ in range(5):
        place(seeded, "buy", "0.01", "60000")
    call(seeded, "monitor.set_risk_limit", strategy="alpha", max_open_orders=2)

    rejected = place(seeded, "buy", "0.01", "60000")

    reason = "6 working orders with this one exceed max_open_orders 2"
    assert order(seeded, rejected)["status_reason"] == reason
    assert seeded.execute(
        "select limit_value, observed_value, reason from monitor.risk_events where order_id = %s", [rejected]
    ).fetchone() == (Decimal("2"), Decimal("6"), reason)


def test_risk_kill_of_an_exchange_names_the_exchange_it_stops(seeded, seeded_url):
    result = invoke(seeded_url, "risk", "kill", "alpha", "--exchange", "okx")

    assert (result.exit_code, result.output) == (
        0,
        "kill switch of alpha for okx on: every new order on okx is rejected\n",
    )
    assert order(seeded, place(seeded, "buy", "0.01", "60000"))["status"] == "new"  # binance still trades


def test_risk_unkill_of_an_instrument_names_the_instrument(seeded, seeded_url):
    invoke(seeded_url, "risk", "kill", "alpha", "--exchange", "okx", "--symbol", "BTC-USDT-SWAP")

    result = invoke(seeded_url, "risk", "unkill", "alpha", "--exchange", "okx", "--symbol", "BTC-USDT-SWAP")

    assert (result.exit_code, result.output) == (0, "kill switch of alpha for okx/BTC-USDT-SWAP off\n")


def test_latest_metrics_shows_the_latest_value_recorded_so_far_not_one_dated_ahead(seeded):
    now = seeded.execute("select now()").fetchone()[0]
    metric(seeded, "app.lag_ms", "42", now - timedelta(minutes=1))
    metric(seeded, "app.lag_ms", "9000", now + timedelta(hours=20))  # a mistyped hour

    assert seeded.execute(
        "select value from monitor.latest_metrics where name = 'app.lag_ms'"
    ).fetchall() == [(Decimal("42"),)]


# bug: '1 mon -29 days' compared as 1 day and was accepted, but subtracted from 15 March it ends on
# 16 March, after the evaluation's time: an empty window (a rule that never fires) or no cooldown
@pytest.mark.parametrize(
    ("part", "value", "allowed"),
    [
        ("evaluation_window", "1 mon -29 days", "more than 0 and at most 31 days"),
        ("evaluation_window", "1 day -3 hours", "more than 0 and at most 31 days"),
        ("cooldown", "1 mon -29 days", "zero or more and at most 1 year (366 days)"),
    ],
)
def test_a_window_or_cooldown_with_a_negative_part_is_refused_when_added(seeded, part, value, allowed):
    with pytest.raises(psycopg.Error) as caught:
        add_rule(seeded, "mixed", "system", ">", "1", metric="db.size_bytes", **{part: value})
    shown = seeded.execute("select %s::interval::text", [value]).fetchone()[0]
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S12",
        f'{part.replace("_", " ")} must be {allowed}, with no negative part, got "{shown}"',
    )
    assert seeded.execute("select count(*) from monitor.alert_rules").fetchone() == (0,)
